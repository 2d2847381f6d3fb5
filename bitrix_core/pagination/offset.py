"""OffsetPaging: `start` offsets with the server's `total`, pages fanned out in parallel."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from bitrix_core.entities import EntitySpec
from bitrix_core.pagination.base import Page, Runner
from bitrix_core.pagination.query import (
    PAGE_SIZE,
    find_key,
    order_by_id,
    rows_of,
    with_extra_params,
)

if TYPE_CHECKING:
    from bitrix_core.stats import ListStats


class OffsetPaging:
    """Page by `start` offsets; once page one reports `total`, fetch the rest concurrently.

    For methods that cannot be filtered or ordered by id (user.get with a custom sort,
    department.get, crm.status.list, crm.category.list) or a caller's own `order`. Every
    `start >= 0` page makes the portal COUNT, so this is the slow path on big tables.
    An id order is appended as the last key where the entity supports it, so that pages
    are stable. Example, 120 statuses::

        start=0   -> 50 rows, next=50, total=120
        start=50, start=100 sent together (one batch) -> 50 + 20 rows

    Pages come back in page order when `ordered`, else as they complete.
    """

    name = "offset"
    disjoint = False

    def __init__(self, *, max_in_flight: int = 50, ordered: bool = True) -> None:
        self.max_in_flight = max_in_flight
        self.ordered = ordered

    def applies_to(self, spec: EntitySpec, params: Mapping[str, Any]) -> bool:
        """Any list method can be paged by offset."""
        return True

    def query(self, spec: EntitySpec, params: Mapping[str, Any], start: int) -> dict[str, Any]:
        """The parameters of the page at offset `start`."""
        query = with_extra_params(spec, params)
        if spec.keyset:
            if spec.style == "user":
                if find_key(query, "sort") is None:
                    order_by_id(spec, query)
            else:
                order_key = find_key(query, "order") or "order"
                order = dict(query.get(order_key) or {})
                if spec.id_key.lower() not in (str(k).lower() for k in order):
                    order[spec.id_key] = "ASC"
                query[order_key] = order
        query["start"] = start
        return query

    async def pages(
        self,
        runner: Runner,
        spec: EntitySpec,
        params: Mapping[str, Any],
        stats: ListStats | None,
    ) -> AsyncIterator[Page]:
        """Yield page one, then the remaining offsets fetched concurrently."""
        method = spec.list_method
        first = await runner.run(method, self.query(spec, params, 0), stats=stats)
        yield Page(rows_of(spec, first.result, method=method), stats, total=first.total)
        next_start = first.next
        if next_start is not None and first.total is not None:
            starts = list(range(int(next_start), int(first.total), PAGE_SIZE))
            next_start = None
            async for start, outcome in self._fan_out(runner, spec, params, stats, starts):
                yield Page(rows_of(spec, outcome.result, method=method), stats, total=first.total)
                if start == starts[-1]:
                    next_start = outcome.next
        while next_start is not None:
            outcome = await runner.run(
                method, self.query(spec, params, int(next_start)), stats=stats
            )
            yield Page(rows_of(spec, outcome.result, method=method), stats)
            next_start = outcome.next

    async def _fan_out(
        self,
        runner: Runner,
        spec: EntitySpec,
        params: Mapping[str, Any],
        stats: ListStats | None,
        starts: list[int],
    ) -> AsyncIterator[tuple[int, Any]]:
        """Run the offsets with at most `max_in_flight` outstanding, yielding (start, outcome)."""
        waiting = iter(starts)
        inflight: dict[asyncio.Task[Any], int] = {}
        finished: list[tuple[int, int, Any]] = []
        emitted = 0
        try:
            while True:
                while len(inflight) < self.max_in_flight:
                    start = next(waiting, None)
                    if start is None:
                        break
                    query = self.query(spec, params, start)
                    inflight[
                        asyncio.ensure_future(runner.run(spec.list_method, query, stats=stats))
                    ] = start
                if not inflight:
                    break
                done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    start = inflight.pop(task)
                    heapq.heappush(finished, (start, id(task), task.result()))
                while finished and (not self.ordered or finished[0][0] == starts[emitted]):
                    start, _, outcome = heapq.heappop(finished)
                    emitted += 1
                    yield start, outcome
        finally:
            for task in inflight:
                task.cancel()
