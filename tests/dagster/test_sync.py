"""Sync semantics through Dagster: a run killed half-way, and a partition range backfill."""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from dagster import BackfillPolicy, DagsterInstance, materialize

from dagster_bitrix24 import (
    SQLWarehouseResource,
    build_bitrix24_assets,
    change_time_partitions,
)
from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.conftest import PREFIX, materializations, resources, stored_rows


class ChunkKilled(RuntimeError):
    """Stands for the process dying after some chunks have landed."""


class _DyingWarehouse(Warehouse):
    def __init__(self, *args, fail_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._left = fail_after

    def write_chunk(self, layout, rows, **kwargs):
        if self._left == 0:
            raise ChunkKilled("killed after some chunks")
        self._left -= 1
        return super().write_chunk(layout, rows, **kwargs)


class DyingWarehouseResource(SQLWarehouseResource):
    """A real warehouse that dies when it is asked to write chunk number `fail_after + 1`."""

    fail_after: int

    def get_warehouse(self, *, table_prefix: str = "bitrix24_") -> Warehouse:
        return _DyingWarehouse(
            self.url, schema=self.schema_name, table_prefix=table_prefix, fail_after=self.fail_after
        )


def _config(assets, **values):
    return {"ops": {assets.node_def.name: {"config": values}}}


def test_run_killed_after_some_chunks_then_rerun_is_complete(portal, clean_url):
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX)
    first = materialize([assets], resources=resources(portal, clean_url))
    cursor = materializations(first)["bitrix24/crm_deal"]["bitrix24/cursor"]
    changes = portal.store.mutate(5, adds=30, entities=("crm.deal",))["crm.deal"]

    dying = {
        **resources(portal, clean_url),
        "warehouse": DyingWarehouseResource(url=clean_url, fail_after=2),
    }
    killed = materialize(
        [assets], resources=dying, run_config=_config(assets, chunk_rows=10), raise_on_error=False
    )
    assert not killed.success
    writer = Warehouse(clean_url, table_prefix=PREFIX)
    assert writer.read_cursor("dtest_crm_deal").value == cursor  # the cursor did not move
    landed = stored_rows(clean_url, "dtest_crm_deal", "title")
    assert 0 < sum(1 for i in changes.added if i in landed) < len(changes.added)

    rerun = materialize(
        [assets], resources=resources(portal, clean_url), run_config=_config(assets, chunk_rows=10)
    )
    reported = materializations(rerun)["bitrix24/crm_deal"]
    assert reported["bitrix24/cursor_before"] == cursor
    stored = stored_rows(clean_url, "dtest_crm_deal", "title", "date_modify")
    portal_rows = {row["ID"]: row for row in portal.store.raw_rows("crm.deal")}
    assert set(stored) == set(portal_rows)
    assert reported["dagster/row_count"] == len(portal_rows)  # no duplicates
    assert all(stored[i][0] == portal_rows[i]["TITLE"] for i in portal_rows)
    newest = max(row["DATE_MODIFY"] for row in portal_rows.values())
    assert datetime.fromisoformat(writer.read_cursor("dtest_crm_deal").value).timestamp() == (
        newest
    )


