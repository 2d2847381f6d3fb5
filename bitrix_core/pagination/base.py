"""The page, the runner the strategies send commands through, and the strategy protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixBadRequestError

if TYPE_CHECKING:
    from bitrix_core.stats import ListStats


class CommandOutcome(Protocol):
    """What one list command returns (batching.CommandResult has this shape)."""

    result: Any
    next: int | None
    total: int | None


class Runner(Protocol):
    """Sends one command, packed into a batch with others (batching.Batcher)."""

    async def run(
        self,
        method: str,
        params: dict[str, Any],
        *,
        stats: ListStats | None = None,
        idempotent: bool = True,
    ) -> CommandOutcome: ...


async def run_read(
    runner: Runner,
    method: str,
    params: dict[str, Any],
    *,
    stats: ListStats | None,
    alone: bool = False,
) -> CommandOutcome:
    """One page, asked again once after a 400: a refused filter is refused twice, but a
    one-off 400 (a proxy, a portal hiccup) should not send a whole run to offset paging.
    `alone` sends it as a request of its own where the runner can (`run_alone`)."""
    send = (getattr(runner, "run_alone", None) if alone else None) or runner.run
    try:
        return await send(method, params, stats=stats)
    except BitrixBadRequestError:
        if stats is not None:
            stats.retries += 1
        return await send(method, params, stats=stats)


@dataclass
class Page:
    """One page of rows as it completes; `stats` is the running ListStats of the list run."""

    rows: list[dict[str, Any]]
    stats: ListStats | None = None
    total: int | None = field(default=None, repr=False)


@runtime_checkable
class PageStrategy(Protocol):
    """A way of walking a list method page by page.

    `applies_to` says whether the strategy can serve this entity and parameters;
    `pages` yields pages as they complete. `disjoint` is True when no row can come back
    twice (id ranges never overlap), so the run need not remember every id to dedupe.
    """

    name: str
    disjoint: bool

    def applies_to(self, spec: EntitySpec, params: Mapping[str, Any]) -> bool: ...

    def pages(
        self,
        runner: Runner,
        spec: EntitySpec,
        params: Mapping[str, Any],
        stats: ListStats | None,
    ) -> AsyncIterator[Page]: ...
