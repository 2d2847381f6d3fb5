"""A user-described entity with its own filter (open leads only), through Dagster runs:
every run mode keeps that filter and narrows it to its window."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterInstance, materialize

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24 import build_bitrix24_assets, change_time_partitions
from dagster_bitrix24.sync import EntitySync
from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.conftest import PREFIX, materializations, resources, stored_rows

OPEN_LEADS = EntitySpec(
    name="my.open_leads",
    list_method="crm.lead.list",
    fields_method="crm.lead.fields",
    change_time_field="DATE_MODIFY",
    extra_params={"filter": {"OPENED": "Y"}},
)
TABLE = "dtest_my_open_leads"
ASSET = "bitrix24/my_open_leads"


def _leads(portal, *, opened: str) -> list[dict]:
    return [row for row in portal.store.raw_rows("crm.lead") if row["OPENED"] == opened]


def _stored_titles(url: str) -> dict[int, str]:
    return {key: title for key, (title,) in stored_rows(url, TABLE, "title").items()}


def _touch(portal, closed: list[dict], opened: list[dict], *, stamp: int) -> int:
    """Restamp closed leads (they stay closed), reopen one, retitle open ones; return the
    reopened lead's id."""
    *still_closed, reopened = closed
    for row in still_closed:
        portal.store.update("crm.lead", row["ID"], {"DATE_MODIFY": stamp, "TITLE": "closed"})
    portal.store.update(
        "crm.lead", reopened["ID"], {"OPENED": "Y", "DATE_MODIFY": stamp, "TITLE": "reopened"}
    )
    for row in opened:
        portal.store.update("crm.lead", row["ID"], {"DATE_MODIFY": stamp, "TITLE": "retitled"})
    return reopened["ID"]


def test_full_then_incremental_run_store_only_open_leads(portal, clean_url):
    assets = build_bitrix24_assets(entities=[OPEN_LEADS], table_prefix=PREFIX)
    first = materializations(materialize([assets], resources=resources(portal, clean_url)))
    open_leads = {row["ID"]: row["TITLE"] for row in _leads(portal, opened="Y")}
    assert first[ASSET]["bitrix24/mode"] == "full"
    assert 0 < len(open_leads) < portal.store.count("crm.lead")  # closed leads exist
    assert _stored_titles(clean_url) == open_leads

    cursor = datetime.fromisoformat(first[ASSET]["bitrix24/cursor"])
    closed, opened = _leads(portal, opened="N")[:4], _leads(portal, opened="Y")[:3]
    reopened = _touch(portal, closed, opened, stamp=int(time.time()))

    second = materializations(materialize([assets], resources=resources(portal, clean_url)))
    assert second[ASSET]["bitrix24/mode"] == "incremental"
    titles = _stored_titles(clean_url)
    assert titles == {row["ID"]: row["TITLE"] for row in _leads(portal, opened="Y")}
    assert titles[reopened] == "reopened"
    # Only open leads in the window were read: none of the restamped closed ones.
    window_start = (cursor - timedelta(minutes=15)).timestamp()
    in_window = [row for row in _leads(portal, opened="Y") if row["DATE_MODIFY"] >= window_start]
    assert second[ASSET]["rows_fetched"] == len(in_window)

    # A stored lead that is closed leaves the filter: incremental runs no longer read it, a
    # full refresh marks it deleted.
    portal.store.update("crm.lead", reopened, {"OPENED": "N", "DATE_MODIFY": int(time.time())})
    materialize([assets], resources=resources(portal, clean_url))
    assert reopened in _stored_titles(clean_url)
    refresh = {"ops": {assets.node_def.name: {"config": {"full_refresh": True}}}}
    if clean_url.startswith("mysql"):
        time.sleep(1)  # MySQL keeps whole seconds: a row written in the refresh's second stays
    third = materialize([assets], resources=resources(portal, clean_url), run_config=refresh)
    assert materializations(third)[ASSET]["rows_marked_deleted"] == 1
    assert _stored_titles(clean_url) == {
        row["ID"]: row["TITLE"] for row in _leads(portal, opened="Y")
    }


