"""ConvergingPaging: id gaps walked from both ends at once, every request a full batch.

When the request bucket is what limits an export, its time is set by the number of
requests, so the aim is ceil(rows / 50) commands in batches of 50. The whole id range is
one gap at first; every gap is walked in rounds: an ascending chain of linked pages from its
low end and a descending chain from its high end (see `chain`: page j asks for ids beyond
page j-1's last, so one request carries up to 50 consecutive pages). The first request is
round 0 of the whole range, 12 pages from each end: data, and the density that cuts what
lies between into gaps of about `gap_pages` pages. A gap's first round is a short scout
whose ascending chain starts with a counted page (`start=0`), so from then on the rows left
in every gap are known exactly::

    200,000 rows, ids 1..200,000:
    round 0: ids 1..600 up, 199,401..200,000 down (24 commands, one request)
    23 gaps of ~8,640 ids: [601, 9244), [9244, 17887), ...
    round 1 of each gap: 10 pages up (the first counted), 10 pages down
    round 2: 50 + 50; round 3, the last: the 53 pages left, split between the two ends
             so that they fill the batches being packed (20 up fills an open batch, ...)

The two ends of a gap meet in its last round, and only there is a page short (a gap counted
out before its ends meet is counted again: rows may have started to match the filter): the run
needs about ceil(rows / 50) commands plus half a command per gap. A short page alone never
ends a gap: it does where the two ends met, or where the gap's count agrees that nothing is
left; otherwise (a row deleted between the count and the page, a proxy dropping one, a
permission change) what lies between the ends is counted again by a scout round. Rounds
are packed into batches by `BatchPacker`; a batch that is not full waits while rounds that
may still fill it are out, and goes as soon as none is.

The ends overlap only where the count was wrong (rows deleted meanwhile) or guessed (rounds
0 and 1): rows of the descending chain that the ascending one also fetched are dropped, so
no row comes twice. Pages come in no particular order (use IdWindowPaging for ascending ids).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from bitrix_core.entities import EntitySpec
from bitrix_core.pagination.base import Page, Runner
from bitrix_core.pagination.gap_walk import GapWalk
from bitrix_core.pagination.gaps import Gap
from bitrix_core.pagination.query import IdOrderPaging, split_id_bounds

if TYPE_CHECKING:
    from bitrix_core.stats import ListStats


class ConvergingPaging(IdOrderPaging):
    """Gaps of the id range walked from both ends, packed into full batches (unordered)."""

    name = "converging"

    def __init__(self, *, gap_pages: int = 180, max_gaps: int = 23) -> None:
        if gap_pages < 1 or max_gaps < 1:
            raise ValueError("gap_pages and max_gaps must be at least 1")
        self.gap_pages = gap_pages
        self.max_gaps = max_gaps

    async def pages(
        self,
        runner: Runner,
        spec: EntitySpec,
        params: Mapping[str, Any],
        stats: ListStats | None,
    ) -> AsyncIterator[Page]:
        """Round 0 over the whole id range, then the gaps between its two ends."""
        base, bounds = split_id_bounds(spec, params)
        if bounds.empty:
            return
        walk = GapWalk(runner, spec, base, stats, gap_pages=self.gap_pages, max_gaps=self.max_gaps)
        async for page in walk.run(Gap(bounds.lo, bounds.hi, whole=True)):
            yield page
