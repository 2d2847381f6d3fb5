"""Where limiter state lives: a method's operating-time record (`MethodBudget`), the
`LimiterBackend` protocol a shared store implements (see `bitrix_core.limiter_backends`), and
the default in-process backend.

The bucket is kept as a GCRA "theoretical arrival time": reserving a slot is one atomic
step that returns how long the caller must wait, so hundreds of concurrent callers are
spaced out without overshooting the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class MethodBudget:
    """What the client knows of one method's operating time (times on the local clock)."""

    operating: float
    reset_at: float
    server_now: float
    cost_s: float = 0.0
    blocked_until: float = 0.0
    next_at: float = 0.0


class LimiterBackend(Protocol):
    """Where limiter state lives; shared state lets several processes share one portal."""

    async def take_slot(self, *, now: float, interval_s: float, burst: int) -> float:
        """Reserve the next bucket slot; return the seconds to wait before sending."""
        ...

    async def fill_bucket(self, *, now: float, interval_s: float, burst: int) -> None:
        """Mark the bucket as holding `burst` requests at `now` (the portal answered 503
        QUERY_LIMIT_EXCEEDED; a level over the burst holds the next slot back longer)."""
        ...

    async def get_budget(self, method: str) -> MethodBudget | None:
        """The stored operating-time record of a method (lower-case name), if any."""
        ...

    async def put_budget(self, method: str, budget: MethodBudget) -> None:
        """Store a method's operating-time record."""
        ...

    async def reserve_operating(
        self, method: str, *, seconds: float, after_s: float, hold_s: float, limit_s: float
    ) -> float:
        """One atomic step: reserve `seconds` of a method's operating time, starting no
        earlier than `after_s` from now nor before the live reservations of every process
        sharing this backend leave room for it under `limit_s`; it counts from its start
        and expires `hold_s` later (a killed process's reservations lapse on their own).
        Return the seconds from now until it starts."""
        ...


class InProcessLimiterBackend:
    """Limiter state in this process's memory (one event loop, no locking needed)."""

    def __init__(self) -> None:
        self._tat = 0.0
        self._budgets: dict[str, MethodBudget] = {}

    async def take_slot(self, *, now: float, interval_s: float, burst: int) -> float:
        tat = max(self._tat, now)
        allowed_at = tat - (burst - 1) * interval_s
        self._tat = tat + interval_s
        return max(0.0, allowed_at - now)

    async def fill_bucket(self, *, now: float, interval_s: float, burst: int) -> None:
        self._tat = max(self._tat, now + burst * interval_s)

    async def get_budget(self, method: str) -> MethodBudget | None:
        return self._budgets.get(method)

    async def put_budget(self, method: str, budget: MethodBudget) -> None:
        self._budgets[method] = budget

    async def reserve_operating(
        self, method: str, *, seconds: float, after_s: float, hold_s: float, limit_s: float
    ) -> float:
        """One process: the throttle's own commitments are the whole ledger already."""
        return after_s
