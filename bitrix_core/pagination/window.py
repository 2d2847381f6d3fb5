"""IdWindowPaging: split the id range into windows and fetch them all at once."""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixProtocolError
from bitrix_core.pagination.base import Page, Runner
from bitrix_core.pagination.query import (
    PAGE_SIZE,
    has_foreign_order,
    row_id,
    rows_of,
    split_id_bounds,
    window_params,
)

if TYPE_CHECKING:
    from bitrix_core.stats import ListStats

_TARGET_ROWS = 40
"""Aim a window at fewer rows than a page, so most windows finish in one command."""
_MAX_RESPLIT = 20
"""A full window's remainder is cut into at most this many windows per round."""


def checked_ids(
    spec: EntitySpec,
    rows: list[dict[str, Any]],
    lo: int | None,
    hi: int | None,
    *,
    descending: bool = False,
) -> list[int]:
    """The ids of `rows`, raising if the portal ignored the id filter or the id order.

    A row without an id, outside [lo, hi), or out of order means paging by id would
    silently lose rows, so it is a BitrixProtocolError (the run falls back to offsets).
    """
    ids = []
    for row in rows:
        value = row_id(spec, row)
        if value is None:
            raise BitrixProtocolError(f"a row has no {spec.id_field!r}", method=spec.list_method)
        if (lo is not None and value < lo) or (hi is not None and value >= hi):
            raise BitrixProtocolError(
                f"row id {value} outside the requested id window [{lo}, {hi}):"
                " the portal ignored the id filter",
                method=spec.list_method,
            )
        if ids and (value >= ids[-1] if descending else value <= ids[-1]):
            raise BitrixProtocolError(
                "rows are not in the requested id order: the portal ignored it",
                method=spec.list_method,
            )
        ids.append(value)
    return ids


def split_range(lo: int, hi: int, density: float, *, max_parts: int) -> list[tuple[int, int]]:
    """Cut [lo, hi) into windows expected to hold about `_TARGET_ROWS` rows each."""
    if lo >= hi:
        return []
    expected = (hi - lo) * max(density, 1e-9)
    parts = max(1, min(max_parts, math.ceil(expected / _TARGET_ROWS), hi - lo))
    width = math.ceil((hi - lo) / parts)
    return [(start, min(hi, start + width)) for start in range(lo, hi, width)]


def _density(ids: list[int]) -> float:
    return len(ids) / (max(ids) - min(ids) + 1)


class IdWindowPaging:
    """Parallel keyset pages over id windows: the fast path for big tables.

    Two probes (lowest ids with the caller's select, highest id only) give the id range and
    the row density at both ends; the range is cut into windows of about 40 rows expected
    at the sparser end's density, at most `max_in_flight` of them (empty windows cost
    commands and operating time; full ones just split again),
    each fetched with `filter[>=ID]=lo`, `filter[<ID]=hi`, `order[ID]=ASC`, `start=-1` and
    every filter the caller passed. The commands are issued concurrently, so the batcher
    packs up to 50 of them into one request. A window that comes back full (50 rows) goes
    on from its last id, its remainder split again by the density it showed, so dense
    regions parallelise too. Example, ids 1..10,000 with a dense block at 5,000..5,999::

        probes: ASC 50 rows at ids 1..99 (density 0.5), DESC 50 ids 9,801..10,000 (0.25)
        windows of 160 ids [100, 260), [260, 420), ...: 62 commands, 2 batches
        window [4900, 5060) full at 5009 -> [5010, 5061) split again into 2 windows

    Windows never overlap, so no row comes twice. With `ordered`, pages are released in
    ascending id order (a page waits only for the windows below it).
    """

    name = "idwindow"
    disjoint = True

    def __init__(
        self, *, max_in_flight: int = 100, max_buffered: int = 200, ordered: bool = True
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_buffered = max_buffered
        self.ordered = ordered

    def applies_to(self, spec: EntitySpec, params: Mapping[str, Any]) -> bool:
        """Entities filterable by id, when the caller did not ask for another order."""
        return spec.keyset and not has_foreign_order(spec, params)

    async def pages(
        self,
        runner: Runner,
        spec: EntitySpec,
        params: Mapping[str, Any],
        stats: ListStats | None,
    ) -> AsyncIterator[Page]:
        """Probe both ends of the id range, then fetch the windows between them."""
        base, bounds = split_id_bounds(spec, params)
        if bounds.empty:
            return
        method = spec.list_method
        low_query = window_params(spec, base, lo=bounds.lo, hi=bounds.hi)
        high_query = window_params(
            spec, base, lo=bounds.lo, hi=bounds.hi, descending=True, ids_only=True
        )
        low, high = await asyncio.gather(
            runner.run(method, low_query, stats=stats), runner.run(method, high_query, stats=stats)
        )
        rows = rows_of(spec, low.result, method=method)
        ids = checked_ids(spec, rows, bounds.lo, bounds.hi)
        top_rows = rows_of(spec, high.result, method=method)
        top_ids = checked_ids(spec, top_rows, bounds.lo, bounds.hi, descending=True)
        if rows:
            yield Page(rows, stats)
        if len(rows) < PAGE_SIZE:
            return
        start, stop = max(ids) + 1, max([*top_ids, *ids]) + 1
        density = min(_density(ids), _density(top_ids)) if top_ids else _density(ids)
        windows = split_range(start, stop, density, max_parts=self.max_in_flight)
        async for page in self._fetch(runner, spec, base, stats, windows):
            yield page

    async def _fetch(
        self,
        runner: Runner,
        spec: EntitySpec,
        base: Mapping[str, Any],
        stats: ListStats | None,
        windows: list[tuple[int, int]],
    ) -> AsyncIterator[Page]:
        """Run windows concurrently, splitting full ones, yielding pages (ordered if asked)."""
        pending = list(windows)
        heapq.heapify(pending)
        inflight: dict[asyncio.Task[Any], tuple[int, int]] = {}
        finished: list[tuple[int, list[dict[str, Any]]]] = []
        try:
            while pending or inflight:
                while pending and (
                    not inflight
                    or (len(inflight) < self.max_in_flight and len(finished) < self.max_buffered)
                ):
                    lo, hi = heapq.heappop(pending)
                    query = window_params(spec, base, lo=lo, hi=hi)
                    inflight[
                        asyncio.ensure_future(runner.run(spec.list_method, query, stats=stats))
                    ] = (lo, hi)
                done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    lo, hi = inflight.pop(task)
                    rows = rows_of(spec, task.result().result, method=spec.list_method)
                    ids = checked_ids(spec, rows, lo, hi)
                    if len(rows) >= PAGE_SIZE:
                        rest = split_range(max(ids) + 1, hi, _density(ids), max_parts=_MAX_RESPLIT)
                        for window in rest:
                            heapq.heappush(pending, window)
                    if not rows:
                        continue
                    if not self.ordered:
                        yield Page(rows, stats)
                    else:
                        heapq.heappush(finished, (lo, rows))
                frontier = min(
                    [*(lo for lo, _ in inflight.values()), *(lo for lo, _ in pending[:1])],
                    default=None,
                )
                while finished and (frontier is None or finished[0][0] < frontier):
                    yield Page(heapq.heappop(finished)[1], stats)
        finally:
            for task in inflight:
                task.cancel()
