"""MySQL/MariaDB bulk path (`mysql_load`): LOAD DATA into a stage, one guarded merge. It
keeps every guarantee of the row-by-row statement: the upsert, delete and sync tests run
again with every chunk taking it, and awkward text lands byte for byte as executemany
stores it. Turned off (`mysql_bulk_load=False`, or `local_infile=0` in the URL) the engine
never offers the server local files and no LOAD DATA runs (the server's own counter)."""

import inspect
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from dagster_bitrix24 import SQLWarehouseResource
from dagster_bitrix24.warehouse import Warehouse, WriteCounts
from dagster_bitrix24.warehouse.dialects import MysqlWriter, mysql_load
from tests.dagster import test_delete_marking, test_sync, test_warehouse_upsert
from tests.dagster.test_warehouse_support import (
    DEAL_FIELDS,
    cleaned_warehouse,
    deal,
    drop_prefixed,
    select_all,
)


@pytest.fixture
def loads(warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """MySQL only: every chunk takes the LOAD DATA path; the sizes of the staged chunks."""
    if not warehouse_url.startswith("mysql"):
        pytest.skip("the LOAD DATA path is MySQL's")
    monkeypatch.setattr(MysqlWriter, "load_threshold", 1)
    staged: list[int] = []
    stage = mysql_load.stage

    def counting(connection: sa.Connection, table: str, columns: str, text: str) -> bool:
        staged.append(text.count("\n"))
        return stage(connection, table, columns, text)

    monkeypatch.setattr(mysql_load, "stage", counting)
    return staged


@pytest.fixture
def mysql(warehouse_url: str, loads: list[int]) -> Iterator[Warehouse]:
    yield from cleaned_warehouse(warehouse_url)


def _takes_only_a_warehouse(test: Any) -> bool:
    return list(inspect.signature(test).parameters) == ["warehouse"]


_UPSERT_TESTS = [
    test for name, test in vars(test_warehouse_upsert).items()
    if name.startswith("test_") and _takes_only_a_warehouse(test)
]  # fmt: skip


@pytest.mark.parametrize("test", _UPSERT_TESTS, ids=lambda test: test.__name__)
def test_every_upsert_guarantee_holds_on_the_load_path(
    mysql: Warehouse, loads: list[int], test: Any
) -> None:
    test(mysql)
    assert loads, "no chunk took the LOAD DATA path"


def test_rows_written_after_the_scan_started_are_never_stamped_on_the_load_path(
    mysql: Warehouse, loads: list[int]
) -> None:
    test_delete_marking.test_rows_written_after_the_scan_started_are_never_stamped(mysql)
    assert loads


def test_a_killed_run_then_a_rerun_on_the_load_path_is_complete(
    portal: Any, clean_url: str, loads: list[int]
) -> None:
    test_sync.test_run_killed_after_some_chunks_then_rerun_is_complete(portal, clean_url)
    assert sum(loads) > 100  # the first sync (120 deals) and the incremental ones


_AWKWARD = [
    "tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "\\", "N", "NULL",
    "quote'and\"double", "tail\\", "\\t", "ünïcødé ✓", "a\x00b", "", " ", "{f}", "%s",
]  # fmt: skip


def test_awkward_text_is_stored_as_executemany_stores_it(
    mysql: Warehouse, loads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def rows(offset: int) -> list[dict[str, Any]]:
        return [
            deal(offset + i, "2024-09-01T10:00:00+03:00", TITLE=value, STAGE_ID=value)
            for i, value in enumerate(_AWKWARD, start=1)
        ]

    by_load = mysql.prepare_table("by.load", DEAL_FIELDS, id_field="ID",
                                  change_field="DATE_MODIFY")  # fmt: skip
    assert mysql.write_chunk(by_load, rows(0)).inserted == len(_AWKWARD)
    assert loads
    monkeypatch.setattr(MysqlWriter, "load_threshold", 10**9)
    by_rows = mysql.prepare_table("by.rows", DEAL_FIELDS, id_field="ID",
                                  change_field="DATE_MODIFY")  # fmt: skip
    mysql.write_chunk(by_rows, rows(0))

    def stored(layout: Any) -> list[tuple[Any, ...]]:
        return [
            (row._mapping["id"], row._mapping["title"], row._mapping["stage_id"])
            for row in select_all(mysql, layout.table)
        ]

    assert stored(by_load) == stored(by_rows)
    assert {row[1] for row in stored(by_load)} >= {"tab\there", "\\N", "back\\slash"}
    loads.clear()
    monkeypatch.setattr(MysqlWriter, "load_threshold", 1)
    again = mysql.write_chunk(by_load, rows(0))  # the same rows: nothing changes
    assert again == WriteCounts(0, 0, 0, len(_AWKWARD)) and loads


def test_without_the_local_infile_flag_chunks_go_by_executemany(
    warehouse_url: str, loads: list[int]
) -> None:
    engine = sa.create_engine(warehouse_url)  # a caller's engine: the flag is not set
    warehouse = Warehouse(engine, table_prefix="noinfile_")
    try:
        layout = warehouse.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                         change_field="DATE_MODIFY")  # fmt: skip
        rows = [deal(i, "2024-09-01T10:00:00+03:00") for i in range(1, 6)]
        assert warehouse.write_chunk(layout, rows) == WriteCounts(5, 0, 0)
        assert loads == [] and warehouse.row_count(layout) == 5
    finally:
        test_sync_drop = sa.MetaData()
        test_sync_drop.reflect(engine, only=lambda name, _: "noinfile_" in name)
        test_sync_drop.drop_all(engine)
        engine.dispose()


@pytest.mark.parametrize(
    "kinds, row, line",
    [
        (("integer", "text", "boolean"), (1, None, True), "1\t\\N\t1\n"),
        (("integer", "text", "boolean"), (2, "a\tb", None), "2\ta\\tb\t\\N\n"),
        (("integer", "text"), (3, "\\N"), "3\t\\\\N\n"),
        (("integer", "text"), (4, "x\ny\\"), "4\tx\\ny\\\\\n"),
    ],
)
def test_load_text_lines(kinds: tuple[str, ...], row: tuple[Any, ...], line: str) -> None:
    assert mysql_load.tsv_builder(kinds)([row]) == line


# -- the bulk path turned off (`mysql_bulk_load=False`): no local_infile, no LOAD DATA ----

_LOCAL_FILES = 128  # CLIENT_LOCAL_FILES of the MySQL protocol: the server may ask for a file


def _mysql_url() -> str:
    url = os.environ.get("BITRIX24_TEST_MYSQL_URL")
    if not url:
        pytest.skip("BITRIX24_TEST_MYSQL_URL is not set")
    return url


def _com_load(connection: sa.Connection) -> int:
    """LOAD DATA statements this session ran (the server's own counter)."""
    return int(connection.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_load'").one()[1])


def _write(warehouse: Warehouse, layout: Any, rows: list[dict]) -> tuple[WriteCounts, int]:
    """The chunk's counts and the LOAD DATA statements it ran."""
    with warehouse.transaction() as connection:
        before = _com_load(connection)
        counts = warehouse.write_chunk(layout, rows, connection=connection)
        return counts, _com_load(connection) - before


def _may_send_files(warehouse: Warehouse) -> tuple[bool, bool]:
    """(PyMySQL's local_infile flag, the LOCAL_FILES capability sent to the server)."""
    with warehouse.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        return bool(raw._local_infile), bool(raw.client_flag & _LOCAL_FILES)  # type: ignore[union-attr]


def _stored(warehouse: Warehouse, layout: Any) -> list[tuple[Any, ...]]:
    """Every row and child row, `_synced_at` aside (the two writes ran at other times)."""
    rows = [
        tuple(v for k, v in row._mapping.items() if k != "_synced_at")
        for row in select_all(warehouse, layout.table)
    ]
    return rows + [tuple(row) for row in select_all(warehouse, layout.children[0].table)]


def test_with_the_bulk_load_off_nothing_goes_by_load_data_and_the_same_rows_land() -> None:
    url = _mysql_url()
    on = Warehouse(url, table_prefix=f"on{uuid.uuid4().hex[:6]}_")
    off = SQLWarehouseResource(url=url, mysql_bulk_load=False).get_warehouse(
        table_prefix=f"off{uuid.uuid4().hex[:6]}_"
    )
    phone = [{"ID": "1", "VALUE": "+7 900", "VALUE_TYPE": "WORK", "TYPE_ID": "PHONE"}]
    first = [deal(i, "2024-09-01T10:00:00+03:00", PHONE=phone) for i in range(1, 20_001)]
    second = [deal(i, "2024-09-02T10:00:00+03:00" if i % 2 else "2024-08-01T10:00:00+03:00",
                   TITLE="second") for i in range(18_001, 22_001)]  # fmt: skip
    try:
        assert _may_send_files(on) == (True, True) and _may_send_files(off) == (False, False)
        assert isinstance(off.writer, MysqlWriter) and not off.writer.bulk_load
        layouts = [w.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                   change_field="DATE_MODIFY") for w in (on, off)]  # fmt: skip
        (on_first, loads_on), (off_first, loads_off) = (
            _write(w, layout, first) for w, layout in zip((on, off), layouts, strict=True)
        )
        assert on_first == off_first == WriteCounts(20_000, 0, 0)
        assert loads_on == 2 and loads_off == 0  # the parents' stage and the phones
        (on_second, loads_on), (off_second, loads_off) = (
            _write(w, layout, second) for w, layout in zip((on, off), layouts, strict=True)
        )
        assert on_second == off_second == WriteCounts(2_000, 1_000, 1_000)
        assert loads_on == 1 and loads_off == 0  # no phones in this chunk
        assert _stored(on, layouts[0]) == _stored(off, layouts[1])
    finally:
        for warehouse in (on, off):
            drop_prefixed(warehouse.engine, warehouse.table_prefix)
            warehouse.engine.dispose()


def test_local_infile_set_in_the_url_is_left_as_the_user_set_it() -> None:
    url = sa.make_url(_mysql_url())
    no_files = url.update_query_dict({"local_infile": "0"}).render_as_string(hide_password=False)
    warehouse = Warehouse(no_files, table_prefix=f"q{uuid.uuid4().hex[:6]}_")
    try:
        assert _may_send_files(warehouse) == (False, False)
        layout = warehouse.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                         change_field="DATE_MODIFY")  # fmt: skip
        rows = [deal(i) for i in range(1, MysqlWriter.load_threshold + 1)]
        assert _write(warehouse, layout, rows) == (WriteCounts(len(rows), 0, 0), 0)
    finally:
        drop_prefixed(warehouse.engine, warehouse.table_prefix)
        warehouse.engine.dispose()
