"""A warehouse schema that does not exist is created by the first table (`schema_creation`):
on PostgreSQL, MariaDB (a database) and DuckDB; steps creating it at once all go on; a user
who may not create it gets an error naming the schema; SQLite takes attached databases only."""

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import materialize

from bitrix_core.emulator.portal import EmulatedPortal
from dagster_bitrix24 import (
    Bitrix24Portal,
    SQLWarehouseResource,
    build_bitrix24_assets,
    build_bitrix24_portals,
)
from dagster_bitrix24.warehouse import Warehouse, WriteCounts, schema_creation
from dagster_bitrix24.warehouse.errors import FieldMetadataError, WarehouseUnavailableError
from tests.dagster.conftest import resources
from tests.dagster.test_warehouse_support import DEAL_FIELDS, deal


def new_schema_name() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def drop_schema(url: str, schema: str) -> None:
    """Remove `schema` and its tables (a database on MySQL/MariaDB)."""
    engine = sa.create_engine(url)
    quoted = engine.dialect.identifier_preparer.quote_schema(schema)
    try:
        with engine.begin() as connection:
            if engine.dialect.name in ("mysql", "mariadb"):
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
            elif engine.dialect.name != "sqlite":
                connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
    finally:
        engine.dispose()


@pytest.fixture
def fresh_schema(warehouse_url: str) -> Iterator[tuple[str, str]]:
    """(warehouse URL, a schema name no database holds yet), the schema dropped afterwards."""
    schema = new_schema_name()
    yield warehouse_url, schema
    drop_schema(warehouse_url, schema)


def _prepare(warehouse: Warehouse) -> Any:
    return warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )


def _in_threads(count: int, call: Callable[[], Any]) -> list[Any]:
    """`call` in `count` threads started together: what each returned or raised."""
    start = threading.Barrier(count)
    outcomes: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            start.wait()
            outcomes[index] = call()
        except BaseException as error:  # returned to the test
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_the_first_table_creates_the_missing_schema(fresh_schema: tuple[str, str]) -> None:
    url, schema = fresh_schema
    warehouse = Warehouse(url, schema=schema, table_prefix="bitrix24_")
    if warehouse.dialect_name == "sqlite":
        with pytest.raises(FieldMetadataError, match=f"schema '{schema}' is not an attached"):
            _prepare(warehouse)
        return
    layout = _prepare(warehouse)
    assert warehouse.write_chunk(layout, [deal(i) for i in range(1, 6)]) == WriteCounts(5)
    warehouse.commit_cursor("bitrix24_crm_deal", "5")
    tables = set(sa.inspect(warehouse.engine).get_table_names(schema=schema))
    assert {"bitrix24_crm_deal", "_bitrix24_sync_state"} <= tables
    assert Warehouse(url, schema=schema).read_cursor("bitrix24_crm_deal").value == "5"
    warehouse.engine.dispose()


def test_steps_creating_one_schema_at_once_all_go_on(fresh_schema: tuple[str, str]) -> None:
    url, schema = fresh_schema
    if url.startswith("sqlite"):
        pytest.skip("SQLite has no schemas to create")
    warehouses = [Warehouse(url, schema=schema) for _ in range(4)]
    made = iter(warehouses)
    outcomes = _in_threads(4, lambda: next(made).ensure_schema())
    assert outcomes == [None] * 4
    for warehouse in warehouses:
        warehouse.engine.dispose()
    assert _prepare(Warehouse(url, schema=schema)).table.schema == schema


@pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True)
def test_a_schema_another_transaction_is_creating_is_awaited_not_fatal(
    fresh_schema: tuple[str, str],
) -> None:
    """PostgreSQL's IF NOT EXISTS misses a name another transaction inserted but has not
    committed: the creation waits for it, then fails with a unique violation."""
    url, schema = fresh_schema
    engine = sa.create_engine(url)
    other = engine.connect()
    other.exec_driver_sql(f'CREATE SCHEMA "{schema}"')  # not committed yet
    other_pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    warehouse = Warehouse(url, schema=schema)
    outcome: list[Any] = []

    def create() -> None:
        try:
            outcome.append(warehouse.ensure_schema())
        except BaseException as error:  # shown by the assertions below
            outcome.append(error)

    creator = threading.Thread(target=create)
    creator.start()
    try:  # each poll its own transaction, so that it lists backends started since
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                blocked = watcher.exec_driver_sql(
                    f"SELECT count(*) FROM pg_stat_activity WHERE {other_pid} = "
                    "ANY(pg_blocking_pids(pid))"
                ).scalar()
                if blocked or not creator.is_alive():
                    break
                time.sleep(0.01)
        assert blocked, ("the creation never waited for the other one", outcome)
        other.commit()
    finally:
        other.close()
        creator.join(30)
        engine.dispose()
    assert outcome == [None]
    assert _prepare(warehouse).table.schema == schema


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_duckdb_schema_another_transaction_is_creating_is_tried_again(
    fresh_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB refuses a creation while another transaction's is not committed: the schema
    is looked for again after a pause (during which, here, the other one commits)."""
    url, schema = fresh_schema
    warehouse = Warehouse(url, schema=schema)
    other = warehouse.engine.connect()
    other.exec_driver_sql(f"CREATE SCHEMA {schema}")  # not committed yet
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        other.commit()

    monkeypatch.setattr(schema_creation, "time", SimpleNamespace(sleep=pause))
    try:
        warehouse.ensure_schema()
    finally:
        other.close()
    assert pauses == [schema_creation.PAUSE]  # refused once, then found
    assert _prepare(warehouse).table.schema == schema
    warehouse.engine.dispose()


@pytest.fixture
def user_without_create(warehouse_url: str) -> Iterator[str]:
    """The warehouse URL as a new user who may use its database but create no schema (on
    MariaDB: no database); the user is dropped afterwards."""
    admin = sa.create_engine(warehouse_url)
    base = sa.make_url(warehouse_url)
    user = f"nocreate{uuid.uuid4().hex[:8]}"
    if admin.dialect.name == "postgresql":
        setup, teardown = [f'CREATE ROLE "{user}" LOGIN'], [f'DROP ROLE IF EXISTS "{user}"']
    elif admin.dialect.name in ("mysql", "mariadb"):
        account = f"'{user}'@'{base.host}'"
        setup = [f"CREATE USER {account}", f"GRANT ALL ON `{base.database}`.* TO {account}"]
        teardown = [f"DROP USER IF EXISTS {account}"]
    else:
        pytest.skip("file databases have no users")
    with admin.begin() as connection:
        for statement in setup:
            connection.exec_driver_sql(statement)
    try:
        yield base.set(username=user).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            for statement in teardown:
                connection.exec_driver_sql(statement)
        admin.dispose()


@pytest.mark.parametrize("warehouse_url", ["postgres", "mysql"], indirect=True)
def test_a_schema_the_user_may_not_create_is_named_in_the_error(
    user_without_create: str, fresh_schema: tuple[str, str]
) -> None:
    url, schema = fresh_schema
    warehouse = Warehouse(user_without_create, schema=schema)
    statement = "CREATE DATABASE" if warehouse.dialect_name == "mysql" else "CREATE SCHEMA"
    with pytest.raises(WarehouseUnavailableError, match=f"'{schema}'.*{statement} {schema}"):
        _prepare(warehouse)
    warehouse.engine.dispose()


@pytest.mark.parametrize("warehouse_url", ["postgres", "mysql"], indirect=True)
def test_an_existing_schema_needs_no_right_to_create_one(
    user_without_create: str, fresh_schema: tuple[str, str]
) -> None:
    """PostgreSQL checks the right to create before IF NOT EXISTS: the schema is looked up
    first."""
    url, schema = fresh_schema
    admin = Warehouse(url, schema=schema)
    admin.ensure_schema()
    user = sa.make_url(user_without_create).username
    with admin.engine.begin() as connection:
        if admin.dialect_name == "postgresql":
            connection.exec_driver_sql(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{user}"')
        else:
            host = sa.make_url(url).host
            connection.exec_driver_sql(f"GRANT ALL ON `{schema}`.* TO '{user}'@'{host}'")
    admin.engine.dispose()
    warehouse = Warehouse(user_without_create, schema=schema)
    layout = _prepare(warehouse)
    assert warehouse.write_chunk(layout, [deal(1)]) == WriteCounts(1)
    warehouse.engine.dispose()


def _step_error(result: Any) -> str:
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    return failure.event_specific_data.error.to_string()


@pytest.mark.parametrize("warehouse_url", ["postgres", "mysql"], indirect=True)
def test_a_portal_whose_schema_cannot_be_created_fails_before_any_request(
    user_without_create: str, fresh_schema: tuple[str, str], portal: EmulatedPortal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _, name = fresh_schema  # the portal's name is its schema's
    monkeypatch.setenv("TEST_SCHEMA_PORTAL_WEBHOOK", portal.webhook_url)
    defs = build_bitrix24_portals(
        [Bitrix24Portal(name, webhook_url_env="TEST_SCHEMA_PORTAL_WEBHOOK", entities=["crm.deal"])],
        warehouse=SQLWarehouseResource(url=user_without_create),
        separate_by="schema",
        cron_schedule=None,
        checks=False,
    )
    result = defs.resolve_job_def("bitrix24_portals_job").execute_in_process(raise_on_error=False)
    error = _step_error(result)
    assert "WarehouseUnavailableError" in error and f"schema '{name}'" in error
    assert portal.counters.methods() == []


def test_a_sqlite_schema_not_attached_fails_before_any_request(
    portal: EmulatedPortal, tmp_path: Any
) -> None:
    """`build_bitrix24_portals` refuses SQLite with `separate_by="schema"` when it is built;
    a resource given a schema fails when the step starts."""
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    in_schema = {
        **resources(portal, url),
        "warehouse": SQLWarehouseResource(url=url, schema_name="acme"),
    }
    result = materialize(
        [build_bitrix24_assets(entities=["crm.deal"])], resources=in_schema, raise_on_error=False
    )
    error = _step_error(result)
    assert "FieldMetadataError" in error and "SQLite has no schemas: schema 'acme'" in error
    assert portal.counters.methods() == []


def test_a_sqlite_schema_may_be_an_attached_database(tmp_path: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'main.sqlite'}")
    attached = tmp_path / "acme.sqlite"

    @sa.event.listens_for(engine, "connect")
    def _attach(connection: Any, _record: Any) -> None:
        connection.execute(f"ATTACH DATABASE '{attached}' AS acme")

    warehouse = Warehouse(engine, schema="acme")
    layout = _prepare(warehouse)
    assert warehouse.write_chunk(layout, [deal(1), deal(2)]) == WriteCounts(2)
    assert "bitrix24_crm_deal" in sa.inspect(engine).get_table_names(schema="acme")
    assert "bitrix24_crm_deal" not in sa.inspect(engine).get_table_names()
    engine.dispose()
