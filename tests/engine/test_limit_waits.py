"""Limit answers over real HTTP: a Retry-After on a portal whose clock differs from ours,
and 503 QUERY_LIMIT_EXCEEDED caused by another application draining the portal's bucket."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.limits import CostModel, Plan
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import QueryLimitExceededError
from bitrix_core.throttle import Limits, Throttle
from tests.engine.conftest import FAST_RETRY


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


SCALE = 0.01
STANDARD = Limits.for_plan("standard").scaled(SCALE)  # patience: 300 s scaled, 3 real s


async def test_a_run_outlasts_a_foreign_client_draining_the_bucket(caplog):
    """Another application holds the bucket full for 100 portal seconds (1 real s): the
    list waits it out, logs one warning and one all-clear, and reports the time waited."""
    async with EmulatedPortal(deals=3000, plan="standard", time_scale=SCALE) as portal:
        code = portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
        async with BitrixClient(portal.webhook_url, limits=STANDARD, retry=FAST_RETRY) as client:
            portal.faults.add("foreign_client", delay_s=1.0)
            with caplog.at_level(logging.INFO, logger="bitrix_core"):
                started = time.monotonic()
                rows = await client.get_all("crm.deal.list", {"select": ["ID"]}, verify=True)
                elapsed = time.monotonic() - started
        assert len({row["ID"] for row in rows}) == len(rows) == 3000
        refused = portal.counters.total().status_503
        assert 0 < refused == client.stats.limit_errors < 60  # backed off, not hammering
        assert client.stats.query_limit_wait_s >= 0.9 and elapsed >= 0.9
    messages = [r.getMessage() for r in caplog.records]
    starts = [m for m in messages if m.startswith("QUERY_LIMIT_EXCEEDED")]
    assert len(starts) == 1 and any(m.startswith("request bucket free again") for m in messages)
    assert not any(code in m for m in messages)


async def test_a_bucket_held_longer_than_the_patience_fails_naming_the_option():
    limits = replace(STANDARD, query_limit_patience_s=0.3)
    async with (
        EmulatedPortal(deals=500, plan="standard", time_scale=SCALE) as portal,
        BitrixClient(portal.webhook_url, limits=limits, retry=FAST_RETRY) as client,
    ):
        portal.faults.add("foreign_client", delay_s=5.0)
        started = time.monotonic()
        with pytest.raises(QueryLimitExceededError) as single:
            await client.call("crm.deal.get", {"id": 1})
        with pytest.raises(QueryLimitExceededError) as listed:
            await client.get_all("crm.deal.list", {"select": ["ID"]})
        elapsed = time.monotonic() - started
    assert "query_limit_patience_s=0.3" in str(single.value)
    assert "query_limit_patience_s=0.3" in str(listed.value)
    assert 0.3 <= elapsed < 2.5  # the second call's streak had already run out


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_backoff_doubles_per_round_caps_at_a_drained_bucket_and_has_a_patience():
    fake = FakeTime()
    limits = Limits(bucket_size=50, drain_per_s=2.0, query_limit_patience_s=120.0)
    throttle = Throttle(limits, clock=fake.clock, sleep=fake.sleep)
    delays = []
    for _ in range(9):
        delay = await throttle.on_query_limit()
        assert delay is not None
        assert await throttle.on_query_limit() == pytest.approx(delay)  # same round
        waited = await throttle.reserve(["crm.deal.list"])
        assert waited == pytest.approx(delay)  # the bucket is held for the delay
        delays.append(delay)
    for round_, delay in enumerate(delays):  # 0.5 s doubling, capped at the bucket's 25 s
        step = min(0.5 * 2**round_, 25.0)
        assert step / 2 <= delay <= step  # jittered down by up to half
    assert throttle.burst < limits.burst  # the others' share is left to them
    fake.now += 120
    assert await throttle.on_query_limit() is None  # out of patience
    throttle.on_success()
    assert throttle.limit_streak_s == 0.0


TIGHT_PLAN = Plan("tight", bucket_size=None, drain_per_s=0.0, operating_limit_s=30.0)
TWO_SECOND_CALLS = CostModel(base_s=2.0, per_row_s=0.0, count_s=0.0, offset_s=0.0)


@pytest.mark.slow  # two seconds of paced use first
async def test_pacing_goes_on_after_the_reset_time_passes_with_no_fresh_answer():
    """Past `operating_reset_at` only the OLDEST basket has dropped out: a burst sent then
    must still be paced (it went out at once, with no wait, and overspent the budget by up
    to 1.4 times). The burst is larger than the whole budget, so it is paced however the
    paced use before it left the window."""
    scale = 0.002  # one 60 s basket = 0.12 s, the window 1.2 s; a call costs 4 ms of 60 ms
    limits = Limits(bucket_size=10_000, drain_per_s=10_000.0, operating_budget_s=30.0)
    async with (
        EmulatedPortal(deals=5, plan=TIGHT_PLAN, time_scale=scale, cost=TWO_SECOND_CALLS) as portal,
        BitrixClient(portal.webhook_url, limits=limits.scaled(scale), retry=FAST_RETRY) as client,
    ):
        params = {"select": ["ID"], "start": -1}
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # paced use spread over every basket
            await client.call("crm.deal.list", params)
        record = await client.throttle.backend.get_budget("crm.deal.list")
        await asyncio.sleep(max(0.0, record.reset_at - time.monotonic()) + 0.005)
        waited_before, burst_started = client.stats.throttle_wait_s, time.monotonic()
        # 20 calls hold 80 ms of a 60 ms budget: some must wait, whatever was spent before
        await asyncio.gather(*(client.call("crm.deal.list", params) for _ in range(20)))
        burst_s = time.monotonic() - burst_started
        used = portal.limits.operating.used(("webhook", "crm.deal.list"), time.time())
    assert client.stats.throttle_wait_s > waited_before and burst_s >= 0.12  # paced: a basket
    assert used <= 30 * scale * 1.1  # without pacing: up to 1.4 times the budget
    assert portal.counters["crm.deal.list"].status_429 == 0
