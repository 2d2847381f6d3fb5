"""Raw-HTTP conformance of the limits: request bucket, operating budgets, time scale, cost."""

import asyncio
import json
import time

import aiohttp
import pytest

from bitrix_core.emulator import CostModel, EmulatedPortal, Plan
from bitrix_core.emulator.limits import LeakyBucket, OperatingBudget

# 3 portal seconds per command, budget 5 s in 2 baskets of 60 s: the 2nd call crosses.
TINY = Plan("tiny", bucket_size=None, drain_per_s=0.0, operating_limit_s=5.0, baskets=2)
FLAT = CostModel(base_s=3.0, per_row_s=0.0, count_s=0.0, offset_s=0.0)


async def _call(session, url, **kwargs) -> tuple[int, dict]:
    async with session.post(url, **kwargs) as response:
        return response.status, json.loads(await response.text())


async def test_burst_over_the_bucket_gets_503_and_does_not_run():
    async with EmulatedPortal(deals=60, plan="standard") as portal, aiohttp.ClientSession() as s:
        url = portal.webhook_url + "crm.deal.get"
        results = await asyncio.gather(*[_call(s, url, json={"id": 1}) for _ in range(56)])
        statuses = [status for status, _ in results]
        refused = [body for status, body in results if status == 503]
        assert statuses.count(200) in range(50, 53)  # 50 + what drained at 2/s meanwhile
        assert refused and all(
            body == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
            for body in refused)
        counts = portal.counters["crm.deal.get"]
        assert counts.status_503 == len(refused)
        assert counts.rows == statuses.count(200)  # refused requests did not run


async def test_batch_is_one_request_in_the_bucket():
    async with EmulatedPortal(deals=60, plan="standard") as portal, aiohttp.ClientSession() as s:
        cmd = {f"c{i}": "crm.deal.get?id=1" for i in range(50)}
        for _ in range(3):
            status, body = await _call(s, portal.webhook_url + "batch", json={"cmd": cmd})
            assert status == 200 and len(body["result"]["result"]) == 50
        assert portal.limits.bucket.level(time.monotonic()) <= 3


async def test_time_scale_speeds_up_the_drain():
    async with EmulatedPortal(deals=60, plan="standard", time_scale=0.1) as portal, \
            aiohttp.ClientSession() as s:
        url = portal.webhook_url + "crm.deal.get"
        results = await asyncio.gather(*[_call(s, url, json={"id": 1}) for _ in range(80)])
        assert any(status == 503 for status, _ in results)
        await asyncio.sleep(0.5)  # 20 per real second at time_scale 0.1 -> ~10 free slots
        statuses = [(await _call(s, url, json={"id": 1}))[0] for _ in range(8)]
        assert statuses == [200] * 8


async def test_operating_budget_crossing_call_completes_then_429_until_reset():
    async with EmulatedPortal(deals=60, plan=TINY, cost=FLAT, time_scale=0.01) as portal, \
            aiohttp.ClientSession() as s:
        url = portal.webhook_url + "crm.deal.get"
        first = await _call(s, url, json={"id": 1})
        second = await _call(s, url, json={"id": 1})
        assert first[0] == second[0] == 200
        assert first[1]["time"]["processing"] == pytest.approx(0.03)
        assert second[1]["time"]["operating"] == pytest.approx(0.06)
        reset_at = second[1]["time"]["operating_reset_at"]
        assert time.time() < reset_at <= time.time() + 1.2 + 0.01
        status, body = await _call(s, url, json={"id": 1})
        assert status == 429 and body["error"] == "OPERATION_TIME_LIMIT" and "time" not in body
        other = await _call(s, portal.webhook_url + "crm.deal.list", json={"start": -1})
        assert other[0] == 200  # the budget is per method
        await asyncio.sleep(max(0.0, reset_at - time.time()) + 0.02)
        assert (await _call(s, url, json={"id": 1}))[0] == 200
        assert portal.counters["crm.deal.get"].status_429 == 1


