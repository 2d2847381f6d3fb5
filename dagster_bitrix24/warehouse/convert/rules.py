"""ONE rule per value kind and dialect: its Python converter and the fast paths that
compute exactly what it computes, side by side.

A `Rule` states how a kind is converted on every write path:
- `python`: the converter (`values.py`), the statement of the rule every path falls back on;
- `inline`: the row converter's fast path for the shape the portal sends almost always (a
  non-empty string, an ISO time with an offset already seen); any other value goes to the
  converter (`c{i}`), and a value the fast path cannot read raises, sending the chunk value
  by value through the converters;
- `copy` / `copy_text` (PostgreSQL): the COPY text of a value the server parses into what the
  converter produces, written untouched, and the fallback text (`t{i}`) of every other value;
- `sql` / `stage` (PostgreSQL, `convert_in_database`): the SQL converting staged text, and
  the staged text of a non-string value.

Range rules (64-bit integers, NUMERIC(18,2), 255-character keys) are not tested by the COPY
and SQL paths: PostgreSQL enforces the same ranges, and its refusing a value sends the chunk
through the converters. Templates hold only the names `v0, c0, t0, ...`: field names and
converters are bound as data, so a portal's field name can never become code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dagster_bitrix24.warehouse.convert import values
from dagster_bitrix24.warehouse.convert.values import BOOLEANS, Caches, Converter
from dagster_bitrix24.warehouse.schema.columns import KEY_LENGTH, Dialect, Kind


class Unstageable(Exception):
    """A value the SQL rules do not take: the chunk goes through the Python converters."""


TextOf = Callable[[Caches, Converter], Callable[[Any], str]]


def copy_value(value: Any) -> str:
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


def _text_of(_caches: Caches, convert: Converter) -> Callable[[Any], str]:
    def text(value: Any) -> str:
        return copy_value(convert(value))

    return text


@dataclass(frozen=True)
class Rule:
    """How one value kind is converted on every path (see the module docstring)."""

    python: Callable[[Caches], Converter]
    inline: str = "c{i}({v})"
    copy: str = "t{i}({v})"
    copy_text: TextOf = _text_of
    sql: Callable[[str], str] | None = None
    stage: Callable[[Any], Any] | None = None
    stage_template: str = "(x if (x := g(k{i})).__class__ is str or x is None else s{i}(x))"


def _plain(convert: Converter) -> Callable[[Caches], Converter]:
    return lambda _caches: convert


# -- the row converter's fast paths --------------------------------------------------------

_STRING = "{v}.__class__ is str and {v}"
_TEXT = _STRING + ' and "\\x00" not in {v}'  # a NUL byte goes to the converter (a reject)
_AMOUNT = (  # "1500.00|RUB": its amount, when it is a decimal NUMERIC(18,2) holds (NaN raises)
    '{v}.__class__ is str and (a := {v}.partition("|")[0]) and -BOUND < (d := Decimal(a)) < BOUND'
)
_OTHERWISE = '(None if {v} is None or {v} == "" else c{i}({v}))'  # every converter: empty is NULL
_DATED = _STRING + ' and {v}[0] != "0"'  # "0000-00-00..." (empty) goes to the converter
INLINE_NAMES = {
    "BOOLEANS": BOOLEANS, "MINUTES_SECONDS": values.MINUTES_SECONDS, "Decimal": Decimal,
    "BOUND": values.DECIMAL_BOUND, "date_iso": date.fromisoformat,
    "time_iso": datetime.fromisoformat,
}  # fmt: skip

# -- the COPY text fast paths: values passed untouched ------------------------------------

COPY_BOOLEANS = {key: "" if b is None else "t" if b else "f" for key, b in BOOLEANS.items()}
_UNTOUCHED = '({v} if {v}.__class__ is str and ({test}) else "" if {v} is None else t{i}({v}))'
_STRING_AS_IS = '({v} if {v}.__class__ is str else "" if {v} is None else t{i}({v}))'
_TIME_SHAPES = ("0000-00-00T00:00:00+00:00", "0000-00-00T00:00:00-00:00",
                "0000-00-00 00:00:00+00:00", "0000-00-00 00:00:00-00:00")  # fmt: skip
_AS_ZERO = str.maketrans("123456789", "000000000")


def _date_text(caches: Caches, convert: Converter) -> Callable[[Any], str]:
    """A date's text, remembering a string date Python parsed (`Caches.copy_dates`)."""
    dates = caches.copy_dates

    def text(value: Any) -> str:
        result = copy_value(convert(value))
        if value.__class__ is str and value[:10] == result:
            if len(dates) >= values.CACHE_LIMIT:
                dates.clear()
            dates[result] = result
        return result

    return text


