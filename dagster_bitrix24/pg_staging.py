"""PostgreSQL bulk path: the API's raw text COPYed into a staging table, converted in SQL.

Python only gathers each column's value (a string passes through untouched; a JSON number
or boolean from crm.item becomes its text form, multi-values become JSON), binary-COPYs the
chunk into a temporary all-text table, and one `INSERT ... SELECT ... ON CONFLICT` converts
and merges it, writing only rows whose content differs, counting inserts against updates
with `RETURNING (xmax = 0)` and the unchanged rows in the same statement.

The SQL of every column is generated from `SQL_RULES`, one rule per column kind. A rule
converts in SQL only the shape it is sure of (`check`: cheap character and position tests
on which both sides agree, and for booleans the string keys of `columns.BOOLEANS` itself); any other non-empty value
fails on purpose (a division by zero), and the caller then rewrites the chunk through the Python converters
in `columns.py`, which either store it the same way or name it a reject (`screening.py`).
A test writes an awkward-value corpus both ways and compares what is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dagster_bitrix24 import columns
from dagster_bitrix24.columns import ColumnSpec, Kind

if TYPE_CHECKING:
    from dagster_bitrix24.layout import TableLayout

_STAGE = "_bitrix24_raw_{width}"


class Unstageable(Exception):
    """A value the SQL rules do not take: the chunk goes through the Python converters."""


@dataclass(frozen=True)
class SqlRule:
    """How one column kind is converted from staged text `{v}` (never NULL or '' here)."""

    sql_type: str  # the type a failing cast names
    check: str | None  # the shape both sides convert alike (None: any text)
    cast: str  # the conversion of a value that passed the check


def _digits_as_zero(v: str) -> str:
    return f"translate({v}, '0123456789', '0000000000')"


_TIME_SHAPES = "('0000-00-00T00:00:00+00:00', '0000-00-00T00:00:00-00:00')"
SQL_RULES: dict[str, SqlRule] = {
    "integer": SqlRule(
        "bigint", "translate({v}, '-0123456789', '') = '' AND length({v}) < 19", "{v}::bigint"
    ),
    "float": SqlRule(
        "double precision", "translate({v}, '-+.eE0123456789', '') = ''", "{v}::double precision"
    ),  # fmt: skip
    "decimal": SqlRule(
        "numeric",
        "translate(split_part({v}, '|', 1), '-.0123456789', '') = ''",
        "NULLIF(split_part({v}, '|', 1), '')::numeric",
    ),
    "date": SqlRule(
        "date",
        _digits_as_zero("left({v}, 10)") + " = '0000-00-00' AND left({v}, 1) <> '0'",
        "left({v}, 10)::date",
    ),
    "datetime": SqlRule(
        "timestamptz",
        _digits_as_zero("{v}") + f" IN {_TIME_SHAPES} AND left({{v}}, 1) <> '0' "
        "AND substr({v}, 12, 2) < '24' AND substr({v}, 15, 1) < '6' "
        "AND substr({v}, 18, 1) < '6' AND substr({v}, 24, 1) < '6'",
        "{v}::timestamptz",
    ),
    "text": SqlRule("text", None, "NULLIF({v}, '')"),
    "key": SqlRule("text", None, "NULLIF({v}, '')"),
    "json": SqlRule("text", None, "{v}"),
}


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _refuse(v: str, sql_type: str) -> str:
    """An expression that fails at run time (division by zero, a DataError) for this row."""
    return f"(1 / (0 * length({v})))::text::{sql_type}"


def _boolean_sql(v: str) -> str:
    """CASE over the string keys of `columns.BOOLEANS`: the Python table, in SQL."""
    truths = [k for k, b in columns.BOOLEANS.items() if isinstance(k, str) and b is True]
    lies = [k for k, b in columns.BOOLEANS.items() if isinstance(k, str) and b is False]
    return (
        f"CASE WHEN {v} IS NULL OR {v} = '' THEN NULL "
        f"WHEN {v} IN ({', '.join(map(_quoted, truths))}) THEN true "
        f"WHEN {v} IN ({', '.join(map(_quoted, lies))}) THEN false "
        f"ELSE {_refuse(v, 'boolean')} END"
    )


def column_sql(spec: ColumnSpec, v: str) -> str:
    """The SQL turning staged text `v` into the value of column `spec`."""
    if spec.part == "currency":
        return (
            f"CASE WHEN strpos({v}, '|') > 0 THEN NULLIF(substr({v}, strpos({v}, '|') + 1), '') END"
        )
    if spec.kind == "boolean":
        return _boolean_sql(v)
    rule = SQL_RULES[spec.kind]
    if rule.check is None:
        return rule.cast.format(v=v)
    empty = f"{v} IS NULL OR {v} = ''"
    if spec.kind in ("date", "datetime"):  # the Bitrix24 empty date, as `columns._zero_date`
        empty += f" OR left({v}, 10) = '0000-00-00'"
    return (
        f"CASE WHEN {empty} THEN NULL "
        f"WHEN {rule.check.format(v=v)} THEN {rule.cast.format(v=v)} "
        f"ELSE {_refuse(v, rule.sql_type)} END"
    )


# -- Python side: the staged text of a value that is not a string ------------------------


def _integer_text(value: Any) -> str:
    if value.__class__ is int or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    raise Unstageable(value)


def _float_text(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    raise Unstageable(value)


def _decimal_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if value.__class__ is int or isinstance(value, Decimal):
        return str(value)
    raise Unstageable(value)


def _boolean_text(value: Any) -> str | None:
    try:
        truth = columns.BOOLEANS[value]
    except (KeyError, TypeError):
        raise Unstageable(value) from None
    return None if truth is None else str(truth).lower()


def _date_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise Unstageable(value)


def _datetime_text(value: Any) -> str:
    if not isinstance(value, datetime):
        raise Unstageable(value)
    return value.isoformat() if value.tzinfo is not None else value.isoformat() + "+00:00"


_NON_STRING: dict[Kind, Callable[[Any], Any]] = {
    "integer": _integer_text, "float": _float_text, "decimal": _decimal_text,
    "boolean": _boolean_text, "date": _date_text, "datetime": _datetime_text,
    "text": columns.to_text, "key": columns.to_text,
}  # fmt: skip


def _stager(spec: ColumnSpec) -> tuple[str, Callable[[Any], Any]]:
    """(expression template, non-string function) gathering one column's staged text."""
    if spec.kind == "json":  # JSON text is made in Python, strings included
        return "(None if (x := g(k{i})) is None else s{i}(x))", columns.converter(
            "json", "postgresql"
        )
    if spec.part == "currency":
        return "(x if (x := g(k{i})).__class__ is str else s{i}(x))", columns.currency
    return "(x if (x := g(k{i})).__class__ is str or x is None else s{i}(x))", _NON_STRING[
        spec.kind
    ]


