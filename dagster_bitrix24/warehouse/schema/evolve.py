"""An existing entity table brought up to the planned columns: new columns added, changed
types and removed fields reported (their columns stay in place, no longer written)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse.schema.columns import ColumnSpec, same_family, type_family
from dagster_bitrix24.warehouse.schema.layout import SchemaChanges, TypeChange

log = logging.getLogger(__name__)


def evolve(
    connection: sa.Connection, inspector: sa.Inspector, table: sa.Table,
    columns: Sequence[ColumnSpec], *, schema: str | None,
) -> SchemaChanges:  # fmt: skip
    """Add the columns `table` has and the stored table lacks; report type changes and
    removed fields (described, kept in place); widen MySQL TEXT columns to LONGTEXT."""
    stored = stored_columns(connection, inspector, table.name, schema)
    kinds = {c.name: c for c in columns}
    added: list[str] = []
    type_changes: list[TypeChange] = []
    for column in table.columns:
        if column.name not in stored:
            _alter(connection, column, "ADD COLUMN")
            if connection.dialect.name in ("postgresql", "duckdb") and column.comment:
                connection.execute(sa.schema.SetColumnComment(column))
            added.append(column.name)
            continue
        spec = kinds.get(column.name)
        family = type_family(stored[column.name])
        if spec is not None and not same_family(family, spec.kind):
            type_changes.append(TypeChange(
                column.name, spec.field, str(stored[column.name]), spec.kind
            ))  # fmt: skip
        elif (
            connection.dialect.name in ("mysql", "mariadb")
            and type(stored[column.name]).__name__ == "TEXT"
        ):  # made before text became LONGTEXT (TEXT holds 64 KB)
            _alter(connection, column, "MODIFY COLUMN")
            log.info("%s: column %s widened from TEXT to %s", table.name, column.name, column.type)
    removed = tuple(sorted(set(stored) - set(table.columns.keys())))
    for name in removed:  # kept in place, and described, but no longer written
        table.append_column(sa.Column(name, stored[name], comment="no longer on the portal"))
    return SchemaChanges(False, tuple(added), tuple(type_changes), removed)


def stored_columns(
    connection: sa.Connection, inspector: sa.Inspector, table: str, schema: str | None
) -> dict[str, sa.types.TypeEngine[Any]]:
    """Column name -> type of a stored table. DuckDB is read from `duckdb_columns()`:
    duckdb_engine's reflection runs PostgreSQL catalog queries DuckDB does not answer
    (pg_collation, with SQLAlchemy 2.1)."""
    if connection.dialect.name != "duckdb":
        return {c["name"]: c["type"] for c in inspector.get_columns(table, schema)}
    found = connection.exec_driver_sql(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
        "AND schema_name = coalesce(?, current_schema()) ORDER BY column_index",
        (table, schema),
    )
    return {name: _duckdb_type(data_type) for name, data_type in found}


def reflect_table(engine: sa.Engine, name: str, *, schema: str | None = None) -> sa.Table:
    """The stored table `name` as a SQLAlchemy table (`NoSuchTableError` when missing),
    through `stored_columns` on DuckDB."""
    if engine.dialect.name != "duckdb":
        return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(name, schema=schema):
            raise sa.exc.NoSuchTableError(name)
        stored = stored_columns(connection, sa.inspect(connection), name, schema)
    return sa.Table(name, sa.MetaData(), *(sa.Column(n, t) for n, t in stored.items()),
                    schema=schema)  # fmt: skip


_DUCKDB_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "BIGINT": sa.BigInteger(), "INTEGER": sa.Integer(), "SMALLINT": sa.SmallInteger(),
    "HUGEINT": sa.BigInteger(), "DOUBLE": sa.Double(), "FLOAT": sa.Float(),
    "BOOLEAN": sa.Boolean(), "DATE": sa.Date(), "TIMESTAMP": sa.DateTime(),
    "TIMESTAMP WITH TIME ZONE": sa.DateTime(timezone=True), "VARCHAR": sa.Text(),
}  # fmt: skip


def _duckdb_type(data_type: str) -> sa.types.TypeEngine[Any]:
    if data_type.startswith("DECIMAL("):
        precision, scale = data_type[8:-1].split(",")
        return sa.Numeric(int(precision), int(scale))
    return _DUCKDB_TYPES.get(data_type, sa.types.NullType())


def _alter(connection: sa.Connection, column: sa.Column[Any], action: str) -> None:
    dialect = connection.dialect
    spec = sa.schema.CreateColumn(column).compile(dialect=dialect)
    table = dialect.identifier_preparer.format_table(column.table)
    connection.exec_driver_sql(f"ALTER TABLE {table} {action} {spec}")
