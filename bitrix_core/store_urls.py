"""URLs naming where shared state lives (limiter, OAuth tokens): Redis, PostgreSQL, SQLite.

store_kind("redis://:pw@cache:6379/0")                 # "redis"
store_kind("postgresql+psycopg://u:pw@db/warehouse")   # "postgres"
store_kind("/var/lib/bitrix24/limiter.sqlite")         # "sqlite" (a plain path)
redact_store_url("redis://:pw@cache:6379/0")           # "redis://:***@cache:6379/0"
"""

from urllib.parse import urlsplit, urlunsplit

from bitrix_core.errors import BitrixParameterError
from bitrix_core.redaction import MASK, register_secret

__all__ = ["psycopg_conninfo", "redact_store_url", "sqlite_path", "store_kind"]

_KINDS = {
    "redis": "redis",
    "rediss": "redis",
    "postgresql": "postgres",
    "postgresql+psycopg": "postgres",
    "postgres": "postgres",
    "sqlite": "sqlite",
}


def store_kind(url: str) -> str:
    """ "redis", "postgres" or "sqlite" (a URL without a scheme is a SQLite file path)."""
    if not isinstance(url, str) or not url.strip():
        raise BitrixParameterError("url", "must be a non-empty URL or file path")
    if "://" not in url:
        return "sqlite"
    scheme = url.split("://", 1)[0].lower()
    try:
        return _KINDS[scheme]
    except KeyError:
        raise BitrixParameterError(
            "url",
            f"unknown scheme {scheme!r} in {redact_store_url(url)!r}: expected redis://, "
            "rediss://, postgresql://, postgresql+psycopg:// or sqlite:///<path>",
        ) from None


def redact_store_url(url: str) -> str:
    """The URL with its password masked (the password is registered as a secret, so
    logs scrubbed by `bitrix_core.redaction` mask it too)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    register_secret(parts.password)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def sqlite_path(url: str) -> str:
    """The file of `sqlite:///<path>` (SQLAlchemy's form: `sqlite:////abs/path` for an
    absolute path) or of a plain path."""
    if "://" not in url:
        return url
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise BitrixParameterError("url", f"expected sqlite:///<path>, got {url!r}")
    return url[len(prefix) :]


def psycopg_conninfo(url: str) -> str:
    """A libpq URL for psycopg (SQLAlchemy's `+psycopg` driver suffix dropped)."""
    scheme, rest = url.split("://", 1)
    return ("postgresql" if scheme.lower().startswith("postgres") else scheme) + "://" + rest
