"""A sync killed with SIGKILL half-way leaves the warehouse and the cursor consistent.

The sync runs in a child process against an emulated portal served by this one; it is
killed once some chunks have landed. Then: no cursor was written (first sync) or the old one
stands (full refresh), no live row is stamped deleted, every stored row is a version the
portal sent, and a rerun makes the warehouse equal to the portal (SQLite, PostgreSQL,
MariaDB). Deals (crm.deal.list) and smart-process items (crm.item.list, `{"items": [...]}`
pages, camelCase fields).
"""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.emulator.sizes import PortalSizes
from dagster_bitrix24.warehouse import Warehouse

ROWS = 12_000
#: entity -> (list method, raw change-time key on the emulated portal, warehouse column)
KINDS = {
    "crm.deal": ("crm.deal.list", "DATE_MODIFY", "date_modify"),
    "crm.item.128": ("crm.item.list", "UPDATED_TIME", "updated_time"),
}

_CHILD = """
import asyncio, sys
from bitrix_core.client import BitrixClient
from bitrix_core.entities import ENTITIES, crm_item
from bitrix_core.throttle import Limits
from dagster_bitrix24.sync import EntitySync, SyncOptions
from dagster_bitrix24.warehouse import Warehouse

async def main(url, prefix, full_refresh, entity):
    warehouse = Warehouse(url, table_prefix=prefix)
    limits = Limits.for_plan("standard").scaled(0.05)
    async with BitrixClient(sys.stdin.readline().strip(), limits=limits, verbose=False) as client:
        options = SyncOptions(full_refresh=full_refresh == "1", chunk_rows=500)
        spec = ENTITIES.get(entity) or crm_item(int(entity.rsplit(".", 1)[1]))
        await EntitySync(client=client, warehouse=warehouse, spec=spec, options=options).run()

asyncio.run(main(*sys.argv[1:]))
"""


def _run_child(
    portal: EmulatedPortal, warehouse: Warehouse, entity: str, *, full_refresh: bool, kill: bool
) -> int:
    """Run one sync of `entity` in a child process; SIGKILL it once the portal has served
    half the rows to it and some rows are stored (when `kill`). Returns the exit code."""
    url = warehouse.engine.url.render_as_string(hide_password=False)
    method = KINDS[entity][0]
    served = portal.counters[method].rows
    flag = "1" if full_refresh else "0"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, warehouse.table_prefix, flag, entity],
        stdin=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    assert child.stdin is not None
    child.stdin.write(portal.webhook_url + "\n")  # the webhook code stays off the command line
    child.stdin.close()
    if kill:
        deadline = time.monotonic() + 60
        while portal.counters[method].rows < served + ROWS // 2 or not _stored(warehouse, entity):
            assert child.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    return child.wait(timeout=120)


def _stored(warehouse: Warehouse, entity: str) -> dict[int, tuple[datetime, bool]]:
    """id -> (change time in UTC, marked deleted); empty while the table is not there."""
    table = warehouse.table_name(entity)
    try:
        with warehouse.engine.connect() as connection:
            query = f"SELECT id, {KINDS[entity][2]}, _deleted_at FROM {table}"
            rows = list(connection.exec_driver_sql(query))
    except sa.exc.SQLAlchemyError:
        return {}
    return {int(i): (_utc(changed), deleted is not None) for i, changed, deleted in rows}


def _utc(value: object) -> datetime:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _portal(portal: EmulatedPortal, entity: str) -> dict[int, datetime]:
    changed = KINDS[entity][1]
    rows = portal.store.raw_rows(entity)
    return {int(row["ID"]): datetime.fromtimestamp(row[changed], UTC) for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("entity", list(KINDS))
def test_a_sync_killed_half_way_leaves_warehouse_and_cursor_consistent(
    warehouse: Warehouse, entity: str
) -> None:
    key = warehouse.table_name(entity)
    sizes = PortalSizes(deals=ROWS) if entity == "crm.deal" else PortalSizes(deals=100, smart_items=ROWS)
    with EmulatedPortal(seed=31, sizes=sizes, plan="standard", time_scale=0.05) as portal:
        # a first sync killed: some rows, no cursor, nothing stamped
        assert _run_child(portal, warehouse, entity, full_refresh=False, kill=True) == -signal.SIGKILL
        stored = _stored(warehouse, entity)
        truth = _portal(portal, entity)
        assert 0 < len(stored) < ROWS
        assert warehouse.read_cursor(key) is None
        assert all(truth[i] == changed and not gone for i, (changed, gone) in stored.items())

        # the rerun completes it
        assert _run_child(portal, warehouse, entity, full_refresh=False, kill=False) == 0
        assert _stored(warehouse, entity) == {i: (t, False) for i, t in truth.items()}
        cursor = warehouse.read_cursor(key)
        assert cursor is not None

        # a full refresh killed after deals were deleted on the portal: no stamp, old cursor
        gone = portal.store.ids(entity)[::1_000]
        for row_id in gone:
            portal.store.delete(entity, row_id)
        assert _run_child(portal, warehouse, entity, full_refresh=True, kill=True) == -signal.SIGKILL
        assert not any(deleted for _, deleted in _stored(warehouse, entity).values())
        assert warehouse.read_cursor(key) == cursor

        # the rerun stamps exactly the deleted deals
        assert _run_child(portal, warehouse, entity, full_refresh=True, kill=False) == 0
        stored = _stored(warehouse, entity)
        assert {i for i, (_, deleted) in stored.items() if deleted} == set(gone)
        assert {i: t for i, (t, deleted) in stored.items() if not deleted} == _portal(portal, entity)
