"""Where OAuth tokens live between runs: memory, a JSON file, or a SQL table.

Every refresh returns a NEW refresh token and kills the old one, so a store must persist
atomically and let one refresher at a time (across processes) hold ``refresh_lock()``::

    store = JsonFileTokenStore("~/.bitrix24/tokens.json")
    async with store.refresh_lock():
        tokens = store.load()          # re-read: another process may have refreshed
        store.save(new_tokens)         # written before the new access token is used
"""

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

from bitrix_core.errors import BitrixParameterError, BitrixProtocolError
from bitrix_core.redaction import register_secret

__all__ = [
    "InMemoryTokenStore",
    "JsonFileTokenStore",
    "OAuthTokens",
    "SqlAlchemyTokenStore",
    "TokenStore",
]

_T = TypeVar("_T")


@dataclass(frozen=True)
class OAuthTokens:
    """One OAuth token pair and what the token server said about it (secrets not in repr)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float | None = None
    client_endpoint: str | None = None
    member_id: str | None = None
    domain: str | None = None
    scope: str | None = None

    def __post_init__(self) -> None:
        register_secret(self.access_token)
        register_secret(self.refresh_token)

    @classmethod
    def from_token_response(
        cls, body: Mapping[str, Any], *, now: float, previous: "OAuthTokens | None" = None
    ) -> "OAuthTokens":
        """Build from the OAuth server's answer (``access_token``, ``expires_in``, ...)."""
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            raise BitrixProtocolError("token answer lacks access_token/refresh_token")
        expires_in = body.get("expires_in")
        endpoint = body.get("client_endpoint") or (previous.client_endpoint if previous else None)
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_at=now + float(expires_in) if isinstance(expires_in, int | float) else None,
            client_endpoint=endpoint,
            member_id=body.get("member_id") or (previous.member_id if previous else None),
            domain=body.get("domain") or (previous.domain if previous else None),
            scope=body.get("scope") or (previous.scope if previous else None),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (holds the secrets: for stores only)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OAuthTokens":
        """The inverse of ``to_dict``; unknown keys are ignored."""
        known: dict[str, Any] = {
            name: data[name] for name in cls.__dataclass_fields__ if name in data
        }
        return cls(**known)


class TokenStore(Protocol):
    """Persists one token pair; ``refresh_lock`` admits one refresher at a time."""

    def load(self) -> OAuthTokens | None: ...

    def save(self, tokens: OAuthTokens) -> None: ...

    def refresh_lock(self) -> AbstractAsyncContextManager[None]: ...


class InMemoryTokenStore:
    """Tokens held in this process only (tests, notebooks, short jobs)."""

    def __init__(self, tokens: OAuthTokens | None = None) -> None:
        self._tokens = tokens
        self._lock = asyncio.Lock()

    def load(self) -> OAuthTokens | None:
        return self._tokens

    def save(self, tokens: OAuthTokens) -> None:
        self._tokens = tokens

    @contextlib.asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        async with self._lock:
            yield


class JsonFileTokenStore:
    """Tokens in a JSON file (mode 0600), replaced atomically, refresh guarded by flock."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 60) -> None:
        self.path = Path(path).expanduser()
        self.lock_timeout = lock_timeout
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"JsonFileTokenStore({str(self.path)!r})"

    def load(self) -> OAuthTokens | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            raise BitrixProtocolError(f"token file {self.path} is not JSON") from None
        return OAuthTokens.from_dict(data) if data else None

    def save(self, tokens: OAuthTokens) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(tokens.to_dict(), file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    @contextlib.asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        async with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.path.with_name(self.path.name + ".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                deadline = time.monotonic() + self.lock_timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{lock_path} is held by another process") from None
                        await asyncio.sleep(0.02)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class SqlAlchemyTokenStore:
    """Tokens in a SQL table row; refresh holds ``SELECT ... FOR UPDATE`` (SQLite:
    ``BEGIN IMMEDIATE``). Every database call runs on one worker thread of this store."""

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        key: str = "default",
        table_name: str = "bitrix24_oauth_tokens",
    ) -> None:
        if not key:
            raise BitrixParameterError("key", "must be a non-empty string")
        dialect = sa.make_url(engine).get_backend_name() if isinstance(engine, str) else (
            engine.dialect.name
        )
        if dialect == "duckdb":  # no row lock: two refreshers would both spend the token
            raise BitrixParameterError(
                "token store",
                "DuckDB cannot lock a row for a refresh; keep OAuth tokens in PostgreSQL,"
                " MySQL/MariaDB, SQLite, Redis or a JSON file",
            )
        self._owns_engine = isinstance(engine, str)
        self.engine = sa.create_engine(engine) if isinstance(engine, str) else engine
        self.key = key
        self.table = sa.Table(
            table_name,
            sa.MetaData(),
            sa.Column("key", sa.String(191), primary_key=True),
            sa.Column("data", sa.Text, nullable=True),
            sa.Column("updated_at", sa.Float, nullable=True),
        )
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-store")
        self._lock = asyncio.Lock()
        self._held: sa.Connection | None = None
        self._on_worker(self._setup)

    def __repr__(self) -> str:
        return f"SqlAlchemyTokenStore({self.engine.url!r}, key={self.key!r})"

    def close(self) -> None:
        """Stop the worker thread (and dispose of the engine if this store created it)."""
        self._worker.shutdown(wait=True)
        if self._owns_engine:
            self.engine.dispose()

    def load(self) -> OAuthTokens | None:
        return self._on_worker(self._load)

    def save(self, tokens: OAuthTokens) -> None:
        self._on_worker(lambda: self._save(tokens))

    @contextlib.asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        async with self._lock:
            await loop.run_in_executor(self._worker, self._acquire)
            try:
                yield
            except BaseException:
                await loop.run_in_executor(self._worker, lambda: self._release(commit=False))
                raise
            await loop.run_in_executor(self._worker, lambda: self._release(commit=True))

    def _on_worker(self, function: Callable[[], _T]) -> _T:
        return self._worker.submit(function).result()

    @property
    def _sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def _setup(self) -> None:
        self.table.create(self.engine, checkfirst=True)
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(self.table.c.key).where(self._row)).first()
            if exists is None:
                with contextlib.suppress(sa.exc.IntegrityError):
                    conn.execute(sa.insert(self.table).values(key=self.key, data=None))

    @property
    def _row(self) -> sa.ColumnElement[bool]:
        return self.table.c.key == self.key

    def _load(self) -> OAuthTokens | None:
        query = sa.select(self.table.c.data).where(self._row)
        if self._held is not None:
            data = self._held.execute(query).scalar()
        else:
            with self.engine.connect() as conn:
                data = conn.execute(query).scalar()
        return OAuthTokens.from_dict(json.loads(data)) if data else None

    def _save(self, tokens: OAuthTokens) -> None:
        update = (
            sa.update(self.table)
            .where(self._row)
            .values(data=json.dumps(tokens.to_dict()), updated_at=time.time())
        )
        if self._held is not None:
            self._held.execute(update)
        else:
            with self.engine.begin() as conn:
                conn.execute(update)

    def _acquire(self) -> None:
        if self._sqlite:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn = self.engine.connect()
            conn.begin()
            conn.execute(sa.select(self.table.c.key).where(self._row).with_for_update())
        self._held = conn

    def _release(self, *, commit: bool) -> None:
        conn, self._held = self._held, None
        if conn is None:
            return
        try:
            if self._sqlite:
                conn.exec_driver_sql("COMMIT" if commit else "ROLLBACK")
            elif commit:
                conn.commit()
            else:
                conn.rollback()
        finally:
            conn.close()

