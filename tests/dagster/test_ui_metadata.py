"""What the Dagster UI shows: schema changes, kinds, table names, the edge of a partition range."""

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from dagster import AssetKey, DagsterInstance, EnvVar, materialize
from dagster.components.testing.utils import component_defs

from dagster_bitrix24 import (
    Bitrix24Component,
    SQLWarehouseResource,
    build_bitrix24_assets,
    change_time_partitions,
)
from dagster_bitrix24.metadata import without_loopback_uri
from dagster_bitrix24.resources import warehouse_kind
from tests.dagster.conftest import drop_tables, materializations, resources, stored_rows

#: This module's own table prefix: other modules' fixtures drop `dtest_*` tables in the
#: shared PostgreSQL/MariaDB databases, possibly while these tests run.
PREFIX = "uitest_"

DEAL = AssetKey(["bitrix24", "crm_deal"])


@pytest.fixture
def clean_url(warehouse_url: str) -> Iterator[str]:
    """The warehouse URL with this module's tables dropped before and after the test."""
    drop_tables(warehouse_url, PREFIX)
    yield warehouse_url
    drop_tables(warehouse_url, PREFIX)


def _warnings(instance: DagsterInstance, result) -> list[str]:
    """The run's user-log warnings (`context.log.warning`), in order."""
    return [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if not entry.is_dagster_event and entry.level == logging.WARNING
    ]


def _alter(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_type_change_and_removed_column_reach_metadata_and_the_run_log(portal, clean_url):
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX)
    first = materializations(materialize([assets], resources=resources(portal, clean_url)))
    assert not {"bitrix24/type_changes", "bitrix24/removed_columns"} & set(
        first["bitrix24/crm_deal"]
    )

    # The title column was stored as a number earlier; a field was deleted on the portal.
    table = f"{PREFIX}crm_deal"
    _alter(
        clean_url,
        f"ALTER TABLE {table} DROP COLUMN title",
        f"ALTER TABLE {table} ADD COLUMN title INTEGER",
        f"ALTER TABLE {table} ADD COLUMN uf_crm_gone VARCHAR(40)",
    )
    instance = DagsterInstance.ephemeral()
    result = materialize([assets], resources=resources(portal, clean_url), instance=instance)
    reported = materializations(result)["bitrix24/crm_deal"]

    [change] = reported["bitrix24/type_changes"]
    assert (change["table"], change["column"], change["field"]) == (table, "title", "TITLE")
    assert "int" in change["stored_type"].lower() and change["portal_type"] == "text"
    assert reported["bitrix24/removed_columns"] == ["uf_crm_gone"]
    assert reported["dagster/row_count"] == portal.store.count("crm.deal")
    [warning] = [w for w in _warnings(instance, result) if "changed type" in w]
    assert "TITLE" in warning and f"{table}.title" in warning and "no longer written" in warning


def test_smart_processes_report_the_tables_they_write_and_their_schema_changes(portal, clean_url):
    assets = build_bitrix24_assets(
        entities=["crm.deal", "crm.item", "crm.item.128"], table_prefix=PREFIX
    )
    specs = {spec.key.to_user_string(): spec for spec in assets.specs}
    # The all-smart-processes asset writes one table per type found at run time: its spec
    # names none; every other spec names the table its runs write.
    assert "dagster/table_name" not in specs["bitrix24/crm_item"].metadata
    assert specs["bitrix24/crm_item_128"].metadata["dagster/table_name"] == f"{PREFIX}crm_item_128"

    reported = materializations(materialize([assets], resources=resources(portal, clean_url)))
    tables = _tables(clean_url)
    for key, spec in specs.items():
        if "dagster/table_name" in spec.metadata:
            assert reported[key]["dagster/table_name"] == spec.metadata["dagster/table_name"]
            assert reported[key]["dagster/table_name"] in tables
    written = reported["bitrix24/crm_item"]["bitrix24/tables"]
    assert set(written) == {"crm.smart_invoice", "crm.item.130"}  # 128 has its own asset
    assert set(written.values()) <= tables
    assert "dagster/table_name" not in reported["bitrix24/crm_item"]  # two tables, not one

    _alter(clean_url, f"ALTER TABLE {PREFIX}crm_item_130 ADD COLUMN uf_crm_gone VARCHAR(40)")
    again = materializations(materialize([assets], resources=resources(portal, clean_url)))
    assert again["bitrix24/crm_item"]["bitrix24/removed_columns"] == {
        f"{PREFIX}crm_item_130": ["uf_crm_gone"]
    }


