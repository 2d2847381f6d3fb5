"""A chunk's transaction, redone when the database gave it up for a lock, described without values.

Two writers on one table (two runs, a partition backfill beside a schedule, another tool)
can deadlock or wait too long for a row lock. The database then aborts one transaction and
it alone; redoing it after a short jittered pause succeeds. Retried, and nothing else:

- MySQL/MariaDB 1213 (deadlock: the whole transaction was rolled back) and 1205 (lock wait
  timeout: the writer rolls the whole transaction back itself);
- PostgreSQL SQLSTATE 40P01 (deadlock detected) and 40001 (serialization failure, under
  REPEATABLE READ or SERIALIZABLE engines);
- DuckDB's TransactionException "Conflict on update" (two writers changed one row: DuckDB's
  optimistic concurrency aborts the one that commits second).

The whole chunk transaction is redone, so a chunk is written fully or not at all, and the
cursor (committed only after every chunk) stays consistent. Any error that leaves the writer
is a `WarehouseWriteError` naming the table, the chunk's id range and the database's error
code and message with every quoted literal masked: database messages quote row values
(`Duplicate entry 'x'`, `Key (title)=(x)`, `invalid input syntax for type bigint: "x"`),
and SQLAlchemy appends the bound parameters unless an engine hides them.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

import sqlalchemy as sa

from dagster_bitrix24.warehouse.errors import WarehouseWriteError

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPTS = 6
"""Tries of one chunk: 5 pauses of 0.05, 0.1, 0.2, 0.4, 0.8 s (plus jitter), 1.55 s at most
in all, beyond the database's own detection time (a MariaDB deadlock is seen at once, a lock
wait timeout after `innodb_lock_wait_timeout`, 50 s by default)."""
FIRST_PAUSE = 0.05
_TRANSIENT = {
    "1213": "deadlock", "1205": "lock wait timeout",  # MySQL/MariaDB error numbers
    "40P01": "deadlock", "40001": "serialization failure",  # PostgreSQL SQLSTATEs
}  # fmt: skip
# a quoted literal ('...', "..."), or what follows "=" in parentheses (PostgreSQL's DETAIL)
_LITERAL = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"]|\"\")*\"|=\([^)]*\)")


def driver_error(error: BaseException) -> BaseException:
    """The DB-API exception: SQLAlchemy's `.orig`, or the error itself (raw cursors)."""
    return getattr(error, "orig", None) or error


def error_code(error: BaseException) -> str | None:
    """SQLSTATE (PostgreSQL), the error number (MySQL), the SQLite error name or the DuckDB
    exception class (ConstraintException, ...), if any."""
    orig = driver_error(error)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # MySQL drivers: (errno, message)
        return str(args[0])
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return str(sqlstate)
    name = getattr(orig, "sqlite_errorname", None)
    if name:
        return str(name)
    if type(orig).__module__.lstrip("_") == "duckdb":  # no codes: the class names the kind
        return type(orig).__name__
    return None


def transient_reason(error: BaseException) -> str | None:
    """'deadlock', 'lock wait timeout' or 'serialization failure' when redoing the
    transaction can succeed; None for any other error."""
    code = error_code(error)
    orig = driver_error(error)
    if type(orig).__name__ == "TransactionException" and "Conflict on" in str(orig):
        # DuckDB: another transaction committed a change to a row this one wrote
        # (optimistic concurrency: "TransactionContext Error: Conflict on update")
        return "write-write conflict"
    return None if code is None else _TRANSIENT.get(code)


def masked_message(error: BaseException) -> str:
    """The database's own message (first line; no SQL, no parameters) with literals masked."""
    orig = driver_error(error)
    diag = getattr(orig, "diag", None)
    text = getattr(diag, "message_primary", None)
    if not text:
        args = getattr(orig, "args", ())
        text = str(args[-1]) if args else type(orig).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(orig).__name__
    masked = _LITERAL.sub("<value>", first)
    column = getattr(diag, "column_name", None)
    return f"{masked} (column {column})" if column else masked


def describe(error: BaseException) -> str:
    """`<driver error class> <code>: <masked message>`, never a row value."""
    orig = driver_error(error)
    code = error_code(error)
    return f"{type(orig).__name__}{f' {code}' if code else ''}: {masked_message(error)}"


def id_range(ids: Sequence[Any]) -> str:
    """`ids 5 to 9 (3 rows)`: the chunk's smallest and largest id, for error messages."""
    present = [i for i in ids if i is not None]
    try:
        low, high = min(present), max(present)
    except (TypeError, ValueError):  # no ids, or ids of several types
        return f"{len(ids)} rows"
    return f"ids {low} to {high} ({len(ids)} rows)"


def write_with_retry(
    attempt: Callable[[], T], *, table: str, ids: Callable[[], Sequence[Any]],
    attempts: int = ATTEMPTS, first_pause: float = FIRST_PAUSE,
) -> T:  # fmt: skip
    """Run `attempt` (one whole chunk transaction) until it succeeds, redoing it after a
    deadlock, lock wait timeout or serialization failure; any database error that remains
    becomes a `WarehouseWriteError` without row values."""
    caught: tuple[type[BaseException], ...] = (sa.exc.DBAPIError, *_driver_errors())
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except caught as error:
            reason = transient_reason(error)
            where = f"{table}, {id_range(ids())}"
            if reason is None or number == attempts:
                tries = f" after {number} attempts" if reason else ""
                raise WarehouseWriteError(
                    f"writing {where} failed{tries}: {describe(error)}",
                    table=table,
                    code=error_code(error),
                    transient=reason is not None,
                ) from None  # the chained error would print the rows' values
            pause = first_pause * 2 ** (number - 1)
            pause += random.uniform(0, pause)
            log.warning(
                "writing %s hit a %s (%s); the chunk is rolled back and redone in %.2f s "
                "(attempt %d of %d)", where, reason, error_code(error), pause, number + 1,
                attempts,
            )  # fmt: skip
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


@cache
def _driver_errors() -> tuple[type[BaseException], ...]:
    """The DB-API base errors of the installed drivers (raw cursors raise them unwrapped)."""
    found: list[type[BaseException]] = []
    for module in ("psycopg", "pymysql", "MySQLdb", "sqlite3", "duckdb"):
        try:
            found.append(__import__(module).Error)
        except ImportError:
            continue
    return tuple(found)
