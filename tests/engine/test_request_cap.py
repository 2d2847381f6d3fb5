"""Batches stay under the portal's 60 s cap on one request (b24restdocs limits.md: "one REST
request must finish within 60 seconds"; past it the emulator answers 500
INTERNAL_SERVER_ERROR), and a request cut there is not resent as it was.

tasks.task.list pages cost 1.25 s each under the calibrated costs: 48 of them in one batch
pass the cap. A method of unknown cost is probed by one batch while its other commands wait
(then go at the size the learnt cost allows); a batch the client's own timeout cut is priced
like a cut one; a method held by a 429 does not hold back the others. Over real HTTP against
the emulator on a fast time scale."""

import asyncio
import contextlib
import math
import time

import aiohttp

from bitrix_core import BitrixClient, Limits
from bitrix_core.emulator import EmulatedPortal, Plan
from bitrix_core.emulator.sizes import PortalSizes
from bitrix_core.errors import BitrixError
from bitrix_core.method_costs import UNKNOWN_COMMANDS

SCALE = 0.01
LIMITS = Limits.for_plan("standard").scaled(SCALE)


def _pages(count: int) -> list[tuple[str, dict[str, object]]]:
    """`count` distinct task pages (offsets), each a command of its own."""
    return [("tasks.task.list", {"start": 50 * i}) for i in range(count)]


async def test_an_ordered_task_export_stays_under_the_request_cap():
    # id windows are walked by linked groups that are never split: their size must follow
    # the method's cost, not the 50 a cheap method's group may hold
    sizes = PortalSizes(deals=50, tasks=5000)
    async with EmulatedPortal(sizes=sizes, plan="standard", time_scale=SCALE) as portal:
        async with BitrixClient(portal.webhook_url, limits=LIMITS, verbose=False) as client:
            started = time.perf_counter()
            run = client.list("tasks.task.list", {}, order="id")
            ids = [int(row["id"]) for page in [p async for p in run] for row in page.rows]
            elapsed = time.perf_counter() - started
        total = portal.counters.total()
    assert ids == portal.store.ids("tasks.task")
    assert total.status_500 == 0 and run.stats.retries == 0
    assert elapsed < 10  # 100 pages, 125 portal s of work: no budget wait is needed


async def test_the_first_batch_of_a_method_of_unknown_cost_stays_under_the_cap():
    sizes = PortalSizes(deals=50, tasks=2500)
    async with EmulatedPortal(sizes=sizes, plan="standard", time_scale=SCALE) as portal:
        async with BitrixClient(portal.webhook_url, limits=LIMITS, verbose=False) as client:
            results = await client.call_many(_pages(50))
        total = portal.counters.total()
    assert not [r for r in results if isinstance(r, BaseException)]
    assert total.status_500 == 0
    assert total.batches > 2  # sized from the learnt cost (~8 pages), not 50


async def test_a_request_cut_at_the_cap_is_not_resent_as_it_was():
    # a portal capping requests at 20 s: the first batch (24 pages of unknown cost, 30 s) is
    # cut; the client prices the pages from the cut and sends smaller batches, instead of
    # resending the same batch to be cut again
    plan = Plan("capped", bucket_size=50, drain_per_s=2.0, request_timeout_s=20.0)
    limits = Limits(bucket_size=50, drain_per_s=2.0, request_timeout_s=20.0).scaled(SCALE)
    sizes = PortalSizes(deals=50, tasks=2500)
    async with EmulatedPortal(sizes=sizes, plan=plan, time_scale=SCALE) as portal:
        async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
            results = await client.call_many(_pages(50))
        total = portal.counters.total()
    assert not [r for r in results if isinstance(r, BaseException)]
    assert total.status_500 == 1
    assert [len(r["tasks"]) for r in results] == [50] * 50


async def test_a_refused_first_call_does_not_hold_back_the_batches_after_it():
    # the first call of a method (its cost unknown) answered with an error: the batches of
    # that method queued behind it go at once, not one at a time nor after a basket's wait
    sizes = PortalSizes(deals=50, tasks=500)
    async with (
        EmulatedPortal(sizes=sizes, plan="standard", time_scale=SCALE) as portal,
        BitrixClient(portal.webhook_url, limits=LIMITS, verbose=False) as client,
    ):
        portal.faults.add("invalid_arg_value", method="tasks.task.list", times=1)
        with contextlib.suppress(BitrixError):
            await client.call("tasks.task.list", {})
        started = time.perf_counter()
        results = await client.call_many(_pages(10))
        elapsed = time.perf_counter() - started
    assert not [r for r in results if isinstance(r, BaseException)]
    assert elapsed < LIMITS.basket_s / 2


