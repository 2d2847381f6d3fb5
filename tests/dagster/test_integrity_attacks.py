"""Integrity attacks over real HTTP into SQLite and PostgreSQL, on the entity kinds beyond
deals (smart-process items: crm.item.list; tasks: tasks.task.list; users: user.get, which has
no change time, so every sync of it is a full read that marks deletes) and on what the
portal's counts cannot see.

A row dropped from one page (`drop_row_*`, now also on the `{"items": [...]}` and
`{"tasks": [...]}` pages) fails the run loudly: no live row stamped deleted, the cursor where
it was; with the fault gone the rerun equals the portal. Deals have the same attacks in
test_delete_marking.py and test_chaos.py.
"""

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from dagster import materialize

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.emulator.sizes import PortalSizes
from bitrix_core.entities import ENTITIES, EntitySpec, crm_item
from bitrix_core.errors import IncompletePaginationError
from bitrix_core.throttle import Limits
from dagster_bitrix24 import Bitrix24Resource, SQLWarehouseResource, build_bitrix24_assets
from dagster_bitrix24.sync import EntitySync, SyncOptions
from dagster_bitrix24.sync.deletes import id_runs
from dagster_bitrix24.sync.links import DEAL_CONTACT, DealContactSync
from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.conftest import materializations
from tests.dagster.test_warehouse_support import cleaned_warehouse

SCALE = 0.02
SIZES = PortalSizes(deals=500, users=260, tasks=600, smart_items=600)
#: entity name on the emulated portal -> its spec
KINDS: dict[str, EntitySpec] = {
    "crm.deal": ENTITIES["crm.deal"],
    "crm.item.128": crm_item(128),
    "tasks.task": ENTITIES["tasks.task"],
    "user": ENTITIES["user"],
}
METHOD = {"crm.deal": "crm.deal.list", "crm.item.128": "crm.item.list", "tasks.task": "tasks.task.list", "user": "user.get"}


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path):
    """A warehouse on a SQLite file and on PostgreSQL (when BITRIX24_TEST_POSTGRES_URL is set)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    else:
        url = os.environ.get("BITRIX24_TEST_POSTGRES_URL") or pytest.skip(
            "BITRIX24_TEST_POSTGRES_URL is not set"
        )
    yield from cleaned_warehouse(url)


async def sync(portal: EmulatedPortal, warehouse: Warehouse, spec: EntitySpec, **options):
    """One entity's sync on its own client (standard plan, scaled time)."""
    limits = Limits.for_plan("standard").scaled(SCALE)
    async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
        return await EntitySync(
            client=client, warehouse=warehouse, spec=spec, options=SyncOptions(**options)
        ).run()


def stored(warehouse: Warehouse, entity: str) -> dict[int, bool]:
    """id -> marked deleted, of every stored row."""
    table = warehouse.table_name(entity)
    with warehouse.engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT id, _deleted_at FROM {table}")
        return {int(i): deleted is not None for i, deleted in rows}


def cursor(warehouse: Warehouse, entity: str) -> str | None:
    state = warehouse.read_cursor(warehouse.table_name(entity))
    return None if state is None else state.value


@pytest.mark.parametrize("place", ["low", "high", "middle"])
@pytest.mark.parametrize("entity", [kind for kind in KINDS if kind != "crm.deal"])
async def test_a_full_refresh_missing_one_row_fails_and_stamps_nothing(
    warehouse: Warehouse, entity: str, place: str
) -> None:
    spec = KINDS[entity]
    with EmulatedPortal(seed=8, sizes=SIZES, plan="standard", time_scale=SCALE) as portal:
        await sync(portal, warehouse, spec)
        before = cursor(warehouse, entity)
        gone = portal.store.ids(entity)[::100]
        for row_id in gone:
            portal.store.delete(entity, row_id)
        # two: the count page (one request of its own) may take the first drop harmlessly
        fault = portal.faults.add(f"drop_row_{place}", method=METHOD[entity], times=2)
        with pytest.raises(IncompletePaginationError) as raised:
            await sync(portal, warehouse, spec, full_refresh=True)
        assert fault.fired >= 1
        assert raised.value.received < raised.value.expected == portal.store.count(entity)
        assert not any(stored(warehouse, entity).values())
        assert cursor(warehouse, entity) == before

        portal.faults.clear()
        await sync(portal, warehouse, spec, full_refresh=True)
        rows = stored(warehouse, entity)
        assert {i for i, deleted in rows.items() if deleted} == set(gone)
        assert {i for i, deleted in rows.items() if not deleted} == set(portal.store.ids(entity))


