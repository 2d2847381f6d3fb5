"""Materialising the Bitrix24 multi-asset against the emulator, into real warehouses."""

from datetime import datetime, timedelta

import pytest
from dagster import AssetKey, materialize

from dagster_bitrix24 import build_bitrix24_assets
from tests.dagster.conftest import PREFIX, materializations, resources, stored_rows

ENTITIES = ["crm.deal", "crm.contact", "crm.company", "crm.lead"]


def _portal_deals(portal) -> dict[int, tuple]:
    return {
        row["ID"]: (row["TITLE"], round(float(row["OPPORTUNITY"] or 0), 2))
        for row in portal.store.raw_rows("crm.deal")
    }


def _stored_deals(url: str, table: str = "bitrix24_crm_deal") -> dict[int, tuple]:
    return {
        key: (title, round(float(amount or 0), 2))
        for key, (title, amount) in stored_rows(url, table, "title", "opportunity").items()
    }


def _run(assets, portal, url, *, selection=None, config=None):
    return materialize(
        [assets],
        resources=resources(portal, url),
        selection=selection,
        run_config={"ops": {assets.node_def.name: {"config": config or {}}}},
    )


def test_full_then_incremental_sync_equals_portal(portal, clean_url):
    assets = build_bitrix24_assets(entities=ENTITIES, table_prefix=PREFIX)

    first = _run(assets, portal, clean_url)
    reported = materializations(first)
    assert set(reported) == {f"bitrix24/{e.replace('.', '_')}" for e in ENTITIES}
    deal = reported["bitrix24/crm_deal"]
    assert deal["bitrix24/mode"] == "full"
    assert deal["dagster/table_name"] == "dtest_crm_deal"
    assert deal["dagster/row_count"] == portal.store.count("crm.deal")
    assert "dagster/uri" not in deal  # an emulator on loopback: no link to a dead port
    assert any(c.name == "title" for c in deal["dagster/column_schema"].columns)
    assert _stored_deals(clean_url, "dtest_crm_deal") == _portal_deals(portal)
    # Several entities in one run share batches: fewer batch requests than entity pages.
    pages = sum(m["rows_fetched"] // 50 + 1 for m in reported.values())
    assert sum(m["batches"] for m in reported.values()) <= pages
    cursor = datetime.fromisoformat(deal["bitrix24/cursor"])

    changes = portal.store.mutate(11, adds=5, updates=7, entities=("crm.deal",))["crm.deal"]
    late_id = next(i for i in portal.store.ids("crm.deal") if i not in changes.updated)
    late_commit = int(cursor.timestamp()) - 120  # committed now, stamped inside the lookback
    portal.store.update("crm.deal", late_id, {"DATE_MODIFY": late_commit, "TITLE": "late"})

    second = materializations(_run(assets, portal, clean_url))["bitrix24/crm_deal"]
    assert second["bitrix24/mode"] == "incremental"
    assert second["bitrix24/cursor_before"] == deal["bitrix24/cursor"]
    changed = len(changes.added) + len(changes.updated) + 1
    assert changed <= second["rows_fetched"] < portal.store.count("crm.deal") // 2
    assert second["rows_inserted"] == len(changes.added)
    assert _stored_deals(clean_url, "dtest_crm_deal") == _portal_deals(portal)
    assert datetime.fromisoformat(second["bitrix24/cursor"]) > cursor


def test_subset_selection_syncs_only_selected_entities(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    assets = build_bitrix24_assets(entities=ENTITIES)
    result = _run(assets, portal, url, selection=[AssetKey(["bitrix24", "crm_contact"])])
    assert set(materializations(result)) == {"bitrix24/crm_contact"}


def test_full_refresh_marks_rows_deleted_on_the_portal(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    assets = build_bitrix24_assets(entities=["crm.deal"])
    _run(assets, portal, url)
    gone = portal.store.mutate(3, deletes=4, entities=("crm.deal",))["crm.deal"].deleted

    incremental = materializations(_run(assets, portal, url))["bitrix24/crm_deal"]
    assert incremental["rows_marked_deleted"] == 0
    refreshed = materializations(_run(assets, portal, url, config={"full_refresh": True}))
    assert refreshed["bitrix24/crm_deal"]["rows_marked_deleted"] == len(gone)
    assert set(_stored_deals(url)) == set(portal.store.ids("crm.deal"))


def test_unknown_entity_is_a_named_error():
    from bitrix_core.errors import BitrixParameterError

    with pytest.raises(BitrixParameterError, match="crm.dael"):
        build_bitrix24_assets(entities=["crm.dael"])


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"entities": []}, "entities"),
        ({"entities": ["crm.deal", "crm.deal"]}, "entities"),
        ({"entities": ["crm.deal"], "table_prefix": "bad-prefix;"}, "table_prefix"),
        ({"entities": ["crm.deal"], "portal": "my portal"}, "portal"),
        ({"entities": ["crm.deal"], "lookback": timedelta(minutes=-1)}, "lookback"),
    ],
)
def test_bad_factory_arguments_are_named_at_definition_time(options, parameter):
    from bitrix_core.errors import BitrixParameterError

    with pytest.raises(BitrixParameterError) as raised:
        build_bitrix24_assets(**options)
    assert raised.value.parameter == parameter


@pytest.mark.parametrize("minutes", [float("nan"), float("inf"), 1e12, -5])
def test_bad_lookback_in_run_config_is_a_named_error(portal, tmp_path, minutes):
    from bitrix_core.errors import BitrixParameterError

    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    with pytest.raises(BitrixParameterError) as raised:
        _run(build_bitrix24_assets(entities=["crm.deal"]), portal, url,
             config={"lookback_minutes": minutes})  # fmt: skip
    assert raised.value.parameter == "lookback_minutes"


def test_every_built_in_entity_lands_in_one_run(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    entities = [
        "crm.deal", "crm.lead", "crm.contact", "crm.company", "crm.activity", "tasks.task",
        "user", "department", "crm.status", "crm.category", "crm.smart_invoice", "crm.item.128",
    ]  # fmt: skip
    reported = materializations(_run(build_bitrix24_assets(entities=entities), portal, url))
    assert len(reported) == len(entities)
    for entity in ("crm.deal", "crm.activity", "tasks.task", "user", "crm.status"):
        metadata = reported[f"bitrix24/{entity.replace('.', '_')}"]
        assert metadata["dagster/row_count"] == metadata["rows_fetched"] > 0
    assert reported["bitrix24/crm_deal"]["dagster/row_count"] == portal.store.count("crm.deal")
    assert reported["bitrix24/tasks_task"]["bitrix24/cursor"] is not None  # changedDate read