def test_an_all_smart_processes_asset_writing_one_table_names_it(portal, clean_url):
    assets = build_bitrix24_assets(
        entities=["crm.item", "crm.item.128", "crm.item.130"], table_prefix=PREFIX
    )
    result = materialize(
        [assets],
        resources=resources(portal, clean_url),
        selection=[AssetKey(["bitrix24", "crm_item"])],
    )
    reported = materializations(result)["bitrix24/crm_item"]
    assert reported["dagster/table_name"] == f"{PREFIX}crm_smart_invoice"
    assert reported["dagster/table_name"] in _tables(clean_url)


def _daily_partitions(portal, *, end_offset: int = 1):
    stamps = [row["DATE_MODIFY"] for row in portal.store.raw_rows("crm.deal")]
    first_day = datetime.fromtimestamp(min(stamps), UTC).date()
    partitions = change_time_partitions("daily", start=first_day.isoformat(), end_offset=end_offset)
    return first_day, partitions


def test_every_partition_of_a_range_run_names_its_table(portal, clean_url):
    first_day, partitions = _daily_partitions(portal)
    assets = build_bitrix24_assets(
        entities=["crm.deal", "crm.item.128"], table_prefix=PREFIX, partitions_def=partitions
    )
    last = first_day + timedelta(days=40)
    result = materialize(
        [assets],
        resources=resources(portal, clean_url),
        tags={"dagster/asset_partition_range_start": first_day.isoformat(),
              "dagster/asset_partition_range_end": last.isoformat()},
    )  # fmt: skip
    events = result.get_asset_materialization_events()
    tables = {spec.key: spec.metadata["dagster/table_name"] for spec in assets.specs}
    for key, table in tables.items():
        named = [
            e.materialization.metadata["dagster/table_name"].value
            for e in events
            if e.asset_key == key
        ]
        assert named == [table] * 41
        assert table in _tables(clean_url)


def test_every_partition_event_carries_the_table_rows_and_the_run_figures(portal, clean_url):
    first_day, partitions = _daily_partitions(portal)
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX,
                                   partitions_def=partitions)  # fmt: skip
    last = first_day + timedelta(days=30)
    result = materialize(
        [assets],
        resources=resources(portal, clean_url),
        tags={"dagster/asset_partition_range_start": first_day.isoformat(),
              "dagster/asset_partition_range_end": last.isoformat()},
    )  # fmt: skip
    events = {e.materialization.partition: e.materialization.metadata
              for e in result.get_asset_materialization_events()}  # fmt: skip
    stored = len(stored_rows(clean_url, f"{PREFIX}crm_deal"))
    assert len(events) == 31
    for partition, metadata in events.items():
        assert metadata["bitrix24/table_rows"].value == stored  # the table's, on every event
        assert metadata["rows_fetched"].value == stored
        assert metadata["bitrix24/run_requests"].value > 0
        assert metadata["bitrix24/window_start"].value == f"{first_day.isoformat()}T00:00:00+00:00"
        assert metadata["bitrix24/partition_start"].value.startswith(partition)
        assert "dagster/uri" not in metadata  # the emulator's loopback port: no link
        assert ("dagster/column_schema" in metadata) == (partition == last.isoformat())
    assert sum(m["dagster/row_count"].value for m in events.values()) <= stored


def test_only_a_real_portal_gets_a_link():
    metadata = {"dagster/uri": "x", "rows_fetched": 1}
    assert without_loopback_uri(metadata, "https://example.bitrix24.com") == metadata
    for loopback in ("http://127.0.0.1:45805", "http://localhost:8000", "http://[::1]:9"):
        assert without_loopback_uri(metadata, loopback) == {"rows_fetched": 1}


def _squeeze_deal_history(portal, *, days: int) -> None:
    """Map the deals' change times linearly onto the last `days` days up to the newest one
    (a time only moves forward), so a range run to today has `days`+ partitions, not ~720."""
    rows = portal.store.raw_rows("crm.deal")
    low, high = min(r["DATE_MODIFY"] for r in rows), max(r["DATE_MODIFY"] for r in rows)
    start = int(datetime.now(UTC).timestamp()) - days * 86_400
    for row in rows:
        moved = start + (row["DATE_MODIFY"] - low) * (high - start) // (high - low)
        portal.store.update("crm.deal", row["ID"], {"DATE_MODIFY": max(moved, row["DATE_MODIFY"])})


