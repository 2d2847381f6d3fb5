"""A list run: picks the strategy, dedupes, counts, verifies, reports progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, Literal

from bitrix_core.entities import EntitySpec, spec_for_method
from bitrix_core.errors import (
    BitrixBadRequestError,
    BitrixParameterError,
    BitrixProtocolError,
    IncompletePaginationError,
)
from bitrix_core.pagination.base import Page, PageStrategy, Runner, run_read
from bitrix_core.pagination.converging import ConvergingPaging
from bitrix_core.pagination.keyset import KeysetPaging
from bitrix_core.pagination.listed import ListedIds, still_matching
from bitrix_core.pagination.offset import OffsetPaging
from bitrix_core.pagination.query import (
    pages_by_id,
    row_id,
    rows_of,
    split_id_bounds,
    window_params,
)
from bitrix_core.pagination.window import IdWindowPaging
from bitrix_core.progress import Progress, ProgressCallback, make_progress
from bitrix_core.stats import ListStats
from bitrix_core.validation import validate_call

StrategyName = Literal["auto", "converging", "idwindow", "keyset", "offset"]


def choose_strategy(
    spec: EntitySpec,
    params: Mapping[str, Any],
    *,
    strategy: StrategyName | PageStrategy = "auto",
    ordered: bool = True,
) -> PageStrategy:
    """The strategy to use: a named one, or (auto) where the id order applies converging gaps
    (unordered) or id windows (ordered), else offsets."""
    if not isinstance(strategy, str):
        return strategy
    candidates: dict[str, PageStrategy] = {
        "converging": ConvergingPaging(),
        "idwindow": IdWindowPaging(ordered=ordered),
        "keyset": KeysetPaging(),
        "offset": OffsetPaging(ordered=ordered),
    }
    if strategy == "auto":
        by_id = candidates["idwindow" if ordered else "converging"]
        return by_id if by_id.applies_to(spec, params) else candidates["offset"]
    if strategy not in candidates:
        raise BitrixParameterError(
            "strategy", f"must be one of auto, {', '.join(candidates)}; not {strategy!r}"
        )
    if strategy == "converging" and ordered:
        raise BitrixParameterError(
            "strategy", "converging paging returns pages as they complete: use order=None"
        )
    chosen = candidates[strategy]
    if not chosen.applies_to(spec, params):
        raise BitrixParameterError(
            "strategy", f"{strategy} paging cannot serve {spec.list_method} with these parameters"
        )
    return chosen


class ListRun:
    """An async iterator of Page objects for one list method; `stats` fills in as it runs.

    Rows are deduplicated by id; with `order="id"` they come in ascending id order (where
    the strategy pages by id). A page whose id filter or order is refused before any row was
    yielded falls back to offset paging, recorded in `stats.fallbacks`. With `verify=True`
    (or when offset paging reports `total`), ending with fewer rows than the portal counted
    raises IncompletePaginationError.

    `verify=True` proves the read against the portal, never against the walk's own totals:
    one COUNTing page (`start=0`, ids only, the caller's filter) goes out as a request of
    its own beside the walk's first batches (a COUNT over a big table is slow: inside a
    batch it would hold up the other pages), and, only when the walk received fewer rows,
    one more after its last page. Cost: 1 request (2 when rows went missing) and the
    COUNTs' operating time. Every row that matched the filter from the first count to the
    last was read by a complete walk, so it must have received at least the smaller of the
    two counts. Where ids order the list, the first count also tells the highest id
    (it pages down from the top), and the second counts only ids up to it: rows added during
    the walk (above it) then count in neither. The counts can be wrong with the rows (a
    `total` one low, a row dropped): an id the first count's page listed that the walk never
    delivered is asked for once more, and one still matching the filter fails the read
    (`listed.py`; one more request, only then).
    """

    def __init__(
        self,
        runner: Runner,
        spec: EntitySpec,
        params: Mapping[str, Any],
        *,
        strategy: PageStrategy,
        verify: bool,
        progress: Progress,
        stats: ListStats,
    ) -> None:
        self.spec = spec
        self.params = dict(params)
        self.strategy = strategy
        self.stats = stats
        self._runner = runner
        self._verify = verify
        self._progress = progress
        self._started = False
        self._listed = ListedIds()

    def __aiter__(self) -> AsyncIterator[Page]:
        if self._started:
            raise RuntimeError("a ListRun can be iterated only once")
        self._started = True
        return self._pages()

    async def all(self) -> list[dict[str, Any]]:
        """Every row in one list (holds the whole result: prefer iterating pages)."""
        return [row async for page in self for row in page.rows]

    async def _count(self, *, top: int | None = None) -> tuple[int | None, int | None]:
        """The caller's filter counted beside the walk (a request of its own); the first
        count's page of ids goes to `self._listed`."""
        return await count_rows(
            self._runner, self.spec, self.params, stats=self.stats, top=top, alone=True,
            listed=self._listed.page if top is None else None,
        )  # fmt: skip

    async def _portal_expects(self, before: tuple[int | None, int | None]) -> int | None:
        """The rows a complete walk received at least: the smaller of the portal's counts
        before and after it (deleted rows leave the second, added ones the first)."""
        first, top = before
        if first == 0:
            return 0
        after, _ = await self._count(top=top)
        counts = [count for count in (first, after) if count is not None]
        return min(counts) if counts else None

    async def _counted(
        self, counting: asyncio.Future[tuple[int | None, int | None]]
    ) -> tuple[int | None, int | None]:
        """The count sent beside the walk; asked again after the walk when it was refused
        (twice: the walk's own pages were accepted, so the refusal was one-off answers, and
        the read is not proven without a count). A count taken after the walk also counts
        rows added during it, which can only fail a read loudly, never pass a short one."""
        try:
            return await counting
        except BitrixBadRequestError:
            self.stats.retries += 1
            return await self._count()

    async def _pages(self) -> AsyncIterator[Page]:
        counting = asyncio.ensure_future(self._count()) if self._verify else None
        seen: set[int] = set()  # ids delivered, kept while the strategy may repeat a row
        expected: int | None = None
        received = 0  # this run's rows (the caller's stats may hold earlier ones)
        try:
            async for page in self._with_fallback():
                if page.total is not None:  # offset paging: the portal's count on each page
                    expected = max(expected or 0, int(page.total))
                    self._progress.set_total(expected)
                # (a fallback to offset paging is not disjoint: the strategy is read per page)
                rows = page.rows if self.strategy.disjoint else self._dedupe(page.rows, seen)
                if not rows:
                    continue
                if counting is not None:
                    if counting.done():
                        self._listed.resolve()
                    self._listed.delivered(row_id(self.spec, row) for row in rows)
                received += len(rows)
                self.stats.rows += len(rows)
                self.stats.pages += 1
                self._progress.update(len(rows))
                yield Page(rows, self.stats)
            if counting is not None:
                before = await self._counted(counting)
                if before[0] is not None and received < before[0]:  # deletes may explain it
                    portal = await self._portal_expects(before)
                    expected = max(expected or 0, portal) if portal is not None else expected
                missed = await self._listed_but_missed()
                if missed:
                    expected = max(expected or 0, received + len(missed))
        finally:
            if counting is not None and not counting.done():
                counting.cancel()
            elif counting is not None and not counting.cancelled():
                counting.exception()  # seen: when the walk failed too, its error is raised
            self._progress.close()
        if expected is not None and received < expected:
            raise IncompletePaginationError(
                f"received {received} of {expected} rows the portal counted",
                method=self.spec.list_method,
                expected=expected,
                received=received,
            )

    async def _listed_but_missed(self) -> list[int]:
        """Ids the count page listed that the walk never delivered and the portal still
        lists under the filter (see `listed`): the counts can agree with a short read."""
        self._listed.resolve()
        unseen = self._listed.unseen
        if not unseen or not pages_by_id(self.spec, self.params):
            return []
        return await still_matching(
            self._runner, self.spec, self.params, unseen, stats=self.stats
        )

    async def _with_fallback(self) -> AsyncIterator[Page]:
        """The strategy's pages; offset paging instead if the id paging is refused up front
        (a 400 twice: once may be a one-off answer that should not slow the whole run)."""
        self.stats.strategy = self.strategy.name
        yielded = False
        try:
            try:
                async for page in self.strategy.pages(
                    self._runner, self.spec, self.params, self.stats
                ):
                    yielded = True
                    yield page
            except BitrixBadRequestError as error:
                if yielded or isinstance(self.strategy, OffsetPaging):
                    raise
                self.stats.retries += 1
                self.stats.add_fallback(f"retry {self.strategy.name}: {error.code}")
                async for page in self.strategy.pages(
                    self._runner, self.spec, self.params, self.stats
                ):
                    yielded = True
                    yield page
        except (BitrixBadRequestError, BitrixProtocolError) as error:
            if yielded or isinstance(self.strategy, OffsetPaging):
                raise
            fallback = OffsetPaging()
            self.stats.add_fallback(
                f"{self.strategy.name}->offset: {error.code or type(error).__name__}"
            )
            self.strategy, self.stats.strategy = fallback, fallback.name
            plain = replace(self.spec, keyset=False)  # the id order may be what was refused
            async for page in fallback.pages(self._runner, plain, self.params, self.stats):
                yield page

    def _dedupe(self, rows: list[dict[str, Any]], seen: set[int]) -> list[dict[str, Any]]:
        fresh = []
        for row in rows:
            key = row_id(self.spec, row)
            if key is None or key not in seen:
                fresh.append(row)
                if key is not None:
                    seen.add(key)
        return fresh