RowStager = Callable[[Sequence[Mapping[str, Any]]], list[tuple[Any, ...]]]


def compile_stager(specs: Sequence[ColumnSpec]) -> RowStager:
    """`stage(rows)`: one tuple of staged text (or None) per row, columns in `specs` order."""
    namespace: dict[str, Any] = {}
    parts = []
    for i, spec in enumerate(specs):
        template, function = _stager(spec)
        namespace[f"k{i}"], namespace[f"s{i}"] = spec.field, function
        parts.append(template.format(i=i))
    source = (
        f"def stage(rows):\n    return [({', '.join(parts)},) for r in rows for g in [r.get]]\n"
    )
    exec(compile(source, "<row stager>", "exec"), namespace)
    return namespace["stage"]


# -- the merge -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedWrite:
    """What the merge did: rows inserted, rows written (inserted or changed), rows found
    unchanged, and the ids kept (written or unchanged: their children are replaced)."""

    inserted: int
    written: int
    unchanged: int
    ids: list[Any]


def merge_sql(connection: sa.Connection, layout: TableLayout, stage: str) -> str:
    """INSERT ... SELECT converting the staged text, guarded, writing only rows whose content
    differs, counting inserts (xmax = 0) and the rows the table already held as staged (read
    in the statement's snapshot, before its own writes)."""
    quote = connection.dialect.identifier_preparer
    table = quote.format_table(layout.table)
    names = [quote.quote(n) for n in layout.written_names]
    width = len(layout.columns)
    converted = [f"{column_sql(spec, f's.c{i}')} AS c{i}" for i, spec in enumerate(layout.columns)]
    values = ", ".join(f"v.c{i}" for i in range(width))
    sets = ", ".join(f"{q} = excluded.{q}" for q in names[1:])
    content = [*names[1:width], names[-1]]
    old = ", ".join(f"cur.{q}" for q in content)
    staged = ", ".join([*(f"v.c{i}" for i in range(1, width)), "CAST(NULL AS timestamptz)"])
    new = ", ".join(f"excluded.{q}" for q in content)
    guard = f" WHERE ({old}) IS DISTINCT FROM ({new})"
    if layout.change_index is not None:
        change = names[layout.change_index]
        guard += f" AND (cur.{change} IS NULL OR excluded.{change} >= cur.{change})"
    ids = "array(SELECT i FROM w UNION ALL SELECT i FROM u)" if layout.children else "NULL"
    return (
        f"WITH v AS MATERIALIZED (SELECT {', '.join(converted)} FROM {stage} s), "
        f"w AS (INSERT INTO {table} AS cur ({', '.join(names)}) "
        f"SELECT {values}, %s, NULL FROM v "
        f"ON CONFLICT ({names[0]}) DO UPDATE SET {sets}{guard} "
        f"RETURNING {names[0]} AS i, (cur.xmax = 0) AS fresh), "
        f"u AS (SELECT v.c0 AS i FROM v JOIN {table} AS cur ON cur.{names[0]} = v.c0 "
        f"WHERE NOT EXISTS (SELECT 1 FROM w WHERE w.i = v.c0) "
        f"AND ({old}) IS NOT DISTINCT FROM ({staged})) "
        f"SELECT (SELECT count(*) FILTER (WHERE fresh) FROM w), (SELECT count(*) FROM w), "
        f"(SELECT count(*) FROM u), {ids}"
    )


def staged_write(
    connection: sa.Connection, layout: TableLayout, staged: list[tuple[Any, ...]],
    *, synced_at: Any,
) -> StagedWrite | None:  # fmt: skip
    """COPY `staged` and merge it in a savepoint; None (rolled back) if a value did not fit."""
    from psycopg import errors  # psycopg is only needed for PostgreSQL

    width = len(layout.columns)
    stage = _STAGE.format(width=width)
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
            f"({', '.join(f'c{i} text' for i in range(width))}) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {stage}")
        try:
            with raw.transaction():  # type: ignore[union-attr]
                names = ", ".join(f"c{i}" for i in range(width))
                with cursor.copy(f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["text"] * width)
                    for row in staged:
                        copy.write_row(row)
                cursor.execute(merge_sql(connection, layout, stage), (synced_at,))
                inserted, written, unchanged, ids = cursor.fetchone()
        except (errors.DataError, errors.IntegrityError, errors.CardinalityViolation):
            return None
    return StagedWrite(inserted, written, unchanged, ids or [])