@pytest.mark.parametrize("entity", ["crm.item.128", "tasks.task"])
async def test_an_incremental_or_window_read_missing_one_row_fails_keeping_the_cursor(
    warehouse: Warehouse, entity: str
) -> None:
    spec = KINDS[entity]
    with EmulatedPortal(seed=8, sizes=SIZES, plan="standard", time_scale=SCALE) as portal:
        await sync(portal, warehouse, spec)
        before = cursor(warehouse, entity)
        portal.store.mutate(3, updates=200, entities=[entity])
        fault = portal.faults.add("drop_row_middle", method=METHOD[entity], times=3)
        with pytest.raises(IncompletePaginationError):
            await sync(portal, warehouse, spec, lookback=timedelta(0))
        assert fault.fired >= 1 and cursor(warehouse, entity) == before

        portal.faults.clear()
        now = datetime.now(UTC)
        window = (now - timedelta(days=3650), now + timedelta(days=1))
        portal.faults.add("drop_row_middle", method=METHOD[entity], times=3)
        with pytest.raises(IncompletePaginationError):
            await sync(portal, warehouse, spec, window=window)
        assert cursor(warehouse, entity) == before


class _DeletesARowItRead(Warehouse):
    """The warehouse of a full refresh: as its first chunk lands, the first row of that
    chunk (read already) is deleted on the portal."""

    def __init__(self, *args, portal: EmulatedPortal, entity: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.portal, self.entity = portal, entity
        self.deleted: int | None = None

    def write_chunk(self, layout, rows, **kwargs):
        if self.deleted is None:
            spec = KINDS[self.entity]
            self.deleted = int(rows[0][spec.id_field])
            self.portal.store.delete(self.entity, self.deleted)
        return super().write_chunk(layout, rows, **kwargs)


@pytest.mark.parametrize("entity", ["crm.deal", "crm.item.128", "tasks.task", "user"])
async def test_a_row_dropped_while_a_read_row_is_deleted_is_never_stamped(
    warehouse: Warehouse, entity: str
) -> None:
    """The counts cannot see this loss: the portal counts N before the walk and N - 1 after
    it (a row it read was deleted), the walk received N - 1 (one row dropped in flight).
    Before the rows to stamp were confirmed gone on the portal, the full refresh succeeded
    and stamped the dropped live row deleted."""
    spec = KINDS[entity]
    with EmulatedPortal(seed=8, sizes=SIZES, plan="standard", time_scale=SCALE) as portal:
        await sync(portal, warehouse, spec)
        before = cursor(warehouse, entity)
        url = warehouse.engine.url.render_as_string(hide_password=False)
        refresh = _DeletesARowItRead(
            url, table_prefix=warehouse.table_prefix, portal=portal, entity=entity
        )
        # the count page holds the highest id: a `middle` drop hits one of the walk's pages
        fault = portal.faults.add("drop_row_middle", method=METHOD[entity], times=1)
        try:
            with pytest.raises(IncompletePaginationError):
                await sync(portal, refresh, spec, full_refresh=True, chunk_rows=50)
        finally:
            refresh.engine.dispose()
        assert fault.fired == 1 and refresh.deleted is not None
        assert not any(stored(warehouse, entity).values())
        assert cursor(warehouse, entity) == before


def test_the_ranges_asked_hold_every_candidate_and_no_present_id() -> None:
    present = ["1", "4", "5", "9"]
    assert id_runs(["2", "3", 6, "7", "8", "12", "10", "x"], present) == [
        (2, 3), (6, 8), (10, 12),
    ]
    assert id_runs([], present) == []


CHANGE_COLUMN = {"crm.deal": "DATE_MODIFY", "crm.item.128": "UPDATED_TIME",
                 "tasks.task": "CHANGED_DATE"}  # fmt: skip


@pytest.mark.parametrize("entity", list(CHANGE_COLUMN))
async def test_a_change_time_from_the_future_is_a_reject_not_a_frozen_row(
    warehouse: Warehouse, entity: str
) -> None:
    """A row once sent with a change time a day ahead (a portal clock set wrong, or the value
    altered in flight) must not freeze the row: before, the guard "never older over newer"
    refused every later version, even a full refresh's, and the run reported success with
    the warehouse stuck on the bad version. Now the bad time is stored as NULL, recorded as
    a reject, and the next version lands."""
    spec, column = KINDS[entity], CHANGE_COLUMN[entity]
    with EmulatedPortal(seed=8, sizes=SIZES, plan="standard", time_scale=SCALE) as portal:
        row_id = portal.store.ids(entity)[7]
        ahead = int(datetime.now(UTC).timestamp()) + 86_400
        portal.store.update(entity, row_id, {column: ahead, "TITLE": "from the future"})
        first = await sync(portal, warehouse, spec)
        assert first.rejected == 1
        portal.store.update(
            entity, row_id, {column: int(datetime.now(UTC).timestamp()), "TITLE": "fixed"}
        )
        second = await sync(portal, warehouse, spec)
        assert second.rejected == 0
        table = warehouse.table_name(entity)
        with warehouse.engine.connect() as connection:
            query = f"SELECT title FROM {table} WHERE id = {row_id}"
            assert connection.exec_driver_sql(query).scalar_one() == "fixed"


BIG = "y" * 1_000_000
#: entity -> [(position among its ids, key as the answer spells it, planted raw value)]
HOSTILE = {
    "crm.deal": [(3, "TITLE", "half an emoji \ud83d"), (4, "OPPORTUNITY", "1e400")],
    "crm.item.128": [
        (3, "title", "a\x00b"), (4, "opportunity", "1e400"), (5, "begindate", "0000-00-00"),
        (6, "ufCrm128_Hours", ["1", "2"]), (7, "ufCrm128_ProjectCode", "lone \udc00"),
        (8, "title", BIG),
    ],
    "tasks.task": [(3, "title", "\ud83d"), (4, "priority", "1e400"), (5, "deadline", "0000-00-00")],
    "user": [(3, "NAME", "x\x00"), (4, "PERSONAL_BIRTHDAY", "0000-00-00"),
             (5, "UF_DEPARTMENT", "abc"), (6, "ACTIVE", "maybe")],
}  # fmt: skip


def test_hostile_values_in_every_entity_kind_never_block_it(warehouse: Warehouse) -> None:
    """NUL bytes, lone UTF-16 surrogates, '1e400', '0000-00-00', a list for a number, a
    string for a list, a 1 MB string, in deals, smart items, tasks and users, synced through
    the assets: every row lands, the bad values are rejects, and the next run is not
    blocked. Before, a lone surrogate (valid JSON, refused by orjson) failed every run of
    its entity as "body cut short", and once parsed no driver could encode it. A portal
    sending one is an ASSUMPTION (PHP's json_decode refuses one on write; a proxy or a
    store written around the REST API could still produce it)."""
    url = warehouse.engine.url.render_as_string(hide_password=False)
    sizes = PortalSizes(deals=80, users=40, tasks=40, smart_items=60)
    with EmulatedPortal(seed=8, sizes=sizes, plan="standard", time_scale=SCALE) as portal:
        for entity, plants in HOSTILE.items():
            ids = portal.store.ids(entity)
            for position, key, value in plants:
                portal.store.planted.plant(entity, ids[position], key, value)
        assets = build_bitrix24_assets(entities=list(HOSTILE), table_prefix=warehouse.table_prefix)
        bitrix24 = Bitrix24Resource(
            webhook_url=portal.webhook_url, plan="standard", time_scale=SCALE
        )
        resources = {"bitrix24": bitrix24, "warehouse": SQLWarehouseResource(url=url)}
        for run in ("first", "incremental"):  # the planted rows read again: not blocked
            result = materialize([assets], resources=resources)
            assert result.success
            reported = materializations(result)
            for entity in HOSTILE:
                metadata = reported[f"bitrix24/{entity.replace('.', '_')}"]
                if run == "first":
                    assert metadata["rows_fetched"] == portal.store.count(entity)
                assert metadata["values_rejected"] >= 1, entity
                assert set(stored(warehouse, entity)) == set(portal.store.ids(entity))
        deal = portal.store.ids("crm.deal")[3]
        with warehouse.engine.connect() as connection:
            table = warehouse.table_name("crm.deal")
            title = connection.exec_driver_sql(f"SELECT title FROM {table} WHERE id = {deal}")
            assert title.scalar_one() == "half an emoji \ufffd"
            table = warehouse.table_name("crm.item.128")
            item = portal.store.ids("crm.item.128")[8]
            title = connection.exec_driver_sql(f"SELECT title FROM {table} WHERE id = {item}")
            assert title.scalar_one() == BIG


def portal_changes(portal: EmulatedPortal, entity: str) -> dict[int, int]:
    """id -> change time (epoch seconds) of every row on the portal."""
    column = CHANGE_COLUMN[entity]
    return {int(row["ID"]): int(row[column]) for row in portal.store.raw_rows(entity)}


def stored_changes(warehouse: Warehouse, entity: str) -> dict[int, int]:
    """id -> change time (epoch seconds) of every live stored row."""
    table = warehouse.table_name(entity)
    column = KINDS[entity].row_key(KINDS[entity].change_time_field or "").lower()
    column = {"updatedtime": "updated_time", "changeddate": "changed_date"}.get(column, column)
    with warehouse.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f"SELECT id, {column} FROM {table} WHERE _deleted_at IS NULL"
        )
        return {int(i): int(_utc(changed).timestamp()) for i, changed in rows}


