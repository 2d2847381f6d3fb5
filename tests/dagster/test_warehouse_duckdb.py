"""DuckDB specifics: a chunk sent in Arrow blocks counts as one chunk; a file another
process holds is waited for, not failed on; a process writing transactions back to back
keeps the file open, lets go of it when idle, and gives way to a process waiting for it.
(Every other warehouse test runs on a DuckDB file too: `warehouse_url` in
tests/conftest.py.)"""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dagster_bitrix24.warehouse import Warehouse, WriteCounts, duckdb_file
from dagster_bitrix24.warehouse.dialects import DuckdbWriter
from tests.dagster.test_warehouse_support import DEAL_FIELDS, deal, select_all

OLD, NEW, OLDER = (
    "2024-09-02T10:00:00+03:00", "2024-09-03T10:00:00+03:00", "2024-09-01T10:00:00+03:00",
)  # fmt: skip


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}", table_prefix="b_")


def _deals(warehouse: Warehouse):
    return warehouse.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                   change_field="DATE_MODIFY")  # fmt: skip


def test_a_chunk_sent_in_blocks_counts_as_one_chunk(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DuckdbWriter, "block", 7)
    layout = _deals(duckdb_warehouse)
    phones = {"PHONE": [{"ID": "1", "VALUE": "+1", "VALUE_TYPE": "WORK", "TYPE_ID": "PHONE"}]}
    first = [deal(i, OLD, **phones) for i in range(1, 51)]
    assert duckdb_warehouse.write_chunk(layout, first) == WriteCounts(50, 0, 0)
    assert duckdb_warehouse.write_chunk(layout, first) == WriteCounts(0, 0, 0, 50)
    mixed = [deal(i, NEW if i % 2 else OLDER, TITLE="new") for i in range(1, 61)]
    assert duckdb_warehouse.write_chunk(layout, mixed) == WriteCounts(10, 25, 25)
    stored = {row.id: row.title for row in select_all(duckdb_warehouse, layout.table)}
    assert len(stored) == 60
    assert all((title == "new") == (i % 2 == 1 or i > 50) for i, title in stored.items())
    children = select_all(duckdb_warehouse, layout.children[0].table)
    assert sorted(row.parent_id for row in children) == list(range(2, 51, 2))  # kept rows


_HOLDER = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


def test_a_file_another_process_holds_is_waited_for(duckdb_warehouse: Warehouse) -> None:
    layout = _deals(duckdb_warehouse)
    path = duckdb_warehouse.engine.url.database
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), "1.5"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        began = time.monotonic()
        counts = duckdb_warehouse.write_chunk(layout, [deal(1, OLD)])
        waited = time.monotonic() - began
    finally:
        holder.wait(timeout=30)
    assert counts == WriteCounts(1, 0, 0)
    assert waited > 0.5  # it waited for the other process, then wrote


_OPENER = """
import sys, duckdb
try:
    duckdb.connect(sys.argv[1]).close()
    print("opened")
except Exception as error:
    print("locked" if "lock" in str(error).lower() else repr(error))
"""


def _open_once(path: str) -> str:
    """What another process finds when it opens the file once, without waiting."""
    opener = [sys.executable, "-c", _OPENER, path]
    return subprocess.run(opener, capture_output=True, text=True, timeout=120).stdout.strip()


def test_back_to_back_transactions_keep_the_file_until_idle(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_file, "IDLE", 8.0)  # long enough to start another process
    layout = _deals(duckdb_warehouse)
    path = str(duckdb_warehouse.engine.url.database)
    duckdb_warehouse.write_chunk(layout, [deal(1, OLD)])
    duckdb_warehouse.write_chunk(layout, [deal(2, OLD)])
    assert _open_once(path) == "locked"  # kept open after the transactions
    deadline = time.monotonic() + 60
    while _open_once(path) != "opened":  # and let go of once idle, with nothing else done
        assert time.monotonic() < deadline
    assert duckdb_warehouse.row_count(layout) == 2


_WAITER = """
import sys, time
from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.test_warehouse_support import DEAL_FIELDS, deal
warehouse = Warehouse(sys.argv[1], table_prefix="b_")
began = time.monotonic()
layout = warehouse.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY")
counts = warehouse.write_chunk(layout, [deal(1000, "2024-09-02T10:00:00+03:00")])
print(counts.inserted, round(time.monotonic() - began, 2), flush=True)
"""


def test_a_process_streaming_transactions_gives_way_to_a_waiting_one(
    duckdb_warehouse: Warehouse,
) -> None:
    layout = _deals(duckdb_warehouse)
    chunk = [deal(i, OLD) for i in range(1, 201)]
    waiting = threading.Event()
    written_while_waiting = []

    def stream() -> None:  # back to back, until the other process is done (at most 120 s)
        deadline = time.monotonic() + 120
        while waiting.is_set() is False and time.monotonic() < deadline:
            duckdb_warehouse.write_chunk(layout, chunk)
            written_while_waiting.append(1)

    streamer = threading.Thread(target=stream)
    streamer.start()
    url = str(duckdb_warehouse.engine.url)
    try:
        waiter = subprocess.run([sys.executable, "-c", _WAITER, url], capture_output=True,
                                text=True, timeout=300, cwd=Path(__file__).parents[2])  # fmt: skip
    finally:
        waiting.set()
        streamer.join()
    assert waiter.returncode == 0, waiter.stderr[-2000:]
    inserted, seconds = waiter.stdout.split()
    assert inserted == "1"
    assert float(seconds) < 20  # (the streamer went on for up to 120 s: it gave way)
    assert len(written_while_waiting) > 1
    assert duckdb_warehouse.row_count(layout) == 201
    assert not Path(duckdb_warehouse.engine.url.database + ".waiting").exists()  # cleared
