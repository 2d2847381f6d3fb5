"""MySQL/MariaDB bulk path: `LOAD DATA LOCAL INFILE` from an in-memory buffer, then one
guarded `INSERT ... SELECT ... ON DUPLICATE KEY UPDATE`.

The driver's executemany escapes every value in Python and the server parses one long
INSERT; LOAD DATA takes tab-separated text the writer builds in one pass (a line builder
compiled per table, `tsv_builder`) and the server reads it at its own pace. The rows go to a
temporary table shaped like the target (`CREATE TEMPORARY TABLE ... LIKE`), and one
`INSERT INTO target SELECT ... FROM stage ON DUPLICATE KEY UPDATE` applies the same guard,
byte-wise comparison and column order as the row-by-row statement (the caller passes it,
its columns qualified with the target's name: a SELECT makes bare names ambiguous). The
affected-rows count means the same as the executemany's, so the caller counts alike.

The text is sent from memory: an anonymous memory file (`os.memfd_create`, Linux) named by
its `/proc/self/fd` path, which the driver opens and streams; elsewhere a temporary file.
LOCAL INFILE needs the connection's `local_infile` flag (`Warehouse` sets it on engines it
builds from a PyMySQL or mysqlclient URL, unless the URL sets it or `mysql_bulk_load=False`)
and the server's `local_infile` variable (ON by default in MariaDB, OFF in MySQL 8): when
either is off, `stage` says so (False) and the writer sends executemany. A server allowed
LOCAL INFILE can ask the client for any file the process can read, so the flag is set only
on warehouse engines, whose server the user names, and `mysql_bulk_load=False` leaves it off.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import methodcaller
from typing import Any

import sqlalchemy as sa

TsvBuilder = Callable[[Sequence[tuple[Any, ...]]], str]

STAGE = "_bitrix24_load"
_NULL = "\\N"
_NONES = methodcaller("count", None)
_BOOLEANS = {True: "1", False: "0", None: _NULL}
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\\0"})
# Errors meaning "LOCAL INFILE is not allowed here": the server's 1148 (MySQL's "used command
# is not allowed with this MySQL version"), 3948 (MySQL 8 "Loading local data is disabled"),
# 4166 (MariaDB 10.6+ the same), and PyMySQL's 2068 when its flag is off.
_REFUSED = {1148, 3948, 4166, 2068}


@lru_cache(maxsize=64)
def tsv_builder(kinds: tuple[str, ...]) -> TsvBuilder:
    """A function turning converted rows (one value per kind) into LOAD DATA text: one line
    per row, tab-separated, `\\N` for NULL, booleans as 1/0; values holding a tab, newline,
    carriage return or backslash are escaped (checked once per block, like `pg_copy`)."""
    parts = [
        f"{{B[v{i}]}}" if kind == "boolean" else f"{{N if v{i} is None else v{i}}}"
        for i, kind in enumerate(kinds)
    ]
    names = "".join(f"v{i}, " for i in range(len(kinds)))
    line = "\\t".join(parts) + "\\n"  # the generated f-string: tabs and a newline
    source = f"def lines(rows):\n    return ''.join([f'{line}' for ({names}) in rows])\n"
    namespace: dict[str, Any] = {"N": _NULL, "B": _BOOLEANS}
    exec(compile(source, "<load data line builder>", "exec"), namespace)
    lines = namespace["lines"]
    width = len(kinds)

    def build(rows: Sequence[tuple[Any, ...]]) -> str:
        text: str = lines(rows)
        nulls = sum(map(_NONES, rows))
        if (  # every backslash one of our NULLs, every tab and newline a separator
            text.count("\\") == nulls
            and "\r" not in text
            and text.count("\n") == len(rows)
            and text.count("\t") == len(rows) * (width - 1)
        ):
            return text
        return "".join("\t".join(map(_escaped, row)) + "\n" for row in rows)

    return build


def _escaped(value: Any) -> str:
    if value is None:
        return _NULL
    if value is True or value is False:
        return _BOOLEANS[value]
    return str(value).translate(_ESCAPES)


def stage(connection: sa.Connection, table: str, columns: str, text: str) -> bool:
    """Load `text` into a new temporary copy of `table` (`STAGE`); False (no stage left)
    when `load_table` says the load was not whole."""
    connection.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {STAGE}")
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE {STAGE} LIKE {table}")
    if load_table(connection, STAGE, columns, text):
        return True
    connection.exec_driver_sql(f"DROP TEMPORARY TABLE {STAGE}")
    return False


def load_table(connection: sa.Connection, table: str, columns: str, text: str) -> bool:
    """LOAD DATA LOCAL INFILE of `text` into `table`; False when LOCAL INFILE is refused or
    the server did not take every line as it is (the caller removes what landed): a LOCAL
    load runs as LOAD DATA IGNORE (the server cannot stop the client's stream), so a value
    its column refuses, or a row a CHECK constraint refuses, is a warning there, not an
    error. The rows then go by executemany, which fails or stores them as it would."""
    raw = connection.connection.dbapi_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        try:
            load_into(cursor, table, columns, text)
        except Exception as error:
            if _code(error) in _REFUSED:
                return False
            raise
        loaded = cursor.rowcount
        cursor.execute("SELECT @@warning_count")
        warnings = (cursor.fetchone() or (0,))[0]
        return bool(loaded == text.count("\n") and not warnings)
    finally:
        cursor.close()


def count_new(connection: sa.Connection, table: str, id_column: str) -> int:
    """How many staged ids are not stored in `table`."""
    return int(connection.exec_driver_sql(
        f"SELECT STRAIGHT_JOIN COUNT(*) FROM {STAGE} s LEFT JOIN {table} t "
        f"ON t.{id_column} = s.{id_column} WHERE t.{id_column} IS NULL"
    ).scalar_one())  # fmt: skip


def count_seen(connection: sa.Connection, table: str, id_column: str, ids: list[Any]) -> int:
    """How many of `ids` a plain (non-locking) read finds in `table`: under REPEATABLE READ
    the transaction's snapshot, plus the rows it wrote itself."""
    seen = 0
    for start in range(0, len(ids), 5_000):
        batch = ids[start : start + 5_000]
        markers = ", ".join(["%s"] * len(batch))
        seen += int(connection.exec_driver_sql(
            f"SELECT COUNT(*) FROM {table} WHERE {id_column} IN ({markers})", tuple(batch)
        ).scalar_one())  # fmt: skip
    return seen


def refused_ids(
    connection: sa.Connection, table: str, id_column: str, change_column: str,
    *, latest: bool = False,
) -> set[Any]:  # fmt: skip
    """The staged ids whose stored version is newer (what `base.is_newer` refuses),
    compared on the server; `latest`: a locking read, the newest committed versions."""
    incoming, stored = f"s.{change_column}", f"t.{change_column}"
    sql = (
        f"SELECT STRAIGHT_JOIN s.{id_column} FROM {STAGE} s "
        f"JOIN {table} t ON t.{id_column} = s.{id_column} "
        f"WHERE {stored} IS NOT NULL AND ({incoming} IS NULL OR {incoming} < {stored})"
        + (" LOCK IN SHARE MODE" if latest else "")
    )
    return {row[0] for row in connection.exec_driver_sql(sql)}


def unstage(connection: sa.Connection, id_column: str, ids: Sequence[Any]) -> None:
    """Take `ids` out of the stage (rows the guard refuses are not merged)."""
    for start in range(0, len(ids), 5_000):
        batch = ids[start : start + 5_000]
        connection.exec_driver_sql(
            f"DELETE FROM {STAGE} WHERE {id_column} IN ({', '.join(['%s'] * len(batch))})",
            tuple(batch),
        )


def merge(connection: sa.Connection, table: str, columns: str, update: str) -> int:
    """Insert the staged rows into `table` with `update` (an ON DUPLICATE KEY UPDATE clause
    naming the target's columns `table.column`); the affected rows."""
    return connection.exec_driver_sql(
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {STAGE} {update}"
    ).rowcount


def drop_stage(connection: sa.Connection) -> None:
    connection.exec_driver_sql(f"DROP TEMPORARY TABLE {STAGE}")


def connect_args(url: str | sa.URL) -> dict[str, Any]:
    """The connect arguments enabling LOCAL INFILE on a MySQL/MariaDB URL whose driver
    knows the flag (PyMySQL, mysqlclient); none for other URLs, and none when the URL sets
    `local_infile` itself (`?local_infile=0` stays off)."""
    parsed = sa.make_url(url)
    if (
        parsed.get_backend_name() in ("mysql", "mariadb")
        and parsed.get_driver_name() in ("pymysql", "mysqldb")
        and "local_infile" not in parsed.query
    ):
        return {"local_infile": True}
    return {}


def local_infile_enabled(connection: sa.Connection) -> bool:
    """Whether the driver connection may send a local file (PyMySQL and mysqlclient keep
    the flag; other drivers are not asked)."""
    raw = connection.connection.dbapi_connection
    flag = getattr(raw, "_local_infile", None)  # PyMySQL
    if flag is not None:
        return bool(flag)
    return type(raw).__module__.startswith("MySQLdb")  # mysqlclient refuses at the server


def load_into(cursor: Any, table: str, columns: str, text: str) -> None:
    """LOAD DATA LOCAL INFILE of `text` (`tsv_builder` lines) into `table` (`columns`),
    sent from memory. The caller checks the rows loaded and the warnings (see `stage`)."""
    data = text.encode("utf-8")
    tail = (
        f" INTO TABLE {table} CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' "
        f"ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({columns})"
    )
    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("bitrix24_load")
        try:
            with open(descriptor, "wb", closefd=False) as memory:
                memory.write(data)
            cursor.execute(f"LOAD DATA LOCAL INFILE '/proc/self/fd/{descriptor}'{tail}")
        finally:
            os.close(descriptor)
        return
    with tempfile.NamedTemporaryFile(suffix=".tsv", delete=False) as file:
        file.write(data)
    try:
        path = file.name.replace("\\", "/").replace("'", "\\'")
        cursor.execute(f"LOAD DATA LOCAL INFILE '{path}'{tail}")
    finally:
        os.unlink(file.name)


def _code(error: BaseException) -> int | None:
    args = getattr(getattr(error, "orig", None) or error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None