def _utc(value: object) -> datetime:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@pytest.mark.parametrize("entity", ["crm.deal", "crm.item.128"])
async def test_two_concurrent_runs_of_one_entity_end_equal_to_the_portal(
    warehouse: Warehouse, entity: str
) -> None:
    """Two incremental runs, then two full refreshes, of the same table at once (two
    clients, two writers), rows changing and going on the portal in between: both succeed,
    the rows equal the portal's (ids and change times), the full refreshes stamp what went,
    the cursor stays at or before the newest change."""
    spec = KINDS[entity]
    url = warehouse.engine.url.render_as_string(hide_password=False)
    other = Warehouse(url, table_prefix=warehouse.table_prefix)
    with EmulatedPortal(seed=8, sizes=SIZES, plan="standard", time_scale=SCALE) as portal:
        await sync(portal, warehouse, spec)
        portal.store.mutate(5, adds=40, updates=150, deletes=10, entities=[entity])
        await asyncio.gather(
            sync(portal, warehouse, spec, chunk_rows=40),
            sync(portal, other, spec, chunk_rows=40),
        )
        truth = portal_changes(portal, entity)  # (incremental runs do not look for deletes)
        assert {i: t for i, t in stored_changes(warehouse, entity).items() if i in truth} == truth
        gone = portal.store.ids(entity)[::50]
        for row_id in gone:
            portal.store.delete(entity, row_id)
        portal.store.mutate(6, adds=20, updates=100, entities=[entity])
        results = await asyncio.gather(
            sync(portal, warehouse, spec, full_refresh=True, chunk_rows=40),
            sync(portal, other, spec, full_refresh=True, chunk_rows=40),
        )
        assert stored_changes(warehouse, entity) == portal_changes(portal, entity)
        assert set(gone) <= {i for i, deleted in stored(warehouse, entity).items() if deleted}
        newest = max(portal_changes(portal, entity).values())
        stored_cursor = datetime.fromisoformat(cursor(warehouse, entity) or "")
        assert stored_cursor.timestamp() <= newest
        assert {r.cursor_after for r in results} >= {stored_cursor}
    other.engine.dispose()


