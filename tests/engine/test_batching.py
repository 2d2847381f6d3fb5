"""Batching against the emulator over real HTTP: packing, per-method budgets, the fallback ladder."""

import asyncio

import pytest

from bitrix_core.batching import Batcher, CommandResult
from bitrix_core.client import BitrixClient
from bitrix_core.emulator.limits import CostModel, Plan
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import BitrixBadRequestError, BitrixTimeoutError
from bitrix_core.stats import CallStats, ListStats
from bitrix_core.throttle import Limits
from tests.engine.conftest import FAST_RETRY, deal_ids

UNLIMITED = Limits.for_plan("unlimited")


def client_for(portal: EmulatedPortal, **options) -> BitrixClient:
    options.setdefault("limits", UNLIMITED)
    options.setdefault("retry", FAST_RETRY)
    return BitrixClient(portal.webhook_url, **options)


async def test_commands_of_concurrent_callers_share_batches():
    async with EmulatedPortal(deals=130, plan="unlimited") as portal, client_for(portal) as client:
        stats = CallStats()
        ids = await deal_ids(client, 120)
        results = await client.call_many([("crm.deal.get", {"id": i}) for i in ids], stats=stats)
        assert [int(r["ID"]) for r in results] == ids
        assert portal.counters["batch"].requests == 3  # 50 + 50 + 20
        assert portal.counters["crm.deal.get"].subcommands == 120
        assert (stats.requests, stats.batches, stats.subcommands, stats.single_requests) == (
            3,
            3,
            120,
            0,
        )
        assert (stats.retries, stats.limit_errors, stats.fallbacks) == (0, 0, [])
        assert client.stats.as_dict()["batches"] == 3

        # Two independent callers: their commands travel in one batch.
        deal_stats, lead_stats = CallStats(), CallStats()
        deal, lead = await asyncio.gather(
            client.batcher.run("crm.deal.get", {"id": 7}, stats=deal_stats),
            client.batcher.run("crm.lead.list", {"select": ["ID"], "start": -1}, stats=lead_stats),
        )
        assert isinstance(deal, CommandResult) and deal.result["ID"] == "7"
        assert isinstance(lead.result, list)
        assert portal.counters["batch"].requests == 4
        assert deal_stats.batches == lead_stats.batches == 1
        assert deal_stats.subcommands == lead_stats.subcommands == 1


async def test_batch_operating_time_is_charged_to_each_subcommand_method():
    async with EmulatedPortal(deals=60, plan="standard", time_scale=0.01) as portal:
        limits = Limits.for_plan("standard").scaled(0.01)
        async with client_for(portal, limits=limits) as client:
            await client.call_many(
                [("crm.deal.list", {"start": -1})] * 3 + [("crm.deal.get", {"id": 1})] * 2
            )
            backend = client.throttle.backend
            listing = await backend.get_budget("crm.deal.list")
            getting = await backend.get_budget("crm.deal.get")
            assert await backend.get_budget("batch") is not None  # the envelope's own block
        assert listing.operating == pytest.approx(
            portal.counters["crm.deal.list"].operating_s, rel=1e-6
        )
        assert getting.operating == pytest.approx(
            portal.counters["crm.deal.get"].operating_s, rel=1e-6
        )
        assert listing.operating > getting.operating > 0


async def test_results_and_errors_come_back_in_input_order():
    async with EmulatedPortal(deals=10, plan="unlimited") as portal, client_for(portal) as client:
        results = await client.call_many(
            [
                ("crm.deal.get", {"id": 1}),
                ("crm.deal.get", {"id": 999_999}),
                ("crm.deal.get", {"id": 3}),
            ]
        )
        assert results[0]["ID"] == "1" and results[2]["ID"] == "3"
        assert isinstance(results[1], BitrixBadRequestError)
        assert results[1].method == "crm.deal.get"
        assert client.stats.retries == 0


async def test_failed_subcommands_alone_are_resent():
    async with EmulatedPortal(deals=10, plan="unlimited") as portal, client_for(portal) as client:
        portal.faults.add("query_limit", method="crm.deal.get", times=1)
        portal.faults.add("internal_error", method="crm.lead.get", times=1)
        stats = CallStats()
        commands = [("crm.deal.get", {"id": i}) for i in (1, 3, 5, 7, 9)]
        commands += [("crm.lead.get", {"id": i}) for i in range(1, 4)]
        results = await client.call_many(commands, stats=stats)
        assert [r["ID"] for r in results] == ["1", "3", "5", "7", "9", "1", "2", "3"]
        # Each failed command ran once more, nothing else did.
        assert portal.counters["crm.deal.get"].subcommands == 6
        assert portal.counters["crm.lead.get"].subcommands == 4
        assert (stats.batches, stats.subcommands, stats.retries, stats.limit_errors) == (
            2,
            10,
            2,
            1,
        )
        assert stats.fallbacks == ["retry_failed"]