async def test_batch_subcommands_are_charged_and_blocked_per_method():
    async with EmulatedPortal(deals=60, plan=TINY, cost=FLAT, time_scale=0.01) as portal, \
            aiohttp.ClientSession() as s:
        cmd = {"a": "crm.deal.get?id=1", "b": "crm.deal.get?id=2", "c": "crm.deal.get?id=3",
               "d": "crm.deal.list?start=-1"}
        status, body = await _call(s, portal.webhook_url + "batch", json={"cmd": cmd})
        sections = body["result"]
        assert status == 200
        assert set(sections["result"]) == {"a", "b", "d"}
        assert sections["result_error"]["c"]["error"] == "OPERATION_TIME_LIMIT"
        assert sections["result_time"]["b"]["operating"] == pytest.approx(0.06)
        assert sections["result_time"]["d"]["operating"] == pytest.approx(0.03)
        assert body["time"]["operating"] == 0  # not charged to `batch`
        assert body["time"]["processing"] == pytest.approx(0.09)
        assert body["time"]["duration"] >= 0.09  # processing is spent as latency
        counts = portal.counters["crm.deal.get"]
        assert (counts.status_429, counts.subcommands, counts.batches) == (1, 3, 1)
        assert counts.operating_s == pytest.approx(0.06)


async def test_unlimited_plan_has_no_bucket_and_no_operating_fields():
    async with EmulatedPortal(deals=60, plan="unlimited") as portal, aiohttp.ClientSession() as s:
        url = portal.webhook_url + "crm.deal.get"
        results = await asyncio.gather(*[_call(s, url, json={"id": 1}) for _ in range(70)])
        assert {status for status, _ in results} == {200}
        assert "operating" not in results[0][1]["time"]


async def test_latency_is_the_cost_model_times_the_time_scale():
    cost = CostModel(base_s=0.4, per_row_s=0.0, count_s=0.0, offset_s=0.0)
    async with EmulatedPortal(deals=60, plan="unlimited", cost=cost, time_scale=0.5) as portal, \
            aiohttp.ClientSession() as s:
        started = time.perf_counter()
        status, body = await _call(s, portal.webhook_url + "crm.deal.get", json={"id": 1})
        assert status == 200
        assert body["time"]["processing"] == pytest.approx(0.2)
        assert time.perf_counter() - started >= 0.2


def test_bucket_and_budget_arithmetic():
    bucket = LeakyBucket(size=2, drain_per_s=1.0)
    assert [bucket.try_acquire(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.try_acquire(1.0) and not bucket.try_acquire(1.0)
    budget = OperatingBudget(limit_s=1.0, basket_s=10.0, baskets=3)
    budget.spend("k", 1.0, now=5.7)  # the window runs from the first call's whole second
    assert budget.blocked("k", now=34.9) and budget.reset_at("k", now=34.9) == 35.0
    assert not budget.blocked("k", now=35.0)


async def test_operating_reset_at_is_the_first_calls_whole_second_plus_ten_minutes():
    # b24restdocs settings/performance/limits.md: `"operating_reset_at": 1778747792` beside
    # `"start": 1778747192.910734`; "if the first call in the basket started at 10:05:20
    # ..., the value operating_reset_at will correspond to 10:15:20".
    async with EmulatedPortal(deals=5, plan="standard") as portal, aiohttp.ClientSession() as s:
        url = portal.webhook_url + "crm.deal.get"
        _, first = await _call(s, url, json={"id": 1})
        await asyncio.sleep(0.3)
        _, second = await _call(s, url, json={"id": 2})
        reset = first["time"]["operating_reset_at"]
        assert type(reset) is int
        assert int(first["time"]["start"]) + 600 <= reset <= int(first["time"]["finish"]) + 600
        assert second["time"]["operating_reset_at"] == reset  # still the window's first call
