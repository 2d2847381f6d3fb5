"""One compiled function per table that turns API rows into driver-ready tuples.

Normalisation sits on the hot path (30+ values per row, hundreds of thousands of rows), so
`compile_row_converter(fields, converters)` generates, once per table layout, a list
comprehension that reads every field and converts it in a single pass. Each column's
converter (in `columns.py`, the one source of truth for the rules) may have an inline fast
path here for the shape the portal sends almost always (a non-empty string, an ISO time
with an offset already seen): the fast path computes exactly what the converter would, and
every other value is handed to the converter itself. A value the fast path cannot read (a
zero date `0000-00-00`, `'12abc'`) raises: `layout.convert_rows` then converts that chunk
value by value with the converters, which store it or name it as a reject. The generated source only holds the
names `v0, c0, ...`: field names and converters are bound as data, so a portal's field name
can never become code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, TypeVar

from dagster_bitrix24 import columns
from dagster_bitrix24.columns import Converter

RowConverter = Callable[[Sequence[Mapping[str, Any]], Any], list[tuple[Any, ...]]]
T = TypeVar("T")

_STRING = "{v}.__class__ is str and {v}"
_TEXT = _STRING + ' and "\\x00" not in {v}'  # a NUL byte goes to the converter (a reject)
_AMOUNT = (  # "1500.00|RUB": its amount, when it is a decimal NUMERIC(18,2) holds (NaN raises)
    '{v}.__class__ is str and (a := {v}.partition("|")[0]) and -BOUND < (d := Decimal(a)) < BOUND'
)
_OTHERWISE = '(None if {v} is None or {v} == "" else c{i}({v}))'  # every converter: empty is NULL
_DATED = _STRING + ' and {v}[0] != "0"'  # "0000-00-00..." (empty) goes to the converter
_ISO_WITH_SEEN_OFFSET = (
    '{v}.__class__ is str and len({v}) == 25 and {v}[0] != "0" '
    "and (o := OFFSETS.get({v}[19:])) is not None"
)
_INLINE: dict[Converter, str] = {
    columns.to_text: f"({{v}} if {_TEXT} else {_OTHERWISE})",
    columns.to_key: f"({{v}} if {_TEXT} and len({{v}}) <= {columns.KEY_LENGTH} else {_OTHERWISE})",
    columns.to_int: f"(int({{v}}) if {_STRING} and len({{v}}) < 19 else {_OTHERWISE})",
    columns.to_bool: "BOOLEANS[{v}]",
    columns.to_float: f"(f if {_STRING} and (f := float({{v}})) - f == 0 else {_OTHERWISE})",
    columns.to_decimal: f"(d if {_AMOUNT} else {_OTHERWISE})",
    columns.sqlite_decimal: f"(str(d) if {_AMOUNT} else {_OTHERWISE})",
    columns.currency: (  # most amounts have no "|": no currency, nothing more to read
        '(((c if len(c := {v}.partition("|")[2]) <= 255 and "\\x00" not in c else c{i}({v})) '
        'or None) if {v}.__class__ is str and "|" in {v} else None)'
    ),
    columns.to_date: f"(date_iso({{v}}[:10]) if {_DATED} else {_OTHERWISE})",
    columns.sqlite_date: f"({{v}}[:10] if {_DATED} and date_iso({{v}}[:10]) else {_OTHERWISE})",
    columns.to_aware: (
        '(time_iso({v}) if {v}.__class__ is str and len({v}) == 25 and {v}[19] in "+-" '
        f'and {{v}}[0] != "0" else {_OTHERWISE})'
    ),
    columns.to_naive_utc: f"(time_iso({{v}}[:19]) - o if {_ISO_WITH_SEEN_OFFSET} else {_OTHERWISE})",
    columns.to_sqlite_datetime: (
        "(h + {v}[13:19] if {v}.__class__ is str and len({v}) == 25 "
        "and {v}[13:19] in MINUTES_SECONDS and (h := HOURS.get({v}[:13] + {v}[19:])) is not None "
        f"else {_OTHERWISE})"
    ),
}
_NAMESPACE = {
    "BOOLEANS": columns.BOOLEANS, "OFFSETS": columns.OFFSETS, "HOURS": columns.HOURS,
    "MINUTES_SECONDS": columns.MINUTES_SECONDS, "Decimal": Decimal, "BOUND": columns.DECIMAL_BOUND,
    "date_iso": date.fromisoformat, "time_iso": datetime.fromisoformat,
}  # fmt: skip


def compile_row_converter(fields: Sequence[str], converters: Sequence[Converter]) -> RowConverter:
    """`convert(rows, synced_at)`: tuples of converted values, then synced_at and None
    (rows unpacked as `unpacking` says)."""
    distinct = list(dict.fromkeys(fields))
    namespace: dict[str, Any] = dict(_NAMESPACE)
    parts = []
    for i, (field, convert) in enumerate(zip(fields, converters, strict=True)):
        namespace[f"c{i}"] = convert
        value = f"v{distinct.index(field)}"
        parts.append(_INLINE.get(convert, "c{i}({v})").format(i=i, v=value))
    names = "".join(f"v{i}, " for i in range(len(distinct)))
    source = (
        "def convert(rows, synced_at, unpack):\n"
        f"    return [({', '.join(parts)}, synced_at, None) for ({names}) in map(unpack, rows)]\n"
    )
    exec(compile(source, "<row converter>", "exec"), namespace)
    return unpacking(namespace["convert"], distinct)


def unpacking(build: Callable[..., T], fields: list[str]) -> Callable[..., T]:
    """`build(rows, *args, unpack)` as `built(rows, *args)`: each row unpacked into the
    values of `fields` by one `itemgetter` call; rows missing a field are built again with
    `dict.get` (a KeyError raised for another reason, such as an unknown boolean, comes
    back)."""
    by_key = itemgetter(*fields) if len(fields) > 1 else lambda row: (row[fields[0]],)

    def by_get(row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(map(row.get, fields))

    def built(rows: Sequence[Mapping[str, Any]], *args: Any) -> T:
        try:
            return build(rows, *args, by_key)
        except KeyError:
            return build(rows, *args, by_get)

    return built