async def test_commands_waiting_for_a_probe_go_at_the_size_the_learnt_cost_allows():
    # three methods of unknown cost: each one's first batch (24) probes it while its other
    # commands wait; once it answers they go 50 to a batch. (Before: any answer ended every
    # probe, so more batches of 24 went out while the costs were still being learnt.)
    per_method = 150
    async with EmulatedPortal(
        sizes=PortalSizes(deals=per_method, contacts=per_method, leads=per_method),
        plan="standard",
        time_scale=SCALE,
    ) as portal:
        commands = [
            (f"crm.{entity}.get", {"id": row_id})
            for entity in ("deal", "contact", "lead")
            for row_id in portal.store.ids(f"crm.{entity}")
        ]
        async with BitrixClient(portal.webhook_url, limits=LIMITS, verbose=False) as client:
            results = await client.call_many(commands)
        counted = portal.counters
    assert not [r for r in results if isinstance(r, BaseException)]
    assert len(commands) == 3 * per_method
    probes = 3 * UNKNOWN_COMMANDS
    assert counted["batch"].requests == 3 + math.ceil((len(commands) - probes) / 50)
    assert counted.total().status_503 == counted.total().status_429 == 0


async def test_a_batch_the_client_timed_out_is_resent_smaller():
    # the client's own timeout (2 s) is below the portal's cap (6 s): the first batch of
    # task pages (24 x 125 ms = 3 s) gets no answer; its pages are priced from the timeout
    # and resent in batches that end well within it, not at 24 again (nor one by one)
    scale = 0.1
    limits = Limits.for_plan("standard").scaled(scale)
    async with EmulatedPortal(
        sizes=PortalSizes(deals=50, tasks=2500), plan="standard", time_scale=scale
    ) as portal:
        async with BitrixClient(
            portal.webhook_url, limits=limits, verbose=False, timeout=2.0
        ) as client:
            results = await client.call_many(_pages(50))
            retries = client.stats.retries
        counted = portal.counters["tasks.task.list"]
    assert not [r for r in results if isinstance(r, BaseException)]
    assert [len(r["tasks"]) for r in results] == [50] * 50
    assert retries == UNKNOWN_COMMANDS  # the timed-out batch's pages, once each
    assert counted.requests == 0  # none sent on its own
    assert counted.subcommands <= UNKNOWN_COMMANDS + 50


async def test_a_method_refused_with_429_does_not_hold_back_the_other_methods():
    # another client spent crm.contact.list's operating budget (0.5 s here): the first batch
    # of contact pages meets 429 for each page and the pages wait for the reset (a window,
    # 6 s), while deal reads queued behind them go meanwhile (before: the contact batches,
    # requeued first, waited for the budget in front of every batch behind them)
    plan = Plan("tight", bucket_size=50, drain_per_s=2.0, operating_limit_s=0.5)
    limits = Limits(bucket_size=50, drain_per_s=2.0, operating_budget_s=0.5).scaled(SCALE)
    pages = [("crm.contact.list", {"filter": {">ID": i}, "start": -1}) for i in range(48)]
    async with EmulatedPortal(
        sizes=PortalSizes(deals=200, contacts=500), plan=plan, time_scale=SCALE
    ) as portal:
        spent = {f"c{i}": "crm.contact.list?start=-1" for i in range(50)}  # 6 ms each
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                body = {"halt": 0, "cmd": spent}
                async with session.post(f"{portal.webhook_url}batch", json=body) as answer:
                    assert answer.status == 200
        deals = [("crm.deal.get", {"id": i}) for i in portal.store.ids("crm.deal")]
        refused = portal.counters["crm.contact.list"]
        already = refused.status_429
        async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
            contacts = asyncio.ensure_future(client.call_many(pages))
            while refused.status_429 == already and not contacts.done():
                await asyncio.sleep(0.005)
            started = time.perf_counter()  # the contact pages wait for the reset now
            deal_results = await client.call_many(deals)
            deals_s = time.perf_counter() - started
            contact_results = await contacts
        contacts_s = time.perf_counter() - started
    assert not [r for r in [*contact_results, *deal_results] if isinstance(r, BaseException)]
    assert refused.status_429 - already >= UNKNOWN_COMMANDS
    assert deals_s < limits.operating_window_s / 3 < contacts_s
