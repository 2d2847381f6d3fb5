"""A portal plan's limits as the client respects them: the request bucket, the per-method
operating budget, concurrency, the request cap and the patience for 503 answers."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    """A portal plan's limits as the client respects them.

    bucket_size / drain_per_s: the request-rate leaky bucket (a batch is one request);
    operating_budget_s over operating_window_s, in baskets of basket_s: per-method time;
    margin_slots / jitter_s / bucket_headroom: the bucket is left that much below full, the
        largest of: `margin_slots` slots, `jitter_s` real seconds of drain (requests may bunch
        up on the way by that much; on an emulator's fast time scale this is the larger one;
        not scaled), a `bucket_headroom` fraction of the bucket;
    operating_soft / operating_hard: budget fractions where pacing starts (when others spend
        the budget too) / sending stops; the client prices what it commits at a method's
        dearest recent call, so 3% is left for cost it could not foresee;
    max_concurrency: the ceiling of in-flight requests (adapted down on timeouts and 5xx)
        while requests are quick; slow ones (a batch of expensive pages) raise it up to 4x,
        as far as keeps the bucket busy (see `Throttle.observe_request`);
    request_timeout_s: the portal's cap on one request's processing (b24restdocs
        settings/performance/limits.md: "one REST request must finish within 60 seconds";
        past it the answer is 500 INTERNAL_SERVER_ERROR): batches are sized well under it;
    query_limit_patience_s: how long a streak of 503 QUERY_LIMIT_EXCEEDED answers (a bucket
        kept full, e.g. by other applications on the portal) is waited out with exponential
        backoff before the request fails.
    """

    bucket_size: int
    drain_per_s: float
    operating_budget_s: float = 480.0
    operating_window_s: float = 600.0
    basket_s: float = 60.0
    max_concurrency: int = 16
    margin_slots: int = 2
    jitter_s: float = 0.1
    bucket_headroom: float = 0.0
    operating_soft: float = 0.7
    operating_hard: float = 0.97
    query_limit_patience_s: float = 300.0
    request_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.bucket_size < 1:
            raise ValueError("bucket_size must be at least 1")
        if self.drain_per_s <= 0:
            raise ValueError("drain_per_s must be positive")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not 0 <= self.bucket_headroom < 1:
            raise ValueError("bucket_headroom must be in [0, 1)")
        if self.margin_slots < 0 or self.jitter_s < 0:
            raise ValueError("margin_slots and jitter_s must not be negative")
        if self.query_limit_patience_s < 0:
            raise ValueError("query_limit_patience_s must not be negative")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")

    @classmethod
    def for_plan(cls, plan: str) -> Limits:
        """Preset limits: "standard" (50 / 2 per s), "enterprise" (250 / 5 per s), "unlimited"."""
        presets = {
            "standard": cls(bucket_size=50, drain_per_s=2.0),
            "enterprise": cls(bucket_size=250, drain_per_s=5.0),
            "unlimited": cls(
                bucket_size=100_000,
                drain_per_s=100_000.0,
                operating_budget_s=float("inf"),
                margin_slots=0,
                jitter_s=0.0,
            ),
        }
        try:
            return presets[plan.lower()]
        except KeyError:
            raise ValueError(f"unknown plan {plan!r}; expected one of {sorted(presets)}") from None

    def scaled(self, factor: float) -> Limits:
        """The same plan on a time scale: durations times `factor`, drain rate divided by it."""
        if factor <= 0:
            raise ValueError("factor must be positive")
        return replace(
            self,
            drain_per_s=self.drain_per_s / factor,
            operating_budget_s=self.operating_budget_s * factor,
            operating_window_s=self.operating_window_s * factor,
            basket_s=self.basket_s * factor,
            query_limit_patience_s=self.query_limit_patience_s * factor,
            request_timeout_s=self.request_timeout_s * factor,
        )

    @property
    def burst(self) -> int:
        """Requests the client lets into the bucket at once (size minus the largest margin)."""
        margin = max(
            self.margin_slots,
            math.ceil(self.jitter_s * self.drain_per_s - 1e-9),
            round(self.bucket_size * self.bucket_headroom),
        )
        return max(1, self.bucket_size - margin)
