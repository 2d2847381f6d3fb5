"""HTTP transport: one aiohttp session, form-encoded POSTs, JSON decoding, error classes.

The transport never retries; it turns every way an exchange can fail into the right
``bitrix_core.errors`` class, carrying the REST method and the redacted URL, and leaves the
decision to resend to the batcher and the client. Redirects (301/302/307/308, re-sent as
the same verb) are followed only on the host the request was made to: the same scheme,
host and port, or http -> https on the same host name; anything else is
`BitrixRedirectError` naming the new host, and nothing is sent there, so a token or webhook
code never leaves the configured portal::

    async with Transport(timeout=30) as transport:
        envelope = await transport.post(url, {"id": 5}, method="crm.deal.get")
        envelope["result"]
"""

import asyncio
import ipaddress
import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from bitrix_core.encoding import encode_params
from bitrix_core.errors import (
    BitrixAuthError,
    BitrixCertificateError,
    BitrixError,
    BitrixParameterError,
    BitrixProtocolError,
    BitrixRedirectError,
    BitrixServerError,
    BitrixTimeoutError,
    BitrixTransportError,
    OperationTimeLimitError,
    error_class_for,
    error_from_response,
)
from bitrix_core.redaction import fingerprint, redact

__all__ = ["Transport", "is_loopback_host"]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
_REDIRECTS = frozenset({301, 302, 307, 308})
_MAX_REDIRECTS = 5


