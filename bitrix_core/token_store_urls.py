"""The OAuth token store a URL names: Redis, any SQLAlchemy database, or a JSON file."""

from bitrix_core.store_urls import redact_store_url
from bitrix_core.token_store_redis import RedisTokenStore
from bitrix_core.token_stores import JsonFileTokenStore, SqlAlchemyTokenStore, TokenStore

__all__ = ["token_store_from_url"]


def token_store_from_url(url: str, *, key: str = "default") -> TokenStore:
    """The token store a URL names, the tokens kept under `key` (e.g. the portal's host):
    `redis://...` -> `RedisTokenStore`; `postgresql://...` (or any SQLAlchemy URL) ->
    `SqlAlchemyTokenStore` (the refresh holds the row's lock; a killed worker's connection
    drops and releases it); a plain path -> `JsonFileTokenStore` (one machine)."""
    if "://" not in url:
        return JsonFileTokenStore(url)
    redact_store_url(url)  # registers its password: logs scrubbed by bitrix_core mask it
    scheme, rest = url.split("://", 1)
    if scheme.lower() in ("redis", "rediss"):
        return RedisTokenStore(url, key=key)
    if scheme.lower() in ("postgresql", "postgres"):
        url = "postgresql+psycopg://" + rest  # the driver this project installs
    return SqlAlchemyTokenStore(url, key=key)
