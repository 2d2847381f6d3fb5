"""`rows_updated` counts rows whose stored content changed; a re-sent row the warehouse already
holds exactly so is `unchanged`, is not written again (its `_synced_at` stays), and is never
stamped deleted by the full refresh that saw it (SQLite file, PostgreSQL, MariaDB).

Before, every row the writer touched counted as updated: a no-change incremental of the demo
reported rows_updated=6, an unchanged full refresh of 20,000 deals rows_updated=20,000.
"""

import asyncio
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.entities import ENTITIES
from bitrix_core.throttle import Limits
from dagster_bitrix24.metadata import result_metadata
from dagster_bitrix24.sync import EntitySync, SyncOptions
from dagster_bitrix24.warehouse import Warehouse, WriteCounts
from dagster_bitrix24.warehouse.dialects import PostgresWriter
from tests.dagster.test_warehouse_support import DEAL_FIELDS, deal, select_all

OLD, NEW = "2024-09-01T10:00:00+03:00", "2024-09-03T10:00:00+03:00"


def _deals(warehouse: Warehouse):
    return warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )


def _stamps(warehouse: Warehouse, layout) -> dict[int, object]:
    return {row.id: row._synced_at for row in select_all(warehouse, layout.table)}


def _phones(warehouse: Warehouse, layout) -> dict[int, str]:
    return {r.parent_id: r.value for r in select_all(warehouse, layout.children[0].table)}


def _chunks(rows: list[dict], k: int) -> list[dict]:
    """`rows` with the first `k` changed: a new title (same change time) on even ids, a newer
    change time on odd ones."""
    return [
        ({**row, "DATE_MODIFY": NEW} if int(row["ID"]) % 2 else {**row, "TITLE": "changed"})
        if index < k else row
        for index, row in enumerate(rows)
    ]  # fmt: skip


@pytest.mark.parametrize("change_field", ["DATE_MODIFY", None])
def test_a_resend_counts_unchanged_and_writes_nothing(
    warehouse: Warehouse, change_field: str | None
) -> None:
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field=change_field
    )
    rows = [deal(i, OLD, PHONE=[{"VALUE": f"+{i}"}]) for i in range(1, 11)]
    assert warehouse.write_chunk(layout, rows) == WriteCounts(10, 0, 0, 0)
    stamps = _stamps(warehouse, layout)
    assert warehouse.write_chunk(layout, rows) == WriteCounts(0, 0, 0, 10)
    assert _stamps(warehouse, layout) == stamps  # nothing written again
    changed = _chunks(rows, 4)
    assert warehouse.write_chunk(layout, changed) == WriteCounts(0, 4, 0, 6)
    assert warehouse.write_chunk(layout, changed) == WriteCounts(0, 0, 0, 10)
    titles = {r.id: r.title for r in select_all(warehouse, layout.table)}
    assert [titles[i] for i in (1, 2, 3, 4, 5)] == ["Deal 1", "changed", "Deal 3", "changed",
                                                    "Deal 5"]  # fmt: skip
    assert _phones(warehouse, layout) == {i: f"+{i}" for i in range(1, 11)}


def test_an_unchanged_row_the_refresh_saw_is_not_stamped_deleted(warehouse: Warehouse) -> None:
    layout = _deals(warehouse)
    warehouse.write_chunk(layout, [deal(i, OLD) for i in range(1, 6)])
    time.sleep(1.0)  # MySQL keeps whole seconds: the refresh starts in a later one
    scan_started = datetime.now(UTC)
    counts = warehouse.write_chunk(layout, [deal(i, OLD) for i in range(1, 5)])
    assert counts == WriteCounts(0, 0, 0, 4)
    marked = warehouse.mark_deleted(layout, [1, 2, 3, 4], written_before=scan_started)
    assert (marked.marked, marked.restored) == (1, 0)  # 5 only, not the 4 unchanged ones
    # a stamped row the portal lists again comes back: its stored row changes
    assert warehouse.write_chunk(layout, [deal(5, OLD)]) == WriteCounts(0, 1, 0, 0)
    assert warehouse.row_count(layout) == 5


def test_a_change_in_letter_case_or_trailing_space_is_a_change(warehouse: Warehouse) -> None:
    """MySQL compares text by collation ('Acme' = 'ACME', 'a' = 'a '): the writer compares
    bytes, so such a change is written, counted, and stamps `_synced_at`."""
    layout = _deals(warehouse)
    warehouse.write_chunk(layout, [deal(1, OLD, TITLE="Acme"), deal(2, OLD, TITLE="a")])
    stamps = _stamps(warehouse, layout)
    if warehouse.dialect_name == "mysql":
        time.sleep(1.0)  # MySQL keeps whole seconds
    counts = warehouse.write_chunk(layout, [deal(1, OLD, TITLE="ACME"), deal(2, OLD, TITLE="a ")])
    assert counts == WriteCounts(0, 2, 0, 0)
    assert [r.title for r in select_all(warehouse, layout.table)] == ["ACME", "a "]
    after = _stamps(warehouse, layout)
    assert after[1] > stamps[1] and after[2] > stamps[2]


