"""Building page queries for each entity style, and reading rows and ids back.

All strategies go through these helpers, so the spelling differences between classic lists,
crm.item.list, tasks.task.list and user.get live in one place::

    >>> spec = ENTITIES["crm.deal"]
    >>> base, bounds = split_id_bounds(spec, {"filter": {">ID": 10, "STAGE_ID": "WON"}})
    >>> window_params(spec, base, lo=bounds.lo, hi=20)["filter"]
    {'STAGE_ID': 'WON', '>=ID': 11, '<ID': 20}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixParameterError, BitrixProtocolError

PAGE_SIZE = 50
"""Bitrix24 returns at most 50 rows per list page; a full page may have a successor."""

_BOUND_OPERATORS = (">=", "<=", ">", "<")


@dataclass(frozen=True)
class IdBounds:
    """A half-open id range [lo, hi); None means unbounded on that side."""

    lo: int | None = None
    hi: int | None = None

    def intersect(self, *, lo: int | None = None, hi: int | None = None) -> IdBounds:
        """The narrower of this range and [lo, hi)."""
        new_lo = lo if self.lo is None else self.lo if lo is None else max(self.lo, lo)
        new_hi = hi if self.hi is None else self.hi if hi is None else min(self.hi, hi)
        return IdBounds(new_lo, new_hi)

    @property
    def empty(self) -> bool:
        """True when no id can fall inside."""
        return self.lo is not None and self.hi is not None and self.lo >= self.hi


def find_key(params: Mapping[str, Any], name: str) -> str | None:
    """The key of `params` equal to `name` ignoring case, or None."""
    wanted = name.lower()
    return next((key for key in params if str(key).lower() == wanted), None)


def split_id_bounds(spec: EntitySpec, params: Mapping[str, Any]) -> tuple[dict[str, Any], IdBounds]:
    """Move the user's `>`, `>=`, `<`, `<=` id conditions out of the filter into an IdBounds.

    Everything else in the filter (including `=ID`, `@ID`, `!ID`) stays for the server.
    """
    base = dict(params)
    filter_key = find_key(base, spec.filter_param)
    bounds = IdBounds()
    if filter_key is None or not isinstance(base[filter_key], Mapping):
        return base, bounds
    kept: dict[str, Any] = {}
    for key, value in base[filter_key].items():
        operator = next((op for op in _BOUND_OPERATORS if str(key).startswith(op)), None)
        if operator is None or str(key)[len(operator) :].lower() != spec.id_key.lower():
            kept[key] = value
            continue
        number = _as_int(value, f"{filter_key}[{key}]")
        bounds = bounds.intersect(
            lo=number + 1 if operator == ">" else number if operator == ">=" else None,
            hi=number if operator == "<" else number + 1 if operator == "<=" else None,
        )
    base[filter_key] = kept
    return base, bounds


def _as_int(value: Any, parameter: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise BitrixParameterError(
            parameter, f"an id bound must be an integer, got {value!r}"
        ) from None


def with_extra_params(spec: EntitySpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` plus the spec's fixed parameters (e.g. entityTypeId) the user did not give."""
    merged = dict(params)
    for key, value in spec.extra_params.items():
        if find_key(merged, key) is None:
            merged[key] = value
    return merged


def _ensure_id_selected(spec: EntitySpec, params: dict[str, Any], *, ids_only: bool) -> None:
    if spec.style == "user":
        return
    select_key = find_key(params, "select") or "select"
    if ids_only:
        params[select_key] = [spec.id_key]
        return
    select = params.get(select_key)
    if not select:
        return
    names = [str(name) for name in select]
    if "*" not in names and spec.id_key.lower() not in (name.lower() for name in names):
        params[select_key] = [*names, spec.id_key]


