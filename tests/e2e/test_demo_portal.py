"""The example's demo portal: persisted, deterministic, changing once per run, served over HTTP."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from bitrix24_example.demo_portal import CHANGED_ENTITIES, HISTORY_DAYS, DemoPortal

from bitrix_core import BitrixClient, Limits


def snapshot(portal: DemoPortal) -> dict[str, list[dict]]:
    store = portal.load()
    return {entity: store.raw_rows(entity) for entity in (*CHANGED_ENTITIES, "crm.activity")}


def test_reloading_gives_the_same_rows_after_changes(tmp_path):
    portal = DemoPortal(data_dir=tmp_path)
    portal.advance(key="run-1")
    portal.advance(key="run-2", adds=1, updates=2)
    first = snapshot(portal)
    again = snapshot(DemoPortal(data_dir=tmp_path))  # a new process would do exactly this
    assert first == again


def test_each_key_changes_the_portal_once(tmp_path):
    portal = DemoPortal(data_dir=tmp_path)
    before = portal.load().ids("crm.deal")
    change = portal.advance(key="run-1", adds=3, updates=6)
    assert portal.advance(key="run-1", adds=9) == change
    assert [c.key for c in portal.changes()] == ["run-1"]
    store = portal.load()
    deals = {row["ID"]: row for row in store.raw_rows("crm.deal")}
    assert len(deals) == len(before) + 3
    stamped = [i for i, row in deals.items() if row["DATE_MODIFY"] == change.at]
    assert len(stamped) == 3 + 6  # the new deals and the updated ones carry the change's time


def test_history_is_squeezed_into_recent_days(tmp_path):
    portal = DemoPortal(data_dir=tmp_path)
    store = portal.load()
    oldest = min(row["DATE_MODIFY"] for row in store.raw_rows("crm.deal"))
    newest = max(row["DATE_MODIFY"] for row in store.raw_rows("crm.deal"))
    assert time.time() - oldest <= HISTORY_DAYS * 86400 + 60
    assert newest <= time.time()
    assert portal.first_day() <= datetime.fromtimestamp(oldest, UTC).date()
    assert portal.first_day() >= (datetime.now(UTC) - timedelta(days=HISTORY_DAYS + 1)).date()
    created_after_change = [
        row["ID"] for row in store.raw_rows("crm.deal") if row["DATE_CREATE"] > row["DATE_MODIFY"]
    ]
    assert created_after_change == []


def test_bad_change_sizes_are_refused_before_anything_is_written(tmp_path):
    portal = DemoPortal(data_dir=tmp_path)
    with pytest.raises(ValueError, match="negative"):
        portal.advance(key="x", adds=-1)
    assert not portal.state_path.exists()


async def test_served_portal_answers_with_the_loaded_data(tmp_path):
    portal = DemoPortal(data_dir=tmp_path)
    portal.advance(key="run-1")
    expected = portal.load().ids("crm.deal")
    with portal.serve(plan="unlimited") as emulated:
        async with BitrixClient(emulated.webhook_url, limits=Limits.for_plan("unlimited")) as client:
            rows = await client.get_all("crm.deal.list", {"select": ["ID"]})
    assert sorted(int(row["ID"]) for row in rows) == expected
