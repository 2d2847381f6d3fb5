"""A limiter backend in PostgreSQL (e.g. the warehouse's), shared by processes on any machine.

Every step is one statement in its own transaction: the bucket step is an upsert whose
`ON CONFLICT DO UPDATE` takes the portal row's lock, so concurrent reservations serialise
on the row and never lose an update; it runs on the database server's clock
(`clock_timestamp()`), so machines whose clocks disagree share one clock. A process killed
mid-step leaves nothing held: PostgreSQL rolls back a dropped connection's transaction and
releases its lock, a slot reservation is only a moment in the bucket, which drains, and an
operating-time reservation is a row with its own expiry (deleted once past it). The
operating-time step is one transaction under an advisory lock per portal and method.

Tables (created if missing): `bitrix24_limiter_bucket(portal, tat)`,
`bitrix24_limiter_budget(portal, method, <MethodBudget fields>)` and
`bitrix24_limiter_operating(portal, method, expires_at, seconds)`.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import fields, replace
from typing import Any

from bitrix_core.limiter_backends.operating import reservation_start
from bitrix_core.limiter_state import MethodBudget
from bitrix_core.store_urls import psycopg_conninfo, redact_store_url

_BUDGET_FIELDS = tuple(f.name for f in fields(MethodBudget))
_TIME_FIELDS = ("reset_at", "server_now", "blocked_until", "next_at")
_NOW = "extract(epoch from clock_timestamp())::float8"


class PostgresLimiterBackend:
    """Leaky-bucket and operating-budget state for one portal, shared through PostgreSQL."""

    def __init__(self, url: str, *, portal: str, table_prefix: str = "bitrix24_limiter_") -> None:
        import psycopg  # noqa: F401 - fail here, not on the first request

        self._url = url
        self.portal = portal
        self._bucket = f"{table_prefix}bucket"
        self._budget = f"{table_prefix}budget"
        self._operating = f"{table_prefix}operating"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._connection: Any = None  # psycopg.AsyncConnection of `_loop`

    def __repr__(self) -> str:
        return f"PostgresLimiterBackend({redact_store_url(self._url)!r}, portal={self.portal!r})"

    async def _execute(self, sql: str, params: tuple) -> Any:
        """Run one statement in its own (autocommit) transaction; the first row, if any."""

        async def work(connection: Any) -> Any:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchone() if cursor.description else None

        return await self._run(work)

    async def _run(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        """`await work(connection)` on this process's connection, one at a time. A dropped
        connection (a database restart) is replaced once."""
        import psycopg

        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop: its own connection
            self._loop, self._lock, self._connection = loop, asyncio.Lock(), None
        assert self._lock is not None
        async with self._lock:  # one step at a time on this process's connection
            for attempt in (1, 2):
                if self._connection is None or self._connection.closed:
                    self._connection = await self._connect()
                try:
                    return await work(self._connection)
                except psycopg.OperationalError:
                    if attempt == 2 or not self._connection.closed:
                        raise

    async def _connect(self) -> Any:
        import psycopg

        connection = await psycopg.AsyncConnection.connect(
            psycopg_conninfo(self._url), autocommit=True
        )
        await self._create_tables(connection)
        return connection

    async def _create_tables(self, connection: Any) -> None:
        columns = ", ".join(f"{name} double precision NOT NULL" for name in _BUDGET_FIELDS)
        for statement in (
            f"CREATE TABLE IF NOT EXISTS {self._bucket} "
            "(portal text PRIMARY KEY, tat double precision NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self._budget} "
            f"(portal text NOT NULL, method text NOT NULL, {columns}, PRIMARY KEY (portal, method))",
            f"CREATE TABLE IF NOT EXISTS {self._operating} (portal text NOT NULL, "
            "method text NOT NULL, expires_at double precision NOT NULL, "
            "seconds double precision NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {self._operating}_live "
            f"ON {self._operating} (portal, method, expires_at)",
        ):
            try:
                await connection.execute(statement)
            except Exception as error:  # two processes creating the table at the same moment
                if "already exists" not in str(error) and "duplicate key" not in str(error):
                    raise

    async def take_slot(self, *, now: float, interval_s: float, burst: int) -> float:
        """Reserve the next slot (GCRA, on the database clock); the seconds to wait."""
        tat, server_now = await self._execute(
            f"INSERT INTO {self._bucket} AS b (portal, tat) VALUES (%s, {_NOW} + %s) "
            f"ON CONFLICT (portal) DO UPDATE SET tat = greatest(b.tat, {_NOW}) + %s "
            f"RETURNING b.tat, {_NOW}",
            (self.portal, interval_s, interval_s),
        )
        allowed_at = tat - interval_s - (burst - 1) * interval_s
        return max(0.0, allowed_at - server_now)

    async def fill_bucket(self, *, now: float, interval_s: float, burst: int) -> None:
        """Hold the bucket `burst` slots full: the portal answered 503 QUERY_LIMIT_EXCEEDED."""
        await self._execute(
            f"INSERT INTO {self._bucket} AS b (portal, tat) VALUES (%s, {_NOW} + %s) "
            f"ON CONFLICT (portal) DO UPDATE SET tat = greatest(b.tat, {_NOW} + %s)",
            (self.portal, burst * interval_s, burst * interval_s),
        )

    async def get_budget(self, method: str) -> MethodBudget | None:
        """The stored operating-time record of a method, on this process's clock."""
        row = await self._execute(
            f"SELECT {', '.join(_BUDGET_FIELDS)} FROM {self._budget} "
            "WHERE portal = %s AND method = %s",
            (self.portal, method),
        )
        if row is None:
            return None
        budget = MethodBudget(**dict(zip(_BUDGET_FIELDS, row, strict=True)))
        return _shift(budget, time.monotonic() - time.time())

    async def put_budget(self, method: str, budget: MethodBudget) -> None:
        """Store a method's operating-time record (times on the wall clock); of two writers
        the later `blocked_until` and `next_at` stay (one upsert: atomic)."""
        stored = _shift(budget, time.time() - time.monotonic())
        names = ", ".join(_BUDGET_FIELDS)
        updates = ", ".join(
            f"{name} = greatest(b.{name}, excluded.{name})"
            if name in ("blocked_until", "next_at")
            else f"{name} = excluded.{name}"
            for name in _BUDGET_FIELDS
        )
        await self._execute(
            f"INSERT INTO {self._budget} AS b (portal, method, {names}) "
            f"VALUES (%s, %s, {', '.join('%s' for _ in _BUDGET_FIELDS)}) "
            f"ON CONFLICT (portal, method) DO UPDATE SET {updates}",
            (self.portal, method, *(getattr(stored, name) for name in _BUDGET_FIELDS)),
        )

    async def reserve_operating(
        self, method: str, *, seconds: float, after_s: float, hold_s: float, limit_s: float
    ) -> float:
        """Reserve operating time against every process's live reservations: one
        transaction under an advisory lock per portal and method, on the database clock
        (expired reservations are deleted); the seconds until it starts."""
        key = (self.portal, method)

        async def work(connection: Any) -> float:
            async with connection.transaction():
                await connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"{self._operating}:{self.portal}:{method}",),
                )
                cursor = await connection.execute(
                    f"WITH gone AS (DELETE FROM {self._operating} WHERE portal = %s "
                    f"AND method = %s AND expires_at <= {_NOW}) SELECT {_NOW}",
                    key,
                )
                (now,) = await cursor.fetchone()
                cursor = await connection.execute(
                    f"SELECT expires_at, seconds FROM {self._operating} "
                    "WHERE portal = %s AND method = %s AND expires_at > %s",
                    (*key, now + after_s),
                )
                start = reservation_start(
                    await cursor.fetchall(),
                    earliest=now + after_s,
                    seconds=seconds,
                    limit_s=limit_s,
                )
                await connection.execute(
                    f"INSERT INTO {self._operating} (portal, method, expires_at, seconds) "
                    "VALUES (%s, %s, %s, %s)",
                    (*key, start + hold_s, seconds),
                )
            return float(start - now)

        return await self._run(work)

    async def aclose(self) -> None:
        """Close this process's connection."""
        if self._connection is not None:
            await self._connection.close()
        self._loop = self._lock = self._connection = None


def _shift(budget: MethodBudget, offset: float) -> MethodBudget:
    """Move every clock reading in a budget record by `offset` seconds (zeros stay zero)."""
    return replace(
        budget,
        **{name: getattr(budget, name) + offset for name in _TIME_FIELDS if getattr(budget, name)},
    )