async def count_rows(
    runner: Runner,
    spec: EntitySpec,
    params: Mapping[str, Any],
    *,
    stats: ListStats | None = None,
    top: int | None = None,
    alone: bool = False,
    listed: set[int] | None = None,
) -> tuple[int | None, int | None]:
    """One COUNTing page (start=0, ids only, the highest first where ids order the list)
    for the filter in `params` and ids up to `top`: the portal's count (None when the method
    reports none) and the highest id. `alone` sends it as a request of its own; the ids the
    page lists (where ids order it) are added to `listed` when given."""
    base, bounds = split_id_bounds(spec, params)
    by_id = pages_by_id(spec, params)
    if top is not None and by_id:
        bounds = bounds.intersect(hi=top + 1)
    query = window_params(
        spec, base, lo=bounds.lo, hi=bounds.hi, descending=by_id, ids_only=True, start=0
    )
    outcome = await run_read(runner, spec.list_method, query, stats=stats, alone=alone)
    rows = rows_of(spec, outcome.result, method=spec.list_method)
    highest = row_id(spec, rows[0]) if by_id and rows else None
    if listed is not None and by_id:
        listed.update(i for i in (row_id(spec, row) for row in rows) if i is not None)
    return (None if outcome.total is None else int(outcome.total)), highest