def _datetime_text(caches: Caches, convert: Converter) -> Callable[[Any], str]:
    """A time's text, remembering its date and hour and its offset once Python parsed it:
    safe to mix because `to_aware` keeps the portal's offset (Python parses date, hour and
    offset independently)."""
    hours, tails = caches.copy_hours, caches.copy_tails

    def text(value: Any) -> str:
        result = copy_value(convert(value))
        if result and value.__class__ is str and value.translate(_AS_ZERO) in _TIME_SHAPES:
            if len(hours) >= values.CACHE_LIMIT:
                hours.clear()
            hours.add(value[:13])
            if ":00:00" + value[19:] not in tails:
                if len(tails) >= values.CACHE_LIMIT:
                    tails.clear()
                tails.update(minute_second + value[19:] for minute_second in values.MINUTES_SECONDS)
        return result

    return text


# -- the SQL conversion of staged text (PostgreSQL) ---------------------------------------


def _refuse(v: str, sql_type: str) -> str:
    """An expression that fails at run time (division by zero, a DataError) for this row."""
    return f"(1 / (0 * length({v})))::text::{sql_type}"


def _checked(sql_type: str, check: str, cast: str, *, dated: bool = False) -> Callable[[str], str]:
    """SQL converting only the shape `check` is sure of; any other non-empty value fails."""

    def sql(v: str) -> str:
        empty = f"{v} IS NULL OR {v} = ''"
        if dated:  # the Bitrix24 empty date, as the converters read it
            empty += f" OR left({v}, 10) = '0000-00-00'"
        return (
            f"CASE WHEN {empty} THEN NULL WHEN {check.format(v=v)} THEN {cast.format(v=v)} "
            f"ELSE {_refuse(v, sql_type)} END"
        )

    return sql


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _boolean_sql(v: str) -> str:
    """CASE over the string keys of `BOOLEANS`: the Python table, in SQL."""
    truths = [k for k, b in BOOLEANS.items() if isinstance(k, str) and b is True]
    lies = [k for k, b in BOOLEANS.items() if isinstance(k, str) and b is False]
    return (
        f"CASE WHEN {v} IS NULL OR {v} = '' THEN NULL "
        f"WHEN {v} IN ({', '.join(map(_quoted, truths))}) THEN true "
        f"WHEN {v} IN ({', '.join(map(_quoted, lies))}) THEN false "
        f"ELSE {_refuse(v, 'boolean')} END"
    )


def _digits_as_zero(v: str) -> str:
    return f"translate({v}, '0123456789', '0000000000')"


def _integer_stage(value: Any) -> str:
    if value.__class__ is int or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    raise Unstageable(value)