def is_loopback_host(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: the only hosts plain http may reach."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Transport:
    """Owns one aiohttp session; sends requests and classifies every failure."""

    def __init__(self, *, timeout: float = 30, verify_ssl: bool = True, limit: int = 100) -> None:
        if not timeout or timeout <= 0:
            raise BitrixParameterError("timeout", "must be a positive number of seconds")
        if limit < 1:
            raise BitrixParameterError("limit", "must be at least 1")
        self.timeout = float(timeout)
        self.verify_ssl = verify_ssl
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self.limit, ssl=self.verify_ssl)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Accept": "application/json"},
        )
        # aiohttp silently resends a GET once when the connection drops; for the OAuth token
        # GET that resend spends a refresh token the server may already have rotated. Every
        # resend is this project's decision (a private flag; aiohttp's test client clears it).
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, params: Mapping[str, Any], *, method: str) -> dict[str, Any]:
        """POST ``params`` form-encoded to a REST URL; the decoded envelope on success."""
        body = encode_params(params)
        envelope = await self._exchange("POST", url, body, method=method, params=params)
        if "result" not in envelope:
            raise BitrixProtocolError(
                "answer has no 'result'", method=method, url=redact(url), status=200
            )
        if envelope.get("time") == []:
            envelope["time"] = {}
        return envelope

    async def get(self, url: str, params: Mapping[str, Any], *, method: str) -> dict[str, Any]:
        """GET ``url?params`` and decode the JSON object (used for the OAuth server)."""
        query = encode_params(params)
        target = f"{url}{'&' if '?' in url else '?'}{query}" if query else url
        return await self._exchange("GET", target, None, method=method, params=params)

    async def _exchange(
        self,
        verb: str,
        url: str,
        body: str | None,
        *,
        method: str,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("Transport is not open: use 'async with Transport(...)'")
        _check_url(url, method=method)
        shown = redact(url)
        try:
            async with asyncio.timeout(self.timeout):
                status, headers, raw, final_url = await self._send(verb, url, body, method=method)
        except TimeoutError:
            raise BitrixTimeoutError(
                f"no answer within {self.timeout:g} s", method=method, url=shown
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:  # (other TLS errors may pass)
            raise BitrixCertificateError(
                f"TLS failed: {redact(str(exc))}", method=method, url=shown
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise BitrixTransportError(
                f"body cut short: {redact(str(exc))}", method=method, url=shown
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            text = redact(str(exc)) or type(exc).__name__
            raise BitrixTransportError(
                f"connection failed: {text}", method=method, url=shown
            ) from None
        body = _parse_json(raw)
        error = _error_or_none(status, headers, raw, body, method=method, url=redact(final_url))
        if error is None:
            return _as_object(status, raw, body, method=method, url=redact(final_url))
        if isinstance(error, BitrixAuthError) and params.get("auth"):
            error.credential_fingerprint = fingerprint(str(params["auth"]))
        raise error

    async def _send(
        self, verb: str, url: str, body: str | None, *, method: str
    ) -> tuple[int, Mapping[str, str], bytes, str]:
        assert self._session is not None
        headers = {"Content-Type": FORM_CONTENT_TYPE} if body is not None else {}
        origin = url
        for _ in range(_MAX_REDIRECTS + 1):
            async with self._session.request(
                verb, url, data=body, headers=headers, allow_redirects=False
            ) as response:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    target = urljoin(url, location)
                    _check_redirect(origin, target, method=method)
                    url = target
                    continue
                raw = await response.read()
                return response.status, response.headers, raw, url
        raise BitrixProtocolError(
            f"more than {_MAX_REDIRECTS} redirects", method=method, url=redact(url)
        )


def _check_url(url: str, *, method: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BitrixParameterError("url", f"not an http(s) URL: {redact(url)!r}", method=method)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise BitrixParameterError(
            "url", f"plain http is allowed only to loopback: {redact(url)!r}", method=method
        )


def _check_redirect(origin: str, target: str, *, method: str) -> None:
    """Refuse a redirect off the origin's host (see the module docstring)."""
    source, parts = urlsplit(origin), urlsplit(target)
    try:
        ports = (source.port, parts.port)
    except ValueError:  # a port that is not a number
        ports = None
    if parts.scheme not in ("http", "https") or not parts.hostname or ports is None:
        raise BitrixProtocolError(
            f"refusing redirect to {redact(target)}", method=method, url=redact(origin)
        )
    same_host = parts.hostname.lower() == (source.hostname or "").lower()
    same_origin = same_host and (parts.scheme, ports[1]) == (source.scheme, ports[0])
    upgrade = (
        same_host
        and (source.scheme, parts.scheme) == ("http", "https")
        and ports[0] in (None, 80)
        and ports[1] in (None, 443)
    )
    if not (same_origin or upgrade):
        where = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        raise BitrixRedirectError(
            f"the portal redirected to another host, {where}; credentials are never sent off "
            "the configured host: if the portal moved, configure its new address",
            method=method,
            url=redact(origin),
            location_host=parts.hostname,
        )


_UNPARSED = object()  # marks a body that is not valid JSON


def _parse_json(raw: bytes) -> Any:
    """The decoded body, `None` when empty, `_UNPARSED` when it is not valid JSON."""
    text = raw.strip()
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:  # valid JSON orjson refuses: a lone UTF-16 surrogate escape ("\ud800")
        return json.loads(text)
    except (ValueError, RecursionError):
        return _UNPARSED


def _error_or_none(
    status: int, headers: Mapping[str, str], raw: bytes, body: Any, *, method: str, url: str
) -> BitrixError | None:
    """The error an answer carries, or None when it is a success."""
    if isinstance(body, dict) and "error" in body:
        error = error_from_response(body, method=method, status=status, url=url)
        if isinstance(error, OperationTimeLimitError) and error.reset_at is None:
            _set_reset(error, body, headers)
        return error
    if status < 400:
        return None
    cls = error_class_for("", status)
    if status >= 500:
        cls = BitrixServerError
    kind = "error page" if body is None or body is _UNPARSED else "error without a code"
    error = cls(f"{kind} ({_snippet(raw)})", method=method, status=status, url=url)
    if isinstance(error, OperationTimeLimitError):
        _set_reset(error, {}, headers)
    return error


def _as_object(status: int, raw: bytes, body: Any, *, method: str, url: str) -> dict[str, Any]:
    """A success body as a dict; PHP's `[]` for an empty map becomes `{}`.

    A 200 carrying no JSON at all (empty, `null`, a PHP warning page) is the portal failing,
    as a 5xx is: `BitrixServerError`, so a read is sent again and a write is not."""
    if body is None:
        kind = "an empty body" if not raw.strip() else "null"
        raise BitrixServerError(
            f"HTTP 200 with {kind} instead of JSON", method=method, status=status, url=url
        )
    if body is _UNPARSED:
        if raw.strip()[:1] in (b"{", b"["):
            raise BitrixTransportError(
                "body cut short (JSON ends early)", method=method, status=status, url=url
            )
        raise BitrixServerError(
            f"HTTP 200 that is not JSON ({_snippet(raw)})", method=method, status=status, url=url
        )
    if body == []:
        return {}
    if not isinstance(body, dict):
        raise BitrixProtocolError(
            f"answer is a JSON {type(body).__name__}, not an object",
            method=method,
            status=status,
            url=url,
        )
    return body


def _set_reset(
    error: OperationTimeLimitError, body: Mapping[str, Any], headers: Mapping[str, str]
) -> None:
    """When an exhausted operating budget frees up: the body's `operating_reset_at` or an
    HTTP-date `Retry-After` (both on the server's clock, as `reset_at`), else a
    `Retry-After` in seconds (`retry_after_s`: relative, so no clock is involved)."""
    block = body.get("time")
    if isinstance(block, dict) and isinstance(block.get("operating_reset_at"), int | float):
        error.reset_at = float(block["operating_reset_at"])
        return
    retry_after = headers.get("Retry-After")
    if not retry_after:
        return
    try:
        error.retry_after_s = max(0.0, float(retry_after))
    except ValueError:
        try:
            error.reset_at = parsedate_to_datetime(retry_after).timestamp()
        except (TypeError, ValueError):
            return


def _snippet(raw: bytes, limit: int = 120) -> str:
    text = " ".join(raw.decode("utf-8", "replace").split())
    return redact(text[:limit] + ("..." if len(text) > limit else "")) or "no body"
