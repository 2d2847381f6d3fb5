"""Two writers on one table: a deadlock or serialization failure redoes the chunk, not the run.

Each test provokes the real thing on the real database: another connection holds row 2
while the writer's chunk (rows 1 and 2, in that order) locks row 1 and waits for row 2; the
other connection then asks for row 1 (a deadlock) or commits (a serialization failure of a
REPEATABLE READ writer). The database aborts the writer's transaction; the writer redoes the
whole chunk and lands it.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from dagster_bitrix24.warehouse import Warehouse, WriteCounts, write_retry
from dagster_bitrix24.warehouse.errors import WarehouseWriteError
from tests.dagster.test_warehouse_support import DEAL_FIELDS, cleaned_warehouse, deal

OLD, NEW = "2024-09-01T10:00:00+03:00", "2024-09-03T10:00:00+03:00"
_WAITING = {
    "mysql": "SELECT count(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND datname = current_database()",
}


def _url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set; set it to run this test against that database")
    return url


@pytest.fixture
def mysql_warehouse() -> Iterator[Warehouse]:
    yield from cleaned_warehouse(_url("BITRIX24_TEST_MYSQL_URL"))


@pytest.fixture
def postgres_url() -> str:
    return _url("BITRIX24_TEST_POSTGRES_URL")


class _Writer(threading.Thread):
    """`write_chunk` in a thread: its counts or its error."""

    def __init__(self, write: Callable[[], WriteCounts]) -> None:
        super().__init__(daemon=True)
        self._write = write
        self.counts: WriteCounts | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.counts = self._write()
        except BaseException as error:  # handed to the test
            self.error = error


def _wait_until_blocked(engine: sa.Engine, dialect: str, waiting: int = 1) -> None:
    """Return once `waiting` transactions wait for a row lock (10 s at most)."""
    deadline = time.monotonic() + 10
    with engine.connect() as watcher:
        while time.monotonic() < deadline:
            if watcher.exec_driver_sql(_WAITING[dialect]).scalar() >= waiting:
                return
            watcher.rollback()
            time.sleep(0.15)  # MariaDB refreshes INNODB_TRX only after 0.1 s without a read
    raise AssertionError("the writer never waited for the other connection's lock")


def _titles(warehouse: Warehouse, layout: Any) -> dict[int, str]:
    table = layout.table
    with warehouse.engine.connect() as connection:
        rows = connection.execute(sa.select(table.c.id, table.c.title))
        return {int(row_id): title for row_id, title in rows}


def _deadlock(
    warehouse: Warehouse, dialect: str, caplog: pytest.LogCaptureFixture,
    writing: Warehouse | None = None,
) -> None:  # fmt: skip
    """The other connection holds rows 2..50 (the heavier transaction: the database
    aborts the lighter one, the writer's), the writer (`writing`, else `warehouse`) locks 1
    and waits for 2, the other asks for 1."""
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )
    warehouse.write_chunk(layout, [deal(i, OLD) for i in range(1, 51)])
    table = warehouse.engine.dialect.identifier_preparer.format_table(layout.table)
    chunk = [deal(1, NEW, TITLE="ours"), deal(2, NEW, TITLE="ours")]
    with warehouse.engine.connect() as other, caplog.at_level(logging.WARNING):
        if dialect == "postgresql":  # the writer's deadlock check runs first: it is aborted
            other.exec_driver_sql("SET deadlock_timeout = '10s'")
        other.exec_driver_sql(f"UPDATE {table} SET title = 'other' WHERE id >= 2")
        writer = _Writer(lambda: (writing or warehouse).write_chunk(layout, chunk))
        writer.start()
        _wait_until_blocked(warehouse.engine, dialect)
        other.exec_driver_sql(f"UPDATE {table} SET title = 'other' WHERE id = 1")
        other.commit()
        writer.join(30)
    assert writer.error is None and writer.counts == WriteCounts(0, 2, 0)
    titles = _titles(warehouse, layout)
    assert (titles[1], titles[2], titles[3]) == ("ours", "ours", "other")
    retried = [r.getMessage() for r in caplog.records if r.name == write_retry.__name__]
    assert len(retried) == 1 and "deadlock" in retried[0] and "ids 1 to 2" in retried[0]
    assert "ours" not in retried[0]


def test_mariadb_deadlock_between_two_writers_redoes_the_chunk(
    mysql_warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    _deadlock(mysql_warehouse, "mysql", caplog)


def test_postgresql_deadlock_between_two_writers_redoes_the_chunk(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    for warehouse in cleaned_warehouse(postgres_url):
        _deadlock(warehouse, "postgresql", caplog)


def test_postgresql_serialization_failure_redoes_the_chunk(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A REPEATABLE READ writer whose row was updated and committed by another after its
    snapshot gets 40001; redone with a new snapshot, its newer version lands."""
    engine = sa.create_engine(postgres_url, isolation_level="REPEATABLE READ")
    for warehouse in cleaned_warehouse(postgres_url):
        layout = warehouse.prepare_table(
            "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
        )
        warehouse.write_chunk(layout, [deal(i, OLD) for i in range(1, 4)])
        serial = Warehouse(engine, table_prefix=warehouse.table_prefix)
        table = engine.dialect.identifier_preparer.format_table(layout.table)
        chunk = [deal(1, NEW, TITLE="ours"), deal(2, NEW, TITLE="ours")]
        with warehouse.engine.connect() as other, caplog.at_level(logging.WARNING):
            other.exec_driver_sql(f"UPDATE {table} SET title = 'other' WHERE id = 2")
            writer = _Writer(lambda: serial.write_chunk(layout, chunk))  # noqa: B023
            writer.start()
            _wait_until_blocked(warehouse.engine, "postgresql")
            other.commit()
            writer.join(30)
        engine.dispose()
        assert writer.error is None and writer.counts == WriteCounts(0, 2, 0)
        assert _titles(warehouse, layout) == {1: "ours", 2: "ours", 3: "Deal 3"}
        retried = [r.getMessage() for r in caplog.records if r.name == write_retry.__name__]
        assert len(retried) == 1 and "serialization failure (40001)" in retried[0]


@pytest.mark.slow
def test_mariadb_lock_wait_timeout_that_persists_fails_naming_the_table_and_ids() -> None:
    """A row held for longer than every retry: the run fails with the named error, the
    chunk did not land, and no value of it is in the message."""
    url = _url("BITRIX24_TEST_MYSQL_URL")
    engine = sa.create_engine(url, connect_args={"init_command": "SET innodb_lock_wait_timeout=1"})
    for warehouse in cleaned_warehouse(url):
        layout = warehouse.prepare_table(
            "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
        )
        warehouse.write_chunk(layout, [deal(i, OLD) for i in range(1, 4)])
        impatient = Warehouse(engine, table_prefix=warehouse.table_prefix, write_attempts=2)
        table = engine.dialect.identifier_preparer.format_table(layout.table)
        with warehouse.engine.connect() as other:
            other.exec_driver_sql(f"UPDATE {table} SET title = 'other' WHERE id = 2")
            with pytest.raises(WarehouseWriteError) as raised:
                impatient.write_chunk(
                    layout, [deal(1, NEW, TITLE="ours"), deal(2, NEW, TITLE="ours")]
                )
            other.rollback()
        engine.dispose()
        message = str(raised.value)
        assert raised.value.transient and raised.value.code == "1205"
        assert layout.table.name in message and "ids 1 to 2 (2 rows)" in message
        assert "after 2 attempts" in message and "ours" not in message
        assert _titles(warehouse, layout) == {1: "Deal 1", 2: "Deal 2", 3: "Deal 3"}
