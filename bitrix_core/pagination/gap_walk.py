"""The walk of a converging run (see `converging`): the rounds of every gap, their chains of
linked pages packed into batches, each round's pages checked, released and the gap cut anew."""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bitrix_core.batching import MAX_BATCH
from bitrix_core.entities import EntitySpec
from bitrix_core.errors import (
    BitrixBadRequestError,
    BitrixError,
    BitrixProtocolError,
    BitrixResendableError,
)
from bitrix_core.pagination.base import LinkedCommand, LinkedRunner, Page, Runner, linked
from bitrix_core.pagination.chain import Density, linked_pages
from bitrix_core.pagination.gaps import Chain, Gap, Round
from bitrix_core.pagination.packing import BatchPacker
from bitrix_core.pagination.query import (
    PAGE_SIZE,
    checked_ids,
    find_key,
    row_id,
    rows_of,
    window_params,
)

if TYPE_CHECKING:
    from bitrix_core.stats import ListStats

_PROBE_PAGES = 6
"""Pages per end in round 0: 24 commands come back within the first second's drain of the
request bucket, so the next requests are planned before the bucket has room for them."""
_MAX_STALLS = 5
"""Rounds of one gap in a row that may fail without progress before the error is raised."""
_MAX_RECOUNTS = 2
"""Rounds of one gap in a row that may end short of its count without a row (a row that is
always lost) before the gap ends there: the list run's counts then decide."""
_SLOW_BATCH_SLOTS = 2.0
"""A full batch that runs longer than this many bucket slots drain is slow: a gap's rounds
then go in lockstep with as few round trips as can be (see `_gap_pages`)."""
_TWO_ROUND_PAGES = 100
"""Gap pages when batches are slow: its scout (20 pages) and one final round of at most
2 x 50, with room for a quarter more rows than the density promised (a third round, sent
only once the second is back, would hold up the end of the run by a whole batch time)."""
_SCOUT_PAGES = 10
"""Pages per end in a gap's first round, sized from a guess: round 0 tells the density at the
ends of the range only, and ids may cluster, so a long first chain could run past the rows
it guessed (each wasted page is a command)."""


@dataclass
class _Read:
    """The valid pages of one chain, the last id reached, and whether it hit the far end."""

    pages: list[list[dict[str, Any]]] = field(default_factory=list)
    edge: int | None = None
    reached_end: bool = False
    total: int | None = None
    error: BitrixError | None = None


