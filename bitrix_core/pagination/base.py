"""The page, the runners the strategies send commands through, and the strategy protocol.

A `Runner` sends one command at a time (packed into batches with others, or not). Linked
pagination needs more of it, all declared by `LinkedRunner` (batching.Batcher is one):
groups of commands in one batch that refer to each other's results, a request of its own
for a slow count, and the queue's state to pace and size what it sends. A strategy asks
`linked(runner)` once; without those capabilities it walks one page per command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixBadRequestError

if TYPE_CHECKING:
    from bitrix_core.stats import CallStats, ListStats


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
        params: Mapping[str, Any],
        *,
        stats: ListStats | None = None,
        idempotent: bool = True,
    ) -> CommandOutcome: ...


LinkedCommand = tuple[str, str, Mapping[str, Any]]
"""(key, method, params): a command of a linked group; later ones may refer to earlier
ones' results as `$result[key]...`."""


@runtime_checkable
class LinkedRunner(Runner, Protocol):
    """What linked pagination needs of its runner (batching.Batcher has it all)."""

    stats: CallStats | None
    """The runner's own totals (the client's), where a strategy counts its resends too."""

    @property
    def backlog(self) -> int:
        """Commands queued and not yet packed into a batch."""
        ...

    def room(self) -> int:
        """Requests that could go now without waiting for the bucket, after those queued."""
        ...

    def commands_per_request(self, method: str) -> int:
        """How many commands of `method` one batch holds (fewer for expensive methods)."""
        ...

    def slots_per_batch(self, method: str, commands: int) -> float:
        """Bucket slots that drain while a full batch of `method` runs, when the bucket is
        what limits `commands` of it (0: cost unknown, or the operating budget limits)."""
        ...

    async def wait_backlog_below(self, limit: int) -> None:
        """Return once fewer than `limit` commands are queued."""
        ...

    async def run_alone(
        self, method: str, params: Mapping[str, Any], *, stats: ListStats | None = None
    ) -> CommandOutcome:
        """One read sent as a request of its own, beside the batches."""
        ...

    async def run_linked(
        self,
        commands: Sequence[LinkedCommand],
        *,
        stats: ListStats | None = None,
        final: bool = False,
    ) -> Sequence[CommandOutcome | BaseException]:
        """The commands in one batch, in order: each result or its exception (`final`: no
        more groups will come from this caller to fill the batch)."""
        ...


def linked(runner: Runner) -> LinkedRunner | None:
    """`runner` where it can send linked groups, else None (one page per command)."""
    return runner if isinstance(runner, LinkedRunner) else None


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
    full = linked(runner) if alone else None
    send = full.run_alone if full is not None else runner.run
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