def test_an_older_version_is_skipped_not_unchanged(warehouse: Warehouse) -> None:
    layout = _deals(warehouse)
    warehouse.write_chunk(layout, [deal(1, NEW), deal(2, OLD)])
    counts = warehouse.write_chunk(layout, [deal(1, OLD), deal(2, OLD), deal(3, OLD)])
    assert counts == WriteCounts(1, 0, 1, 1)


@pytest.mark.parametrize("path", ["text_copy", "binary_copy", "staged"])
def test_the_postgres_copy_paths_count_unchanged_rows(
    warehouse: Warehouse, path: str
) -> None:
    """The COPY paths (chunks of `copy_threshold` rows and up): text COPY merged in blocks,
    binary COPY after the Python converters (taken when the chunk holds an id twice), and
    the raw-text staging converted in SQL."""
    if warehouse.dialect_name != "postgresql":
        pytest.skip("the COPY paths are PostgreSQL's")
    warehouse.writer = PostgresWriter(
        copy_threshold=20, merge_block=7, convert_in_database=path == "staged"
    )
    layout = _deals(warehouse)
    rows = [deal(i, OLD, PHONE=[{"VALUE": f"+{i}"}]) for i in range(1, 31)]
    twice = [deal(1, OLD, TITLE="Deal 1")] if path == "binary_copy" else []  # an id twice
    assert warehouse.write_chunk(layout, rows + twice) == WriteCounts(30, 0, len(twice), 0)
    stamps = _stamps(warehouse, layout)
    assert warehouse.write_chunk(layout, rows + twice) == WriteCounts(0, 0, len(twice), 30)
    assert _stamps(warehouse, layout) == stamps
    changed = _chunks(rows, 8)
    assert warehouse.write_chunk(layout, changed + twice) == WriteCounts(0, 8, len(twice), 22)
    assert warehouse.write_chunk(layout, [deal(i, OLD) for i in range(31, 61)]).inserted == 30
    older = rows + [deal(i, OLD) for i in range(61, 64)]  # the first versions again
    # 1, 3, 5, 7: a newer version stored (skipped); 2, 4, 6, 8: their title back (updated)
    assert warehouse.write_chunk(layout, older + twice) == WriteCounts(3, 4, 4 + len(twice), 22)
    assert len(_phones(warehouse, layout)) == 30


async def _sync(portal: EmulatedPortal, warehouse: Warehouse, **options):
    limits = Limits.for_plan("standard").scaled(0.02)
    async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
        return await EntitySync(
            client=client, warehouse=warehouse, spec=ENTITIES["crm.deal"],
            options=SyncOptions(**options),
        ).run()  # fmt: skip


async def test_a_sync_counts_only_changed_rows_as_updated(warehouse: Warehouse) -> None:
    """3,000 deals in one chunk: PostgreSQL takes the COPY path; then chunks of 700."""
    with EmulatedPortal(seed=5, deals=3_000, plan="standard", time_scale=0.02) as portal:
        first = await _sync(portal, warehouse, chunk_rows=5_000)
        assert (first.inserted, first.updated, first.unchanged) == (3_000, 0, 0)
        await asyncio.sleep(1.0)  # MySQL keeps whole seconds
        again = await _sync(portal, warehouse)  # an incremental: the lookback re-reads rows
        assert again.mode == "incremental" and again.rows > 0
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, again.rows)
        for chunk_rows in (5_000, 700):
            refresh = await _sync(portal, warehouse, full_refresh=True, chunk_rows=chunk_rows)
            assert (refresh.inserted, refresh.updated, refresh.unchanged) == (0, 0, 3_000)
            assert (refresh.deleted, refresh.skipped) == (0, 0)
        changed = portal.store.mutate(9, updates=40, entities=["crm.deal"])["crm.deal"].updated
        refresh = await _sync(portal, warehouse, full_refresh=True)
        assert (refresh.updated, refresh.unchanged) == (len(changed), 3_000 - len(changed))
        assert refresh.deleted == 0 and warehouse.row_count(refresh.layout) == 3_000
        metadata = result_metadata(refresh, warehouse, portal=portal.base_url)
        assert (metadata["rows_updated"], metadata["rows_unchanged"]) == (
            len(changed),
            3_000 - len(changed),
        )
        with warehouse.engine.connect() as connection:
            table = warehouse.table_name("crm.deal")
            query = sa.text(f"SELECT count(*) FROM {table} WHERE _deleted_at IS NOT NULL")
            assert connection.execute(query).scalar() == 0
