"""Dagster resources: the Bitrix24 portal (credentials, limits) and the SQL warehouse."""

import asyncio
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from dagster import AssetExecutionContext, ConfigurableResource, EnvVar, MaterializeResult
from pydantic import Field
from sqlalchemy.engine import make_url

from bitrix_core.client import BitrixClient
from bitrix_core.errors import BitrixParameterError
from bitrix_core.limiter_backends import limiter_backend_from_url
from bitrix_core.throttle import Limits
from bitrix_core.transport import is_loopback_host
from dagster_bitrix24.materialize import sync_selected_assets
from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.connect import warehouse_kind
from dagster_bitrix24.warehouse.errors import WarehouseUnavailableError

_SECRET: dict[str, Any] = {"dagster__is_secret": True}
#: How to install a warehouse's database driver (the package's extras).
_DRIVER_ADVICE = (
    "pip install 'dagster-bitrix24[postgres]' for postgresql+psycopg://, "
    "'dagster-bitrix24[mysql]' for mysql+pymysql://, or the driver the URL names"
)


def _plain(value: str | None) -> str:
    """A field's value, resolving an unresolved `EnvVar` (outside a run) from the environment."""
    if isinstance(value, EnvVar):
        return value.get_value() or ""
    return value or ""


def _is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname)


