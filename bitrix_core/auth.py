"""Who the client is: an incoming-webhook URL, or an OAuth application with refreshing tokens.

Both satisfy the ``Auth`` protocol the client uses to build each request::

    auth = WebhookAuth("https://example.bitrix24.com/rest/1/abc123/")
    auth.method_url("crm.deal.list")   # "https://example.bitrix24.com/rest/1/abc123/crm.deal.list"
    auth.redacted_base                 # "https://example.bitrix24.com/rest/1/***/"

``OAuthAuth`` answers a 401 ``expired_token`` by refreshing once (one refresh in flight per
process, one per token store across processes) and persists the rotated refresh token before
the new access token is used. Under the store's refresh lock it re-reads the store before
refreshing and after a refused refresh, so tokens another process wrote are used. A refresh
whose answer was lost and whose resend was refused is ``OAuthRefreshLostError``.
"""

import asyncio
import re
import time
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from bitrix_core.errors import (
    BitrixAuthError,
    BitrixError,
    BitrixParameterError,
    BitrixRetryableError,
    OAuthGrantError,
    OAuthRefreshLostError,
    QueryLimitExceededError,
    TokenExpiredError,
)
from bitrix_core.redaction import MASK, fingerprint, redact, register_secret
from bitrix_core.token_stores import OAuthTokens, TokenStore
from bitrix_core.transport import Transport, is_loopback_host

__all__ = ["Auth", "OAuthAuth", "WebhookAuth", "DEFAULT_OAUTH_SERVER"]

DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info"
REAUTHORIZE = (
    "re-authorize the application: get a new authorization code and run "
    "Bitrix24Resource(...).authorize(code=...) (engine: OAuthAuth.exchange_code(code, transport))"
)
_WEBHOOK_PATH = re.compile(r"^/rest/(?P<user>\d+)/(?P<code>[A-Za-z0-9_-]+)/?$")


class Auth(Protocol):
    """What the client needs from credentials."""

    redacted_base: str

    def method_url(self, method: str) -> str: ...

    def auth_params(self) -> dict[str, str]: ...

    async def handle_auth_error(self, error: BitrixAuthError, transport: Transport) -> bool: ...


#: Path segments a message may show: see `_shown_webhook`.
_SHOWN_SEGMENT = re.compile(r"|rest|\d+|https?:?|[\w-]+(?:\.[\w-]+)+(?::\d+)?|[\w-]+:\d+")


def _check_base_url(url: str, *, parameter: str, shown: str) -> tuple[str, str, str]:
    """(scheme, netloc, path) of an http(s) URL; https unless the host is loopback."""
    if not isinstance(url, str) or not url.strip():
        raise BitrixParameterError(parameter, "must be a non-empty URL string")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BitrixParameterError(parameter, f"not an http(s) URL: {shown!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise BitrixParameterError(
            parameter, f"https is required (plain http only to loopback): {shown!r}"
        )
    if parts.query or parts.fragment:
        raise BitrixParameterError(parameter, f"must not have a query or fragment: {shown!r}")
    return parts.scheme, parts.netloc, parts.path


def _shown_webhook(url: str) -> str:
    """A webhook URL fit for an error message, even a malformed one: the code (it may sit
    anywhere in a mistyped URL) masked, the rest shown as typed so a typo can be seen. A
    path segment stays when it cannot be a code: empty, "rest", digits, a scheme ("https:"
    when the "//" is mistyped), dotted (a host, a method name) or a host with a port (a
    code has no ":"); query and fragment are masked."""
    raw = url.strip()
    head, cut, tail = raw.partition("?") if "?" in raw else raw.partition("#")
    parts = urlsplit(head)
    prefix, path = "", head
    if parts.scheme and parts.netloc:
        prefix, path = f"{parts.scheme}://{parts.netloc}", parts.path
    shown = "/".join(s if _SHOWN_SEGMENT.fullmatch(s) else MASK for s in path.split("/"))
    return redact(prefix + shown + (cut + MASK if tail else cut))