def test_partition_window_run_stores_only_open_leads_of_the_window(portal, clean_url):
    stamps = [row["DATE_MODIFY"] for row in portal.store.raw_rows("crm.lead")]
    first_day = datetime.fromtimestamp(min(stamps), UTC).date()
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    range_start = max(first_day, last_day - timedelta(days=60))
    assets = build_bitrix24_assets(
        entities=[OPEN_LEADS],
        partitions_def=change_time_partitions("daily", start=first_day.isoformat()),
        table_prefix=PREFIX,
    )
    low = datetime.combine(range_start, datetime.min.time(), UTC).timestamp()
    high = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC).timestamp()

    def run_range() -> dict[str, int]:
        result = materialize(
            [assets],
            resources=resources(portal, clean_url),
            instance=DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": range_start.isoformat(),
                "dagster/asset_partition_range_end": last_day.isoformat(),
            },
        )
        return {
            event.materialization.partition: event.materialization.metadata[
                "dagster/row_count"
            ].value
            for event in result.get_asset_materialization_events()
        }

    def open_in_range() -> dict[int, str]:
        return {
            row["ID"]: row["TITLE"]
            for row in _leads(portal, opened="Y")
            if low <= row["DATE_MODIFY"] < high
        }

    counts = run_range()
    assert _stored_titles(clean_url) == open_in_range()
    assert sum(counts.values()) == len(open_in_range()) > 0

    # The range's last second: inside it, and newer than the stored change times (the
    # writer skips a row older than the one it holds).
    inside = int(high) - 1
    closed, opened = _leads(portal, opened="N")[:4], list(open_in_range())[:3]
    opened_rows = [row for row in _leads(portal, opened="Y") if row["ID"] in opened]
    reopened = _touch(portal, closed, opened_rows, stamp=inside)

    counts = run_range()
    titles = _stored_titles(clean_url)
    assert titles == open_in_range()
    assert titles[reopened] == "reopened"
    assert sum(counts.values()) == len(open_in_range())


def test_own_change_time_bound_narrows_the_window(portal, tmp_path):
    """A spec filter that bounds the change time itself keeps its bound where it is the
    narrower one: an incremental window reaching further back reads no older rows."""
    since = datetime.now(UTC) - timedelta(days=30)
    recent = EntitySpec(
        name="my.recent_leads",
        list_method="crm.lead.list",
        fields_method="crm.lead.fields",
        change_time_field="DATE_MODIFY",
        extra_params={"filter": {">=DATE_MODIFY": since.isoformat(), "OPENED": "Y"}},
    )
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    assets = build_bitrix24_assets(entities=[recent])
    materialize([assets], resources=resources(portal, url))
    # A lookback reaching years back: the spec's own bound must still hold.
    run_config = {"ops": {assets.node_def.name: {"config": {"lookback_minutes": 10**6}}}}
    result = materialize([assets], resources=resources(portal, url), run_config=run_config)
    assert materializations(result)["bitrix24/my_recent_leads"]["bitrix24/mode"] == "incremental"
    expected = {
        row["ID"] for row in _leads(portal, opened="Y") if row["DATE_MODIFY"] >= since.timestamp()
    }
    assert 0 < len(expected) < len(_leads(portal, opened="Y"))  # older open leads exist
    assert set(stored_rows(url, "bitrix24_my_recent_leads")) == expected


def test_own_change_time_bound_must_be_a_time(tmp_path):
    spec = EntitySpec(
        name="my.leads",
        list_method="crm.lead.list",
        fields_method="crm.lead.fields",
        change_time_field="DATE_MODIFY",
        extra_params={"filter": {">=DATE_MODIFY": "last week"}},
    )
    with pytest.raises(BitrixParameterError) as raised:
        EntitySync(
            client=None, warehouse=Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}"), spec=spec
        )
    assert raised.value.parameter == "EntitySpec.extra_params[filter][>=DATE_MODIFY]"


def test_entity_without_fields_method_syncs_incrementally_on_sampled_fields(portal, tmp_path):
    """No fields method: the columns come from the first page, the change time typed as a
    datetime so that it can be the cursor."""
    sampled = EntitySpec(
        name="my.sampled_leads",
        list_method="crm.lead.list",
        fields_method=None,
        change_time_field="DATE_MODIFY",
    )
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    assets = build_bitrix24_assets(entities=[sampled])
    first = materializations(materialize([assets], resources=resources(portal, url)))
    second = materializations(materialize([assets], resources=resources(portal, url)))
    asset = "bitrix24/my_sampled_leads"
    assert first[asset]["dagster/row_count"] == len(portal.store.raw_rows("crm.lead"))
    assert second[asset]["bitrix24/mode"] == "incremental"
    newest = max(row["DATE_MODIFY"] for row in portal.store.raw_rows("crm.lead"))
    assert datetime.fromisoformat(first[asset]["bitrix24/cursor"]).timestamp() == newest