class GapWalk:
    """The rounds of every gap, their chains packed into batches, pages released."""

    def __init__(
        self,
        runner: Runner,
        spec: EntitySpec,
        base: Mapping[str, Any],
        stats: ListStats | None,
        *,
        gap_pages: int,
        max_gaps: int,
    ) -> None:
        self.runner = runner
        self.spec = spec
        self.base = base
        self.stats = stats
        self.gap_pages = gap_pages
        self.max_gaps = max_gaps
        self.density = Density()
        self.live: set[Gap] = set()
        """Gaps not yet done (round 0's whole range is not one)."""
        self.grouped = linked(runner)
        # pages refer to earlier ones (turned off if the portal does not resolve references)
        self.linked = self.grouped is not None
        self.longest = MAX_BATCH
        """Pages per chain: halved when a chain breaks on a failed command (the pages after
        it are lost), grown back by a quarter per round that went through."""
        self.packer: BatchPacker[Chain] = BatchPacker()
        self.rounds: dict[Chain, Round] = {}
        self.sent: dict[asyncio.Future[list[Any]], list[Chain]] = {}

    async def run(self, whole: Gap) -> AsyncIterator[Page]:
        """Plan round 0, then release each round's pages as it returns and plan the next."""
        try:
            self._plan(whole)
            while self.sent or self.packer.open_commands:
                if not self._may_bring_work():
                    for batch in self.packer.drain():  # nothing out can fill them
                        self._send(batch, final=True)
                done, _ = await asyncio.wait(set(self.sent), return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    for chain, outcomes in zip(self.sent.pop(future), future.result(), strict=True):
                        chain.outcomes = outcomes
                for round_ in dict.fromkeys(r for r in self.rounds.values() if r.returned):
                    for chain in round_.chains:
                        del self.rounds[chain]
                    for rows in self._finish(round_):
                        yield Page(rows, self.stats)
                    for gap in self._cut(round_.gap):
                        self._plan(gap)
        finally:
            for future in self.sent:
                future.cancel()

    def _may_bring_work(self) -> bool:
        """True while a round that is out (every chain sent) may plan more pages."""
        return any(not r.final and all(c.sent for c in r.chains) for r in set(self.rounds.values()))

    # -- planning -------------------------------------------------------------------------

    def _cut(self, gap: Gap) -> list[Gap]:
        """The gaps to walk next: none, `gap` itself, or `gap` in equal id ranges of about
        `gap_pages` pages each: after round 0 (the whole range), and when a count shows a
        gap far denser than planned (walked as one, it would take many rounds in a row)."""
        if gap.done:
            self.live.discard(gap)
            return []
        if gap.lo is None or gap.hi is None:
            return [gap]  # (round 0 lost a chain: it runs again)
        if gap.whole:
            pages = self.density.value * (gap.hi - gap.lo) / PAGE_SIZE
            if pages <= self._room() * MAX_BATCH * 0.9:  # the bucket takes it all at once:
                count = math.ceil(pages / (2 * _SCOUT_PAGES))  # gaps one scout round covers
            else:
                gap_pages, max_gaps = self._gap_pages(math.ceil(pages))
                count = min(max_gaps, math.ceil(pages / gap_pages))
        elif gap.remaining is not None and len(self.live) < 2 * self.max_gaps:
            pages = gap.remaining / PAGE_SIZE
            count = math.ceil(pages / self.gap_pages) if pages > 2 * self.gap_pages else 1
            count = min(count, 2 * self.max_gaps - len(self.live) + 1)
        else:
            return [gap]
        count = max(1, min(count, gap.hi - gap.lo))
        if count == 1 and not gap.whole:
            return [gap]
        cuts = [gap.lo + (gap.hi - gap.lo) * i // count for i in range(count + 1)]
        self.live.discard(gap)
        parts = [Gap(a, b) for a, b in itertools.pairwise(cuts)]
        self.live.update(parts)
        return parts

    def _gap_pages(self, pages: int) -> tuple[int, int]:
        """Pages per gap and the most gaps when the bucket cannot take all `pages` at once:
        `gap_pages` (few wide gaps, few extra commands), but with slow batches (expensive
        pages, the bucket still what limits) gaps each finished in two rounds after the
        scout, as many as that takes."""
        method = self.spec.list_method
        slots = self.grouped.slots_per_batch(method, pages) if self.grouped else 0.0
        if slots <= _SLOW_BATCH_SLOTS or self.gap_pages <= _TWO_ROUND_PAGES:
            return self.gap_pages, self.max_gaps
        return _TWO_ROUND_PAGES, math.ceil(self.max_gaps * self.gap_pages / _TWO_ROUND_PAGES)

    def _room(self) -> int:
        """Requests the runner could send now without waiting (0 when it cannot tell)."""
        return self.grouped.room() if self.grouped is not None else 0

    def _plan(self, gap: Gap) -> None:
        """The next round of `gap`: guessed from the density, or sized from its count."""
        # an expensive method's batches hold fewer pages (see MethodCosts.commands_per_request)
        grouped = self.grouped
        cap = (
            grouped.commands_per_request(self.spec.list_method)
            if grouped is not None
            else MAX_BATCH
        )
        self.packer.size = min(MAX_BATCH, max(cap, self.packer.largest_open()))
        longest = min(self.longest, self.packer.size) if self.linked else 1
        if gap.whole or gap.lo is None or gap.hi is None:  # round 0: both ends of the range
            up = down = min(longest, _PROBE_PAGES)
            final = False
        elif gap.remaining is None:  # a scout round: the guess may be far off, so stay short
            expected = max(1, math.ceil(self.density.value * (gap.hi - gap.lo) / PAGE_SIZE))
            up = min(longest, _SCOUT_PAGES, math.ceil(expected / 2))
            down = min(longest, _SCOUT_PAGES, expected - up)
            final = False
        else:
            pages = math.ceil(gap.remaining / PAGE_SIZE)
            if pages == 0:
                gap.done = True
                return
            free = self.packer.tightest_free() if self.linked else 0
            # Fill the fullest open batch even when the other end cannot take the rest (a
            # third, dependent round then takes it): a batch left part-empty costs a slot.
            up = min(pages, free or longest, longest)
            down = min(longest, pages - up)
            final = up + down >= pages
        counted = gap.remaining is None and not gap.whole  # (counting everything is slow)
        round_ = Round(
            gap,
            Chain(gap, up, descending=False, counted=counted),
            Chain(gap, down, descending=True) if down > 0 else None,
            final,
        )
        for chain in round_.chains:
            self.rounds[chain] = round_
            if self.grouped is None:
                self._send([chain], final=True)
                continue
            for batch in self.packer.place(chain):
                self._send(batch, final=False)

    # -- sending --------------------------------------------------------------------------

    def _send(self, batch: list[Chain], *, final: bool) -> None:
        """Send a batch's chains as one linked group (or one page alone, ungrouped)."""
        method = self.spec.list_method
        for chain in batch:
            chain.sent = True
        if self.grouped is None:
            (chain,) = batch
            query = self._query(chain, None)
            future = asyncio.ensure_future(self._single(method, query))
        else:
            commands: list[LinkedCommand] = []
            for chain in batch:
                commands += linked_pages(
                    self.spec, chain.commands, functools.partial(self._query, chain)
                )
            future = asyncio.ensure_future(self._linked(self.grouped, commands, batch, final=final))
        self.sent[future] = batch

    async def _single(self, method: str, query: dict[str, Any]) -> list[Any]:
        try:
            return [[await self.runner.run(method, query, stats=self.stats)]]
        except BitrixError as error:
            return [[error]]

    async def _linked(
        self,
        runner: LinkedRunner,
        commands: list[LinkedCommand],
        batch: list[Chain],
        *,
        final: bool,
    ) -> list[Any]:
        """Each chain's outcomes, in batch order."""
        outcomes = await runner.run_linked(commands, stats=self.stats, final=final)
        split, start = [], 0
        for chain in batch:
            split.append(outcomes[start : start + chain.commands])
            start += chain.commands
        return split

    def _query(self, chain: Chain, after: str | None) -> dict[str, Any]:
        """One page of the chain's gap; linked pages continue beyond `after`'s last id."""
        gap = chain.gap
        query = window_params(
            self.spec,
            self.base,
            lo=gap.lo,
            hi=gap.hi,
            descending=chain.descending,
            start=0 if chain.counted and after is None else -1,
        )
        if after is not None:
            conditions = query[find_key(query, self.spec.filter_param) or self.spec.filter_param]
            if chain.descending:
                conditions[f"<{self.spec.id_key}"] = after  # replaces hi: ids below the last
            else:
                conditions[f">{self.spec.id_key}"] = after
        return query

    # -- reading --------------------------------------------------------------------------

    def _count_retry(self) -> None:
        """A failed page will be asked for again: a retry in the run's statistics and in the
        runner's (the client's totals), as the batcher counts its own resends."""
        own = self.grouped.stats if self.grouped is not None else None
        sinks = {id(s): s for s in (self.stats, own) if s}
        for sink in sinks.values():
            sink.retries += 1
            sink.add_fallback("retry_failed")

    def _finish(self, round_: Round) -> list[list[dict[str, Any]]]:
        """The round's rows (each once), and the gap narrowed to what is left."""
        gap = round_.gap
        up = self._read(round_.up)
        pages = list(up.pages)
        kept = sum(map(len, up.pages))
        lo, hi = (gap.lo if up.edge is None else up.edge + 1), gap.hi
        short = up.reached_end
        empty = up.edge is None  # both ends brought nothing (an empty range)
        error = up.error
        if round_.down is not None:  # read even after a short page up: it may be a lost row
            down = self._read(round_.down)
            error = error or down.error
            for page in down.pages:
                fresh = [row for row in page if lo is None or (row_id(self.spec, row) or 0) >= lo]
                if fresh:
                    pages.append(fresh)
                    kept += len(fresh)
            if down.edge is not None:
                hi = down.edge if hi is None else min(hi, down.edge)
            short = short or down.reached_end
            empty = empty and down.edge is None and up.reached_end and down.reached_end
        else:
            empty = False
        gap.stalls = gap.stalls + 1 if error is not None and not kept else 0
        if error is not None:
            self.longest = max(1, self.longest // 2)
            if self.stats is not None:
                self.stats.add_fallback("shrink")
        else:
            self.longest = min(MAX_BATCH, self.longest + max(1, self.longest // 4))
        if error is not None and gap.stalls >= _MAX_STALLS:
            raise error
        counted = up.total if up.total is not None else gap.remaining
        if counted is not None:
            gap.remaining = max(0, counted - kept)
        gap.lo, gap.hi = lo, hi
        met = lo is not None and hi is not None and lo >= hi
        gap.recounts = 0 if kept else gap.recounts + short
        gap.done = met or empty or (short and gap.remaining == 0)
        gap.done = gap.done or (short and gap.recounts > _MAX_RECOUNTS)  # the run's counts decide
        if not gap.done and (short or gap.remaining == 0):
            # A short page the count does not confirm (rows gone since the count, or a page
            # that lost a row), or counted out yet the ends did not meet (rows started to
            # match the filter since the count, or an empty page going down was an
            # unresolved reference): a scout round counts what lies between again.
            gap.remaining = None
        return pages

    def _read(self, chain: Chain) -> _Read:
        """The chain's valid pages: up to its first short page, failure, or unresolved link."""
        gap, read = chain.gap, _Read()
        for index, outcome in enumerate(chain.outcomes or []):
            if isinstance(outcome, BaseException):
                # A 400 is asked again once: a refused filter is refused again, but a few
                # one-off 400s should cost their gap a round, not the run a fallback.
                once = isinstance(outcome, BitrixBadRequestError) and gap.stalls == 0
                if not isinstance(outcome, BitrixResendableError) and not once:
                    raise outcome  # wrong code, no scope, bad parameter: asking again won't help
                assert isinstance(outcome, BitrixError)
                read.error = outcome
                self._count_retry()
                break  # the rest of the chain is asked for again next round
            if index == 0 and chain.counted and outcome.total is not None:
                read.total = int(outcome.total)
            rows = rows_of(self.spec, outcome.result, method=self.spec.list_method)
            lo, hi = gap.lo, gap.hi
            if read.edge is not None:
                lo, hi = (lo, read.edge) if chain.descending else (read.edge + 1, hi)
            try:
                ids = checked_ids(self.spec, rows, lo, hi, descending=chain.descending)
            except BitrixProtocolError:
                if index == 0:
                    raise
                self.linked = False  # the portal did not resolve the reference
                break
            if rows:
                span = (
                    abs(ids[-1] - read.edge) if read.edge is not None else abs(ids[-1] - ids[0]) + 1
                )
                self.density.add(len(rows), span)
                read.pages.append(rows)
                read.edge = ids[-1]
            if len(rows) < PAGE_SIZE:
                # An empty linked page going down may be an unresolved reference (`<ID` of
                # literal text reads as 0): the count, not this page, then ends the gap.
                read.reached_end = index == 0 or bool(rows) or not chain.descending
                break
        return read
