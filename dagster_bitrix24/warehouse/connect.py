"""Opening a warehouse's engine from a URL: a SQLite file is checked and tuned first, a
DuckDB file shared between processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse.dialects.mysql_load import connect_args
from dagster_bitrix24.warehouse.duckdb_file import share_duckdb_file
from dagster_bitrix24.warehouse.errors import FieldMetadataError, WarehouseUnavailableError
from dagster_bitrix24.warehouse.schema.columns import Dialect


def open_engine(url: str, *, local_infile: bool = True) -> sa.Engine:
    """An engine for `url` whose errors never print the rows' values; a SQLite file must be
    writable and runs in WAL mode; a MySQL/MariaDB connection may LOAD DATA LOCAL INFILE
    unless `local_infile` is False (`mysql_load.connect_args`); a DuckDB file is shared
    between processes (`duckdb_file`): its engine keeps no pooled connection (a NullPool),
    the file stays open while transactions follow each other."""
    duckdb = sa.make_url(url).get_backend_name() == "duckdb"
    engine = sa.create_engine(
        url, hide_parameters=True, connect_args=connect_args(url) if local_infile else {},
        **({"poolclass": sa.pool.NullPool} if duckdb else {}),
    )  # fmt: skip
    _check_sqlite_file(engine)
    _tune_sqlite_file(engine)
    share_duckdb_file(engine)
    return engine


def warehouse_kind(url: str) -> str:
    """The dialect of a SQLAlchemy URL as a Dagster kind tag: sqlite, postgres, mysql or duckdb."""
    backend = sa.engine.make_url(url).get_backend_name()
    return {"postgresql": "postgres", "mariadb": "mysql"}.get(backend, backend)


def dialect_of(engine: sa.Engine) -> Dialect:
    """The dialect family of `engine` (MariaDB writes as MySQL)."""
    name = engine.dialect.name
    if name == "mariadb":
        return "mysql"
    if name not in ("sqlite", "postgresql", "mysql", "duckdb"):
        raise FieldMetadataError(f"unsupported warehouse dialect {name!r}")
    return name  # type: ignore[return-value]


def _tune_sqlite_file(engine: sa.Engine) -> None:
    """An embedded SQLite file warehouse writes in WAL mode with synchronous=NORMAL: a commit
    no longer waits for an fsync (the database stays consistent; a power cut may lose the
    last commits, which the next sync fetches again because the cursor did not move either).
    Engines passed in by the caller are left as they are."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _check_sqlite_file(engine: sa.Engine) -> None:
    """Name the path when SQLite could not open its file (it says only "unable to open
    database file"): the folder must exist and be writable."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return
    path = Path(database).resolve()
    problem = None
    if not path.parent.is_dir():
        problem = f"the folder {path.parent} does not exist"
    elif not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        problem = "it is not writable"
    if problem:
        raise WarehouseUnavailableError(
            f"SQLite cannot open the warehouse file {path}: {problem}; create the folder or "
            "set the warehouse URL (WAREHOUSE_URL) to another path"
        )
