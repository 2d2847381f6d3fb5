"""PostgreSQL bulk path: COPY text lines built straight from the API's strings.

Most values the portal sends are already the text PostgreSQL parses into the value the
Python converters (`columns.py`) produce: "42" for an integer, "1500.00" for a decimal,
"2024-09-02T18:37:18+03:00" for a timestamptz, any string for text. `compile_line_builder`
generates, once per table layout, a function that writes such a value into the COPY line
untouched and hands every other value to its converter, then writes the converted value's
text. A value passes untouched only in a shape both sides provably read alike:

- integer: ASCII digits only; decimal: ASCII digits with at most one "." (for a money
  value, its amount before the "|"); "" is NULL
  everywhere (`COPY ... NULL ''`: no converter ever stores an empty string);
- boolean: the keys of `columns.BOOLEANS`, written as t / f / NULL;
- date: its first ten characters (all `columns.to_date` reads), a date Python already
  parsed once (`_DATES`);
- datetime: the exact ISO shape, its date and hour seen in a value Python parsed
  (`_HOURS`), its offset seen in another (`_TAILS`, with every minutes:seconds in range).
  Mixing the two is safe because `columns.to_aware` keeps the portal's offset: Python
  parses date, hour and offset independently (it would not if it converted to UTC).

The range rules of `columns.py` (64-bit integers, NUMERIC(18,2), 255-character keys) are not
tested here: PostgreSQL enforces the same ranges, and its refusing a line (a DataError) sends
the chunk through the Python converters, which store it the same way or name the value a
reject (`screening.py`); so does a converter raising here, or a NUL byte in a block. Values
holding a tab, newline, carriage return or backslash are escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from itertools import pairwise
from typing import Any

from dagster_bitrix24 import columns
from dagster_bitrix24.columns import ColumnSpec, Converter
from dagster_bitrix24.row_converter import unpacking

LineBuilder = Callable[[Sequence[Mapping[str, Any]], str], list[str]]
ValueBuilder = Callable[[Sequence[Mapping[str, Any]]], list[tuple[str, ...]]]

_BOOLEANS = {key: "" if b is None else "t" if b else "f" for key, b in columns.BOOLEANS.items()}
_DATES: dict[str, str] = {}  # "2024-09-02" -> itself, once Python parsed it
_HOURS: set[str] = set()  # "2024-09-02T18", once Python parsed a time in that hour
_TAILS: set[str] = set()  # ":MM:SS+03:00" for every MM:SS, once Python parsed that offset
_CACHE_LIMIT = 200_000
_TIME_SHAPES = ("0000-00-00T00:00:00+00:00", "0000-00-00T00:00:00-00:00",
                "0000-00-00 00:00:00+00:00", "0000-00-00 00:00:00-00:00")  # fmt: skip
_AS_ZERO = str.maketrans("123456789", "000000000")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: Any) -> str:
    """The COPY text of a converted value ("" is NULL)."""
    if value is None:
        return ""
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, date):  # datetime too: isoformat keeps the offset
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _text_of(convert: Converter) -> Callable[[Any], str]:
    def text(value: Any) -> str:
        return copy_text(convert(value))

    return text


def _date_text(value: Any) -> str:
    text = copy_text(columns.to_date(value))
    if value.__class__ is str and value[:10] == text:
        if len(_DATES) >= _CACHE_LIMIT:
            _DATES.clear()
        _DATES[text] = text
    return text


def _datetime_text(value: Any) -> str:
    text = copy_text(columns.to_aware(value))
    if text and value.__class__ is str and value.translate(_AS_ZERO) in _TIME_SHAPES:
        if len(_HOURS) >= _CACHE_LIMIT:
            _HOURS.clear()
        _HOURS.add(value[:13])
        if ":00:00" + value[19:] not in _TAILS:
            if len(_TAILS) >= _CACHE_LIMIT:
                _TAILS.clear()
            _TAILS.update(minute_second + value[19:] for minute_second in columns.MINUTES_SECONDS)
    return text


_FALLBACKS: dict[Converter, Callable[[Any], str]] = {
    columns.to_date: _date_text, columns.to_aware: _datetime_text,
}  # fmt: skip
_UNTOUCHED = '({v} if {v}.__class__ is str and ({test}) else "" if {v} is None else t{i}({v}))'
_INLINE: dict[Converter, str] = {
    columns.to_text: '({v} if {v}.__class__ is str else "" if {v} is None else t{i}({v}))',
    columns.to_key: '({v} if {v}.__class__ is str else "" if {v} is None else t{i}({v}))',
    columns.to_int: _UNTOUCHED.replace("{test}", "{v}.isdigit() and {v}.isascii() or not {v}"),
    columns.to_decimal: (  # the amount of a money value "1500.00|RUB" too
        '({v} if {v}.__class__ is str and "|" not in {v} and ({v}.replace(".", "", 1).isdigit()'
        " and {v}.isascii() or not {v}) else a if {v}.__class__ is str and ((a := {v}.partition"
        '("|")[0]).replace(".", "", 1).isdigit() and a.isascii() or not a) '
        'else "" if {v} is None else t{i}({v}))'
    ),
    columns.to_bool: "BOOLEANS[{v}]",
    columns.currency: '({v}.partition("|")[2] if {v}.__class__ is str else "")',
    columns.to_date: (
        "(d if {v}.__class__ is str and (d := DATES.get({v}[:10])) is not None "
        'else "" if {v} is None or {v} == "" else t{i}({v}))'
    ),
    columns.to_aware: _UNTOUCHED.replace(
        "{test}", "{v}[:13] in HOURS and {v}[13:] in TAILS or not {v}"
    ),
}


def _value_parts(specs: Sequence[ColumnSpec], converters: Sequence[Converter],
                 fields: list[str], namespace: dict[str, Any]) -> list[str]:  # fmt: skip
    parts = []
    for i, (spec, convert) in enumerate(zip(specs, converters, strict=True)):
        namespace[f"t{i}"] = _FALLBACKS.get(convert) or _text_of(convert)
        value = f"v{fields.index(spec.field)}"
        parts.append(_INLINE.get(convert, "t{i}({v})").format(i=i, v=value))
    return parts


def compile_line_builder(
    specs: Sequence[ColumnSpec], converters: Sequence[Converter]
) -> tuple[LineBuilder, ValueBuilder]:
    """(`lines(rows, tail)`: one unescaped COPY line per row, `tail` appended;
    `values(rows)`: the same values as tuples, for the rows whose line needs escaping; rows
    unpacked as `row_converter.unpacking` says)."""
    fields = list(dict.fromkeys(spec.field for spec in specs))
    namespace: dict[str, Any] = {
        "BOOLEANS": _BOOLEANS, "DATES": _DATES, "HOURS": _HOURS, "TAILS": _TAILS,
    }  # fmt: skip
    values = ", ".join(_value_parts(specs, converters, fields, namespace))
    names = "".join(f"v{i}, " for i in range(len(fields)))
    source = (
        "def lines(rows, tail, unpack):\n"
        f"    return ['\\t'.join(({values},)) + tail for ({names}) in map(unpack, rows)]\n"
        "def values(rows, unpack):\n"
        f"    return [({values},) for ({names}) in map(unpack, rows)]\n"
    )
    exec(compile(source, "<copy line builder>", "exec"), namespace)
    return unpacking(namespace["lines"], fields), unpacking(namespace["values"], fields)


def copy_blocks(
    lines: LineBuilder, values: ValueBuilder, rows: Sequence[Mapping[str, Any]], tail: str,
    *, width: int, size: int = 1_000, first: int = 200,
) -> Iterator[str]:  # fmt: skip
    """COPY text of `rows` in blocks of `size` rows, built as they are sent (the server
    parses one block while the next is built; the `first` block is short, as the server
    waits for it); `width` is the number of columns."""
    bounds = [0, *range(first, len(rows), size), len(rows)] if rows else []
    for start, end in pairwise(bounds):
        part = rows[start:end]
        block = "\n".join(lines(part, tail)) + "\n"
        if "\x00" in block:  # text with a NUL byte: the converters make it a reject
            raise columns.Unstorable("NUL byte")
        if (
            "\\" in block or "\r" in block or block.count("\n") != len(part)
            or block.count("\t") != len(part) * (width - 1)
        ):  # fmt: skip
            block = _escaped(part, values, tail)
        yield block


def _escaped(part: Sequence[Mapping[str, Any]], values: ValueBuilder, tail: str) -> str:
    return "".join(
        "\t".join(value.translate(_ESCAPES) for value in row) + tail + "\n" for row in values(part)
    )
