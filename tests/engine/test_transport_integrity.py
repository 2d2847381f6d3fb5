"""Answers a client must neither trust nor die of, over real HTTP: 200s that are not JSON,
and redirects that would carry the credentials off the portal's host."""

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bitrix_core.auth import OAuthAuth
from bitrix_core.client import BitrixClient
from bitrix_core.emulator.faults import OFF_HOST
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import BitrixProtocolError, BitrixRedirectError, BitrixServerError
from bitrix_core.throttle import Limits
from bitrix_core.token_stores import InMemoryTokenStore, OAuthTokens
from bitrix_core.transport import Transport, _check_redirect
from tests.engine.conftest import FAST_RETRY

BAD_200 = ["php_warning_200", "empty_200", "null_200"]


@pytest.mark.parametrize("kind", BAD_200)
async def test_a_read_answered_by_a_non_json_200_is_retried(kind):
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add(kind, method="crm.deal.get", times=1)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            assert (await client.call("crm.deal.get", {"id": 2}))["ID"] == "2"
        assert client.stats.retries == 1
        assert portal.counters["crm.deal.get"].requests == 2


@pytest.mark.parametrize("kind", BAD_200)
async def test_a_write_answered_by_a_non_json_200_is_not_resent(kind):
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add(kind, method="crm.deal.add", times=1)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            with pytest.raises(BitrixServerError) as caught:
                await client.call("crm.deal.add", {"fields": {"TITLE": "once"}})
        assert caught.value.status == 200 and "JSON" in str(caught.value)
        assert portal.counters["crm.deal.add"].requests == 1
        assert portal.store.count("crm.deal") == 6  # it did run: resending would duplicate it


@pytest.mark.parametrize("kind", BAD_200)
async def test_batched_reads_under_a_non_json_200_are_retried_and_all_rows_arrive(kind):
    async with EmulatedPortal(deals=400, plan="unlimited") as portal:
        portal.faults.add(kind, method="crm.deal.list", times=2)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            rows = await client.get_all("crm.deal.list", {"select": ["ID"]}, verify=True)
            answers = await client.call_many([("crm.deal.get", {"id": 1})] * 3)
        assert len({row["ID"] for row in rows}) == len(rows) == 400
        assert [a["ID"] for a in answers] == ["1"] * 3
        assert client.stats.retries >= 2


async def test_batched_writes_under_a_non_json_200_fail_once_and_are_not_resent():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add("php_warning_200", method="batch", times=1)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            adds = [("crm.deal.add", {"fields": {"TITLE": f"w{i}"}}) for i in range(3)]
            answers = await client.call_many(adds)
        assert all(isinstance(answer, BitrixServerError) for answer in answers)
        assert portal.counters["batch"].requests == 1
        assert portal.store.count("crm.deal") == 8  # they ran once, and only once