class Bitrix24Resource(ConfigurableResource):
    """One Bitrix24 portal: how to authenticate, which limits to respect, how to connect.

    Pass the webhook URL (it embeds the secret code) as `EnvVar("BITRIX24_WEBHOOK_URL")`;
    a literal is accepted only for a loopback portal (the emulator). For an OAuth app give
    `portal_url`, `client_id`, `client_secret` (an `EnvVar`) and `token_file` (one machine)
    or `token_store_url` (Redis or PostgreSQL: workers on any machine). `limiter_url` lets
    run processes share the portal's limits (README: "Sharing limits across machines").
    """

    webhook_url: str | None = Field(
        default=None,
        description="Incoming webhook URL https://<portal>/rest/<user>/<code>/ (secret).",
        json_schema_extra=_SECRET,
    )
    portal_url: str | None = Field(
        default=None, description="OAuth: the portal's REST base, e.g. https://x.bitrix24.com/rest/"
    )
    client_id: str | None = Field(default=None, description="OAuth application client id.")
    client_secret: str | None = Field(
        default=None, description="OAuth application client secret.", json_schema_extra=_SECRET
    )
    token_file: str | None = Field(
        default=None, description="OAuth: JSON file holding the rotating refresh token."
    )
    oauth_server: str = Field(
        default="https://oauth.bitrix.info", description="OAuth token server."
    )
    plan: str = Field(
        default="standard", description="Limits preset: standard, enterprise or unlimited."
    )
    time_scale: float = Field(
        default=1.0, description="Scale every limit duration (the emulator's time_scale)."
    )
    bucket_size: int | None = Field(default=None, description="Override the request bucket size.")
    drain_per_s: float | None = Field(default=None, description="Override the bucket drain rate.")
    query_limit_patience_s: float | None = Field(
        default=None,
        description="Seconds to wait out 503 QUERY_LIMIT_EXCEEDED (other apps filling the "
        "portal's request bucket) before failing; default 300, times time_scale.",
    )
    timeout: float = Field(default=30.0, description="Seconds to wait for one HTTP answer.")
    verify_ssl: bool = Field(default=True, description="Verify the portal's TLS certificate.")
    limiter_url: str | None = Field(
        default=None,
        description="Where run processes share this portal's limits: redis://host:6379/0 or "
        "postgresql://... (any machine), sqlite:///<file> or a file path (one machine). "
        "Pass one holding a password as an EnvVar.",
        json_schema_extra=_SECRET,
    )
    limiter_path: str | None = Field(
        default=None,
        description="Deprecated alias of limiter_url: a SQLite file shared by the run processes.",
    )
    token_store_url: str | None = Field(
        default=None,
        description="OAuth: where the rotating tokens live, for workers on any machine: "
        "redis://... or postgresql://... (instead of token_file). Pass one holding a "
        "password as an EnvVar.",
        json_schema_extra=_SECRET,
    )

    def __init__(self, **data: Any) -> None:
        _reject_literal_secrets(data)
        super().__init__(**data)

    def __repr__(self) -> str:
        return f"Bitrix24Resource(portal={self.redacted_portal!r}, plan={self.plan!r})"

    __str__ = __repr__

    @property
    def redacted_portal(self) -> str:
        """The portal's base URL with no secret in it (safe to log and show)."""
        parts = urlsplit(_plain(self.webhook_url) or _plain(self.portal_url))
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "(not configured)"

    @property
    def portal_host(self) -> str:
        """The portal's host name, e.g. `example.bitrix24.com`."""
        return urlsplit(_plain(self.webhook_url) or _plain(self.portal_url)).netloc or "portal"

    def limits(self) -> Limits:
        """The engine `Limits` for this portal's plan, scaled and overridden as configured."""
        try:
            limits = Limits.for_plan(self.plan)
        except ValueError as exc:
            raise BitrixParameterError("plan", str(exc)) from None
        if self.time_scale <= 0:
            raise BitrixParameterError("time_scale", "must be positive")
        if self.time_scale != 1.0:
            limits = limits.scaled(self.time_scale)
        overrides: dict[str, Any] = {}
        for key, value in (("bucket_size", self.bucket_size), ("drain_per_s", self.drain_per_s)):
            if value is not None and value <= 0:
                raise BitrixParameterError(key, "must be positive")
            if value is not None:
                overrides[key] = value
        if self.query_limit_patience_s is not None:
            if self.query_limit_patience_s < 0:
                raise BitrixParameterError("query_limit_patience_s", "must not be negative")
            overrides["query_limit_patience_s"] = self.query_limit_patience_s
        return replace(limits, **overrides) if overrides else limits

    def get_client(self, *, verbose: bool = False) -> BitrixClient:
        """A new engine `BitrixClient` (use it as `async with`): one per run, shared by entities."""
        return BitrixClient(
            self.webhook_url,
            auth=self._oauth(),
            limits=self.limits(),
            timeout=self.timeout,
            verify_ssl=self.verify_ssl,
            verbose=verbose,
            **self._limiter_kwargs(),
        )

    def sync(
        self,
        *,
        context: AssetExecutionContext,
        warehouse: "SQLWarehouseResource",
        config: Any = None,
    ) -> Iterator[MaterializeResult]:
        """Sync the entities selected in `context` into `warehouse`; one result per entity.

        Use it in a `@bitrix24_assets` body: `yield from bitrix24.sync(context=..., ...)`.
        """
        yield from sync_selected_assets(context, bitrix24=self, warehouse=warehouse, config=config)

    def authorize(self, *, code: str) -> None:
        """OAuth: trade an authorization code (valid 30 s) for the first tokens in `token_file`.

        Later runs refresh the tokens themselves and persist each rotated refresh token there.
        """
        auth = self._oauth()
        if auth is None:
            raise BitrixParameterError("code", "authorize() is for OAuth, not a webhook URL")
        from bitrix_core.transport import Transport

        async def exchange() -> None:
            async with Transport(timeout=self.timeout, verify_ssl=self.verify_ssl) as transport:
                await auth.exchange_code(code, transport)

        asyncio.run(exchange())

    def _oauth(self) -> Any:
        if self.webhook_url:
            if self.client_id or self.client_secret:
                raise BitrixParameterError("webhook_url", "give a webhook URL or OAuth, not both")
            return None
        if self.token_file and self.token_store_url:
            raise BitrixParameterError("token_store_url", "give token_file or token_store_url")
        store_url = _plain(self.token_store_url) or _plain(self.token_file)
        if not (self.client_id and self.client_secret and store_url and self.portal_url):
            raise BitrixParameterError(
                "webhook_url",
                "missing: set webhook_url, or portal_url + client_id + client_secret + "
                "token_file (or token_store_url)",
            )
        from bitrix_core.auth import OAuthAuth
        from bitrix_core.token_store_urls import token_store_from_url

        return OAuthAuth(  # _plain: outside a run (authorize) an EnvVar is still unresolved
            client_id=_plain(self.client_id),
            client_secret=_plain(self.client_secret),
            token_store=token_store_from_url(store_url, key=self.portal_host),
            oauth_server=self.oauth_server,
            client_endpoint=_plain(self.portal_url),
        )

    def _limiter_kwargs(self) -> dict[str, Any]:
        if self.limiter_url and self.limiter_path:
            raise BitrixParameterError("limiter_url", "give limiter_url or limiter_path, not both")
        url = _plain(self.limiter_url) or _plain(self.limiter_path)
        if not url:
            return {}
        return {"backend": limiter_backend_from_url(url, portal=self.portal_host)}


