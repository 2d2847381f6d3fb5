"""Limit answers over real HTTP: a Retry-After on a portal whose clock differs from ours,
and 503 QUERY_LIMIT_EXCEEDED caused by another application draining the portal's bucket."""

import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bitrix_core.client import BitrixClient
from bitrix_core.throttle import Limits


class SkewedPortal:
    """A portal whose clock runs an hour ahead; `block(s)` answers 429 with `Retry-After: s`
    (and no time block) until s real seconds have passed."""

    def __init__(self) -> None:
        self.blocked_until = 0.0
        self.retry_after = ""
        self.answers: list[int] = []

    def block(self, seconds: float) -> None:
        self.blocked_until = time.monotonic() + seconds
        self.retry_after = f"{seconds:g}"

    async def handle(self, request: web.Request) -> web.Response:
        if time.monotonic() < self.blocked_until:
            self.answers.append(429)
            body = {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked"}
            return web.Response(
                status=429, text=json.dumps(body), content_type="application/json",
                headers={"Retry-After": self.retry_after},
            )  # fmt: skip
        self.answers.append(200)
        server_now = time.time() + 3600
        timing = {"start": server_now, "finish": server_now, "duration": 0, "processing": 0}
        return web.json_response({"result": {"ID": "1"}, "time": timing})


@pytest.fixture
async def skewed() -> AsyncIterator[tuple[SkewedPortal, str]]:
    portal = SkewedPortal()
    app = web.Application()
    app.router.add_route("*", "/rest/1/c0de/{method}", portal.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield portal, f"http://127.0.0.1:{port}/rest/1/c0de/"
    await runner.cleanup()


async def test_retry_after_is_waited_on_our_clock_whatever_the_server_clock(skewed):
    portal, url = skewed
    async with BitrixClient(url, limits=Limits.for_plan("unlimited")) as client:
        await client.call("crm.deal.get", {"id": 1})  # learns the server clock (+1 h)
        portal.block(0.5)
        started = time.monotonic()
        assert (await client.call("crm.deal.get", {"id": 1})) == {"ID": "1"}
        waited = time.monotonic() - started
    assert portal.answers == [200, 429, 200]  # one refusal, then the wait, then success
    assert 0.45 <= waited < 2