def order_by_id(spec: EntitySpec, params: dict[str, Any], *, descending: bool = False) -> None:
    """Make `params` order rows by id only (in the entity's spelling)."""
    direction = "DESC" if descending else "ASC"
    if spec.style == "user":
        for name in ("sort", "order"):
            key = find_key(params, name)
            if key is not None:
                del params[key]
        params["sort"], params["order"] = spec.id_key, direction
        return
    key = find_key(params, "order")
    if key is not None:
        del params[key]
    params["order"] = {spec.id_key: direction}


def window_params(
    spec: EntitySpec,
    base: Mapping[str, Any],
    *,
    lo: int | None,
    hi: int | None,
    descending: bool = False,
    ids_only: bool = False,
    start: int = -1,
) -> dict[str, Any]:
    """One page of ids in [lo, hi) with the user's other filters, ordered by id, no COUNT."""
    params = with_extra_params(spec, base)
    filter_key = find_key(params, spec.filter_param) or spec.filter_param
    conditions = dict(params.get(filter_key) or {})
    if lo is not None:
        conditions[f">={spec.id_key}"] = lo
    if hi is not None:
        conditions[f"<{spec.id_key}"] = hi
    params[filter_key] = conditions
    order_by_id(spec, params, descending=descending)
    _ensure_id_selected(spec, params, ids_only=ids_only)
    params["start"] = start
    return params


def rows_of(spec: EntitySpec, result: Any, *, method: str) -> list[dict[str, Any]]:
    """The row list inside a list method's `result` (accepting PHP's `[]` for an empty map)."""
    if isinstance(result, list):
        return result
    if isinstance(result, Mapping):
        if spec.result_key is not None and spec.result_key in result:
            inner = result[spec.result_key]
            return list(inner.values()) if isinstance(inner, Mapping) else list(inner)
        lists = [value for value in result.values() if isinstance(value, list)]
        if len(result) == 1 and lists:
            return lists[0]
        if not result:
            return []
    raise BitrixProtocolError(
        f"expected a list of rows, got {type(result).__name__}", method=method
    )


def row_id(spec: EntitySpec, row: Mapping[str, Any]) -> int | None:
    """The integer id of a row, or None when the row carries no id."""
    value = row.get(spec.id_field)
    if value is None:
        value = row.get(spec.id_key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def pages_by_id(spec: EntitySpec, params: Mapping[str, Any]) -> bool:
    """Can the id strategies serve this list: an entity filterable by id, no other order
    asked for, and no OR filter (their id bounds would be read as ANDed with the rest)?"""
    return spec.keyset and not has_foreign_order(spec, params) and not _has_or_filter(spec, params)


class IdOrderPaging:
    """What the id strategies (keyset, window, converging) share: their pages never overlap,
    and they serve the lists `pages_by_id` accepts."""

    disjoint = True

    def applies_to(self, spec: EntitySpec, params: Mapping[str, Any]) -> bool:
        """Lists the id order can serve (`pages_by_id`)."""
        return pages_by_id(spec, params)


def _has_or_filter(spec: EntitySpec, params: Mapping[str, Any]) -> bool:
    filter_key = find_key(params, spec.filter_param)
    conditions = params.get(filter_key) if filter_key else None
    if not isinstance(conditions, Mapping):
        return False
    logic = find_key(conditions, "logic")
    return logic is not None and str(conditions[logic]).strip().upper() == "OR"


def has_foreign_order(spec: EntitySpec, params: Mapping[str, Any]) -> bool:
    """True when the user asked for an order other than ascending id."""
    if spec.style == "user":
        sort_key = find_key(params, "sort")
        if sort_key is None:
            return False
        order_key = find_key(params, "order")
        direction = str(params[order_key]).upper() if order_key else "ASC"
        return str(params[sort_key]).lower() != spec.id_key.lower() or direction != "ASC"
    order_key = find_key(params, "order")
    order = params.get(order_key) if order_key else None
    if not order:
        return False
    if not isinstance(order, Mapping):
        return True
    items = [(str(k).lower(), str(v).upper()) for k, v in order.items()]
    return items != [(spec.id_key.lower(), "ASC")]


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
    ids: list[int] = []
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