def test_partition_range_backfill_runs_once_with_per_partition_counts(portal, clean_url):
    stamps = [row["DATE_MODIFY"] for row in portal.store.raw_rows("crm.deal")]
    first_day = datetime.fromtimestamp(min(stamps), UTC).date()
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    partitions = change_time_partitions("daily", start=first_day.isoformat())
    assets = build_bitrix24_assets(
        entities=["crm.deal"], partitions_def=partitions, table_prefix=PREFIX
    )
    assert assets.backfill_policy == BackfillPolicy.single_run()

    range_start = max(first_day, yesterday - timedelta(days=120))
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [assets],
        resources=resources(portal, clean_url),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": range_start.isoformat(),
            "dagster/asset_partition_range_end": yesterday.isoformat(),
        },
    )
    assert len(instance.get_runs()) == 1
    events = result.get_asset_materialization_events()
    counts = {
        e.materialization.partition: e.materialization.metadata["dagster/row_count"].value
        for e in events
    }
    assert len(counts) == (yesterday - range_start).days + 1
    low = datetime.combine(range_start, datetime.min.time(), UTC).timestamp()
    high = datetime.combine(yesterday + timedelta(days=1), datetime.min.time(), UTC).timestamp()
    in_range = [s for s in stamps if low <= s < high]
    assert sum(counts.values()) == len(in_range) > 0
    per_day = Counter(datetime.fromtimestamp(s, UTC).date().isoformat() for s in in_range)
    assert counts == {day: per_day.get(day, 0) for day in counts}
    assert len(stored_rows(clean_url, "dtest_crm_deal")) == len(in_range)
    live_cursor = Warehouse(clean_url, table_prefix=PREFIX).read_cursor("dtest_crm_deal")
    assert live_cursor is None  # a partition run never moves the live cursor

    # Every partition event carries the run's figures; the column schema the newest only.
    *older, newest = sorted(events, key=lambda e: e.materialization.partition)
    assert newest.materialization.partition == yesterday.isoformat()
    summary = newest.materialization.metadata
    assert "dagster/column_schema" in summary and summary["rows_fetched"].value == len(in_range)
    assert summary["bitrix24/partition_range"].value == f"{range_start}..{yesterday}"
    for event in older:
        metadata = event.materialization.metadata
        assert {"bitrix24/partition_start", "bitrix24/partition_end"} <= set(metadata)
        assert "dagster/column_schema" not in metadata
        assert metadata["rows_fetched"].value == len(in_range)
        day = event.materialization.partition
        assert metadata["bitrix24/partition_start"].value == f"{day}T00:00:00+00:00"


def test_full_refresh_is_refused_for_partitioned_assets(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    partitions = change_time_partitions("daily", start="2024-01-01")
    assets = build_bitrix24_assets(entities=["crm.deal"], partitions_def=partitions)
    result = materialize(
        [assets],
        resources=resources(portal, url),
        partition_key="2024-02-01",
        run_config=_config(assets, full_refresh=True),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "full_refresh" in failure.event_specific_data.error.to_string()


@pytest.mark.parametrize("granularity", ["weekly", "yearly"])
def test_unknown_partition_granularity_is_refused(granularity):
    with pytest.raises(ValueError, match=granularity):
        change_time_partitions(granularity, start="2024-01-01")


def test_cursor_never_passes_the_runs_start(portal, tmp_path):
    """A row stamped after the run began (a change made mid-run, or a portal clock ahead)
    must not carry the cursor past the run's start, or an earlier change is lost."""
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    ahead, touched = portal.store.ids("crm.deal")[:2]
    portal.store.update("crm.deal", ahead, {"DATE_MODIFY": int(time.time()) + 3600})
    assets = build_bitrix24_assets(entities=["crm.deal"])
    before_run = datetime.now(UTC)
    materialize([assets], resources=resources(portal, url))
    cursor = datetime.fromisoformat(Warehouse(url).read_cursor("bitrix24_crm_deal").value)
    assert before_run - timedelta(seconds=1) <= cursor <= datetime.now(UTC)

    portal.store.update(
        "crm.deal", touched, {"DATE_MODIFY": int(time.time()), "TITLE": "changed after run 1"}
    )
    materialize(
        [assets], resources=resources(portal, url), run_config=_config(assets, lookback_minutes=0)
    )
    assert stored_rows(url, "bitrix24_crm_deal", "title")[touched] == ("changed after run 1",)


def test_check_deletes_marks_only_the_rows_gone_from_the_portal(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    assets = build_bitrix24_assets(entities=["crm.deal"])
    materialize([assets], resources=resources(portal, url))
    gone = portal.store.ids("crm.deal")[3:6]
    for deal_id in gone:
        assert portal.store.delete("crm.deal", deal_id)

    result = materialize(
        [assets], resources=resources(portal, url), run_config=_config(assets, check_deletes=True)
    )
    reported = materializations(result)["bitrix24/crm_deal"]
    assert reported["rows_marked_deleted"] == len(gone)
    assert set(stored_rows(url, "bitrix24_crm_deal")) == set(portal.store.ids("crm.deal"))
