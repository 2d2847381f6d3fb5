"""The cost model per entity family reproduces the measured data points, and a portal
charges each command by its family under the chosen profile."""

import json

import aiohttp
import pytest

from bitrix_core.emulator import PROFILES, CostModel, CostProfile, EmulatedPortal
from bitrix_core.emulator.costs import family_of

CALIBRATED = PROFILES["calibrated"]


def _page(profile: CostProfile, method: str, *, counted: int = 0, offset: int = 0,
          rows: int = 50) -> float:
    return profile.processing(method, rows=rows, counted=counted, offset=offset)


def test_calibrated_classic_lists_match_the_7531_lead_measurements():
    # /work/shared/bitrix24-api.md section 4: counted ID,TITLE pages on 7,531 leads took
    # 5.5-12 ms up to offset 450, ~30 ms from offset 500, ~46 ms near offset 7,500.
    for offset in (0, 200, 450):
        assert 0.0055 <= _page(CALIBRATED, "crm.lead.list", counted=7531, offset=offset) <= 0.012
    assert _page(CALIBRATED, "crm.lead.list", counted=7531, offset=500) == pytest.approx(0.030,
                                                                                       abs=0.003)
    assert _page(CALIBRATED, "crm.lead.list", counted=7531, offset=7500) == pytest.approx(0.046,
                                                                                        abs=0.003)
    # the COUNT of a small table stays under 0.73 us per row in every profile
    for profile in PROFILES.values():
        assert profile.model_for("crm.lead.list").count_seconds(7531) <= 0.0055 + 1e-9


def test_calibrated_crm_item_matches_the_documented_example():
    # b24restdocs settings/performance/huge-data.md: 2,387,743 items, 49.9 s with the COUNT,
    # processing 0.0685 s with start=-1; the API digest: ~31 ms for a 3-item answer.
    assert _page(CALIBRATED, "crm.item.list") == pytest.approx(0.068, abs=0.001)
    assert _page(CALIBRATED, "crm.item.list", rows=3) == pytest.approx(0.031, abs=0.001)
    with_count = _page(CALIBRATED, "crm.item.list", counted=2_387_743)
    assert with_count == pytest.approx(49.9, rel=0.01)


def test_count_price_per_row_grows_with_the_table():
    model = CALIBRATED.model_for("crm.deal.list")
    per_row = [model.count_seconds(n) / n for n in (1_000, 10_000, 200_000, 2_387_743)]
    assert per_row == sorted(per_row)
    assert per_row[-1] == pytest.approx(20.86e-6, rel=0.01)
    assert per_row[1] < 1e-6  # cheap on small tables


def test_tasks_and_writes_cost_what_real_portals_report():
    # digest: tasks.task.list pages 0.9-1.6 s; crm.contact.add ~94 ms; crm.item.add ~44 ms
    assert [_page(PROFILES[p], "tasks.task.list") for p in
            ("optimistic", "calibrated", "pessimistic")] == pytest.approx([0.9, 1.25, 1.6])
    assert _page(CALIBRATED, "crm.contact.add", rows=0) == pytest.approx(0.094)
    assert _page(CALIBRATED, "crm.item.add", rows=0) == pytest.approx(0.044)


@pytest.mark.parametrize("method", ["crm.deal.list", "crm.item.list", "crm.activity.list",
                                    "tasks.task.list", "user.get", "crm.deal.add"])
def test_profiles_are_ordered(method):
    pages = [_page(PROFILES[p], method, counted=50_000) for p in
             ("optimistic", "calibrated", "pessimistic")]
    assert pages == sorted(pages)


def test_families():
    assert [family_of(m) for m in ("crm.deal.list", "crm.status.list", "crm.item.list",
                                   "crm.item.update", "crm.activity.list", "crm.activity.add",
                                   "tasks.task.list", "user.get", "department.get",
                                   "crm.contact.add")] == [
        "classic", "classic", "item", "item_write", "activity", "classic_write", "task",
        "user", "user", "classic_write"]
    with pytest.raises(ValueError, match="cost profile"):
        CostProfile.for_name("cloud")


@pytest.mark.parametrize("profile", ["calibrated", "pessimistic"])
async def test_portal_charges_each_command_by_its_family(profile):
    scale = 0.1
    async with EmulatedPortal(deals=60, plan="unlimited", time_scale=scale,
                              cost_profile=profile) as portal, aiohttp.ClientSession() as s:
        cmd = {"d": "crm.deal.list?start=-1", "i": "crm.item.list?entityTypeId=128&start=-1",
               "t": "tasks.task.list?start=-1"}
        async with s.post(portal.webhook_url + "batch", json={"cmd": cmd}) as response:
            body = json.loads(await response.text())
        times = body["result"]["result_time"]
        expected = PROFILES[profile]
        for key, method in (("d", "crm.deal.list"), ("i", "crm.item.list"),
                            ("t", "tasks.task.list")):
            rows = len(body["result"]["result"][key]) if key == "d" else None
            rows = rows if rows is not None else len(next(iter(
                body["result"]["result"][key].values())))
            cost = _page(expected, method, rows=rows) * scale
            assert times[key]["processing"] == pytest.approx(cost, rel=1e-3)


async def test_one_cost_model_prices_every_method():
    flat = CostModel(base_s=0.5, per_row_s=0.0, count_s=0.0)
    async with EmulatedPortal(deals=5, plan="unlimited", time_scale=0.01, cost=flat) as portal, \
            aiohttp.ClientSession() as s:
        async with s.post(portal.webhook_url + "tasks.task.list", json={}) as response:
            body = json.loads(await response.text())
        assert body["time"]["processing"] == pytest.approx(0.005)
