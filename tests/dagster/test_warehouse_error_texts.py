"""A chunk the database refuses fails naming the table, its ids and the database's error,
never a row value: not in the exception, not in Dagster's event log.

Each database is made to refuse a canary title with a check (a trigger on SQLite);
PostgreSQL's DETAIL then shows the failing row, and SQLAlchemy's own message would add the
bound parameters, every value of the chunk. A duplicate in a unique index shows how a
message quoting the value is masked (MariaDB: `Duplicate entry '...'`).
"""

from typing import Any

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, materialize

from dagster_bitrix24 import build_bitrix24_assets
from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.errors import WarehouseWriteError
from dagster_bitrix24.warehouse.write_retry import describe, error_code
from tests.dagster.conftest import PREFIX, resources
from tests.dagster.test_warehouse_support import DEAL_FIELDS, deal

CANARY = "CANARY-7f3a9c"


def _refuse_canary_titles(engine: sa.Engine, table: str) -> None:
    """Make the database refuse a row whose title holds the canary."""
    dialect = engine.dialect.name
    if dialect == "duckdb":
        pytest.skip("DuckDB has no triggers and cannot add a CHECK constraint to a table")
    with engine.begin() as connection:
        if dialect == "sqlite":
            for event in ("INSERT", "UPDATE"):
                connection.exec_driver_sql(
                    f"CREATE TRIGGER no_canary_{event.lower()} BEFORE {event} ON {table} "
                    "WHEN instr(NEW.title, 'CANARY') BEGIN SELECT RAISE(ABORT, 'no canary'); END"
                )
        else:
            found = (
                "strpos(title, 'CANARY')" if dialect == "postgresql" else "instr(title, 'CANARY')"
            )
            connection.exec_driver_sql(
                f"ALTER TABLE {table} ADD CONSTRAINT no_canary CHECK ({found} = 0)"
            )


@pytest.mark.parametrize("size", [2, 2_500])  # PostgreSQL: the INSERT path and the COPY path
def test_refused_chunk_names_table_ids_and_code_without_values(
    warehouse: Warehouse, size: int
) -> None:
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )
    table = layout.table.name
    _refuse_canary_titles(warehouse.engine, table)
    rows = [deal(i, TITLE=f"title {i}") for i in range(10, 10 + size)]
    rows[-2]["TITLE"] = f"{CANARY} title"
    with pytest.raises(WarehouseWriteError) as raised:
        warehouse.write_chunk(layout, rows)
    message = str(raised.value)
    assert CANARY not in message
    assert message.startswith(f"writing {table}, ids 10 to {9 + size} ({size} rows) failed: ")
    code = {"sqlite": "SQLITE_CONSTRAINT_TRIGGER", "postgresql": "23514", "mysql": "4025"}
    assert raised.value.code == code[warehouse.dialect_name]
    assert f" {code[warehouse.dialect_name]}: " in message
    assert raised.value.__cause__ is None and not raised.value.transient
    assert warehouse.row_count(layout) == 0  # nothing of the chunk landed


def test_database_messages_quoting_a_value_are_masked(warehouse: Warehouse) -> None:
    """A duplicate in a unique index: MariaDB quotes the value in its message, PostgreSQL in
    its DETAIL; `describe` keeps the code and the message, not the value."""
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )
    table = layout.table.name
    qmark = warehouse.engine.dialect.paramstyle == "qmark" or warehouse.dialect_name == "duckdb"
    marker = "?" if qmark else "%s"
    insert = f"INSERT INTO {table} (id, stage_id) VALUES ({marker}, {marker})"
    with warehouse.engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE UNIQUE INDEX {table}_stage ON {table} (stage_id)")
        connection.exec_driver_sql(insert, (1, CANARY))
        with pytest.raises(sa.exc.IntegrityError) as raised:
            connection.exec_driver_sql(insert, (2, CANARY))
    if warehouse.dialect_name != "sqlite":  # SQLite names the index, not the value
        assert CANARY in str(raised.value.orig)  # what the database said
    described = describe(raised.value)
    assert CANARY not in described and error_code(raised.value) in described
    assert any(kind in described for kind in ("IntegrityError", "UniqueViolation",
                                              "ConstraintException"))  # fmt: skip


def _event_log_text(instance: DagsterInstance, run_id: str) -> str:
    return "\n".join(repr(entry) for entry in instance.all_logs(run_id))


def test_refused_write_keeps_the_value_out_of_the_dagster_event_log(
    portal: Any, clean_url: str
) -> None:
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX)
    materialize([assets], resources=resources(portal, clean_url))
    writer = Warehouse(clean_url, table_prefix=PREFIX)
    _refuse_canary_titles(writer.engine, "dtest_crm_deal")
    writer.engine.dispose()
    canary_id = portal.store.ids("crm.deal")[5]
    portal.store.update(
        "crm.deal", canary_id, {"TITLE": f"{CANARY} title", "DATE_MODIFY": portal.store.now()}
    )

    instance = DagsterInstance.ephemeral()
    result = materialize(
        [assets], resources=resources(portal, clean_url), instance=instance, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.event_specific_data.error.to_string()
    assert "WarehouseWriteError" in error and "writing dtest_crm_deal, ids " in error
    logged = _event_log_text(instance, result.run_id)
    assert "WarehouseWriteError" in logged
    assert CANARY not in logged
