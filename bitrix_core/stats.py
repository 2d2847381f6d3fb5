"""Request statistics that every call hands back to the layers above (sync, Dagster metadata)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

_COUNTERS = (
    "requests",
    "batches",
    "subcommands",
    "single_requests",
    "retries",
    "throttle_waits",
    "limit_errors",
    "rows",
)


@dataclass
class CallStats:
    """What it cost to get an answer.

    requests: HTTP requests sent (a batch is one); batches / single_requests split them;
    subcommands: commands carried inside batches; retries: resends after a failure;
    throttle_waits / throttle_wait_s: how often and how long the client waited for a slot;
    limit_errors: 503 QUERY_LIMIT_EXCEEDED and 429 OPERATION_TIME_LIMIT answers received;
    query_limit_wait_s: seconds from a request's first 503 to its answered resend (summed
    over requests, like throttle_wait_s);
    rows: rows returned; strategy: how a list was paged; fallbacks: fallback steps that ran.
    """

    requests: int = 0
    batches: int = 0
    subcommands: int = 0
    single_requests: int = 0
    retries: int = 0
    throttle_waits: int = 0
    throttle_wait_s: float = 0.0
    limit_errors: int = 0
    query_limit_wait_s: float = 0.0
    rows: int = 0
    strategy: str = ""
    fallbacks: list[str] = field(default_factory=list)

    def add_fallback(self, name: str) -> None:
        """Record that a fallback step ran (each name once, in order of first use)."""
        if name not in self.fallbacks:
            self.fallbacks.append(name)

    def add_wait(self, seconds: float) -> None:
        """Record a throttle wait (zero waits are not counted)."""
        if seconds > 0:
            self.throttle_waits += 1
            self.throttle_wait_s += seconds

    def merge(self, other: CallStats) -> None:
        """Add another set of statistics into this one."""
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.throttle_wait_s += other.throttle_wait_s
        self.query_limit_wait_s += other.query_limit_wait_s
        if other.strategy and not self.strategy:
            self.strategy = other.strategy
        for name in other.fallbacks:
            self.add_fallback(name)

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-ready) of every figure."""
        data = asdict(self)
        data["throttle_wait_s"] = round(self.throttle_wait_s, 3)
        data["query_limit_wait_s"] = round(self.query_limit_wait_s, 3)
        return data


@dataclass
class ListStats(CallStats):
    """Statistics of one list run; `pages` counts the pages it yielded."""

    pages: int = 0

    def merge(self, other: CallStats) -> None:
        super().merge(other)
        if isinstance(other, ListStats):
            self.pages += other.pages
