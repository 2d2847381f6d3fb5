"""Bitrix24 list `filter` and `order` parameters translated into SQLite WHERE / ORDER BY.

Operators are key prefixes: `=` (default), `!`/`!=`, `>`, `>=`, `<`, `<=`, `@`/`!@` (in
list), `%` (substring), `=%`/`%=` (LIKE with the caller's own `%`), `!%` (no substring).
Values follow the field's type: integers the way PHP's intval reads them (so a literal
`$result[...]` left by a broken batch reference reads as 0, as on the real server),
datetimes in any ISO offset or `YYYY-MM-DD` (an unparseable date matches nothing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from bitrix_core.emulator.schema import (
    BOOLEAN_TYPES,
    DATE_TYPES,
    DATETIME_TYPES,
    DOUBLE_TYPES,
    INTEGER_TYPES,
    OBJECT_TYPES,
    Field,
)

OPERATORS = ("!=%", "!%", "=%", "%=", ">=", "<=", "!=", "!@", "@", ">", "<", "!", "%", "=")
_NOTHING = "0"
_INT = re.compile(r"^\s*([+-]?\d+)")
_FLOAT = re.compile(r"^\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)")
_RU_DATE = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})(?:\s+(\d{2}):(\d{2})(?::(\d{2}))?)?$")

Resolver = Callable[[str], "Field | None"]


class UnknownFieldError(ValueError):
    """A filter or order key names no field of the entity; the text is crm.item's
    (b24restdocs crm-item-list.md: "Invalid filter: field 'FIELD' is not allowed in filter")."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(f"Invalid {where}: field '{name}' is not allowed in {where}")


def split_key(key: str) -> tuple[str, str]:
    """`>=DATE_MODIFY` -> (`>=`, `DATE_MODIFY`)."""
    for op in OPERATORS:
        if key.startswith(op):
            return op, key[len(op):]
    return "=", key


def php_int(value: Any) -> int:
    """PHP intval: leading digits, else 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    m = _INT.match(str(value))
    return int(m.group(1)) if m else 0


def php_float(value: Any) -> float:
    """PHP floatval: the leading number, else 0.0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _FLOAT.match(str(value).replace(",", "."))
    return float(m.group(1)) if m else 0.0


def parse_datetime(value: Any, tz: timezone) -> int | None:
    """Epoch seconds of an ISO datetime (any offset), `YYYY-MM-DD` or `DD.MM.YYYY [HH:MM:SS]`
    read in the portal's zone when it carries none; None when unreadable."""
    text = str(value).strip()
    m = _RU_DATE.match(text)
    try:
        if m:
            d, mo, y, hh, mi, ss = m.groups()
            parsed = datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return int(parsed.timestamp())


def sql_value(f: Field, value: Any, tz: timezone) -> Any:
    """The stored form of a filter or write value; None when it cannot match anything."""
    if f.type in DATETIME_TYPES:
        return parse_datetime(value, tz)
    if f.type in DATE_TYPES:
        epoch = parse_datetime(value, tz)
        return None if epoch is None else datetime.fromtimestamp(epoch, tz).date().isoformat()
    if f.type in OBJECT_TYPES:
        return json.dumps(value)
    if f.type in BOOLEAN_TYPES:
        return 1 if str(value).lower() in ("1", "y", "true", "yes") else 0
    if f.type in INTEGER_TYPES:
        return php_int(value)
    if f.type in DOUBLE_TYPES:
        return php_float(value)
    return str(value)


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _values(raw: Any) -> list[Any] | None:
    if isinstance(raw, Mapping):
        return list(raw.values())
    if isinstance(raw, (list, tuple)):
        return list(raw)
    return None


