"""DuckDB specifics: a chunk sent in Arrow blocks counts as one chunk, and a file another
process holds is waited for, not failed on. (Every other warehouse test runs on a DuckDB
file too: `warehouse_url` in tests/conftest.py.)"""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagster_bitrix24.warehouse import Warehouse, WriteCounts
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
