"""Rows made storable: a value no column can hold becomes NULL (or its cleaned form) and a
`Reject`, so one bad value never blocks its row, its chunk or the run.

`screen(layout, rows)` runs only when a chunk failed to convert (hostile values are rare):
each row goes through the compiled row converter first and only a failing row is read value
by value with the converters of `convert/values.py`, the one statement of the rules. What it returns
is raw API rows again, every value of which every write path (the converters, PostgreSQL's
COPY text and SQL staging) stores alike, so all paths store the same values and name the
same rejects. A row whose id cannot be stored cannot land at all: it is dropped, and is a
reject too.

Before any write, `change_times_ahead` makes a change time more than `CLOCK_SKEW` ahead of
this process's clock NULL (and a reject); for a chunk the driver could not encode,
`surrogates_replaced` puts U+FFFD in place of each lone UTF-16 surrogate (and a reject).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dagster_bitrix24.warehouse.convert.values import Converter, Unstorable
from dagster_bitrix24.warehouse.schema.columns import ColumnSpec

if TYPE_CHECKING:
    from dagster_bitrix24.warehouse.schema.layout import TableLayout

_CONVERSION_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError)
ID_REASON = "id cannot be stored: row not written"
CLOCK_SKEW = timedelta(minutes=5)
"""How far a row's change time may run ahead of the syncing process's clock (a portal clock a
little fast, hosts not in sync). An ASSUMPTION: no documented bound; Bitrix24 cloud portals
keep time, so minutes are generous."""
AHEAD_REASON = "change time ahead of the syncing host's clock: stored as NULL"
SURROGATE_REASON = "lone UTF-16 surrogates replaced by U+FFFD"
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Reject:
    """One value that could not be stored as sent: where it was, what it was, and why."""

    field: str
    row_id: Any
    raw: Any
    reason: str


@dataclass(frozen=True)
class Screened:
    """Rows every write path stores alike, the rejects found, and the rows dropped."""

    rows: list[Mapping[str, Any]]
    rejects: list[Reject]
    dropped: int


def screen(layout: TableLayout, rows: Sequence[Mapping[str, Any]]) -> Screened:
    """`rows` with every value made storable; see the module docstring."""
    assert layout.row_converter is not None
    parts = _parts_by_field(layout)
    kept: list[Mapping[str, Any]] = []
    rejects: list[Reject] = []
    dropped = 0
    for row in rows:
        try:
            if layout.row_converter([row], None)[0][0] is not None:
                kept.append(row)
                continue
        except _CONVERSION_ERRORS:
            pass
        fixed, found = _screen_row(layout, row, parts)
        rejects.extend(found)
        if fixed is None:
            dropped += 1
        else:
            kept.append(fixed)
    return Screened(kept, rejects, dropped)


def _parts_by_field(layout: TableLayout) -> dict[str, list[tuple[ColumnSpec, Converter]]]:
    parts: dict[str, list[tuple[ColumnSpec, Converter]]] = {}
    for spec, convert in zip(layout.columns, layout.converters, strict=True):
        parts.setdefault(spec.field, []).append((spec, convert))
    return parts


def _screen_row(
    layout: TableLayout, row: Mapping[str, Any],
    parts: Mapping[str, list[tuple[ColumnSpec, Converter]]],
) -> tuple[dict[str, Any] | None, list[Reject]]:  # fmt: skip
    """The row made storable (None: its id cannot be stored) and its rejects."""
    row_id = row.get(layout.id_field)
    fixed = dict(row)
    rejects = []
    for field, specs in parts.items():
        raw = row.get(field)
        results, failures = _convert_all(raw, specs)
        if field == layout.id_field and (failures or results.get("value") is None):
            return None, [Reject(field, row_id, raw, ID_REASON)]
        if not failures:
            if raw is not None and all(value is None for value in results.values()):
                fixed[field] = None  # empty in a shape only the converter reads: "0000-00-00"
            continue
        fixed[field] = _replacement(raw, specs, results, failures)
        first = next(iter(failures.values()))
        rejects.append(Reject(field, row_id, raw, first))
    return fixed, rejects


def _convert_all(
    raw: Any, specs: list[tuple[ColumnSpec, Converter]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Per part (value, currency): the converted value, or the reason it failed."""
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for spec, convert in specs:
        try:
            results[spec.part] = convert(raw)
        except Unstorable as error:
            failures[spec.part] = error.reason
        except _CONVERSION_ERRORS:
            failures[spec.part] = f"not a valid {spec.kind}"
    return results, failures