class Recorder:
    """A server on another loopback host that records every request it receives."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(f"{request.method} {request.path_qs} {await request.text()}")
        return web.json_response({"result": {"stolen": True}})


async def _serve(app: web.Application, host: str, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
async def portal_and_recorder() -> AsyncIterator[tuple[EmulatedPortal, Recorder]]:
    """The emulator on 127.0.0.1:P and a recorder on 127.0.0.2:P, where its
    `redirect_off_host` fault points."""
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        runner, _ = await _serve(app, OFF_HOST, portal.port)
        try:
            yield portal, recorder
        finally:
            await runner.cleanup()


def _assert_refused(error: BitrixRedirectError, recorder: Recorder, secret: str) -> None:
    assert error.location_host == OFF_HOST and OFF_HOST in str(error)
    assert secret not in str(error) and secret not in (error.url or "")
    assert recorder.received == []


async def test_webhook_redirected_off_host_sends_nothing_there(portal_and_recorder):
    portal, recorder = portal_and_recorder
    code = portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    portal.faults.add("redirect_off_host", method="crm.deal.get", times=1)
    async with BitrixClient(portal.webhook_url, limits=Limits.for_plan("unlimited")) as client:
        with pytest.raises(BitrixRedirectError) as caught:
            await client.call("crm.deal.get", {"id": 1})
        assert client.stats.retries == 0  # not transient: no resend
    _assert_refused(caught.value, recorder, code)


async def test_oauth_token_is_not_posted_to_the_host_a_redirect_names(portal_and_recorder):
    portal, recorder = portal_and_recorder
    app = portal.oauth_client()
    auth = OAuthAuth(
        client_id=app.client_id,
        client_secret=app.client_secret,
        token_store=InMemoryTokenStore(),
        oauth_server=app.portal_url,
    )
    async with Transport(timeout=5) as transport:
        await auth.exchange_code(portal.issue_auth_code(), transport)
    portal.faults.add("redirect_off_host", method="batch", times=1)
    async with BitrixClient(auth=auth, limits=Limits.for_plan("unlimited")) as client:
        answers = await client.call_many([("crm.deal.get", {"id": 1})] * 2)
    assert all(isinstance(answer, BitrixRedirectError) for answer in answers)
    _assert_refused(answers[0], recorder, auth.tokens.access_token)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_token_server_redirect_off_host_keeps_the_refresh_token_home(status):
    recorder = Recorder()
    trap = web.Application()
    trap.router.add_route("*", "/{tail:.*}", recorder.handle)
    trap_runner, trap_port = await _serve(trap, OFF_HOST)

    async def moved(request: web.Request) -> web.Response:
        location = f"http://{OFF_HOST}:{trap_port}{request.path_qs}"
        return web.Response(status=status, headers={"Location": location})

    server = web.Application()
    server.router.add_route("*", "/oauth/token/", moved)
    runner, port = await _serve(server, "127.0.0.1")
    tokens = OAuthTokens("acc3ss-x1", "r3fresh-x1", client_endpoint="http://127.0.0.1:1/rest/")
    auth = OAuthAuth(
        client_id="app",
        client_secret="s3cret-x1",
        token_store=InMemoryTokenStore(tokens),
        oauth_server=f"http://127.0.0.1:{port}",
    )
    try:
        async with Transport(timeout=5) as transport:
            with pytest.raises(BitrixRedirectError) as caught:
                await auth.refresh(transport)
    finally:
        await runner.cleanup()
        await trap_runner.cleanup()
    for secret in ("r3fresh-x1", "s3cret-x1"):
        _assert_refused(caught.value, recorder, secret)


async def test_same_host_redirect_is_followed_as_a_post():
    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=308, headers={"Location": "/rest/1/c0de/echo"})

    async def echo(request: web.Request) -> web.Response:
        body = {"result": {"method": request.method, "form": dict(await request.post())}}
        return web.Response(text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/rest/1/c0de/crm.deal.get", moved)
    app.router.add_route("*", "/rest/1/c0de/echo", echo)
    runner, port = await _serve(app, "127.0.0.1")
    try:
        async with BitrixClient(f"http://127.0.0.1:{port}/rest/1/c0de/") as client:
            result = await client.call("crm.deal.get", {"id": 4})
    finally:
        await runner.cleanup()
    assert result == {"method": "POST", "form": {"id": "4"}}


@pytest.mark.parametrize(
    ("target", "followed"),
    [
        ("https://portal.example.com/rest/m", True),  # same origin
        ("https://PORTAL.example.com/rest/other", True),  # host names are case-insensitive
        ("https://portal.example.com:8443/rest/m", False),  # another port: another server
        ("http://portal.example.com/rest/m", False),  # https -> http: never downgrade
        ("https://evil.example.com/rest/m", False),
        ("https://portal.example.com.evil.net/rest/m", False),
        ("https://user@evil.example.com/rest/m", False),
    ],
)
def test_redirect_policy_from_an_https_portal(target: str, followed: bool):
    if followed:
        _check_redirect("https://portal.example.com/rest/m", target, method="m")
    else:
        with pytest.raises(BitrixRedirectError):
            _check_redirect("https://portal.example.com/rest/m", target, method="m")


def test_a_redirect_with_a_broken_port_is_refused():
    with pytest.raises(BitrixProtocolError):
        _check_redirect("https://portal.example.com/rest/m", "https://portal.example.com:x/", method="m")


def test_http_to_https_on_the_same_host_is_followed():
    _check_redirect("http://localhost/rest/m", "https://localhost/rest/m", method="m")
    with pytest.raises(BitrixRedirectError):
        _check_redirect("http://localhost:8080/rest/m", "https://localhost/rest/m", method="m")
