"""Cursors and windows: when a run started, the cursor it may store, the change times it
reads, and the spec's own filter its window narrows."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixParameterError
from bitrix_core.pagination import find_key


def partitions_state_key(table_name: str) -> str:
    """The state key recording when a partition run last reached the present."""
    return f"{table_name}#partitions"


def read_started() -> datetime:
    """Now, to the whole second (portal change times have no fractions): a run's start."""
    return datetime.now(UTC).replace(microsecond=0)


def capped_cursor(
    newest: datetime | None, *, started: datetime, before: datetime | None
) -> datetime | None:
    """The cursor to store: the newest change time seen, but no later than `started`.

    Pages are read in parallel id windows, so a row changed while the run reads may sit in
    a window already read; its change time is after `started`. Were the cursor to move past
    `started` (to a later change seen in another window), the next run's window (cursor
    minus lookback) could start after that change and lose it for good. The cursor never
    moves back behind `before`.
    """
    if newest is None:
        return before
    cursor = min(newest, started)
    return cursor if before is None or cursor > before else before


def own_filter(spec: EntitySpec) -> tuple[str, dict[str, Any]]:
    """The key and conditions of the filter in the spec's `extra_params`.

    Its bounds on the change time (`>=` and `<`, the ones a window sets too) are read as
    times, so a run can keep the narrower of its own and the window's; a bound that is not
    a timezone-aware time is a named error before any request.
    """
    key = find_key(spec.extra_params, spec.filter_param) or spec.filter_param
    given = spec.extra_params.get(key)
    name = f"EntitySpec.extra_params[{key}]"
    if given is not None and not isinstance(given, Mapping):
        raise BitrixParameterError(name, "must be a mapping of conditions")
    conditions = dict(given or {})
    change = spec.change_time_field
    for operator in (">=", "<"):
        own_key = find_key(conditions, f"{operator}{change}") if change else None
        if own_key is None:
            continue
        moment = parse_change_time(conditions[own_key])
        if moment is None:
            raise BitrixParameterError(
                f"{name}[{own_key}]", "must be a timezone-aware ISO 8601 time"
            )
        conditions[own_key] = moment
    return key, conditions


def parse_change_time(value: Any) -> datetime | None:
    """A change time from a row (ISO 8601 with the portal's offset), or None."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
