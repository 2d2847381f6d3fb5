"""The portal's limits: plan presets, the leaky request bucket, operating budgets, cost model.

Every duration here is in portal seconds and multiplied by the portal's `time_scale`
to get real seconds (see docs/contracts.md, "Time and the time scale").
"""

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Plan:
    """A portal plan; `bucket_size=None` means no request bucket, `operating_limit_s=None`
    means no operating-time limit."""

    name: str
    bucket_size: int | None
    drain_per_s: float
    operating_limit_s: float | None = 480.0
    basket_s: float = 60.0
    baskets: int = 10

    @classmethod
    def for_name(cls, name: str) -> "Plan":
        """`standard`, `enterprise` or `unlimited`."""
        try:
            return PLANS[name.lower()]
        except KeyError:
            raise ValueError(f"unknown plan {name!r}; expected one of {sorted(PLANS)}") from None


PLANS: dict[str, Plan] = {
    "standard": Plan("standard", bucket_size=50, drain_per_s=2.0),
    "enterprise": Plan("enterprise", bucket_size=250, drain_per_s=5.0),
    "unlimited": Plan("unlimited", bucket_size=None, drain_per_s=0.0, operating_limit_s=None),
}


class LeakyBucket:
    """Each request adds 1, the level drains `drain_per_s` per real second; a request that
    would lift the level above `size` is refused and adds nothing."""

    def __init__(self, *, size: int, drain_per_s: float) -> None:
        self.size = size
        self.drain_per_s = drain_per_s
        self._level = 0.0
        self._at: float | None = None

    def level(self, now: float) -> float:
        """The current level after draining."""
        if self._at is None:
            return self._level
        return max(0.0, self._level - (now - self._at) * self.drain_per_s)

    def try_acquire(self, now: float) -> bool:
        """Add one request if it fits; False means 503 QUERY_LIMIT_EXCEEDED."""
        level = self.level(now)
        self._at = now
        if level + 1 > self.size:
            self._level = level
            return False
        self._level = level + 1
        return True


class OperatingBudget:
    """Operating seconds per key (auth identity, method) in `baskets` rolling baskets of
    `basket_s` real seconds each, aligned to multiples of `basket_s` since the epoch."""

    def __init__(self, *, limit_s: float, basket_s: float, baskets: int) -> None:
        self.limit_s = limit_s
        self.basket_s = basket_s
        self.baskets = baskets
        self._used: dict[Any, dict[int, float]] = {}

    def _live(self, key: Any, now: float) -> dict[int, float]:
        current = math.floor(now / self.basket_s)
        baskets = self._used.get(key, {})
        live = {index: s for index, s in baskets.items() if index > current - self.baskets}
        self._used[key] = live
        return live

    def used(self, key: Any, now: float) -> float:
        """Seconds spent by `key` inside the window."""
        return sum(self._live(key, now).values())

    def blocked(self, key: Any, now: float) -> bool:
        """True when the budget is spent: the call must be refused with 429."""
        return self.used(key, now) >= self.limit_s

    def spend(self, key: Any, seconds: float, now: float) -> None:
        """Charge `seconds` to the current basket."""
        live = self._live(key, now)
        index = math.floor(now / self.basket_s)
        live[index] = live.get(index, 0.0) + seconds

    def reset_at(self, key: Any, now: float) -> float:
        """Unix time when the oldest basket holding time drops out of the window."""
        live = self._live(key, now)
        oldest = min(live) if live else math.floor(now / self.basket_s)
        return (oldest + self.baskets) * self.basket_s

    def clear(self) -> None:
        """Forget everything spent."""
        self._used.clear()


@dataclass(frozen=True)
class CostModel:
    """Processing seconds of one command: base + per_row*rows + count_s*counted + offset_s*offset.

    "cloud" profile, calibrated on the two public data points in the API digest:

    - (A) docs example, crm.item.list over 2,387,743 items: 49.9 s per call with the COUNT,
      0.097 s with start=-1, so count_s = (49.9 - 0.097) / 2,387,743 = 20.9 us per matching
      row. The 0.097 s includes the network round trip, so it is not used as the page cost.
    - (B) 7,531 leads, select ID,TITLE: ~17 ms processing per 50-row page (a 50-command
      batch took ~1.5 s end to end): base + 50*per_row = 0.017 s, the no-COUNT page cost.
      The split between base and per_row is an assumption: 7 ms + 0.2 ms per row.
    - offset_s is an assumption, not measured: a quarter of count_s per skipped row
      (the database walks skipped rows but does less work than a COUNT).
    """

    base_s: float = 0.007
    per_row_s: float = 0.0002
    count_s: float = (49.9 - 0.097) / 2_387_743
    offset_s: float = (49.9 - 0.097) / 2_387_743 / 4

    def processing(self, *, rows: int, counted: int, offset: int) -> float:
        """Portal seconds one command takes."""
        return (
            self.base_s
            + self.per_row_s * rows
            + self.count_s * max(counted, 0)
            + self.offset_s * max(offset, 0)
        )


class PortalLimits:
    """A plan applied at a time scale: the portal's bucket, operating budget and cost model."""

    def __init__(
        self, plan: Plan, *, time_scale: float = 1.0, cost: CostModel | None = None
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.plan = plan
        self.time_scale = time_scale
        self.cost = cost or CostModel()
        self.bucket: LeakyBucket | None = None
        self.operating: OperatingBudget | None = None
        self.reset()

    def reset(self) -> None:
        """Empty the bucket and forget all operating time."""
        plan, scale = self.plan, self.time_scale
        self.bucket = (
            LeakyBucket(size=plan.bucket_size, drain_per_s=plan.drain_per_s / scale)
            if plan.bucket_size is not None
            else None
        )
        self.operating = (
            OperatingBudget(
                limit_s=plan.operating_limit_s * scale,
                basket_s=plan.basket_s * scale,
                baskets=plan.baskets,
            )
            if plan.operating_limit_s is not None
            else None
        )

    def admit(self, now: float) -> bool:
        """Take a slot in the request bucket; False means 503 QUERY_LIMIT_EXCEEDED."""
        return self.bucket is None or self.bucket.try_acquire(now)

    def processing(self, *, rows: int, counted: int, offset: int) -> float:
        """Real (scaled) seconds one command takes."""
        return self.cost.processing(rows=rows, counted=counted, offset=offset) * self.time_scale
