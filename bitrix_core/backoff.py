"""How the client waits out 503 QUERY_LIMIT_EXCEEDED: the portal's request bucket is fuller
than the client's model says, most often because other applications on the portal use it
(applications share one bucket per portal).

A streak runs from the first 503 to the first success after the backoff. Its start halves
the burst the client allows itself (it grows back by one per success), and each round of it
(503s of requests already on their way do not start a new round) holds the bucket for an
exponentially growing, jittered delay: one drain interval, two, four ... up to the time the
whole bucket takes to drain. After
`Limits.query_limit_patience_s` the streak gives up and the request fails. One warning is
logged when a streak starts and one line when it ends.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger("bitrix_core")


@dataclass
class _Streak:
    """503 answers since the last success (times on the throttle's clock)."""

    started: float
    refusals: int = 0
    rounds: int = 0
    resume_at: float = 0.0


class BucketLimits(Protocol):
    """The request bucket's limits the backoff reads (throttle.Limits has them)."""

    @property
    def burst(self) -> int: ...

    @property
    def bucket_size(self) -> int: ...

    @property
    def drain_per_s(self) -> float: ...

    @property
    def query_limit_patience_s(self) -> float: ...


class QueryLimitBackoff:
    """The burst the client allows itself, and the current QUERY_LIMIT_EXCEEDED streak."""

    def __init__(self, limits: BucketLimits) -> None:
        self.limits = limits
        self._burst = float(limits.burst)
        self._streak: _Streak | None = None

    @property
    def burst(self) -> int:
        """Requests the client lets into the bucket at once, right now."""
        return max(1, int(self._burst))

    def streak_s(self, now: float) -> float:
        """Seconds since the streak's first 503 (0 when there is none)."""
        return 0.0 if self._streak is None else now - self._streak.started

    def refused(self, now: float) -> tuple[float, int] | None:
        """A 503 arrived: (seconds until sending resumes, drain intervals to hold the bucket
        for, 0 when this 503 belongs to the round already backing off), or None once the
        streak has outlasted the patience."""
        limits = self.limits
        streak = self._streak
        if streak is None:
            streak = self._streak = _Streak(started=now)
            logger.warning(
                "QUERY_LIMIT_EXCEEDED: the portal's request bucket is full (other applications "
                "may be using it); backing off for up to %.0f s in all",
                limits.query_limit_patience_s,
            )
        streak.refusals += 1
        left = streak.started + limits.query_limit_patience_s - now
        if left <= 0:
            return None
        if now < streak.resume_at:
            return streak.resume_at - now, 0
        streak.rounds += 1
        if streak.rounds == 1:  # others hold part of the bucket: leave them half of ours
            self._burst = max(1.0, self._burst / 2)
        interval = 1.0 / limits.drain_per_s
        step = min(limits.bucket_size, 2 ** min(streak.rounds - 1, 30)) * interval
        delay = min(step * random.uniform(0.5, 1.0), left)
        slots = max(1, math.ceil(delay / interval - 1e-9))
        streak.resume_at = now + slots * interval
        return slots * interval, slots

    def succeeded(self, now: float) -> None:
        """A request completed: the burst grows back; after the backoff, the streak ends."""
        self._burst = min(float(self.limits.burst), self._burst + 1.0)
        streak = self._streak
        if streak is not None and now >= streak.resume_at:
            logger.info(
                "request bucket free again after %.1f s and %d QUERY_LIMIT_EXCEEDED answers",
                now - streak.started,
                streak.refusals,
            )
            self._streak = None