def test_a_range_ending_on_a_partition_not_yet_there_counts_every_stored_row(portal, clean_url):
    _squeeze_deal_history(portal, days=10)
    first_day, partitions = _daily_partitions(portal, end_offset=0)
    today = datetime.now(UTC).date()
    # One deal changed just now: it belongs to today's partition, which does not exist yet.
    changed_now = portal.store.ids("crm.deal")[0]
    now = int(datetime.now(UTC).timestamp())
    portal.store.update("crm.deal", changed_now, {"DATE_MODIFY": now})
    assert partitions.get_last_partition_key() == (today - timedelta(days=1)).isoformat()

    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX,
                                   partitions_def=partitions)  # fmt: skip
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [assets],
        resources=resources(portal, clean_url),
        instance=instance,
        tags={"dagster/asset_partition_range_start": first_day.isoformat(),
              "dagster/asset_partition_range_end": today.isoformat()},
    )  # fmt: skip
    events = {e.materialization.partition: e.materialization.metadata
              for e in result.get_asset_materialization_events()}  # fmt: skip
    yesterday = (today - timedelta(days=1)).isoformat()
    assert max(events) == yesterday  # Dagster records nothing for a partition not there yet
    counted = sum(metadata["dagster/row_count"].value for metadata in events.values())
    later = events[yesterday]["bitrix24/rows_after_last_partition"].value
    stored = stored_rows(clean_url, f"{PREFIX}crm_deal")
    assert set(stored) == set(portal.store.ids("crm.deal"))  # synced up to the present
    # today's rows: the one changed now, and any the squeeze put after midnight (late in a UTC day)
    midnight = int(datetime.combine(today, datetime.min.time(), UTC).timestamp())
    today_rows = sum(row["DATE_MODIFY"] >= midnight for row in portal.store.raw_rows("crm.deal"))
    assert counted + later == len(stored) and later == today_rows >= 1
    assert events[yesterday]["rows_fetched"].value == len(stored)
    [warning] = [w for w in _warnings(instance, result) if "after the last existing" in w]
    assert f"{today_rows} row(s) changed after the last existing partition {yesterday}" in warning


@pytest.mark.parametrize("dialect", ["sqlite", "postgres", "mysql", "duckdb"])
def test_kinds_name_the_warehouse_dialect(dialect, monkeypatch):
    url = {
        "sqlite": "sqlite:///w.sqlite",
        "duckdb": "duckdb:///w.duckdb",
        "postgres": "postgresql+psycopg://postgres@db:5432/w",
        "mysql": "mysql+pymysql://root@db:3306/w",
    }[dialect]
    monkeypatch.setenv("TEST_KIND_WAREHOUSE_URL", url)
    from_env = SQLWarehouseResource(url=EnvVar("TEST_KIND_WAREHOUSE_URL"))
    for warehouse in (from_env, url):
        assets = build_bitrix24_assets(entities=["crm.deal"], warehouse=warehouse)
        assert assets.specs_by_key[DEAL].kinds == {"bitrix24", dialect}
    explicit = build_bitrix24_assets(entities=["crm.deal"], warehouse=url, warehouse_kind="lake")
    assert explicit.specs_by_key[DEAL].kinds == {"bitrix24", "lake"}

    component = Bitrix24Component.resolve_from_yaml(
        "entities: [crm.deal]\nwarehouse_url_env: TEST_KIND_WAREHOUSE_URL\n"
    )
    defs = component_defs(component=component)
    assert defs.resolve_assets_def(DEAL).specs_by_key[DEAL].kinds == {"bitrix24", dialect}


def test_an_unset_warehouse_variable_leaves_the_dialect_out(monkeypatch):
    monkeypatch.delenv("TEST_KIND_WAREHOUSE_URL", raising=False)
    warehouse = SQLWarehouseResource(url=EnvVar("TEST_KIND_WAREHOUSE_URL"))
    assets = build_bitrix24_assets(entities=["crm.deal"], warehouse=warehouse)
    assert assets.specs_by_key[DEAL].kinds == {"bitrix24"}


def test_kinds_match_the_warehouse_a_run_writes_to(portal, clean_url):
    warehouse = resources(portal, clean_url)["warehouse"]
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX, warehouse=warehouse)
    assert assets.specs_by_key[DEAL].kinds == {"bitrix24", warehouse_kind(clean_url)}
    instance = DagsterInstance.ephemeral()
    result = materialize([assets], resources=resources(portal, clean_url), instance=instance)
    assert not [w for w in _warnings(instance, result) if "kinds" in w]

    other = "postgres" if warehouse_kind(clean_url) != "postgres" else "sqlite"
    wrong = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX, warehouse_kind=other)
    result = materialize([wrong], resources=resources(portal, clean_url), instance=instance)
    [warning] = [w for w in _warnings(instance, result) if "kinds" in w]
    assert other in warning and warehouse_kind(clean_url) in warning
