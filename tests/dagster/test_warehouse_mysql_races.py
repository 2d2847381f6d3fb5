"""The MySQL/MariaDB writer against another writer on the same rows, on real MariaDB: the
bulk path (LOAD DATA into a stage, then one guarded INSERT ... SELECT) and row batches.

Another connection writes some of the chunk's ids after our reads of the stored versions,
and holds its locks uncommitted while our write runs: the write waits, the other commits,
and the guard decides on the newest committed versions. A version newer than ours stays
(with its child rows), an older one is replaced by ours, and the counts say what happened
to each row. A deadlock or lock wait timeout met by the bulk merge redoes the chunk on the
same connection, whose temporary stage the failed attempt left behind.
"""

import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from dagster_bitrix24.warehouse import Warehouse, WriteCounts, write_retry
from dagster_bitrix24.warehouse.dialects import MysqlWriter, mysql_load
from tests.dagster.test_warehouse_retry import _deadlock, _wait_until_blocked, _Writer
from tests.dagster.test_warehouse_support import DEAL_FIELDS, cleaned_warehouse, deal, select_all

T0, T1, T2, T3 = (f"2024-09-0{day}T10:00:00+03:00" for day in (1, 2, 3, 4))  # ours: T2


def _utc(moment: str) -> datetime:
    return datetime.fromisoformat(moment).astimezone(UTC).replace(tzinfo=None)


@pytest.fixture
def mysql() -> Iterator[Warehouse]:
    url = os.environ.get("BITRIX24_TEST_MYSQL_URL")
    if not url:
        pytest.skip("BITRIX24_TEST_MYSQL_URL is not set")
    yield from cleaned_warehouse(url)


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of every stage loaded (a chunk that took the LOAD DATA path)."""
    sizes: list[int] = []
    stage = mysql_load.stage

    def counting(connection: sa.Connection, table: str, columns: str, text: str) -> bool:
        loaded = stage(connection, table, columns, text)
        sizes.append(text.count("\n") if loaded else 0)
        return loaded

    monkeypatch.setattr(mysql_load, "stage", counting)
    return sizes


def _phones(warehouse: Warehouse, layout: Any) -> dict[int, list[str]]:
    phones: dict[int, list[str]] = {}
    for row in select_all(warehouse, layout.children[0].table):
        phones.setdefault(row.parent_id, []).append(row.value)
    return phones


@pytest.mark.parametrize("bulk", [True, False], ids=["load_data", "row_batches"])
def test_other_writers_newer_versions_win_and_older_ones_lose_during_the_merge(
    mysql: Warehouse, staged: list[int], monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    mysql.writer = MysqlWriter(load_threshold=2, bulk_load=bulk)
    layout = mysql.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                 change_field="DATE_MODIFY")  # fmt: skip

    def version(deal_id: int, modified: str, who: str) -> dict:
        return deal(deal_id, modified, TITLE=who, PHONE=[{"ID": "9", "VALUE": f"+{who}{deal_id}"}])

    assert mysql.write_chunk(layout, [version(i, T0, "stored") for i in (1, 2, 3, 4)]) == (
        WriteCounts(4, 0, 0)
    )
    table = mysql.engine.dialect.identifier_preparer.format_table(layout.table)
    owner, name = (mysql_load, "merge") if bulk else (mysql.writer, "send")
    write = getattr(owner, name)
    with mysql.engine.connect() as other:

        def other_writes_before_ours(*args: Any, **kwargs: Any) -> int:
            """After our reads of the stored versions: 1 and 5 newer than ours, 2 and 6
            older (uncommitted until our write waits for them)."""
            for deal_id, modified in ((1, T3), (2, T1)):
                other.exec_driver_sql(
                    f"UPDATE {table} SET title = 'theirs', date_modify = %s WHERE id = %s",
                    (_utc(modified), deal_id),
                )
            for deal_id, modified in ((5, T3), (6, T1)):
                other.exec_driver_sql(
                    f"INSERT INTO {table} (id, title, date_modify) VALUES (%s, 'theirs', %s)",
                    (deal_id, _utc(modified)),
                )
            return write(*args, **kwargs)

        monkeypatch.setattr(owner, name, other_writes_before_ours)
        chunk = [version(i, T2, "ours") for i in range(1, 8)]
        writer = _Writer(lambda: mysql.write_chunk(layout, chunk))
        writer.start()
        _wait_until_blocked(mysql.engine, "mysql")  # our write waits for the other's row 1
        other.commit()
        writer.join(30)
    assert writer.error is None, writer.error
    assert staged == ([4, 7] if bulk else [])  # the chunks took the path under test
    titles = {row.id: (row.title, row.date_modify) for row in select_all(mysql, layout.table)}
    assert titles == {
        1: ("theirs", _utc(T3)), 2: ("ours", _utc(T2)), 3: ("ours", _utc(T2)),
        4: ("ours", _utc(T2)), 5: ("theirs", _utc(T3)), 6: ("ours", _utc(T2)),
        7: ("ours", _utc(T2)),
    }  # fmt: skip
    # the newer versions keep their own child rows: ours are not written for them
    assert _phones(mysql, layout) == {
        1: ["+stored1"], 2: ["+ours2"], 3: ["+ours3"], 4: ["+ours4"], 6: ["+ours6"],
        7: ["+ours7"],
    }  # fmt: skip
    # 6 and 7 were new when we read (6 then came from the other writer, older than ours)
    assert writer.counts == WriteCounts(inserted=2, updated=3, skipped=2)


def test_a_deadlock_in_the_merge_redoes_the_chunk_over_the_stage_it_left(
    mysql: Warehouse, staged: list[int], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The deadlock of `test_warehouse_retry` with the chunk on the LOAD DATA path; the
    writer's engine has one connection, so the redo finds the failed attempt's stage."""
    url = mysql.engine.url.render_as_string(hide_password=False)
    engine = sa.create_engine(url, connect_args={"local_infile": True}, poolclass=sa.StaticPool)
    writer = Warehouse(engine, table_prefix=mysql.table_prefix)
    writer.writer = MysqlWriter(load_threshold=2)
    left_over: list[int] = []
    stage = mysql_load.stage

    def noting_the_left_stage(connection: sa.Connection, *args: Any) -> bool:
        try:
            rows = connection.exec_driver_sql(f"SELECT count(*) FROM {mysql_load.STAGE}")
            left_over.append(rows.scalar_one())
        except sa.exc.ProgrammingError:  # 1146: no such table
            pass
        return stage(connection, *args)

    monkeypatch.setattr(mysql_load, "stage", noting_the_left_stage)
    try:
        _deadlock(mysql, "mysql", caplog, writing=writer)
    finally:
        engine.dispose()
    assert staged == [2, 2]  # the attempt the deadlock aborted, and the redo
    assert len(left_over) == 1  # the redo replaced the stage the aborted attempt left


