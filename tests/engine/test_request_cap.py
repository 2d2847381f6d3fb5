"""Batches stay under the portal's 60 s cap on one request (b24restdocs limits.md: "one REST
request must finish within 60 seconds"; past it the emulator answers 500
INTERNAL_SERVER_ERROR), and a request cut there is not resent as it was.

tasks.task.list pages cost 1.25 s each under the calibrated costs: 48 of them in one batch
pass the cap. Over real HTTP against the emulator on a fast time scale."""

import contextlib
import time

from bitrix_core import BitrixClient, Limits
from bitrix_core.emulator import EmulatedPortal, Plan
from bitrix_core.emulator.sizes import PortalSizes
from bitrix_core.errors import BitrixError

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