def list_spec(method: str, params: Mapping[str, Any], spec: EntitySpec | None = None) -> EntitySpec:
    """The entity `method` lists: `spec` (named for `method`), a known one, or a plain
    one (offset paging, rows by `ID`) for a method the engine does not know."""
    spec = spec or spec_for_method(method, params) or _unknown_spec(method)
    if spec.list_method.lower() != method.strip().lower():
        spec = replace(spec, list_method=method.strip())
    return spec


def paginate(
    runner: Runner,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    strategy: StrategyName | PageStrategy = "auto",
    order: Literal["id"] | None = "id",
    verify: bool = False,
    spec: EntitySpec | None = None,
    stats: ListStats | None = None,
    progress: Progress | ProgressCallback | None = None,
    verbose: bool | None = False,
) -> ListRun:
    """Validate, pick a strategy and return the ListRun for `method` (nothing is sent yet).

    `order="id"` returns rows in ascending id order, `None` as pages complete (faster
    when windows finish out of order). `progress` is a Progress, a callback taking
    ProgressEvent, or None (a tqdm bar when `verbose`, or on a TTY when `verbose` is None).
    """
    params = dict(params or {})
    validate_call(method, params)
    if order not in ("id", None):
        raise BitrixParameterError("order", f"must be 'id' or None, not {order!r}")
    spec = list_spec(method, params, spec)
    chosen = choose_strategy(spec, params, strategy=strategy, ordered=order == "id")
    reporter: Progress
    if isinstance(progress, Progress):
        reporter = progress
    else:
        reporter = make_progress(verbose=verbose, callback=progress, description=method)
    return ListRun(
        runner,
        spec,
        params,
        strategy=chosen,
        verify=verify,
        progress=reporter,
        stats=stats if stats is not None else ListStats(),
    )


def _unknown_spec(method: str) -> EntitySpec:
    """A spec for a list method the engine does not know: offset paging, rows by `ID`."""
    return EntitySpec(
        name=method, list_method=method, fields_method=None, style="dictionary", keyset=False
    )