class _LinksDeletingADealTheyRead(Warehouse):
    """The warehouse of a links refresh: as the first page of links lands, the first deal
    of that page (read already) is deleted on the portal."""

    def __init__(self, *args, portal: EmulatedPortal, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.portal = portal
        self.deleted: int | None = None

    def link_table(self, entity_name: str):
        table = super().link_table(entity_name)
        replace = table.replace

        def replacing(deal_ids, links):
            if self.deleted is None:
                self.deleted = int(deal_ids[0])
                self.portal.store.delete("crm.deal", self.deleted)
            return replace(deal_ids, links)

        table.replace = replacing
        return table


def stored_links(warehouse: Warehouse) -> set[tuple[int, int]]:
    table = warehouse.table_name(DEAL_CONTACT)
    with warehouse.engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT deal_id, contact_id FROM {table}")
        return {(int(deal), int(contact)) for deal, contact in rows}


async def test_deal_links_are_never_dropped_for_a_deal_the_read_missed(
    warehouse: Warehouse,
) -> None:
    """The same blind spot of the counts as above, on the deal-contact links: before, the
    links refresh succeeded and deleted the links of the live deal dropped in flight."""
    limits = Limits.for_plan("standard").scaled(SCALE)
    with EmulatedPortal(seed=8, sizes=SIZES, plan="standard", time_scale=SCALE) as portal:
        async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
            await DealContactSync(client=client, warehouse=warehouse).run()
        before = stored_links(warehouse)
        url = warehouse.engine.url.render_as_string(hide_password=False)
        refresh = _LinksDeletingADealTheyRead(
            url, table_prefix=warehouse.table_prefix, portal=portal
        )
        fault = portal.faults.add("drop_row_middle", method="crm.deal.list", times=1)
        try:
            async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
                with pytest.raises(IncompletePaginationError):
                    await DealContactSync(
                        client=client, warehouse=refresh, options=SyncOptions(full_refresh=True)
                    ).run()
        finally:
            refresh.engine.dispose()
        assert fault.fired == 1 and refresh.deleted is not None
        assert stored_links(warehouse) == before
