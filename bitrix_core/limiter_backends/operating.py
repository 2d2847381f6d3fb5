"""The operating-time ledger's arithmetic, shared by the SQLite and PostgreSQL backends
(the Redis backend runs the same steps in Lua).

A reservation is (expires_at, seconds): it counts from its start until `expires_at`. A
new one starts at the earliest moment the reservations still live then, plus itself, fit
under the limit; reservations that start later count from now (conservative), so at no
moment do the live reservations add up to more than the limit.
"""

from collections.abc import Iterable


def reservation_start(
    live: Iterable[tuple[float, float]], *, earliest: float, seconds: float, limit_s: float
) -> float:
    """When a reservation of `seconds` may start, given the reservations `live` after
    `earliest` (the oldest ones dropping out first)."""
    ordered = sorted(live)
    used = sum(amount for _, amount in ordered)
    start = earliest
    for expires_at, amount in ordered:
        if used + seconds <= limit_s:
            break
        used -= amount
        start = max(start, expires_at)
    return start
