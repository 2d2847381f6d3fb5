"""Walking one id window with linked pages: up to 50 consecutive full pages in one request.

Inside a batch a command may refer to an earlier command's result, so page j asks for ids
above page j-1's last id without a round trip::

    p1: filter[>=ID]=1000  filter[<ID]=9000                              -> ids 1000..1049
    p2: filter[>=ID]=1000  filter[<ID]=9000  filter[>ID]=$result[p1][49][ID]  -> ids 1050..
    ...

A window's first page is counted (`start=0`): its `total` sizes later groups, each with
one page more than the count leaves, so that the short page ending the window comes along.
Only a short page ends a window (the count falls short when rows start to match the filter
mid-run: a change time moving into a `>=DATE_MODIFY` filter), and only one the count agrees
with (a short page while the count says more rows are left is counted again). The pages
after a short one (their reference left unresolved) are ignored. Every page is checked
against the ids it may hold, so a portal that does not resolve references is detected and
the walk goes on one page per request.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixError, BitrixProtocolError
from bitrix_core.pagination.base import LinkedCommand, Runner, linked
from bitrix_core.pagination.query import (
    PAGE_SIZE,
    checked_ids,
    find_key,
    rows_of,
    window_params,
)

if TYPE_CHECKING:
    from bitrix_core.stats import ListStats

_keys = itertools.count()
"""Command keys unique in this process, so groups of several runs can share a batch."""
_MAX_RECOUNTS = 2
"""Empty short pages in a row counted again before the count is taken as wrong (the list
run's own counts then decide)."""


class Density:
    """Rows per id over every page seen so far: sizes windows and linked groups."""

    def __init__(self) -> None:
        self.rows = 0
        self.span = 0

    def add(self, rows: int, span: int) -> None:
        """Count `rows` found in `span` consecutive ids."""
        self.rows += rows
        self.span += max(span, 0)

    @property
    def value(self) -> float:
        """The estimate (1.0 before anything was seen)."""
        return self.rows / self.span if self.span else 1.0

    def width_for(self, rows: float) -> int:
        """Ids expected to hold `rows` rows."""
        return max(1, round(rows / max(self.value, 1e-9)))


@dataclass(eq=False)
class IdWindow:
    """Ids [lo, hi) still to fetch; `pages` holds fetched pages not yet released."""

    lo: int
    hi: int
    pages: list[list[dict[str, Any]]] = field(default_factory=list)
    done: bool = False
    remaining: int | None = None
    """Rows left in the window, once its first (counted) page told its total."""
    recounts: int = 0
    """Empty pages in a row the count did not confirm (a row always lost stops at 2)."""


def reference(spec: EntitySpec, key: str) -> str:
    """`$result[key][49][ID]`: the last id of a full page fetched by command `key`."""
    inner = f"[{spec.result_key}]" if spec.result_key else ""
    return f"$result[{key}]{inner}[{PAGE_SIZE - 1}][{spec.id_field}]"


def linked_pages(
    spec: EntitySpec, count: int, query: Callable[[str | None], dict[str, Any]]
) -> list[LinkedCommand]:
    """`count` pages of `spec`'s list method for one batch, each continuing beyond the last
    id of the page before it: `query(None)` is the first page, `query(reference)` the next
    ones (the caller puts the reference in the id condition its direction needs)."""
    keys = [f"p{next(_keys)}" for _ in range(count)]
    commands: list[LinkedCommand] = [(keys[0], spec.list_method, query(None))]
    commands += [
        (key, spec.list_method, query(reference(spec, previous)))
        for previous, key in itertools.pairwise(keys)
    ]
    return commands


class LinkedWalker:
    """Fetches the next pages of id windows, `count` linked pages per request."""

    def __init__(
        self,
        runner: Runner,
        spec: EntitySpec,
        base: Mapping[str, Any],
        stats: ListStats | None,
        density: Density,
    ) -> None:
        self.runner = runner
        self.spec = spec
        self.base = base
        self.stats = stats
        self.density = density
        self.grouped = linked(runner)
        self.linked = self.grouped is not None  # (off once the portal leaves links unresolved)

    def commands_per_request(self) -> int:
        """Linked pages one request may carry now (see MethodCosts.commands_per_request)."""
        if self.grouped is None:
            return 1
        return self.grouped.commands_per_request(self.spec.list_method)

    def _query(
        self, window: IdWindow, after: str | None, *, counted: bool = False
    ) -> dict[str, Any]:
        query = window_params(
            self.spec, self.base, lo=window.lo, hi=window.hi, start=0 if counted else -1
        )
        if after is not None:
            filter_key = find_key(query, self.spec.filter_param) or self.spec.filter_param
            query[filter_key][f">{self.spec.id_key}"] = after
        return query

    async def step(self, window: IdWindow, *, count: int) -> None:
        """Fetch up to `count` pages of `window` in one request; append them, move `lo` on."""
        method = self.spec.list_method
        counted = self.linked and window.remaining is None
        first = self._query(window, None, counted=counted)
        outcomes: list[Any]
        if self.grouped is None or not self.linked:
            outcomes = [await self.runner.run(method, first, stats=self.stats)]
        else:
            commands = linked_pages(
                self.spec,
                count,
                lambda after: first if after is None else self._query(window, after),
            )
            outcomes = list(await self.grouped.run_linked(commands, stats=self.stats))
            if isinstance(outcomes[0], BitrixError):  # nothing refers back to it: retry it alone
                outcomes[0] = await self.runner.run(method, first, stats=self.stats)
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, BitrixError):
                    raise outcome
                return  # the rest of the window is asked for again next step
            if index == 0 and counted and outcome.total is not None:
                window.remaining = outcome.total
            if not self._take(window, outcome.result, linked=index > 0):
                return

    def _take(self, window: IdWindow, result: Any, *, linked: bool) -> bool:
        """Add one page to `window`; False when the window (or this group) ends here."""
        rows = rows_of(self.spec, result, method=self.spec.list_method)
        try:
            ids = checked_ids(self.spec, rows, window.lo, window.hi)
        except BitrixProtocolError:
            if not linked:
                raise
            self.linked = False  # the portal did not resolve the reference
            return False
        full = len(rows) >= PAGE_SIZE
        self.density.add(len(rows), (ids[-1] + 1 if full else window.hi) - window.lo)
        if rows:
            window.pages.append(rows)
            window.lo = ids[-1] + 1
        left = window.remaining
        if window.remaining is not None:
            window.remaining = max(0, window.remaining - len(rows))
        # Only a short page ends the window: its count may fall short when rows start to
        # match the filter mid-run (a change time moved into a `>=DATE_MODIFY` window). And
        # a short page the count does not confirm (it had more rows left: one deleted since
        # the count, or lost from the page) is not the end either: the rest is counted again.
        unconfirmed = not full and left is not None and len(rows) < left
        unconfirmed = unconfirmed and (bool(rows) or window.recounts < _MAX_RECOUNTS)
        window.recounts = 0 if rows else window.recounts + unconfirmed
        if unconfirmed:
            window.remaining = None
        window.done = (not full and not unconfirmed) or window.lo >= window.hi
        return full and not window.done
