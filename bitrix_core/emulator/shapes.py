"""Stored values turned into what each REST method family returns.

Classic `crm.*` methods: strings everywhere (IDs too), `null` for empty, datetimes as ISO
with the portal's offset, money `"1500.00"`. `crm.item.*`: real JSON numbers and booleans.
Both send a date (BEGINDATE, BIRTHDATE) as an ISO time at midnight with the portal's offset
(`date_value`); object fields (crm.activity SETTINGS) as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bitrix_core.emulator.method_kit import JsonReady, PhpObject
from bitrix_core.emulator.schema import (
    BOOLEAN_TYPES,
    DATE_TYPES,
    DATETIME_TYPES,
    DOUBLE_TYPES,
    INTEGER_TYPES,
    OBJECT_TYPES,
    OPAQUE_TIME_TYPES,
    Entity,
    Field,
)


def iso(epoch: int, tz: timezone) -> str:
    """`2024-09-02T18:37:18+03:00`: epoch seconds in the portal's zone."""
    return datetime.fromtimestamp(int(epoch), tz).isoformat()


def date_value(day: str, tz: timezone) -> str:
    """A stored date (`2024-08-30`) as REST sends it: an ISO time at that day's midnight with
    the portal's offset. b24restdocs crm-deal-get.md: "BEGINDATE": "2024-08-30T02:00:00+02:00",
    crm-item-add.md: "begindate": "2024-06-18T02:00:00+02:00" - midnight of the server's zone
    (UTC there) in the user's offset; here the server's zone is the portal's (an assumption),
    so the hour is 00, as a portal whose server and users share one zone sends it."""
    return f"{day}T00:00:00{_offset_text(tz)}"


def classic_value(f: Field, value: Any, tz: timezone) -> Any:
    """A value as classic methods return it: a string, or None."""
    if value is None:
        return None
    if f.type in OPAQUE_TIME_TYPES:
        return PhpObject()
    if f.type in DATETIME_TYPES:
        return iso(value, tz)
    if f.type in DATE_TYPES:
        return date_value(str(value), tz)
    if f.type in OBJECT_TYPES:
        return json.loads(value)
    if f.type in BOOLEAN_TYPES:
        return "1" if value else "0"
    if f.type in DOUBLE_TYPES:
        return str(float(value)) if f.user_field else f"{float(value):.2f}"
    return str(value)


def camel_value(f: Field, value: Any, tz: timezone) -> Any:
    """A value as crm.item methods return it: numbers as numbers, booleans as booleans."""
    if value is None:
        return None
    if f.is_id_list or f.type in OBJECT_TYPES:
        return json.loads(value)
    if f.type in DATETIME_TYPES:
        return iso(value, tz)
    if f.type in DATE_TYPES:
        return date_value(str(value), tz)
    if f.type in BOOLEAN_TYPES:
        return bool(value)
    if f.type in INTEGER_TYPES:
        return int(value)
    if f.type in DOUBLE_TYPES:
        return float(value)
    return value


def id_list_text(f: Field, row: Mapping[str, Any]) -> str:
    """The stored JSON of an id list, or the list of its single-id field (`Field.ids_of`)."""
    stored = row.get(f.name)
    if stored is not None:
        return str(stored)
    single = row.get(f.ids_of) if f.ids_of else None
    return "[]" if single is None else f"[{int(single)}]"


def select_fields(entity: Entity, select: Iterable[str] | None, *, camel: bool = False) -> list[Field]:
    """The fields a `select` names: `*` standard non-multi, `UF_*` custom, default both;
    explicit names (multi-fields only this way); unknown names are ignored. Classic rows
    never carry id lists (`Field.is_id_list`)."""
    names = [str(s) for s in (select or []) if str(s).strip()]
    if not names:
        names = ["*", "UF_*"]
    wanted: set[str] = set()
    lookup = {(f.camel_key if camel else f.name): f for f in entity.fields}
    lower = {k.lower(): f for k, f in lookup.items()}
    for name in names:
        if name == "*":
            wanted |= {f.name for f in entity.fields
                       if not f.user_field and not f.is_multifield and f.listed}
        elif name.upper() in ("UF_*", "UFCRM*", "UF_CRM_*"):
            wanted |= {f.name for f in entity.fields if f.user_field}
        else:
            f = lookup.get(name) or lower.get(name.lower())
            if f is not None:
                wanted.add(f.name)
    return [f for f in entity.fields if f.name in wanted and (camel or not f.is_id_list)]


