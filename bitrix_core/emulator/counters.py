"""Per-method counters: what the portal served, refused and spent."""

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class MethodCounters:
    """Counts for one method (lower-case name); `batch` counts batch requests."""

    requests: int = 0  # HTTP requests naming this method
    batches: int = 0  # batch requests holding at least one command of this method
    subcommands: int = 0  # commands of this method run inside batches
    rows: int = 0  # rows served
    status_503: int = 0  # QUERY_LIMIT_EXCEEDED, OVERLOAD_LIMIT and 503 pages
    status_429: int = 0  # OPERATION_TIME_LIMIT, for sub-commands too
    status_500: int = 0  # INTERNAL_SERVER_ERROR: requests cut at the plan's cap, 500 faults
    operating_s: float = 0.0  # operating seconds charged


class Counters:
    """Counters by method; `counters["crm.deal.list"].rows`, `counters.total()`."""

    def __init__(self) -> None:
        self._by_method: dict[str, MethodCounters] = {}

    def __getitem__(self, method: str) -> MethodCounters:
        return self._by_method.setdefault(method.lower(), MethodCounters())

    def methods(self) -> list[str]:
        """Methods seen so far."""
        return sorted(self._by_method)

    def total(self) -> MethodCounters:
        """The sum over all methods."""
        total = MethodCounters()
        for counts in self._by_method.values():
            for name, value in asdict(counts).items():
                setattr(total, name, getattr(total, name) + value)
        return total

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: `{"methods": {name: {...}}, "total": {...}}`."""
        return {
            "methods": {name: asdict(self._by_method[name]) for name in self.methods()},
            "total": asdict(self.total()),
        }

    def count_status(self, method: str, status: int) -> None:
        """Record a refused answer by its status."""
        if status == 503:
            self[method].status_503 += 1
        elif status == 429:
            self[method].status_429 += 1
        elif status == 500:
            self[method].status_500 += 1

    def clear(self) -> None:
        """Forget everything."""
        self._by_method.clear()
