"""Transport against a real HTTP server on loopback emitting byte-level answers and faults."""

import json
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bitrix_core.emulator.params import decode_request
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import (
    BitrixMethodNotFoundError,
    BitrixParameterError,
    BitrixPermissionError,
    BitrixProtocolError,
    BitrixServerError,
    BitrixTimeoutError,
    BitrixTransportError,
    OperationTimeLimitError,
    OverloadLimitError,
    QueryLimitExceededError,
    TokenExpiredError,
)
from bitrix_core.redaction import fingerprint
from bitrix_core.transport import Transport, is_loopback_host

CANARY = "c4n4rywebhookcode"


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


async def echo(request: web.Request) -> web.Response:
    params = await decode_request(request)
    return _json(
        {
            "result": {
                "params": params,
                "method": request.method,
                "content_type": request.content_type,
                "path": request.path,
            }
        }
    )


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"/rest/1/{CANARY}/echo")


async def redirect_insecure(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://example.com/rest/echo")


async def html_200(request: web.Request) -> web.Response:
    return web.Response(text="<html>maintenance</html>", content_type="text/html")


async def error_under_200(request: web.Request) -> web.Response:
    return _json({"error": "ACCESS_DENIED", "error_description": "REST is not available"})


async def operation_limit(request: web.Request) -> web.Response:
    return web.Response(
        status=429,
        headers={"Retry-After": "7"},
        content_type="application/json",
        text=json.dumps(
            {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked"}
        ),
    )


async def expired(request: web.Request) -> web.Response:
    return _json({"error": "expired_token", "error_description": "The access token expired"}, 401)


async def not_found_page(request: web.Request) -> web.Response:
    return web.Response(status=404, text="Not Found", content_type="text/plain")


async def cut_json(request: web.Request) -> web.Response:
    return web.Response(text='{"result": [1, 2', content_type="application/json")


async def php_quirks(request: web.Request) -> web.Response:
    return web.Response(
        text='{"result":{"url":"https:\\/\\/x\\/"},"time":[]}', content_type="application/json"
    )


async def no_result(request: web.Request) -> web.Response:
    return _json({"something": 1})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    handlers = {
        "echo": echo,
        "redirect": redirect,
        "redirect_insecure": redirect_insecure,
        "html_200": html_200,
        "error_under_200": error_under_200,
        "operation_limit": operation_limit,
        "expired": expired,
        "cut_json": cut_json,
        "php_quirks": php_quirks,
        "no_result": no_result,
    }
    for name, handler in handlers.items():
        app.router.add_route("*", f"/rest/1/{CANARY}/{name}", handler)
    app.router.add_route("*", "/{tail:.*}", not_found_page)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/rest/1/{CANARY}/"
    await runner.cleanup()


async def _fail(base: str, name: str, *, timeout: float = 5, params: dict | None = None):
    async with Transport(timeout=timeout) as transport:
        with pytest.raises(Exception) as info:
            method = name if "." in name else f"test.{name}"
            await transport.post(base + name, params or {"id": 1}, method=method)
    error = info.value
    assert CANARY not in str(error) and CANARY not in repr(error)
    assert error.method in (name, f"test.{name}")
    assert error.url is not None and CANARY not in error.url and "/rest/1/***/" in error.url
    return error


async def test_post_sends_php_form_with_content_type_and_decodes_envelope(server: str):
    async with Transport() as transport:
        envelope = await transport.post(
            server + "echo", {"filter": {">ID": 5}, "select": ["ID"], "flag": True}, method="echo"
        )
    result = envelope["result"]
    assert result["method"] == "POST"
    assert result["content_type"] == "application/x-www-form-urlencoded"
    assert result["params"] == {"filter": {">ID": "5"}, "select": ["ID"], "flag": "1"}


async def test_redirect_is_followed_by_a_post_not_a_get(server: str):
    async with Transport() as transport:
        envelope = await transport.post(server + "redirect", {"id": 7}, method="r")
    assert envelope["result"]["method"] == "POST"
    assert envelope["result"]["params"] == {"id": "7"}


async def test_redirect_to_plain_http_elsewhere_is_refused(server: str):
    error = await _fail(server, "redirect_insecure")
    assert isinstance(error, BitrixProtocolError)


async def test_html_under_200_is_a_server_error_so_reads_are_retried(server: str):
    assert type(await _fail(server, "html_200")) is BitrixServerError


async def test_error_body_under_http_200_raises(server: str):
    error = await _fail(server, "error_under_200")
    assert type(error) is BitrixPermissionError and error.code == "ACCESS_DENIED"


async def test_operation_limit_carries_retry_after_as_a_relative_wait(server: str):
    error = await _fail(server, "operation_limit")
    assert isinstance(error, OperationTimeLimitError)
    assert (error.retry_after_s, error.reset_at) == (7.0, None)  # no clock mixed in


async def test_auth_error_carries_fingerprint_of_the_token_sent(server: str):
    error = await _fail(server, "expired", params={"auth": "tok-abc-123"})
    assert isinstance(error, TokenExpiredError)
    assert error.credential_fingerprint == fingerprint("tok-abc-123")


async def test_unknown_path_html_404_is_method_not_found(server: str):
    assert isinstance(await _fail(server, "nope"), BitrixMethodNotFoundError)


async def test_json_ending_early_is_a_transport_error(server: str):
    assert type(await _fail(server, "cut_json")) is BitrixTransportError


async def test_refused_connection_is_a_transport_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await _fail(f"http://127.0.0.1:{port}/rest/1/{CANARY}/", "refused")
    assert type(error) is BitrixTransportError


async def test_php_quirks_escaped_slash_and_empty_time_list(server: str):
    async with Transport() as transport:
        envelope = await transport.post(server + "php_quirks", {}, method="q")
    assert envelope == {"result": {"url": "https://x/"}, "time": {}}


async def test_envelope_without_result_is_a_protocol_error(server: str):
    assert type(await _fail(server, "no_result")) is BitrixProtocolError


async def test_get_sends_query_and_returns_object(server: str):
    async with Transport() as transport:
        body = await transport.get(server + "echo", {"grant_type": "x", "n": 2}, method="oauth")
    assert body["result"]["method"] == "GET"
    assert body["result"]["params"] == {"grant_type": "x", "n": "2"}


async def test_bad_urls_and_options_fail_before_sending():
    async with Transport() as transport:
        for url in ("http://portal.example.com/rest/1/x/m", "ftp://127.0.0.1/m", "nourl"):
            with pytest.raises(BitrixParameterError) as info:
                await transport.post(url, {}, method="m")
            assert info.value.parameter == "url"
    with pytest.raises(BitrixParameterError):
        Transport(timeout=0)
    with pytest.raises(RuntimeError):
        await Transport().post("http://127.0.0.1/rest/m", {}, method="m")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
        (None, False),
    ],
)
def test_loopback_hosts(host: str | None, loopback: bool):
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("kind", "error_class", "status"),
    [
        ("html_502", BitrixServerError, 502),
        ("html_503", BitrixServerError, 503),
        ("internal_error", BitrixServerError, 500),
        ("query_limit", QueryLimitExceededError, 503),
        ("overload", OverloadLimitError, 503),
        ("expired_token", TokenExpiredError, 401),
        ("truncated", BitrixTransportError, None),
        ("reset", BitrixTransportError, None),
        ("slow", BitrixTimeoutError, None),
    ],
)
async def test_emulator_faults_become_the_right_errors(kind, error_class, status):
    async with EmulatedPortal(deals=3, plan="unlimited", webhook_code=CANARY) as portal:
        portal.faults.add(kind, method="crm.deal.list", times=1, delay_s=0.6)
        started = time.monotonic()
        error = await _fail(portal.webhook_url, "crm.deal.list", timeout=0.3)
        assert time.monotonic() - started < 0.6
        assert type(error) is error_class and error.status == status
        async with Transport(timeout=5) as transport:  # the fault fired once: next call works
            envelope = await transport.post(
                portal.webhook_url + "crm.deal.list", {}, method="crm.deal.list"
            )
        assert len(envelope["result"]) == 3
