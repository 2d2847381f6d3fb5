"""IdWindowPaging: id windows walked in parallel, each by linked pages, every page full."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from bitrix_core.batching import MAX_BATCH
from bitrix_core.entities import EntitySpec
from bitrix_core.pagination.base import Page, Runner, run_read
from bitrix_core.pagination.chain import Density, IdWindow, LinkedWalker
from bitrix_core.pagination.query import (
    PAGE_SIZE,
    IdOrderPaging,
    checked_ids,
    rows_of,
    split_id_bounds,
    window_params,
)

if TYPE_CHECKING:
    from bitrix_core.stats import ListStats

_YOUNG_ROWS = 2_000
"""Until this many rows were seen the density is a guess: link at most `_YOUNG_LINKED`
(five windows' first groups fill a batch)."""
_YOUNG_LINKED = 10
_LAST_WINDOW_ROWS = 24 * PAGE_SIZE
"""Near the end of the range windows are cut to half a request's worth of pages: each goes
in one round trip, and two such groups fill a batch."""
_BACKLOG = 3 * MAX_BATCH
"""Pages queued in the runner beyond which windows wait: when the request bucket is what
limits, more queued pages only wait longer, and the lowest windows should go first."""


class IdWindowPaging(IdOrderPaging):
    """Parallel id windows, each walked by linked keyset pages: the fast path for big tables.

    Two probes (lowest ids with the caller's select, highest ids only) give the id range.
    Windows of about `window_rows` rows (by the density seen so far) are opened in id order,
    at most `max_windows` at a time. Each window is walked with `filter[>=ID]=lo`,
    `filter[<ID]=hi`, `order[ID]=ASC`, `start=-1` and the caller's filters, as groups of
    linked pages (see `chain`): page j of a group asks for ids above page j-1's last id,
    so every page but a window's last is full, and one request carries up to 50 of them.
    A window's first page is counted, so its later groups hold exactly the pages left:
    commands stay close to ceil(rows / 50).
    Example, 200,000 rows over ids 1..1,100,000 (density 0.18)::

        probes: ASC ids 1..50, DESC ids 1,099,xxx..1,100,000
        windows of ~5,000 rows = ~27,500 ids: [51, 27551), [27551, 55051), ... 30 open
        each window: a group of 10 linked pages (young density), then groups of up to 50

    Near the end of the range windows are cut to half a request each (two fill a batch),
    so the last rounds go in parallel. A window sends its next group only while the runner's backlog (pages
    queued, not yet in a batch) is under three batches: when the request bucket is what
    limits, more would only wait, and the windows that go first are the ones that matter
    (unordered: the most work left; ordered: the lowest).

    Windows never overlap, so no row comes twice. With `ordered`, pages are released in
    ascending id order: windows above the lowest open one hold their pages until then, so
    windows open only while the rows held plus those expected from open windows fit
    `max_buffered_rows`, and while the held rows alone reach it only the lowest goes on.
    """

    name = "idwindow"

    def __init__(
        self,
        *,
        window_rows: int = 5_000,
        max_windows: int = 30,
        max_buffered_rows: int = 50_000,
        ordered: bool = True,
    ) -> None:
        if window_rows < PAGE_SIZE or max_windows < 1:
            raise ValueError(f"window_rows must be >= {PAGE_SIZE} and max_windows >= 1")
        self.window_rows = window_rows
        self.max_windows = max_windows
        self.max_buffered_rows = max_buffered_rows
        self.ordered = ordered

    async def pages(
        self,
        runner: Runner,
        spec: EntitySpec,
        params: Mapping[str, Any],
        stats: ListStats | None,
    ) -> AsyncIterator[Page]:
        """Probe both ends of the id range, then walk the windows between them."""
        base, bounds = split_id_bounds(spec, params)
        if bounds.empty:
            return
        method = spec.list_method
        low_query = window_params(spec, base, lo=bounds.lo, hi=bounds.hi)
        high_query = window_params(
            spec, base, lo=bounds.lo, hi=bounds.hi, descending=True, ids_only=True
        )
        low, high = await asyncio.gather(
            run_read(runner, method, low_query, stats=stats),
            run_read(runner, method, high_query, stats=stats),
        )
        rows = rows_of(spec, low.result, method=method)
        ids = checked_ids(spec, rows, bounds.lo, bounds.hi)
        top_ids = checked_ids(
            spec, rows_of(spec, high.result, method=method), bounds.lo, bounds.hi, descending=True
        )
        if rows:
            yield Page(rows, stats)
        if len(rows) < PAGE_SIZE and (not top_ids or (ids and top_ids[0] <= ids[-1])):
            return  # the two probes agree: nothing lies above the first page
        # (a short first page below ids the top probe saw lost a row, or one was deleted
        # between the probes: the windows go on above it)
        density = Density()
        if ids:
            density.add(len(ids), ids[-1] + 1 - (ids[0] if bounds.lo is None else bounds.lo))
        if top_ids and (not ids or top_ids[-1] > ids[-1]):
            density.add(len(top_ids), top_ids[0] - top_ids[-1] + 1)
        start = ids[-1] + 1 if ids else (bounds.lo if bounds.lo is not None else 0)
        stop = max(start - 1, *top_ids) + 1
        walker = LinkedWalker(runner, spec, base, stats, density)
        async for page in self._walk(walker, start, stop):
            yield page

    def _group_size(self, window: IdWindow, walker: LinkedWalker) -> int:
        """Linked pages for the window's next request: the pages it is expected to hold, at
        most what one request of the method holds (fewer for an expensive method, see
        MethodCosts.commands_per_request: a group is never split across requests)."""
        density = walker.density
        expected = _expected_pages(window, density)
        most = walker.commands_per_request()
        if window.remaining is not None:  # counted: its pages and the short one that ends it
            return max(1, min(most, math.floor(expected) + 1))
        cap = MAX_BATCH if density.rows >= _YOUNG_ROWS else _YOUNG_LINKED
        return max(1, min(cap, most, math.ceil(expected)))

    async def _walk(self, walker: LinkedWalker, start: int, stop: int) -> AsyncIterator[Page]:
        """Open windows in id order, step each one, release pages (in order if asked)."""
        stats = walker.stats
        paced = walker.grouped  # a queue to pace against (None: one page per command)
        windows: deque[IdWindow] = deque()
        steps: dict[asyncio.Task[None], IdWindow] = {}
        next_lo = start
        try:
            while True:
                open_count = sum(not w.done for w in windows)
                held = sum(len(rows) for w in windows for rows in w.pages)
                full = self.ordered and held >= self.max_buffered_rows
                # Ordered, windows above the lowest hold their pages: rows held and rows
                # still expected from open windows stay within the cap.
                ahead = held + PAGE_SIZE * sum(
                    _expected_pages(w, walker.density) for w in windows if not w.done
                )
                while (
                    not full
                    and next_lo < stop
                    and open_count < self.max_windows
                    and len(windows) < 2 * self.max_windows
                    and (
                        not self.ordered
                        or not windows  # nothing held: one window goes on whatever the cap
                        or ahead + self.window_rows <= self.max_buffered_rows
                    )
                ):
                    width = walker.density.width_for(self.window_rows)
                    merge = width * 3 // 2  # the last window takes a small remainder along
                    if walker.density.rows >= _YOUNG_ROWS and stop - next_lo < 4 * width:
                        # the end of the range: windows of half a request each, in parallel
                        width = walker.density.width_for(_LAST_WINDOW_ROWS)
                        merge = width + width // 10
                    hi = stop if stop - next_lo < merge else next_lo + width
                    windows.append(IdWindow(next_lo, hi))
                    next_lo, open_count = hi, open_count + 1
                    ahead += PAGE_SIZE * _expected_pages(windows[-1], walker.density)
                busy = set(steps.values())
                queued, waiting = 0, False
                for window in self._by_priority(windows, walker.density, full=full):
                    if not window.done and window not in busy:
                        if paced is not None and steps and paced.backlog + queued >= _BACKLOG:
                            waiting = True
                            break
                        count = self._group_size(window, walker)
                        steps[asyncio.ensure_future(walker.step(window, count=count))] = window
                        queued += count
                if not steps:
                    break
                room = (
                    asyncio.ensure_future(paced.wait_backlog_below(_BACKLOG))
                    if paced is not None and waiting
                    else None
                )
                done, _ = await asyncio.wait(
                    [*steps, *([room] if room else [])], return_when=asyncio.FIRST_COMPLETED
                )
                if room is not None:
                    room.cancel()
                for task in done:
                    if task is not room:
                        steps.pop(task)
                        task.result()
                for page_rows in self._release(windows):
                    yield Page(page_rows, stats)
        finally:
            for task in steps:
                task.cancel()

    def _by_priority(
        self, windows: deque[IdWindow], density: Density, *, full: bool
    ) -> list[IdWindow]:
        """Windows in the order they may send: ordered, the lowest first (only the lowest when
        the held rows are at the cap); otherwise the most work left first, so the last
        rounds of the run go in parallel."""
        if self.ordered:
            return list(windows)[:1] if full else list(windows)
        return sorted(windows, key=lambda w: -_expected_pages(w, density))

    def _release(self, windows: deque[IdWindow]) -> list[list[dict[str, Any]]]:
        """Pages that may go out now: all of them, or (ordered) those of the lowest windows."""
        out: list[list[dict[str, Any]]] = []
        if not self.ordered:
            for window in windows:
                out += window.pages
                window.pages = []
            kept = [w for w in windows if not w.done]
            windows.clear()
            windows.extend(kept)
            return out
        while windows:
            front = windows[0]
            out += front.pages
            front.pages = []
            if not front.done:
                break
            windows.popleft()
        return out


def _expected_pages(window: IdWindow, density: Density) -> float:
    """Pages the rest of `window` holds (counted) or is expected to hold."""
    if window.remaining is not None:
        return window.remaining / PAGE_SIZE
    return density.value * (window.hi - window.lo) / PAGE_SIZE
