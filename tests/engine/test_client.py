"""BitrixClient against the emulator over real HTTP: limits, retries, reads vs writes, stats."""

import asyncio
import logging
import time

import pytest

from bitrix_core.auth import OAuthAuth
from bitrix_core.client import BitrixClient
from bitrix_core.emulator.limits import CostModel, Plan
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import (
    BitrixParameterError,
    BitrixServerError,
    BitrixTimeoutError,
    OverloadLimitError,
)
from bitrix_core.requester import RetryPolicy, is_read_method
from bitrix_core.throttle import Limits
from bitrix_core.token_stores import InMemoryTokenStore
from bitrix_core.transport import Transport
from tests.engine.conftest import FAST_RETRY, deal_ids


def test_read_and_write_methods_told_apart():
    for method in (
        "crm.deal.list",
        "crm.deal.get",
        "crm.deal.fields",
        "user.get",
        "crm.item.list",
        "crm.deal.userfield.list",
        "user.search",
        "department.get",
    ):
        assert is_read_method(method), method
    for method in (
        "crm.deal.add",
        "crm.deal.update",
        "crm.deal.delete",
        "crm.item.set",
        "tasks.task.complete",
        "im.notify",
    ):
        assert not is_read_method(method), method


async def test_300_concurrent_calls_receive_no_503():
    # 0.05: 40 requests/s; at 0.01 (200/s) a CPU stall on a loaded CI host bunched the
    # emulator's arrivals in its own event loop and 10 of 300 met its bucket full
    scale = 0.05
    async with EmulatedPortal(deals=20, plan="standard", time_scale=scale) as portal:
        limits = Limits.for_plan("standard").scaled(scale)
        async with BitrixClient(portal.webhook_url, limits=limits, retry=FAST_RETRY) as client:
            ids = await deal_ids(client, 20)
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.call("crm.deal.get", {"id": ids[i % 20]}) for i in range(300))
            )
            elapsed = time.monotonic() - started
        assert [int(r["ID"]) for r in results[:3]] == ids[:3]
        assert portal.counters.total().status_503 == 0
        assert portal.counters["crm.deal.get"].requests == 300
        assert client.stats.requests == client.stats.single_requests == 301
        assert client.stats.limit_errors == client.stats.retries == 0
        # 45 go at once, the other 255 at 200 per second: at least ~1.25 s.
        assert elapsed > 255 / limits.drain_per_s * 0.9


async def test_503_is_resent_and_counted():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add("query_limit", method="crm.deal.get", times=2)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            deal = await client.call("crm.deal.get", {"id": 3})
        assert deal["ID"] == "3"
        assert (client.stats.requests, client.stats.limit_errors, client.stats.retries) == (3, 2, 2)
        assert portal.counters["crm.deal.get"].requests == 3


async def test_overload_fails_at_once():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add("overload", method="crm.deal.get")
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            with pytest.raises(OverloadLimitError):
                await client.call("crm.deal.get", {"id": 1})
        assert portal.counters["crm.deal.get"].requests == 1


async def test_5xx_retried_for_reads_never_for_writes():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add("html_502", method="crm.deal.get", times=2)
        portal.faults.add("internal_error", method="crm.deal.update", times=1)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            assert (await client.call("crm.deal.get", {"id": 3}))["ID"] == "3"
            assert client.stats.retries == 2
            with pytest.raises(BitrixServerError):
                await client.call("crm.deal.update", {"id": 3, "fields": {"TITLE": "x"}})
        assert portal.counters["crm.deal.get"].requests == 3
        assert portal.counters["crm.deal.update"].requests == 1


async def test_timeouts_retried_for_reads_not_writes():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add("slow", method="crm.deal.get", times=1, delay_s=0.6)
        portal.faults.add("slow", method="crm.deal.add", times=1, delay_s=0.6)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), timeout=0.2, retry=FAST_RETRY
        ) as client:
            assert (await client.call("crm.deal.get", {"id": 1}))["ID"] == "1"
            with pytest.raises(BitrixTimeoutError):
                await client.call("crm.deal.add", {"fields": {"TITLE": "new"}})
            assert client.throttle.concurrency_limit < client.throttle.concurrency_ceiling
        assert portal.counters["crm.deal.get"].requests == 2
        assert portal.counters["crm.deal.add"].requests == 1


async def test_retry_budget_is_per_request_and_exhaustion_raises():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add("internal_error", method="crm.deal.get", times=3)
        retry = RetryPolicy(max_retries=2, backoff_s=0.001)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=retry
        ) as client:
            with pytest.raises(BitrixServerError):
                await client.call("crm.deal.get", {"id": 1})  # 3 attempts, all fail
            assert portal.counters["crm.deal.get"].requests == 3
            # The fault is used up; the next request has a full budget of its own.
            portal.faults.add("internal_error", method="crm.deal.get", times=2)
            assert (await client.call("crm.deal.get", {"id": 1}))["ID"] == "1"
        assert portal.counters["crm.deal.get"].requests == 6