def _float_stage(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    raise Unstageable(value)


def _decimal_stage(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if value.__class__ is int or isinstance(value, Decimal):
        return str(value)
    raise Unstageable(value)


def _boolean_stage(value: Any) -> str | None:
    try:
        truth = BOOLEANS[value]
    except (KeyError, TypeError):
        raise Unstageable(value) from None
    return None if truth is None else str(truth).lower()


def _date_stage(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise Unstageable(value)


def _datetime_stage(value: Any) -> str:
    if not isinstance(value, datetime):
        raise Unstageable(value)
    return value.isoformat() if value.tzinfo is not None else value.isoformat() + "+00:00"


_TIME_SHAPES_SQL = "('0000-00-00T00:00:00+00:00', '0000-00-00T00:00:00-00:00')"

# -- the table -----------------------------------------------------------------------------

RULES: dict[str, Rule] = {
    "integer": Rule(
        _plain(values.to_int),
        inline=f"(int({{v}}) if {_STRING} and len({{v}}) < 19 else {_OTHERWISE})",
        copy=_UNTOUCHED.replace("{test}", "{v}.isdigit() and {v}.isascii() or not {v}"),
        sql=_checked("bigint", "translate({v}, '-0123456789', '') = '' AND length({v}) < 19",
                     "{v}::bigint"),
        stage=_integer_stage,
    ),  # fmt: skip
    "float": Rule(
        _plain(values.to_float),
        inline=f"(f if {_STRING} and (f := float({{v}})) - f == 0 else {_OTHERWISE})",
        sql=_checked("double precision", "translate({v}, '-+.eE0123456789', '') = ''",
                     "{v}::double precision"),
        stage=_float_stage,
    ),  # fmt: skip
    "decimal": Rule(
        _plain(values.to_decimal),
        inline=f"(d if {_AMOUNT} else {_OTHERWISE})",
        copy=(  # the amount of a money value "1500.00|RUB" too
            '({v} if {v}.__class__ is str and "|" not in {v} and ({v}.replace(".", "", 1)'
            ".isdigit() and {v}.isascii() or not {v}) else a if {v}.__class__ is str and "
            '((a := {v}.partition("|")[0]).replace(".", "", 1).isdigit() and a.isascii() '
            'or not a) else "" if {v} is None else t{i}({v}))'
        ),
        sql=_checked("numeric", "translate(split_part({v}, '|', 1), '-.0123456789', '') = ''",
                     "NULLIF(split_part({v}, '|', 1), '')::numeric"),
        stage=_decimal_stage,
    ),  # fmt: skip
    "decimal/sqlite": Rule(
        _plain(values.sqlite_decimal), inline=f"(str(d) if {_AMOUNT} else {_OTHERWISE})"
    ),
    "boolean": Rule(
        _plain(values.to_bool), inline="BOOLEANS[{v}]", copy="BOOLEANS[{v}]",
        sql=_boolean_sql, stage=_boolean_stage,
    ),  # fmt: skip
    "date": Rule(
        _plain(values.to_date),
        inline=f"(date_iso({{v}}[:10]) if {_DATED} else {_OTHERWISE})",
        copy=(
            "(d if {v}.__class__ is str and (d := DATES.get({v}[:10])) is not None "
            'else "" if {v} is None or {v} == "" else t{i}({v}))'
        ),
        copy_text=_date_text,
        sql=_checked("date", _digits_as_zero("left({v}, 10)") + " = '0000-00-00' AND "
                     "left({v}, 1) <> '0'", "left({v}, 10)::date", dated=True),
        stage=_date_stage,
    ),  # fmt: skip
    "date/sqlite": Rule(
        _plain(values.sqlite_date),
        inline=f"({{v}}[:10] if {_DATED} and date_iso({{v}}[:10]) else {_OTHERWISE})",
    ),
    "datetime/postgresql": Rule(
        _plain(values.to_aware),
        inline=(
            '(time_iso({v}) if {v}.__class__ is str and len({v}) == 25 and {v}[19] in "+-" '
            f'and {{v}}[0] != "0" else {_OTHERWISE})'
        ),
        copy=_UNTOUCHED.replace("{test}", "{v}[:13] in HOURS and {v}[13:] in TAILS or not {v}"),
        copy_text=_datetime_text,
        sql=_checked(
            "timestamptz",
            _digits_as_zero("{v}") + f" IN {_TIME_SHAPES_SQL} AND left({{v}}, 1) <> '0' "
            "AND substr({v}, 12, 2) < '24' AND substr({v}, 15, 1) < '6' "
            "AND substr({v}, 18, 1) < '6' AND substr({v}, 24, 1) < '6'",
            "{v}::timestamptz", dated=True,
        ),
        stage=_datetime_stage,
    ),  # fmt: skip
    "datetime/mysql": Rule(
        values.naive_utc,
        inline=(
            '(time_iso({v}[:19]) - o if {v}.__class__ is str and len({v}) == 25 and {v}[0] != '
            f'"0" and (o := OFFSETS.get({{v}}[19:])) is not None else {_OTHERWISE})'
        ),
    ),
    "datetime/sqlite": Rule(
        values.sqlite_datetime,
        inline=(
            "(h + {v}[13:19] if {v}.__class__ is str and len({v}) == 25 "
            "and {v}[13:19] in MINUTES_SECONDS and (h := HOURS.get({v}[:13] + {v}[19:])) "
            f"is not None else {_OTHERWISE})"
        ),
    ),
    "text": Rule(
        _plain(values.to_text), inline=f"({{v}} if {_TEXT} else {_OTHERWISE})",
        copy=_STRING_AS_IS, sql=lambda v: f"NULLIF({v}, '')", stage=values.to_text,
    ),  # fmt: skip
    "key": Rule(
        _plain(values.to_key),
        inline=f"({{v}} if {_TEXT} and len({{v}}) <= {KEY_LENGTH} else {_OTHERWISE})",
        copy=_STRING_AS_IS, sql=lambda v: f"NULLIF({v}, '')", stage=values.to_text,
    ),  # fmt: skip
    "json": Rule(  # JSON text is made in Python, strings included
        _plain(values.to_json), sql=lambda v: v, stage=values.to_json,
        stage_template="(None if (x := g(k{i})) is None else s{i}(x))",
    ),  # fmt: skip
    "currency": Rule(  # most amounts have no "|": no currency, nothing more to read
        _plain(values.currency),
        inline=(
            '(((c if len(c := {v}.partition("|")[2]) <= 255 and "\\x00" not in c else c{i}({v}))'
            ' or None) if {v}.__class__ is str and "|" in {v} else None)'
        ),
        copy='({v}.partition("|")[2] if {v}.__class__ is str else "")',
        sql=lambda v: (
            f"CASE WHEN strpos({v}, '|') > 0 THEN NULLIF(substr({v}, strpos({v}, '|') + 1), '') "
            "END"
        ),
        stage=values.currency,
        stage_template="(x if (x := g(k{i})).__class__ is str else s{i}(x))",
    ),  # fmt: skip
}


def rule_for(kind: Kind, dialect: Dialect, *, part: str = "value") -> Rule:
    """The rule of a column of `kind` (a money column's currency `part`) on `dialect`."""
    if part == "currency":
        return RULES["currency"]
    if kind == "datetime":  # DuckDB stores naive UTC as MySQL does
        return RULES["datetime/mysql" if dialect == "duckdb" else f"datetime/{dialect}"]
    if dialect == "sqlite" and kind in ("decimal", "date"):
        return RULES[f"{kind}/sqlite"]
    return RULES[kind]
