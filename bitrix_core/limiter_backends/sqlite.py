"""A limiter backend in a SQLite file, so processes of one machine share one portal's bucket.

Implements the engine's `LimiterBackend` protocol (`bitrix_core.limiter_state`). Every step
is one `BEGIN IMMEDIATE` transaction, so concurrent processes serialise on the file lock; a
process killed mid-step leaves its transaction rolled back, and an operating-time
reservation is deleted once it has expired. Times
are stored on the wall clock (the engine hands in its monotonic clock; the offset between
the two is taken at each call), so processes started at different times agree.

Several processes may open a fresh file at the same moment. Every connection has a busy
timeout, and the one step SQLite may refuse at once without waiting (switching the file to
WAL, which needs the file to itself) is skipped when the file is already in WAL mode and
otherwise retried with a short backoff until the busy timeout has passed.
"""

import asyncio
import sqlite3
import time
from contextlib import closing
from dataclasses import fields, replace
from pathlib import Path

from bitrix_core.limiter_backends.operating import reservation_start
from bitrix_core.limiter_state import MethodBudget

_TIME_FIELDS = ("reset_at", "server_now", "blocked_until", "next_at")
_BUDGET_FIELDS = tuple(f.name for f in fields(MethodBudget))
#: First and largest pause between two attempts to switch a busy file to WAL.
_WAL_RETRY_FIRST_S = 0.005
_WAL_RETRY_MAX_S = 0.1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS limiter_bucket (portal TEXT PRIMARY KEY, tat REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS limiter_budget (portal TEXT NOT NULL, method TEXT NOT NULL, "
    + ", ".join(f"{name} REAL NOT NULL" for name in _BUDGET_FIELDS)
    + ", PRIMARY KEY (portal, method))",
    "CREATE TABLE IF NOT EXISTS limiter_operating (portal TEXT NOT NULL, method TEXT NOT NULL, "
    "expires_at REAL NOT NULL, seconds REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS limiter_operating_live "
    "ON limiter_operating (portal, method, expires_at)",
)


class SqliteLimiterBackend:
    """Leaky-bucket and operating-budget state for one portal, shared through a SQLite file."""

    def __init__(self, path: str | Path, *, portal: str, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.portal = portal
        self._busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection:
            self._use_wal(connection)
        self._transaction(_create_tables)

    def __repr__(self) -> str:
        return f"SqliteLimiterBackend(path={str(self.path)!r}, portal={self.portal!r})"

    def _connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode whose every statement waits out a busy file."""
        return sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Put the file in WAL mode (it stays so) unless it already is.

        The switch needs the file to itself, and SQLite answers "database is locked" at once,
        without the busy timeout, when another connection holds it: retry with a short
        backoff, for at most the busy timeout.
        """
        deadline = time.monotonic() + self._busy_timeout_s
        pause = _WAL_RETRY_FIRST_S
        while True:
            try:
                (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
                if mode.lower() != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _WAL_RETRY_MAX_S)

    def _transaction(self, work):  # noqa: ANN001, ANN202 - a callable run under the lock
        """Run `work(connection)` in one `BEGIN IMMEDIATE` transaction: the write lock first."""
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
                connection.execute("COMMIT")
                return result
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    async def take_slot(self, *, now: float, interval_s: float, burst: int) -> float:
        """Reserve the next slot (GCRA); return the seconds to wait before sending."""
        offset = time.time() - now

        def work(connection: sqlite3.Connection) -> float:
            wall_now = now + offset
            tat = max(self._tat(connection), wall_now)
            allowed_at = tat - (burst - 1) * interval_s
            self._store_tat(connection, tat + interval_s)
            return max(0.0, allowed_at - wall_now)

        return await asyncio.to_thread(self._transaction, work)

    async def fill_bucket(self, *, now: float, interval_s: float, burst: int) -> None:
        """Mark the bucket full: the portal answered 503 QUERY_LIMIT_EXCEEDED."""
        offset = time.time() - now

        def work(connection: sqlite3.Connection) -> None:
            full = now + offset + burst * interval_s
            self._store_tat(connection, max(self._tat(connection), full))

        await asyncio.to_thread(self._transaction, work)

    async def get_budget(self, method: str) -> MethodBudget | None:
        """The stored operating-time record of a method, on this process's clock."""
        offset = time.time() - time.monotonic()

        def work(connection: sqlite3.Connection) -> tuple | None:
            return connection.execute(
                f"SELECT {', '.join(_BUDGET_FIELDS)} FROM limiter_budget "
                "WHERE portal = ? AND method = ?",
                (self.portal, method),
            ).fetchone()

        row = await asyncio.to_thread(self._transaction, work)
        if row is None:
            return None
        budget = MethodBudget(**dict(zip(_BUDGET_FIELDS, row, strict=True)))
        return _shift(budget, -offset)

    async def put_budget(self, method: str, budget: MethodBudget) -> None:
        """Store a method's operating-time record (times converted to the wall clock)."""
        stored = _shift(budget, time.time() - time.monotonic())
        values = [getattr(stored, name) for name in _BUDGET_FIELDS]

        def work(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"INSERT OR REPLACE INTO limiter_budget (portal, method, {', '.join(_BUDGET_FIELDS)})"
                f" VALUES (?, ?, {', '.join('?' for _ in _BUDGET_FIELDS)})",
                (self.portal, method, *values),
            )

        await asyncio.to_thread(self._transaction, work)

    async def reserve_operating(
        self, method: str, *, seconds: float, after_s: float, hold_s: float, limit_s: float
    ) -> float:
        """Reserve operating time against every process's live reservations (one
        transaction, wall clock; expired ones are deleted); the seconds until it starts."""

        def work(connection: sqlite3.Connection) -> float:
            now = time.time()
            key = (self.portal, method)
            connection.execute(
                "DELETE FROM limiter_operating WHERE portal = ? AND method = ? "
                "AND expires_at <= ?",
                (*key, now),
            )
            live = connection.execute(
                "SELECT expires_at, seconds FROM limiter_operating "
                "WHERE portal = ? AND method = ? AND expires_at > ?",
                (*key, now + after_s),
            ).fetchall()
            start = reservation_start(
                live, earliest=now + after_s, seconds=seconds, limit_s=limit_s
            )
            connection.execute(
                "INSERT INTO limiter_operating (portal, method, expires_at, seconds) "
                "VALUES (?, ?, ?, ?)",
                (*key, start + hold_s, seconds),
            )
            return start - now

        return await asyncio.to_thread(self._transaction, work)

    def _tat(self, connection: sqlite3.Connection) -> float:
        """The bucket's stored theoretical arrival time (0: none yet)."""
        row = connection.execute(
            "SELECT tat FROM limiter_bucket WHERE portal = ?", (self.portal,)
        ).fetchone()
        return row[0] if row else 0.0

    def _store_tat(self, connection: sqlite3.Connection, tat: float) -> None:
        connection.execute(
            "INSERT INTO limiter_bucket (portal, tat) VALUES (?, ?) "
            "ON CONFLICT(portal) DO UPDATE SET tat = excluded.tat",
            (self.portal, tat),
        )


def _create_tables(connection: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        connection.execute(statement)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the file."""
    return error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _shift(budget: MethodBudget, offset: float) -> MethodBudget:
    """Move every clock reading in a budget record by `offset` seconds (zeros stay zero)."""
    return replace(
        budget,
        **{name: getattr(budget, name) + offset for name in _TIME_FIELDS if getattr(budget, name)},
    )