TIGHT_PLAN = Plan("tight", bucket_size=None, drain_per_s=0.0, operating_limit_s=30.0)
TWO_SECOND_CALLS = CostModel(base_s=2.0, per_row_s=0.0, count_s=0.0, offset_s=0.0)


async def run_tight(limits: Limits, calls: int) -> tuple[BitrixClient, EmulatedPortal, float]:
    """`calls` sequential 2 s calls against a 30 s budget, time scale 0.001 (window 0.6 s)."""
    scale = 0.001
    async with (
        EmulatedPortal(deals=5, plan=TIGHT_PLAN, time_scale=scale, cost=TWO_SECOND_CALLS) as portal,
        BitrixClient(portal.webhook_url, limits=limits.scaled(scale), retry=FAST_RETRY) as client,
    ):
        started = time.monotonic()
        for _ in range(calls):
            await client.call("crm.deal.list", {"select": ["ID"], "start": -1})
        return client, portal, time.monotonic() - started


async def test_operating_budget_slows_down_before_it_runs_out():
    limits = Limits(bucket_size=10_000, drain_per_s=10_000.0, operating_budget_s=30.0)
    client, portal, elapsed = await run_tight(limits, 20)  # 40 s of work, 30 s budget
    counts = portal.counters["crm.deal.list"]
    assert counts.requests == 20
    assert counts.status_429 == 0
    assert client.stats.throttle_wait_s > 0.05
    assert elapsed < 2.0


async def test_operation_time_limit_waits_until_reset(caplog):
    unaware = Limits(bucket_size=10_000, drain_per_s=10_000.0, operating_budget_s=float("inf"))
    with caplog.at_level(logging.WARNING, logger="bitrix_core"):
        client, portal, elapsed = await run_tight(unaware, 20)
    counts = portal.counters["crm.deal.list"]
    assert counts.requests - counts.status_429 == 20
    assert client.stats.limit_errors == counts.status_429 >= 1
    assert client.stats.retries == counts.status_429
    waits = [r for r in caplog.records if "OPERATION_TIME_LIMIT" in r.getMessage()]
    assert 1 <= len(waits) <= counts.status_429
    assert elapsed < 2.0


async def test_bad_input_is_refused_before_sending():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        async with BitrixClient(portal.webhook_url, limits=Limits.for_plan("unlimited")) as client:
            with pytest.raises(BitrixParameterError):
                await client.call("crm.deal.list", {"start": -5})
            with pytest.raises(BitrixParameterError):
                await client.call("not a method", {})
            with pytest.raises(BitrixParameterError):
                await client.call_many(
                    [("crm.deal.get", {"id": 1}), ("crm.deal.list", {"select": 5})]
                )
        assert portal.counters.total().requests == 0
    with pytest.raises(BitrixParameterError):
        BitrixClient()


async def test_secret_never_in_repr_or_errors():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        code = portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
        portal.faults.add("internal_error", method="crm.deal.update", times=1)
        async with BitrixClient(portal.webhook_url, limits=Limits.for_plan("unlimited")) as client:
            assert code not in repr(client)
            with pytest.raises(BitrixServerError) as caught:
                await client.call("crm.deal.update", {"id": 1, "fields": {"TITLE": "x"}})
        assert code not in str(caught.value)


async def test_oauth_expired_token_refreshed_once_for_many_concurrent_requests():
    async with EmulatedPortal(deals=10, plan="unlimited") as portal:
        app = portal.oauth_client()
        auth = OAuthAuth(
            client_id=app.client_id,
            client_secret=app.client_secret,
            token_store=InMemoryTokenStore(),
            oauth_server=app.portal_url,
        )
        async with Transport(timeout=5) as transport:
            await auth.exchange_code(portal.issue_auth_code(), transport)
        async with BitrixClient(auth=auth, limits=Limits.for_plan("unlimited")) as client:
            portal.oauth.expire_access_tokens()
            singles = await asyncio.gather(
                *(client.call("crm.deal.get", {"id": 1}) for _ in range(10))
            )
            portal.oauth.expire_access_tokens()
            batched = await client.call_many([("crm.deal.get", {"id": 3})] * 5)
        assert {d["ID"] for d in singles} == {"1"} and {d["ID"] for d in batched} == {"3"}
        assert auth.refresh_count == 2
        assert client.stats.retries == 0  # a renewal is not a retry
        assert auth.tokens.access_token not in repr(client)