def test_a_lock_wait_timeout_in_the_merge_redoes_the_chunk_once_the_lock_is_gone(
    mysql: Warehouse, staged: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """The merge waits 1 s for a row another connection holds (1205); the other lets go
    once the writer has logged its redo; the redo lands the chunk by LOAD DATA again."""
    url = mysql.engine.url.render_as_string(hide_password=False)
    engine = sa.create_engine(url, poolclass=sa.StaticPool, connect_args={
        "local_infile": True, "init_command": "SET innodb_lock_wait_timeout = 1",
    })  # fmt: skip
    writing = Warehouse(engine, table_prefix=mysql.table_prefix)
    writing.writer = MysqlWriter(load_threshold=2)
    layout = mysql.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                 change_field="DATE_MODIFY")  # fmt: skip
    mysql.write_chunk(layout, [deal(i, T0) for i in (1, 2, 3)])
    table = mysql.engine.dialect.identifier_preparer.format_table(layout.table)

    def redone() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == write_retry.__name__]

    try:
        with mysql.engine.connect() as other, caplog.at_level(logging.WARNING):
            other.exec_driver_sql(f"UPDATE {table} SET title = 'other' WHERE id = 2")
            chunk = [deal(1, T2, TITLE="ours"), deal(2, T2, TITLE="ours")]
            writer = _Writer(lambda: writing.write_chunk(layout, chunk))
            writer.start()
            deadline = time.monotonic() + 10
            while not redone() and time.monotonic() < deadline:
                time.sleep(0.05)
            other.rollback()
            writer.join(30)
    finally:
        engine.dispose()
    assert writer.error is None and writer.counts == WriteCounts(0, 2, 0)
    assert redone() and all("lock wait timeout (1205)" in m for m in redone())
    assert staged == [2] * (len(redone()) + 1)  # every attempt staged its rows anew
    assert {r.id: r.title for r in select_all(mysql, layout.table)} == {
        1: "ours", 2: "ours", 3: "Deal 3",
    }  # fmt: skip
