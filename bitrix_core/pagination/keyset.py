"""KeysetPaging: order by id, ask for ids above the last one seen, no COUNT, one at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from bitrix_core.entities import EntitySpec
from bitrix_core.pagination.base import Page, Runner
from bitrix_core.pagination.query import (
    IdOrderPaging,
    checked_ids,
    rows_of,
    split_id_bounds,
    window_params,
)

if TYPE_CHECKING:
    from bitrix_core.stats import ListStats


class KeysetPaging(IdOrderPaging):
    """The documented export loop: `order[ID]=ASC`, `filter[>=ID]=last+1`, `start=-1`.

    Sequential (each page needs the previous page's last id) but never pays the COUNT and
    never skips or repeats rows when the table changes. Only an empty page ends the walk: a
    short one may have lost a row (a proxy, a row deleted meanwhile) with more above it, so
    one more page is asked for. Example::

        filter[>=ID]=1    -> ids 1..73 (50 rows, full: go on)
        filter[>=ID]=74   -> ids 74..90 (17 rows, short: ask once more)
        filter[>=ID]=91   -> no rows: done
    """

    name = "keyset"

    async def pages(
        self,
        runner: Runner,
        spec: EntitySpec,
        params: Mapping[str, Any],
        stats: ListStats | None,
    ) -> AsyncIterator[Page]:
        """Yield pages in ascending id order until a page comes back empty."""
        base, bounds = split_id_bounds(spec, params)
        lo = bounds.lo
        while not bounds.intersect(lo=lo).empty:
            query = window_params(spec, base, lo=lo, hi=bounds.hi)
            outcome = await runner.run(spec.list_method, query, stats=stats)
            rows = rows_of(spec, outcome.result, method=spec.list_method)
            ids = checked_ids(spec, rows, lo, bounds.hi)
            if not rows:
                return
            yield Page(rows, stats)
            lo = max(ids) + 1
