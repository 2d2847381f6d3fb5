"""One compiled function per table that turns API rows into driver-ready tuples.

Normalisation sits on the hot path (30+ values per row, hundreds of thousands of rows), so
`compile_row_converter(fields, converters)` generates, once per table layout, a list
comprehension that reads every field and converts it in a single pass, with the commonest
cases (non-empty strings for text and integer columns, Y/N lookups for booleans) inlined and
every other value handed to the column's converter. The generated source only holds the
names `k0, c0, ...`: field names and converters are bound as data, so a portal's field name
can never become code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagster_bitrix24.columns import BOOLEANS, Converter, to_bool, to_int, to_text

RowConverter = Callable[[Sequence[Mapping[str, Any]], Any], list[tuple[Any, ...]]]

_INLINE: dict[Converter, str] = {
    to_text: "(x if (x := r.get(k{i})).__class__ is str and x else c{i}(x))",
    to_int: "(int(x) if (x := r.get(k{i})).__class__ is str and x else c{i}(x))",
    to_bool: "BOOLEANS[r.get(k{i})]",
}


def compile_row_converter(fields: Sequence[str], converters: Sequence[Converter]) -> RowConverter:
    """`convert(rows, synced_at)`: tuples of converted values, then synced_at and None."""
    namespace: dict[str, Any] = {"BOOLEANS": BOOLEANS}
    parts = []
    for i, (field, convert) in enumerate(zip(fields, converters, strict=True)):
        namespace[f"k{i}"] = field
        namespace[f"c{i}"] = convert
        parts.append(_INLINE.get(convert, "c{i}(r.get(k{i}))").format(i=i))
    source = (
        "def convert(rows, synced_at):\n"
        f"    return [({', '.join(parts)}, synced_at, None) for r in rows]\n"
    )
    exec(compile(source, "<row converter>", "exec"), namespace)
    return namespace["convert"]
