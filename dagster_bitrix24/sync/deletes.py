"""Before a row is stamped deleted, the portal is asked for it by id: a verified read can
still be short of a row (a proxy drops one while a row the walk read is deleted: the counts
before and after the walk agree with what it received), and that row must not be stamped.

    found = await still_listed(client, spec, candidates, present_ids, stats=stats)

Each question is one id window (`>=ID` / `<ID`, the spelling every id-paged entity
accepts) over a run of candidates with no present id between them, ids only, the spec's
own filter kept: one command per run of deleted ids, 50 to a batch request. A window with
a row in it means the read missed that row. Entities not filterable by id (dictionaries,
`keyset=False`) are not asked: every offset page of theirs carries the portal's count.
"""

import bisect
from collections.abc import Collection, Iterable
from typing import Any

from bitrix_core.client import BitrixClient
from bitrix_core.entities import EntitySpec
from bitrix_core.errors import IncompletePaginationError
from bitrix_core.pagination.query import row_id, rows_of, window_params
from bitrix_core.stats import CallStats


def id_runs(candidates: Iterable[Any], present: Collection[Any]) -> list[tuple[int, int]]:
    """[lo, hi] id ranges covering every candidate and no present id."""
    seen = sorted({i for i in map(_as_int, present) if i is not None})
    runs: list[tuple[int, int]] = []
    for candidate in sorted({i for i in map(_as_int, candidates) if i is not None}):
        if runs and bisect.bisect_right(seen, runs[-1][1]) == bisect.bisect_left(seen, candidate):
            runs[-1] = (runs[-1][0], candidate)  # no present id between: one window
        else:
            runs.append((candidate, candidate))
    return runs


def _as_int(value: Any) -> int | None:
    """An id as an int; None for one that is not a whole number (no table row has it)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def still_listed(
    client: BitrixClient,
    spec: EntitySpec,
    candidates: Iterable[Any],
    present: Collection[Any],
    *,
    stats: CallStats | None = None,
) -> list[int]:
    """The ids (up to 50 per window) the portal still lists among the ranges of
    `candidates` that hold no `present` id; empty when every candidate is gone."""
    runs = id_runs(candidates, present) if spec.keyset else []
    if not runs:
        return []
    base = dict(spec.extra_params)
    commands = [
        (spec.list_method, window_params(spec, base, lo=lo, hi=hi + 1, ids_only=True))
        for lo, hi in runs
    ]
    found: list[int] = []
    for answer in await client.call_many(commands, stats=stats):
        if isinstance(answer, BaseException):
            raise answer
        rows = rows_of(spec, answer, method=spec.list_method)
        found += [i for i in (row_id(spec, row) for row in rows) if i is not None]
    return found


async def refuse_if_still_listed(
    client: BitrixClient,
    spec: EntitySpec,
    candidates: Iterable[Any],
    present: Collection[Any],
    *,
    stats: CallStats | None,
    rows: str = "rows",
    spared: str = "nothing was stamped deleted",
) -> None:
    """IncompletePaginationError when the portal still lists one of `candidates` (the read
    missed it although the counts agreed); `rows` and `spared` word the message."""
    found = await still_listed(client, spec, candidates, present, stats=stats)
    if found:
        shown = ", ".join(map(str, sorted(found)[:5]))
        raise IncompletePaginationError(
            f"the read missed {len(found)} {rows} the portal still lists (ids {shown}"
            f"{', ...' if len(found) > 5 else ''}); {spared}",
            method=spec.list_method,
            expected=len(present) + len(found),
            received=len(present),
        )