def _replacement(
    raw: Any, specs: list[tuple[ColumnSpec, Converter]], results: Mapping[str, Any],
    failures: Mapping[str, str],
) -> Any:  # fmt: skip
    """The raw value stored instead: what the rule offers (text without NUL bytes), the part
    of a money value that is valid ("|USD" keeps the currency of a bad amount), else None."""
    candidate: Any = None
    if len(failures) < len(specs) and isinstance(raw, str):  # money: one part is valid
        amount = raw.partition("|")[0]
        candidate = f"|{results['currency'] or ''}" if "value" in failures else amount
    else:
        try:
            specs[0][1](raw)
        except Unstorable as error:
            candidate = error.replacement
        except _CONVERSION_ERRORS:
            candidate = None
    try:  # what is stored instead must pass every rule itself
        for _, convert in specs:
            convert(candidate)
    except _CONVERSION_ERRORS:
        return None
    return candidate


def change_times_ahead(
    layout: TableLayout, rows: Sequence[Mapping[str, Any]]
) -> tuple[Sequence[Mapping[str, Any]], list[Reject]]:
    """`rows` with every change time later than now + CLOCK_SKEW made None, and a Reject
    for each (the rows themselves when there is none).

    Stored, such a time would make the newer-version guard refuse every real later version
    of the row (a full refresh's too) until the clock caught up: the row would be frozen
    on the bad version while every run reports success."""
    field = layout.change_field
    if field is None:
        return rows, []
    latest = datetime.now(UTC) + CLOCK_SKEW
    rejects: list[Reject] = []
    fixed: list[Mapping[str, Any]] = []
    for row in rows:
        raw = row.get(field)
        if _after(raw, latest):
            rejects.append(Reject(field, row.get(layout.id_field), raw, AHEAD_REASON))
            row = {**row, field: None}
        fixed.append(row)
    return (fixed, rejects) if rejects else (rows, [])


def _after(raw: Any, latest: datetime) -> bool:
    """True when `raw` is an ISO 8601 time with an offset later than `latest`."""
    if not isinstance(raw, str) or len(raw) < 20:
        return False
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return False
    return moment.tzinfo is not None and moment > latest


def surrogates_replaced(
    layout: TableLayout, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[Reject]]:
    """`rows` with every lone UTF-16 surrogate in their text (top level or in a list)
    replaced by U+FFFD, and a Reject per value holding one (its raw value escaped).

    JSON may carry one (`"\\ud800"`, which the client decodes as it is); no driver can
    encode it as UTF-8, so the chunk failed. Only a chunk that failed so is scanned."""
    rejects: list[Reject] = []
    fixed: list[Mapping[str, Any]] = []
    for row in rows:
        changed = {
            key: _replaced(value) for key, value in row.items() if _has_surrogate(value)
        }
        for key in changed:
            raw = row[key]
            shown = raw if isinstance(raw, str) else repr(raw)
            escaped = shown.encode("utf-8", "backslashreplace").decode("utf-8")
            rejects.append(Reject(key, row.get(layout.id_field), escaped, SURROGATE_REASON))
        fixed.append({**row, **changed} if changed else row)
    return fixed, rejects


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATES.search(value) is not None
    return isinstance(value, list) and any(_has_surrogate(item) for item in value)


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    return [_replaced(item) for item in value]