def _is_literal(value: Any) -> bool:
    """A plain string typed into code, as opposed to an `EnvVar`.

    At run time Dagster rebuilds the resource from resolved config, so an `EnvVar` then
    arrives as its environment value: such a value is not a literal.
    """
    return (
        isinstance(value, str)
        and not isinstance(value, EnvVar)
        and value not in os.environ.values()
    )


def _reject_literal_secrets(data: dict[str, Any]) -> None:
    """A secret given as a literal would show in the UI; require `EnvVar` unless loopback."""
    url = data.get("webhook_url")
    if _is_literal(url) and not _is_loopback(str(url)):
        raise BitrixParameterError(
            "webhook_url",
            "the URL embeds a secret code: pass it as EnvVar('BITRIX24_WEBHOOK_URL')",
        )
    for name in ("limiter_url", "token_store_url"):
        value = data.get(name)
        if _is_literal(value) and "://" in str(value) and urlsplit(str(value)).password:
            raise BitrixParameterError(
                name, f"the URL holds a password: pass it as EnvVar('BITRIX24_{name.upper()}')"
            )
    if _is_literal(data.get("client_secret")):
        raise BitrixParameterError(
            "client_secret", "pass it as EnvVar('BITRIX24_CLIENT_SECRET'), not a literal"
        )


class SQLWarehouseResource(ConfigurableResource):
    """The SQL database the tables land in: SQLite (default), PostgreSQL, MariaDB/MySQL."""

    url: str = Field(
        default="sqlite:///bitrix24.sqlite",
        description="SQLAlchemy URL; pass one holding a password as an EnvVar.",
        json_schema_extra=_SECRET,
    )
    schema_name: str | None = Field(
        default=None,
        description="Database schema for the tables (PostgreSQL, DuckDB; a database on "
        "MySQL/MariaDB), created if missing.",
    )
    convert_in_database: bool = Field(
        default=False,
        description="PostgreSQL: COPY large chunks as raw text and convert them in SQL "
        "instead of in Python (the same values are stored either way).",
    )
    mysql_bulk_load: bool = Field(
        default=True,
        description="MySQL/MariaDB: send chunks of 1,000 rows or more by LOAD DATA LOCAL "
        "INFILE, which turns the driver's local_infile on: the server may then ask this "
        "process for any file it can read. False: row batches only (slower).",
    )

    def __init__(self, **data: Any) -> None:
        url = data.get("url")
        if _is_literal(url) and make_url(str(url)).password:
            raise BitrixParameterError(
                "url", "the URL holds a password: pass it as EnvVar('WAREHOUSE_URL')"
            )
        super().__init__(**data)

    def __repr__(self) -> str:
        return f"SQLWarehouseResource(url={self.redacted_url!r}, schema={self.schema_name!r})"

    __str__ = __repr__

    @property
    def redacted_url(self) -> str:
        """The URL with its password masked."""
        return make_url(_plain(self.url)).render_as_string(hide_password=True)

    @property
    def kind(self) -> str:
        """The Dagster kind for this dialect: sqlite, postgres, mysql or duckdb."""
        return warehouse_kind(_plain(self.url))

    def get_warehouse(self, *, table_prefix: str = "bitrix24_") -> Warehouse:
        """A new warehouse writer bound to this database; a missing driver says what to
        install."""
        try:
            return Warehouse(
                self.url, schema=self.schema_name, table_prefix=table_prefix,
                convert_in_database=self.convert_in_database,
                mysql_bulk_load=self.mysql_bulk_load,
            )  # fmt: skip
        except ModuleNotFoundError as error:
            raise WarehouseUnavailableError(
                f"the warehouse {self.redacted_url} needs the database driver {error.name!r},"
                f" which is not installed: {_DRIVER_ADVICE}"
            ) from None