class WebhookAuth:
    """An incoming webhook ``https://{portal}/rest/{user_id}/{code}/``; the code is a secret."""

    def __init__(self, url: str) -> None:
        shown = _shown_webhook(url) if isinstance(url, str) else repr(url)
        scheme, netloc, path = _check_base_url(url, parameter="webhook_url", shown=shown)
        match = _WEBHOOK_PATH.match(path)
        if match is None:
            raise BitrixParameterError(
                "webhook_url", f"path must be /rest/<user_id>/<code>/: {shown!r}"
            )
        self.user_id = int(match["user"])
        self._code = match["code"]
        register_secret(self._code)
        self._base = urlunsplit((scheme, netloc, f"/rest/{self.user_id}/{self._code}/", "", ""))
        self.redacted_base = urlunsplit((scheme, netloc, f"/rest/{self.user_id}/{MASK}/", "", ""))

    def __repr__(self) -> str:
        return f"WebhookAuth({self.redacted_base!r})"

    def method_url(self, method: str) -> str:
        return self._base + method

    def auth_params(self) -> dict[str, str]:
        return {}

    async def handle_auth_error(self, error: BitrixAuthError, transport: Transport) -> bool:
        """A webhook cannot renew itself: every auth error is final."""
        return False


class OAuthAuth:
    """An OAuth application's tokens: ``auth=<access token>`` on each call, refresh on expiry."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_store: TokenStore,
        oauth_server: str = DEFAULT_OAUTH_SERVER,
        client_endpoint: str | None = None,
        max_refresh_attempts: int = 3,
        retry_delay_s: float = 0.5,
    ) -> None:
        for name, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not isinstance(value, str) or not value:
                raise BitrixParameterError(name, "must be a non-empty string")
        if max_refresh_attempts < 1:
            raise BitrixParameterError("max_refresh_attempts", "must be at least 1")
        register_secret(client_secret)
        scheme, netloc, _ = _check_base_url(
            oauth_server, parameter="oauth_server", shown=oauth_server
        )
        self._token_url = urlunsplit((scheme, netloc, "/oauth/token/", "", ""))
        if client_endpoint is not None:
            client_endpoint = _endpoint(client_endpoint, parameter="client_endpoint")
        self.client_id = client_id
        self._client_secret = client_secret
        self._store = token_store
        self._client_endpoint = client_endpoint
        self._max_attempts = max_refresh_attempts
        self._retry_delay_s = retry_delay_s
        self._tokens: OAuthTokens | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self.refresh_count = 0

    def __repr__(self) -> str:
        try:
            endpoint = self.redacted_base
        except BitrixError:  # an empty or unreadable store: a repr must not raise
            endpoint = "<not authorised>"
        return f"OAuthAuth(client_id={self.client_id!r}, endpoint={endpoint!r})"

    @property
    def tokens(self) -> OAuthTokens:
        """The current token pair (loaded from the store on first use)."""
        if self._tokens is None:
            self._tokens = self._store.load()
            if self._tokens is None:
                raise BitrixParameterError(
                    "token_store", "holds no tokens: authorise the application first"
                )
        return self._tokens

    @property
    def redacted_base(self) -> str:
        return redact(self._endpoint())

    def method_url(self, method: str) -> str:
        return self._endpoint() + method

    def auth_params(self) -> dict[str, str]:
        return {"auth": self.tokens.access_token}

    async def handle_auth_error(self, error: BitrixAuthError, transport: Transport) -> bool:
        """Refresh on ``expired_token`` (once for all concurrent callers); else give up."""
        if not isinstance(error, TokenExpiredError):
            return False
        current = self.tokens
        sent = error.credential_fingerprint
        if sent is not None and sent != fingerprint(current.access_token):
            return True  # renewed since that request left: just resend
        await self.refresh(transport, stale=current)
        return True

    async def exchange_code(self, code: str, transport: Transport) -> OAuthTokens:
        """Trade an authorization code (lives 30 s) for the first token pair and store it."""
        if not isinstance(code, str) or not code:
            raise BitrixParameterError("code", "must be a non-empty string")
        params = {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "code": code,
        }
        body = await transport.get(self._token_url, params, method="oauth.token")
        tokens = OAuthTokens.from_token_response(body, now=time.time())
        async with self._store.refresh_lock():
            self._store.save(tokens)
        self._tokens = tokens
        return tokens

    async def refresh(self, transport: Transport, *, stale: OAuthTokens | None = None) -> None:
        """Renew the tokens; concurrent callers share the one refresh in flight."""
        if self._refreshing is not None and not self._refreshing.done():
            await asyncio.shield(self._refreshing)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refreshing = future
        try:
            await self._refresh_locked(transport, stale or self.tokens)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        else:
            future.set_result(None)

    async def _refresh_locked(self, transport: Transport, stale: OAuthTokens) -> None:
        async with self._store.refresh_lock():
            stored = self._store.load()
            if stored is not None and stored.access_token != stale.access_token:
                self._tokens = stored  # another process refreshed while we waited
                return
            current = stored or stale
            try:
                tokens = await self._request_tokens(transport, current)
            except OAuthGrantError:
                newer = self._store.load()
                if newer is not None and newer.refresh_token != current.refresh_token:
                    self._tokens = newer  # written meanwhile by another process: use it
                    return
                raise
            self._store.save(tokens)  # the rotated refresh token is safe before use
            self._tokens = tokens
            self.refresh_count += 1

    async def _request_tokens(self, transport: Transport, current: OAuthTokens) -> OAuthTokens:
        params = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "refresh_token": current.refresh_token,
        }
        lost: BitrixError | None = None  # an attempt whose answer may have been lost
        for attempt in range(1, self._max_attempts + 1):
            try:
                body = await transport.get(self._token_url, params, method="oauth.token")
            except (BitrixRetryableError, QueryLimitExceededError) as error:
                if attempt == self._max_attempts:
                    raise
                lost = error
                await asyncio.sleep(self._retry_delay_s * 2 ** (attempt - 1))
                continue
            except OAuthGrantError as error:
                raise _grant_refused(error, lost) from None
            return OAuthTokens.from_token_response(body, now=time.time(), previous=current)
        raise AssertionError("unreachable")  # pragma: no cover

    def _endpoint(self) -> str:
        if self._client_endpoint is not None:
            return self._client_endpoint
        endpoint = self.tokens.client_endpoint
        if not endpoint:
            raise BitrixParameterError(
                "client_endpoint", "not in the stored tokens: pass client_endpoint="
            )
        self._client_endpoint = _endpoint(endpoint, parameter="client_endpoint")
        return self._client_endpoint


def _grant_refused(error: OAuthGrantError, lost: BitrixError | None) -> OAuthGrantError:
    """The refused refresh, saying why and what to do (never showing a token)."""
    if error.code.lower() != "invalid_grant":
        return error
    cls: type[OAuthGrantError] = OAuthGrantError
    text = (
        f"{error.description or 'invalid_grant'}: the refresh token is dead (unused for 180 "
        "days, or used by another process that did not store the new one)"
    )
    if lost is not None:
        cls = OAuthRefreshLostError
        text = (
            f"the token server's answer to a refresh was lost ({type(lost).__name__}: "
            f"{lost.description}) and the resend was refused ({error.description!r}): the "
            "server rotated the refresh token in the lost answer"
        )
    return cls(
        f"{text}; {REAUTHORIZE}",
        code=error.code,
        method=error.method,
        status=error.status,
        url=error.url,
    )


def _endpoint(url: Any, *, parameter: str) -> str:
    """A REST base URL ending in '/', e.g. ``https://portal/rest/``."""
    scheme, netloc, path = _check_base_url(url, parameter=parameter, shown=str(url))
    return urlunsplit((scheme, netloc, path.rstrip("/") + "/", "", ""))