async def test_whole_batch_failure_shrinks_then_goes_single():
    """40 reads meet six failing requests: the batch shrinks, commands that failed twice go
    alone; failed batches never reached the method, so nothing ran twice."""
    async with EmulatedPortal(deals=60, plan="unlimited") as portal, client_for(portal) as client:
        ids = await deal_ids(client, 40)
        portal.faults.add("html_502", method="crm.deal.get", times=6)
        stats = CallStats()
        results = await client.call_many([("crm.deal.get", {"id": i}) for i in ids], stats=stats)
        assert [int(r["ID"]) for r in results] == ids
        assert stats.fallbacks == ["shrink", "single"]
        # How re-queued commands regroup depends on timing, so which requests meet the six
        # faults does too: assert what holds for every interleaving.
        assert stats.batches >= 3  # the 40 failed, then smaller batches
        assert stats.requests == stats.batches + stats.single_requests
        assert portal.counters["batch"].requests == stats.batches
        served = portal.counters["crm.deal.get"]
        assert served.rows == 40  # every deal served once: a failed batch never ran
        assert client.batcher.batch_size < 50


async def test_write_with_unknown_outcome_is_never_resent():
    async with EmulatedPortal(deals=10, plan="unlimited") as portal:
        async with client_for(portal, timeout=0.2) as client:
            portal.faults.add("slow", method="crm.deal.update", times=1, delay_s=0.5)
            stats = CallStats()
            results = await client.call_many(
                [
                    ("crm.deal.get", {"id": 1}),
                    ("crm.deal.update", {"id": 5, "fields": {"TITLE": "renamed"}}),
                    ("crm.deal.get", {"id": 3}),
                ],
                stats=stats,
            )
            await asyncio.sleep(0.4)  # let the slow batch finish on the server side
        assert results[0]["ID"] == "1" and results[2]["ID"] == "3"
        assert isinstance(results[1], BitrixTimeoutError)
        assert portal.counters["crm.deal.update"].subcommands == 1  # ran once, not resent
        assert "shrink" in stats.fallbacks


async def test_method_not_allowed_in_batch_is_sent_alone():
    async with EmulatedPortal(deals=10, plan="unlimited") as portal, client_for(portal) as client:
        nested = {"halt": 0, "cmd": {"a": "crm.deal.get?id=4"}}
        stats = CallStats()
        inner, deal = await client.call_many(
            [("batch", nested), ("crm.deal.get", {"id": 5})], stats=stats
        )
        assert inner["result"]["a"]["ID"] == "4"
        assert deal["ID"] == "5"
        assert stats.fallbacks == ["single"]
        # The refused command went alone: as its own (outer) batch request.
        assert portal.counters["batch"].requests == stats.requests == 2


async def test_subcommand_429_waits_for_the_reset_and_is_resent():
    scale = 0.001  # a basket is 60 ms, the window 0.6 s
    plan = Plan("tight", bucket_size=None, drain_per_s=0.0, operating_limit_s=30.0)
    cost = CostModel(base_s=2.0, per_row_s=0.0, count_s=0.0, offset_s=0.0)
    async with EmulatedPortal(deals=40, plan=plan, time_scale=scale, cost=cost) as portal:
        limits = Limits(bucket_size=10_000, drain_per_s=10_000.0, operating_budget_s=30.0).scaled(
            scale
        )
        async with client_for(portal, limits=limits) as client:
            stats = CallStats()
            ids = await deal_ids(client, 30)  # 60 s of work against a 30 s budget
            results = await client.call_many(
                [("crm.deal.get", {"id": i}) for i in ids], stats=stats
            )
        assert [int(r["ID"]) for r in results] == ids
        served = portal.counters["crm.deal.get"]
        assert served.subcommands - served.status_429 == 30
        assert stats.limit_errors == served.status_429 > 0
        assert "retry_failed" in stats.fallbacks
        assert stats.throttle_wait_s > 0


async def test_list_runs_of_two_entities_share_batches():
    async with EmulatedPortal(deals=300, plan="unlimited") as portal, client_for(portal) as client:
        deal_run = client.list("crm.deal.list", {"select": ["ID"]})
        contact_run = client.list("crm.contact.list", {"select": ["ID"]})

        async def drain(run):
            return [row async for page in run for row in page.rows]

        deals, contacts = await asyncio.gather(drain(deal_run), drain(contact_run))
        assert len(deals) == 300 and len({r["ID"] for r in deals}) == 300
        assert contacts and len({r["ID"] for r in contacts}) == len(contacts)
        assert isinstance(deal_run.stats, ListStats)
        shared = (
            portal.counters["crm.deal.list"].batches + portal.counters["crm.contact.list"].batches
        )
        assert portal.counters["batch"].requests < shared


async def test_batcher_validates_before_queueing():
    async with EmulatedPortal(deals=1, plan="unlimited") as portal, client_for(portal) as client:
        with pytest.raises(ValueError):
            await client.batcher.run("no such method!", {})
        assert portal.counters.total().requests == 0
    with pytest.raises(ValueError):
        Batcher(client._requester, max_batch=51)
