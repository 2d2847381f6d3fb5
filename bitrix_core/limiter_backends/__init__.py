"""Where a portal's shared limiter state lives, chosen by a URL (no Dagster here).

    backend = limiter_backend_from_url("redis://cache:6379/0", portal="acme.bitrix24.com")
    BitrixClient(webhook_url, limits=..., backend=backend)

`redis://` / `rediss://` -> `RedisLimiterBackend` (machines share it), `postgresql://` /
`postgresql+psycopg://` -> `PostgresLimiterBackend` (machines share it), `sqlite:///<path>`
or a plain path -> `SqliteLimiterBackend` (processes of one machine share the file).
"""

from bitrix_core.limiter_backends.sqlite import SqliteLimiterBackend
from bitrix_core.limiter_state import LimiterBackend
from bitrix_core.store_urls import redact_store_url, sqlite_path, store_kind

__all__ = [
    "PostgresLimiterBackend",
    "RedisLimiterBackend",
    "SqliteLimiterBackend",
    "limiter_backend_from_url",
]


def limiter_backend_from_url(url: str, *, portal: str) -> LimiterBackend:
    """The limiter backend a URL names, keyed by `portal` (one bucket per portal)."""
    kind = store_kind(url)
    redact_store_url(url)  # registers its password: logs scrubbed by bitrix_core mask it
    if kind == "redis":
        from bitrix_core.limiter_backends.redis import RedisLimiterBackend

        return RedisLimiterBackend(url, portal=portal)
    if kind == "postgres":
        from bitrix_core.limiter_backends.postgres import PostgresLimiterBackend

        return PostgresLimiterBackend(url, portal=portal)
    return SqliteLimiterBackend(sqlite_path(url), portal=portal)


def __getattr__(name: str) -> object:
    """The Redis and PostgreSQL backends import their clients only when asked for."""
    if name == "RedisLimiterBackend":
        from bitrix_core.limiter_backends.redis import RedisLimiterBackend

        return RedisLimiterBackend
    if name == "PostgresLimiterBackend":
        from bitrix_core.limiter_backends.postgres import PostgresLimiterBackend

        return PostgresLimiterBackend
    raise AttributeError(name)