class FilterBuilder:
    """Builds a WHERE clause for one entity's table, aliased `t`."""

    def __init__(self, resolve: Resolver, *, tz: timezone, multi_owner: str | None,
                 strict: bool) -> None:
        self.resolve = resolve
        self.tz = tz
        self.multi_owner = multi_owner
        self.strict = strict

    def where(self, filter_: Any) -> tuple[str, list[Any]]:
        """(`sql`, params) for a filter mapping; `1` when empty."""
        params: list[Any] = []
        sql = self._group(filter_ if isinstance(filter_, Mapping) else {}, params)
        return sql, params

    def _group(self, filter_: Mapping[str, Any], params: list[Any]) -> str:
        parts: list[str] = []
        logic = "AND"
        for key, value in filter_.items():
            key = str(key)
            if key.upper() == "LOGIC":
                logic = "OR" if str(value).upper() == "OR" else "AND"
            elif isinstance(value, Mapping) and (key.isdigit() or key.startswith("__")):
                parts.append(self._group(value, params))
            else:
                sql = self._condition(key, value, params)
                if sql is not None:
                    parts.append(sql)
        if not parts:
            return "1"
        return "(" + f" {logic} ".join(parts) + ")"

    def _condition(self, key: str, raw: Any, params: list[Any]) -> str | None:
        op, name = split_key(key)
        f = self.resolve(name)
        if f is None:
            if self.strict:
                raise UnknownFieldError(name, "filter")
            return None  # the classic server ignores filter keys it does not know
        if f.is_multifield:
            return self._multifield(f, op, raw, params)
        col = f't."{f.name}"'
        negate = op.startswith("!")
        listed = _values(raw)
        if listed is not None or op in ("@", "!@"):
            items = [sql_value(f, v, self.tz) for v in (listed if listed is not None else [raw])]
            items = [v for v in items if v is not None]
            if not items:
                return "1" if negate else _NOTHING
            params.extend(items)
            marks = ", ".join("?" * len(items))
            return f"({col} IS NULL OR {col} NOT IN ({marks}))" if negate else f"{col} IN ({marks})"
        if raw is None or raw == "" or raw is False and f.type not in BOOLEAN_TYPES:
            return (f"({col} IS NOT NULL AND {col} <> '')" if negate
                    else f"({col} IS NULL OR {col} = '')")
        if op in ("%", "!%", "!=%", "=%", "%="):
            params.append(_like(str(raw)) if op in ("%", "!%") else str(raw))
            if negate:
                return f"({col} IS NULL OR {col} NOT LIKE ? ESCAPE '\\')"
            return f"{col} LIKE ? ESCAPE '\\'" if op == "%" else f"{col} LIKE ?"
        value = sql_value(f, raw, self.tz)
        if value is None:
            return "1" if negate else _NOTHING
        params.append(value)
        if negate:
            return f"({col} IS NULL OR {col} <> ?)"
        return f"{col} {op} ?"

    def _multifield(self, f: Field, op: str, raw: Any, params: list[Any]) -> str:
        values = _values(raw) or [raw]
        test = "m.VALUE LIKE ? ESCAPE '\\'" if "%" in op else "m.VALUE = ?"
        clauses = []
        for v in values:
            params.extend([self.multi_owner, f.name, _like(str(v)) if "%" in op else str(v)])
            clauses.append("EXISTS (SELECT 1 FROM multifield m WHERE m.ENTITY_ID = ?"
                           f" AND m.ELEMENT_ID = t.ID AND m.TYPE_ID = ? AND {test})")
        sql = "(" + " OR ".join(clauses) + ")"
        return f"NOT {sql}" if op.startswith("!") else sql


def order_by(order: Any, resolve: Resolver, *, strict: bool) -> str:
    """ORDER BY for `{"FIELD": "ASC"|"DESC", ...}`; ID ascending always breaks ties."""
    keys: list[str] = []
    items = order.items() if isinstance(order, Mapping) else (
        [(k, "ASC") for k in order] if isinstance(order, (list, tuple)) else [])
    seen_id = False
    for name, direction in items:
        f = resolve(str(name))
        if f is None or f.is_multifield:
            if strict:
                raise UnknownFieldError(str(name), "order")
            continue  # the classic server ignores order keys it does not know
        desc = str(direction).strip().upper() == "DESC"
        keys.append(f't."{f.name}" {"DESC" if desc else "ASC"}')
        seen_id = seen_id or f.name == "ID"
    if not seen_id:
        keys.append('t."ID" ASC')
    return ", ".join(keys)
