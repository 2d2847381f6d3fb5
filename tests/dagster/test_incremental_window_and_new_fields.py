"""The incremental window and new portal fields, on SQLite, PostgreSQL and MariaDB (the
`clean_url` fixture).

The incremental window is exactly `change time >= cursor - lookback`, and a user field added
on the portal becomes a column the materialisation reports. The project's other end-to-end
checks run on the same three dialects elsewhere: the first full sync and the run after changes
(test_assets.py), the run killed half-way and the range backfill (test_sync.py).
"""

import asyncio
from datetime import datetime, timedelta

import sqlalchemy as sa
from dagster import materialize

from bitrix_core.client import BitrixClient
from dagster_bitrix24 import build_bitrix24_assets
from dagster_bitrix24.warehouse.schema.evolve import reflect_table
from tests.dagster.conftest import PREFIX, materializations, resources, stored_rows

TABLE = f"{PREFIX}crm_deal"


def _run(assets, portal, url):
    return materializations(materialize([assets], resources=resources(portal, url)))


def _call(portal, method: str, params: dict):
    async def call():
        async with BitrixClient(portal.webhook_url) as client:
            return await client.call(method, params)

    return asyncio.run(call())


def _titles(url: str) -> dict[int, str]:
    return {key: title for key, (title,) in stored_rows(url, TABLE, "title").items()}


def test_incremental_run_fetches_exactly_the_rows_changed_since_cursor_minus_lookback(
    portal, clean_url
):
    lookback = timedelta(minutes=10)
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX, lookback=lookback)
    first = _run(assets, portal, clean_url)["bitrix24/crm_deal"]
    cursor = datetime.fromisoformat(first["bitrix24/cursor"])
    window_start = int((cursor - lookback).timestamp())

    changes = portal.store.mutate(11, adds=4, updates=6, entities=("crm.deal",))["crm.deal"]
    untouched = [i for i in portal.store.ids("crm.deal") if i not in changes.updated]
    late, on_edge, too_old = untouched[:3]
    stamped = {late: window_start + 60, on_edge: window_start, too_old: window_start - 1}
    for deal_id, stamp in stamped.items():
        portal.store.update("crm.deal", deal_id, {"DATE_MODIFY": stamp, "TITLE": f"t{stamp}"})
    before = _titles(clean_url)

    second = _run(assets, portal, clean_url)["bitrix24/crm_deal"]
    portal_rows = {row["ID"]: row for row in portal.store.raw_rows("crm.deal")}
    in_window = {i for i, row in portal_rows.items() if row["DATE_MODIFY"] >= window_start}
    assert {late, on_edge} <= in_window and too_old not in in_window
    assert len(in_window) < len(portal_rows) // 2
    assert second["bitrix24/mode"] == "incremental"
    assert datetime.fromisoformat(second["bitrix24/window_start"]).timestamp() == window_start
    assert second["rows_fetched"] == len(in_window)
    assert second["rows_inserted"] == len(changes.added)
    assert second["dagster/row_count"] == len(portal_rows)

    stored = _titles(clean_url)
    assert {i: stored[i] for i in in_window} == {i: portal_rows[i]["TITLE"] for i in in_window}
    # A change stamped before the window is out of an incremental run's reach by design.
    assert stored[too_old] == before[too_old] != portal_rows[too_old]["TITLE"]


def test_a_user_field_added_on_the_portal_becomes_a_reported_column(portal, clean_url):
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX)
    first = _run(assets, portal, clean_url)["bitrix24/crm_deal"]
    assert "uf_crm_loyalty" not in {c.name for c in first["dagster/column_schema"].columns}

    _call(portal, "crm.deal.userfield.add", {"fields": {
        "FIELD_NAME": "LOYALTY", "USER_TYPE_ID": "string", "EDIT_FORM_LABEL": "Loyalty tier",
    }})  # fmt: skip
    deal = portal.store.ids("crm.deal")[4]
    _call(portal, "crm.deal.update", {"id": deal, "fields": {"UF_CRM_LOYALTY": "gold"}})

    second = _run(assets, portal, clean_url)["bitrix24/crm_deal"]
    columns = {c.name: c for c in second["dagster/column_schema"].columns}
    assert columns["uf_crm_loyalty"].description == "Loyalty tier (UF_CRM_LOYALTY)"
    assert second["bitrix24/added_columns"] == ["uf_crm_loyalty"]
    engine = sa.create_engine(clean_url)
    try:
        physical = set(reflect_table(engine, TABLE).columns.keys())
    finally:
        engine.dispose()
    assert "uf_crm_loyalty" in physical
    values = stored_rows(clean_url, TABLE, "uf_crm_loyalty")
    assert values[deal] == ("gold",)
    assert {key for key, (value,) in values.items() if value is not None} == {deal}

    third = _run(assets, portal, clean_url)["bitrix24/crm_deal"]
    assert "bitrix24/added_columns" not in third  # reported once, when it was added
