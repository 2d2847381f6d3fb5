"""One compiled function per table that turns API rows into driver-ready tuples.

Normalisation sits on the hot path (30+ values per row, hundreds of thousands of rows), so
`compile_row_converter(fields, converters)` generates, once per table layout, a list
comprehension that reads every field and converts it in a single pass. Each column's
converter (in `columns.py`, the one source of truth for the rules) may have an inline fast
path here for the shape the portal sends almost always (a non-empty string, an ISO time
with an offset already seen): the fast path computes exactly what the converter would, and
every other value is handed to the converter itself. The generated source only holds the
names `k0, c0, ...`: field names and converters are bound as data, so a portal's field name
can never become code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dagster_bitrix24 import columns
from dagster_bitrix24.columns import Converter

RowConverter = Callable[[Sequence[Mapping[str, Any]], Any], list[tuple[Any, ...]]]

_STRING = "(x := g(k{i})).__class__ is str and x"
_AMOUNT = '(x := g(k{i})).__class__ is str and (a := x.partition("|")[0])'  # "1500.00|RUB"
_OTHERWISE = '(None if x is None or x == "" else c{i}(x))'  # every converter: empty is NULL
_ISO_WITH_SEEN_OFFSET = (
    "(x := g(k{i})).__class__ is str and len(x) == 25 and (o := OFFSETS.get(x[19:])) is not None"
)
_INLINE: dict[Converter, str] = {
    columns.to_text: f"(x if {_STRING} else {_OTHERWISE})",
    columns.to_int: f"(int(x) if {_STRING} else {_OTHERWISE})",
    columns.to_bool: "BOOLEANS[g(k{i})]",
    columns.to_float: f"(float(x) if {_STRING} else {_OTHERWISE})",
    columns.to_decimal: f"(Decimal(a) if {_AMOUNT} else {_OTHERWISE})",
    columns.sqlite_decimal: f"(str(Decimal(a)) if {_AMOUNT} else {_OTHERWISE})",
    columns.currency: '((x.partition("|")[2] or None) if (x := g(k{i})).__class__ is str else None)',
    columns.to_date: f"(date_iso(x[:10]) if {_STRING} else {_OTHERWISE})",
    columns.sqlite_date: f"(x[:10] if {_STRING} and date_iso(x[:10]) else {_OTHERWISE})",
    columns.to_aware: (
        '(time_iso(x) if (x := g(k{i})).__class__ is str and len(x) == 25 and x[19] in "+-" '
        f"else {_OTHERWISE})"
    ),
    columns.to_naive_utc: f"(time_iso(x[:19]) - o if {_ISO_WITH_SEEN_OFFSET} else {_OTHERWISE})",
    columns.to_sqlite_datetime: (
        "(h + x[13:19] if (x := g(k{i})).__class__ is str and len(x) == 25 "
        "and x[13:19] in MINUTES_SECONDS and (h := HOURS.get(x[:13] + x[19:])) is not None "
        f"else {_OTHERWISE})"
    ),
}
_NAMESPACE = {
    "BOOLEANS": columns.BOOLEANS, "OFFSETS": columns.OFFSETS, "HOURS": columns.HOURS,
    "MINUTES_SECONDS": columns.MINUTES_SECONDS, "Decimal": Decimal,
    "date_iso": date.fromisoformat, "time_iso": datetime.fromisoformat,
}  # fmt: skip


def compile_row_converter(fields: Sequence[str], converters: Sequence[Converter]) -> RowConverter:
    """`convert(rows, synced_at)`: tuples of converted values, then synced_at and None."""
    namespace: dict[str, Any] = dict(_NAMESPACE)
    parts = []
    for i, (field, convert) in enumerate(zip(fields, converters, strict=True)):
        namespace[f"k{i}"] = field
        namespace[f"c{i}"] = convert
        parts.append(_INLINE.get(convert, "c{i}(g(k{i}))").format(i=i))
    source = (
        "def convert(rows, synced_at):\n"
        f"    return [({', '.join(parts)}, synced_at, None) for r in rows for g in [r.get]]\n"
    )
    exec(compile(source, "<row converter>", "exec"), namespace)
    return namespace["convert"]
