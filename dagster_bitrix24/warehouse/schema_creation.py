"""The warehouse's schema, created when it is missing.

A warehouse with `schema=` (a portal's own schema under `separate_by: schema`) creates it
before its first table: `CREATE SCHEMA` on PostgreSQL and DuckDB, `CREATE DATABASE` on
MySQL/MariaDB (where a schema is a database). Two steps creating the same schema at once
both go on: PostgreSQL's `IF NOT EXISTS` can still fail with a unique violation in the
catalog once the other transaction, which inserted the name first, commits; DuckDB fails
with a write-write conflict while the other one has not committed yet. So a failed
creation is followed by a second look and, the schema still missing, by another attempt a
moment later; a schema missing after `ATTEMPTS` is an error naming the schema to create.
SQLite has no schemas: there a schema must be a database attached to every connection
(`ATTACH`), or it is an error.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from dagster_bitrix24.warehouse.errors import FieldMetadataError, WarehouseUnavailableError

#: Creations tried before a schema still missing is an error, the pauses between them doubling
#: from `PAUSE` seconds (DuckDB's concurrent creator commits within milliseconds).
ATTEMPTS = 5
PAUSE = 0.05
#: Whether a schema exists, per dialect: PostgreSQL's catalog lists every schema (its
#: information_schema only those the user may use); MySQL's SCHEMATA lists the databases
#: the user has a privilege on; DuckDB's, those of the current database file.
_EXISTS = {
    "postgresql": "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :name",
    "mysql": "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name",
    "mariadb": "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name",
    "duckdb": "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name "
    "AND catalog_name = current_database()",
}


def ensure_schema(engine: sa.Engine, schema: str) -> None:
    """Create `schema` in `engine`'s database unless it exists (in its own transaction).

    Raises `WarehouseUnavailableError` naming the schema when it is missing and could not
    be created (the user may not create it), `FieldMetadataError` on SQLite when no
    attached database has that name."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        _check_attached(engine, schema)
        return
    if dialect not in _EXISTS:
        raise FieldMetadataError(f"unsupported warehouse dialect {dialect!r}")
    if _exists(engine, schema):
        return
    quoted = engine.dialect.identifier_preparer.quote_schema(schema)
    kind = "DATABASE" if dialect in ("mysql", "mariadb") else "SCHEMA"
    create = f"CREATE {kind} IF NOT EXISTS {quoted}"
    for attempt in range(ATTEMPTS):
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(create)
            return
        except sa.exc.DBAPIError as error:
            if _exists(engine, schema):  # another step created it at the same moment
                return
            failure = error.orig
        if attempt + 1 < ATTEMPTS:
            time.sleep(PAUSE * 2**attempt)
    code = getattr(failure, "sqlstate", None) or _first_arg(failure)
    raise WarehouseUnavailableError(
        f"the warehouse schema {schema!r} does not exist and could not be created "
        f"({type(failure).__name__}{f' {code}' if code else ''}): create it "
        f"({create.replace(' IF NOT EXISTS', '')}) or let the warehouse user create it"
    )


def _exists(engine: sa.Engine, schema: str) -> bool:
    with engine.connect() as connection:
        found = connection.execute(sa.text(_EXISTS[engine.dialect.name]), {"name": schema})
        return found.first() is not None


def _check_attached(engine: sa.Engine, schema: str) -> None:
    with engine.connect() as connection:
        attached = {row[1] for row in connection.exec_driver_sql("PRAGMA database_list")}
    if schema not in attached:
        raise FieldMetadataError(
            f"SQLite has no schemas: schema {schema!r} is not an attached database; write "
            "without a schema and keep tables apart by table prefix (separate_by: table_prefix)"
        )


def _first_arg(error: BaseException | None) -> str | None:
    """MySQL's error number (the first argument of PyMySQL's errors), if there is one."""
    args = getattr(error, "args", ())
    return str(args[0]) if args and isinstance(args[0], int) else None
