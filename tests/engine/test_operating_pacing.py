"""The client paces an expensive method to its operating budget: no 429, and close to the
fastest the budget allows (tasks.task.list pages cost 1.25 s under the calibrated costs)."""

import math
import time

import pytest

from bitrix_core import BitrixClient, Limits
from bitrix_core.emulator import EmulatedPortal, Plan
from bitrix_core.emulator.sizes import PortalSizes

SCALE = 0.05
# a 120 s budget over a 60 s window (ten 6 s baskets): 240 task pages (300 s) need three
# windows; the first batch (its cost unknown yet) stays well inside one budget
PLAN = Plan("tight", bucket_size=50, drain_per_s=2.0, operating_limit_s=120.0, basket_s=6.0)
LIMITS = Limits(bucket_size=50, drain_per_s=2.0, operating_budget_s=120.0,
                operating_window_s=60.0, basket_s=6.0)


@pytest.mark.slow
async def test_a_budget_bound_export_is_paced_without_429():
    sizes = PortalSizes(deals=50, tasks=12000)
    async with EmulatedPortal(sizes=sizes, plan=PLAN, time_scale=SCALE) as portal:
        async with BitrixClient(portal.webhook_url, limits=LIMITS.scaled(SCALE),
                                verbose=False) as client:
            started = time.perf_counter()
            run = client.list("tasks.task.list", {}, order=None)
            ids = [row["id"] for page in [p async for p in run] for row in page.rows]
            elapsed = time.perf_counter() - started
        served = portal.counters["tasks.task.list"]
    assert sorted(int(i) for i in ids) == portal.store.ids("tasks.task")
    assert served.status_429 == 0 and run.stats.limit_errors == 0
    operating = served.operating_s / SCALE
    windows = math.ceil(operating / PLAN.operating_limit_s) - 1
    fastest = windows * PLAN.basket_s * PLAN.baskets * SCALE
    assert fastest > 0  # the budget, not the bucket, bounds this export
    assert fastest <= elapsed < 2 * fastest + 1.0
