"""The portal's limits: plan presets, the leaky request bucket, operating budgets; the cost
model lives in `costs.py` (`CostModel` is re-exported here).

Every duration here is in portal seconds and multiplied by the portal's `time_scale`
to get real seconds (see docs/contracts.md, "Time and the time scale").
"""

import math
from dataclasses import dataclass
from typing import Any

from bitrix_core.emulator.costs import CostModel, CostProfile

__all__ = ["PLANS", "CostModel", "CostProfile", "LeakyBucket", "OperatingBudget", "Plan",
           "PortalLimits"]


@dataclass(frozen=True)
class Plan:
    """A portal plan; `bucket_size=None` means no request bucket, `operating_limit_s=None`
    means no operating-time limit, `request_timeout_s=None` no cap on one request.

    `request_timeout_s`: b24restdocs limits.md, "In the Bitrix24 cloud version, one REST
    request must finish within 60 seconds. If processing takes longer, the request is
    interrupted by timeout"; api-reference/crm/deals/user-defined-fields/index.md: "it is
    interrupted with an error INTERNAL_SERVER_ERROR"."""

    name: str
    bucket_size: int | None
    drain_per_s: float
    operating_limit_s: float | None = 480.0
    basket_s: float = 60.0
    baskets: int = 10
    request_timeout_s: float | None = 60.0

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
    "unlimited": Plan("unlimited", bucket_size=None, drain_per_s=0.0, operating_limit_s=None,
                      request_timeout_s=None),
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
    """Operating seconds per key (auth identity, method) in `baskets` one-minute baskets.

    As b24restdocs `settings/performance/limits.md` ("Resource Intensity Limits") has it: a
    basket sums one minute's time, its countdown starts at the first call recorded in that
    minute and lasts `baskets * basket_s`; `operating_reset_at` is when the oldest basket
    drops out, a whole (portal) second: a first call at 10:05:20 gives 10:15:20. Minutes
    are counted from the epoch; `second_s` is one portal second in real seconds.
    """

    def __init__(
        self, *, limit_s: float, basket_s: float, baskets: int, second_s: float = 1.0
    ) -> None:
        self.limit_s = limit_s
        self.basket_s = basket_s
        self.baskets = baskets
        self.second_s = second_s
        self._used: dict[Any, dict[int, tuple[float, float]]] = {}  # minute: (first, spent)

    def _live(self, key: Any, now: float) -> dict[int, tuple[float, float]]:
        window = self.basket_s * self.baskets
        baskets = self._used.get(key, {})
        live = {minute: b for minute, b in baskets.items() if b[0] + window > now}
        self._used[key] = live
        return live

    def used(self, key: Any, now: float) -> float:
        """Seconds spent by `key` inside the window."""
        return sum(spent for _, spent in self._live(key, now).values())

    def blocked(self, key: Any, now: float) -> bool:
        """True when the budget is spent: the call must be refused with 429."""
        return self.used(key, now) >= self.limit_s

    def spend(self, key: Any, seconds: float, now: float) -> None:
        """Charge `seconds` to the current minute's basket (opened by this call if empty)."""
        live = self._live(key, now)
        minute = math.floor(now / self.basket_s)
        first, spent = live.get(minute, (self._whole_second(now), 0.0))
        live[minute] = (first, spent + seconds)

    def reset_at(self, key: Any, now: float) -> float:
        """When the oldest basket holding time drops out of the window (a whole second)."""
        live = self._live(key, now)
        first = min(b[0] for b in live.values()) if live else self._whole_second(now)
        return first + self.basket_s * self.baskets

    def _whole_second(self, moment: float) -> float:
        return math.floor(moment / self.second_s + 1e-9) * self.second_s

    def clear(self) -> None:
        """Forget everything spent."""
        self._used.clear()


class PortalLimits:
    """A plan applied at a time scale: the portal's bucket, operating budget and cost model.

    `cost` is a `CostProfile` (default: "calibrated") or one `CostModel` for every method."""

    def __init__(
        self,
        plan: Plan,
        *,
        time_scale: float = 1.0,
        cost: CostModel | CostProfile | str | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.plan = plan
        self.time_scale = time_scale
        if isinstance(cost, CostModel):
            cost = CostProfile.uniform(cost)
        elif cost is None or isinstance(cost, str):
            cost = CostProfile.for_name(cost or "calibrated")
        self.cost: CostProfile = cost
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
                second_s=scale,
            )
            if plan.operating_limit_s is not None
            else None
        )

    def admit(self, now: float) -> bool:
        """Take a slot in the request bucket; False means 503 QUERY_LIMIT_EXCEEDED."""
        return self.bucket is None or self.bucket.try_acquire(now)

    @property
    def request_timeout(self) -> float | None:
        """Real (scaled) seconds of modelled processing after which a request is cut."""
        cap = self.plan.request_timeout_s
        return None if cap is None else cap * self.time_scale

    def processing(self, method: str, *, rows: int, counted: int, offset: int) -> float:
        """Real (scaled) seconds one command of `method` takes."""
        seconds = self.cost.processing(method, rows=rows, counted=counted, offset=offset)
        return seconds * self.time_scale
