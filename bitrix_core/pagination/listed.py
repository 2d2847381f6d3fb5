"""The ids the COUNTing page of a verified read listed, checked off as the walk delivers rows.

The count page (`count_rows`: ids only, highest first) names up to 50 rows that matched the
caller's filter when the walk began. Its `total` is the only count a list answer gives, so a
count one low with one row dropped from a page agrees with the short read; a listed id the
walk never delivered does not. Such an id is asked for once more (one request): still
matching the filter, the read missed it; deleted or changed out of the filter meanwhile,
it did not. Where ids do not order the list the page lists arbitrary rows and is not used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bitrix_core.entities import EntitySpec
from bitrix_core.pagination.base import Runner, run_read
from bitrix_core.pagination.query import row_id, rows_of, split_id_bounds, window_params
from bitrix_core.stats import ListStats


class ListedIds:
    """The count page's ids not delivered yet; rows that came before the count are kept
    (as ids) until it answers."""

    def __init__(self) -> None:
        self.page: set[int] = set()  # filled by `count_rows`
        self._unseen: set[int] | None = None
        self._early: set[int] = set()

    def resolve(self) -> None:
        """The count answered: the listed ids, less those delivered before it did."""
        if self._unseen is None:
            self._unseen, self._early = self.page - self._early, set()

    def delivered(self, ids: Iterable[int | None]) -> None:
        """The walk delivered rows with these ids."""
        fresh = {value for value in ids if value is not None}
        if self._unseen is None:
            self._early |= fresh
        else:
            self._unseen -= fresh

    @property
    def unseen(self) -> set[int]:
        """Listed ids the walk never delivered (empty before the count answered)."""
        return set(self._unseen or ())


async def still_matching(
    runner: Runner,
    spec: EntitySpec,
    params: Mapping[str, Any],
    ids: set[int],
    *,
    stats: ListStats | None,
) -> list[int]:
    """Those of `ids` the portal lists now under the caller's filter: one ids-only page over
    their id range (inside the count page's 50 rows), sent as a request of its own."""
    base, bounds = split_id_bounds(spec, params)
    bounds = bounds.intersect(lo=min(ids), hi=max(ids) + 1)
    query = window_params(spec, base, lo=bounds.lo, hi=bounds.hi, ids_only=True, start=-1)
    outcome = await run_read(runner, spec.list_method, query, stats=stats, alone=True)
    rows = rows_of(spec, outcome.result, method=spec.list_method)
    return sorted(i for i in (row_id(spec, row) for row in rows) if i in ids)