@dataclass(frozen=True)
class RowShape:
    """A compiled select: SQL that yields most values already in their final form, and the
    few Python converters (money, booleans) SQLite cannot reproduce exactly.

    `columns` selects the output values in `names` order, then the raw `t.ID` (for
    multi-field lookups); `rows()` turns fetched tuples into the response dicts.
    """

    names: tuple[str, ...]
    columns: str
    converters: tuple[tuple[str, Callable[[Any], Any]], ...]

    def rows(self, fetched: Sequence[Sequence[Any]]) -> JsonReady:
        """Response rows from fetched tuples (the trailing raw ID is dropped)."""
        names = self.names
        out = JsonReady(dict(zip(names, r, strict=False)) for r in fetched)  # drops the raw ID
        for name, convert in self.converters:
            for row in out:
                value = row[name]
                if value is not None:
                    row[name] = convert(value)
        return out


def _offset_text(tz: timezone) -> str:
    return datetime.fromtimestamp(0, tz).isoformat()[-6:]


def _iso_sql(col: str, tz: timezone) -> str:
    seconds = int(tz.utcoffset(None).total_seconds())
    return (f"strftime('%Y-%m-%dT%H:%M:%S', CAST({col} AS INTEGER) + {seconds}, 'unixepoch')"
            f" || '{_offset_text(tz)}'")


def _money(value: Any) -> str:
    return f"{float(value):.2f}"


def _float_text(value: Any) -> str:
    return str(float(value))


def _date_sql(col: str, tz: timezone) -> str:
    return f"{col} || 'T00:00:00{_offset_text(tz)}'"  # date_value in SQL


def _empty_object(value: Any) -> PhpObject:
    return PhpObject()


def _classic_column(f: Field, tz: timezone) -> tuple[str, Callable[[Any], Any] | None]:
    col = f't."{f.name}"'
    if f.type in OPAQUE_TIME_TYPES:
        return col, _empty_object
    if f.type in DATETIME_TYPES:
        return _iso_sql(col, tz), None
    if f.type in DATE_TYPES:
        return _date_sql(col, tz), None
    if f.type in OBJECT_TYPES:
        return col, json.loads
    if f.type in BOOLEAN_TYPES:
        return f"CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN '1' ELSE '0' END", None
    if f.type in DOUBLE_TYPES:
        return col, _float_text if f.user_field else _money
    if f.sql_type == "TEXT":
        return col, None
    return f"CAST({col} AS TEXT)", None


def _camel_column(f: Field, tz: timezone) -> tuple[str, Callable[[Any], Any] | None]:
    col = f't."{f.name}"'
    if f.is_id_list and f.ids_sql:
        return f.ids_sql, json.loads
    if f.is_id_list:
        single = f"'[' || t.\"{f.ids_of}\" || ']', " if f.ids_of else ""
        return f"COALESCE({col}, {single}'[]')", json.loads
    if f.type in DATETIME_TYPES:
        return _iso_sql(col, tz), None
    if f.type in DATE_TYPES:
        return _date_sql(col, tz), None
    if f.type in OBJECT_TYPES:
        return col, json.loads
    if f.type in BOOLEAN_TYPES:
        return col, bool
    if f.type in INTEGER_TYPES:
        return f"CAST({col} AS INTEGER)", None
    if f.type in DOUBLE_TYPES:
        return f"CAST({col} AS REAL)", None
    return col, None


_SHAPES: dict[tuple[Any, ...], RowShape] = {}


def row_shape(entity: Entity, fields: Sequence[Field], *, tz: timezone,
              camel: bool = False) -> RowShape:
    """The compiled shape of `fields` (no multi-fields) in the classic or crm.item style;
    crm.item rows start with `id`. Compiled once per (entity, fields, style, zone)."""
    key = (entity.table, tuple((f.name, f.type, f.user_field) for f in fields), camel, tz)
    shape = _SHAPES.get(key)
    if shape is not None:
        return shape
    names: list[str] = ["id"] if camel else []
    columns: list[str] = ['CAST(t."ID" AS INTEGER)'] if camel else []
    converters = []
    for f in fields:
        name = f.camel_key if camel else f.name
        if camel and name == "id":
            continue
        column, convert = (_camel_column if camel else _classic_column)(f, tz)
        names.append(name)
        columns.append(column)
        if convert is not None:
            converters.append((name, convert))
    columns.append('t."ID"')
    shape = RowShape(tuple(names), ", ".join(columns), tuple(converters))
    if len(_SHAPES) > 512:
        _SHAPES.clear()
    _SHAPES[key] = shape
    return shape
