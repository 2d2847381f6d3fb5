"""PostgreSQL's `convert_in_database` path: the API's raw text COPYed into a staging
table, converted in SQL.

Python only gathers each column's value (a string passes through untouched; a JSON number
or boolean from crm.item becomes its text form, multi-values become JSON: `Rule.stage`),
binary-COPYs the chunk into a temporary all-text table, and one `INSERT ... SELECT ... ON
CONFLICT` converts and merges it (`Rule.sql`: only the shape a rule is sure of converts,
any other non-empty value fails on purpose), writing only rows whose content differs,
counting inserts against updates with `RETURNING (xmax = 0)` and the unchanged rows in the
same statement. A chunk that fails goes through the Python converters, which either store
it the same way or name it a reject (`screening.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse.convert.rules import Unstageable, rule_for
from dagster_bitrix24.warehouse.dialects.base import OnConflictWriter, WriteCounts
from dagster_bitrix24.warehouse.schema.columns import ColumnSpec, Dialect
from dagster_bitrix24.warehouse.schema.layout import TableLayout

_STAGE = "_bitrix24_raw_{width}"


def staged_upsert(
    writer: OnConflictWriter, connection: sa.Connection, layout: TableLayout,
    rows: Sequence[Mapping[str, Any]], *, synced_at: Any,
) -> WriteCounts | None:  # fmt: skip
    """Stage, convert and merge `rows`; None when the chunk has to go through the Python
    converters (an id twice, a value SQL does not take)."""
    id_field = layout.id_field
    if len({row.get(id_field) for row in rows}) != len(rows):
        return None
    assert layout.row_stager is not None
    try:
        staged = layout.row_stager(rows)
    except (Unstageable, ValueError, TypeError):  # e.g. JSON of a value json cannot encode
        return None
    result = _staged_write(writer, connection, layout, staged, synced_at=synced_at)
    if result is None:
        return None
    if layout.children:
        to_id = layout.converters[0]
        by_id = {to_id(row.get(id_field)): row for row in rows}
        writer.replace_children(connection, layout, [by_id[i] for i in result.ids], result.ids)
    kept = result.written + result.unchanged
    return WriteCounts(
        result.inserted, result.written - result.inserted, len(rows) - kept, result.unchanged
    )


def _column_sql(spec: ColumnSpec, dialect: Dialect, v: str) -> str:
    """The SQL turning staged text `v` into the value of column `spec`."""
    sql = rule_for(spec.kind, dialect, part=spec.part).sql
    assert sql is not None, "every PostgreSQL rule has its SQL"
    return sql(v)


# -- the merge -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedWrite:
    """What the merge did: rows inserted, rows written (inserted or changed), rows found
    unchanged, and the ids kept (written or unchanged: their children are replaced)."""

    inserted: int
    written: int
    unchanged: int
    ids: list[Any]


def merge_sql(
    writer: OnConflictWriter, connection: sa.Connection, layout: TableLayout, stage: str
) -> str:
    """INSERT ... SELECT converting the staged text, guarded, writing only rows whose content
    differs, counting inserts (xmax = 0) and the rows the table already held as staged (read
    in the statement's snapshot, before its own writes)."""
    quote = connection.dialect.identifier_preparer
    table = quote.format_table(layout.table)
    names = [quote.quote(n) for n in layout.written_names]
    width = len(layout.columns)
    converted = [
        f"{_column_sql(spec, layout.dialect, f's.c{i}')} AS c{i}"
        for i, spec in enumerate(layout.columns)
    ]
    values = ", ".join(f"v.c{i}" for i in range(width))
    sets = ", ".join(f"{q} = excluded.{q}" for q in names[1:])
    content = [*names[1:width], names[-1]]
    old = ", ".join(f"cur.{q}" for q in content)
    staged = ", ".join([*(f"v.c{i}" for i in range(1, width)), "CAST(NULL AS timestamptz)"])
    new = ", ".join(f"excluded.{q}" for q in content)
    guard = f" WHERE ({old}) IS DISTINCT FROM ({new})"
    if layout.change_index is not None:
        change = names[layout.change_index]
        guard += f" AND {writer.newer(f'cur.{change}', f'excluded.{change}')}"
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


def _staged_write(
    writer: OnConflictWriter, connection: sa.Connection, layout: TableLayout,
    staged: list[tuple[Any, ...]], *, synced_at: Any,
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
                cursor.execute(merge_sql(writer, connection, layout, stage), (synced_at,))
                inserted, written, unchanged, ids = cursor.fetchone()
        except (errors.DataError, errors.IntegrityError, errors.CardinalityViolation):
            return None
    return StagedWrite(inserted, written, unchanged, ids or [])
