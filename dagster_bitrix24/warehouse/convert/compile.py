"""`Conversions`: the converters of one warehouse, the caches they share, and the functions
compiled from `rules.RULES` once per table layout.

Normalisation sits on the hot path (30+ values per row, hundreds of thousands of rows), so
each compiled function is one generated list comprehension that reads every field and
converts it in a single pass: `row_converter` (driver-ready tuples), `line_builder`
(PostgreSQL COPY text lines) and `stager` (PostgreSQL staged text). The generated source
holds only the names `v0, c0, ...`: field names and converters are bound as data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeVar

from dagster_bitrix24.warehouse.convert.rules import COPY_BOOLEANS, INLINE_NAMES, Rule, rule_for
from dagster_bitrix24.warehouse.convert.values import Caches, Converter
from dagster_bitrix24.warehouse.schema.columns import ColumnSpec, Dialect, Kind

RowConverter = Callable[[Sequence[Mapping[str, Any]], Any], list[tuple[Any, ...]]]
LineBuilder = Callable[[Sequence[Mapping[str, Any]], str], list[str]]
ValueBuilder = Callable[[Sequence[Mapping[str, Any]]], list[tuple[str, ...]]]
RowStager = Callable[[Sequence[Mapping[str, Any]]], list[tuple[Any, ...]]]
T = TypeVar("T")


class Conversions:
    """The converters and compiled row functions of one warehouse; `caches` are what they
    learnt from values already parsed (see `values.Caches`)."""

    def __init__(self) -> None:
        self.caches = Caches()

    def converter(self, kind: Kind, dialect: Dialect, *, part: str = "value") -> Converter:
        """The function turning an API value of `kind` into a driver value for `dialect`."""
        return rule_for(kind, dialect, part=part).python(self.caches)

    def row_converter(self, specs: Sequence[ColumnSpec], dialect: Dialect) -> RowConverter:
        """`convert(rows, synced_at)`: tuples of converted values, then synced_at and None
        (rows unpacked as `unpacking` says)."""
        fields = list(dict.fromkeys(spec.field for spec in specs))
        namespace: dict[str, Any] = {
            **INLINE_NAMES, "OFFSETS": self.caches.offsets, "HOURS": self.caches.hours,
        }  # fmt: skip
        parts = []
        for i, spec in enumerate(specs):
            rule = rule_for(spec.kind, dialect, part=spec.part)
            namespace[f"c{i}"] = rule.python(self.caches)
            parts.append(rule.inline.format(i=i, v=f"v{fields.index(spec.field)}"))
        names = "".join(f"v{i}, " for i in range(len(fields)))
        source = (
            "def convert(rows, synced_at, unpack):\n"
            f"    return [({', '.join(parts)}, synced_at, None) for ({names}) in map(unpack, rows)]\n"
        )
        exec(compile(source, "<row converter>", "exec"), namespace)
        return unpacking(namespace["convert"], fields)

    def line_builder(self, specs: Sequence[ColumnSpec]) -> tuple[LineBuilder, ValueBuilder]:
        """PostgreSQL: (`lines(rows, tail)`: one unescaped COPY line per row, `tail`
        appended; `values(rows)`: the same values as tuples, for the rows whose line needs
        escaping; rows unpacked as `unpacking` says)."""
        fields = list(dict.fromkeys(spec.field for spec in specs))
        caches = self.caches
        namespace: dict[str, Any] = {
            "BOOLEANS": COPY_BOOLEANS, "DATES": caches.copy_dates, "HOURS": caches.copy_hours,
            "TAILS": caches.copy_tails,
        }  # fmt: skip
        parts = []
        for i, spec in enumerate(specs):
            rule = rule_for(spec.kind, "postgresql", part=spec.part)
            namespace[f"t{i}"] = rule.copy_text(caches, rule.python(caches))
            parts.append(rule.copy.format(i=i, v=f"v{fields.index(spec.field)}"))
        values = ", ".join(parts)
        names = "".join(f"v{i}, " for i in range(len(fields)))
        source = (
            "def lines(rows, tail, unpack):\n"
            f"    return ['\\t'.join(({values},)) + tail for ({names}) in map(unpack, rows)]\n"
            "def values(rows, unpack):\n"
            f"    return [({values},) for ({names}) in map(unpack, rows)]\n"
        )
        exec(compile(source, "<copy line builder>", "exec"), namespace)
        return unpacking(namespace["lines"], fields), unpacking(namespace["values"], fields)

    def stager(self, specs: Sequence[ColumnSpec]) -> RowStager:
        """PostgreSQL: `stage(rows)`: one tuple of staged text (or None) per row, columns in
        `specs` order (strings pass untouched; the SQL of `rules.Rule.sql` converts them)."""
        namespace: dict[str, Any] = {}
        parts = []
        for i, spec in enumerate(specs):
            rule: Rule = rule_for(spec.kind, "postgresql", part=spec.part)
            namespace[f"k{i}"], namespace[f"s{i}"] = spec.field, rule.stage
            parts.append(rule.stage_template.format(i=i))
        source = (
            f"def stage(rows):\n    return [({', '.join(parts)},) for r in rows for g in [r.get]]\n"
        )
        exec(compile(source, "<row stager>", "exec"), namespace)
        stage: RowStager = namespace["stage"]
        return stage


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
