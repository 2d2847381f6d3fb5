"""Fixtures for the Dagster layer: a small emulated portal, resources, warehouse readers."""

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from bitrix_core.emulator.portal import EmulatedPortal
from dagster_bitrix24 import Bitrix24Resource, SQLWarehouseResource
from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.schema.evolve import reflect_table
from tests.dagster.test_warehouse_support import cleaned_warehouse


@pytest.fixture
def portal() -> Iterator[EmulatedPortal]:
    """A small portal (120 deals) on the unlimited plan, served from a background thread."""
    started = EmulatedPortal(seed=7, deals=120, plan="unlimited").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    """A `Warehouse` on each dialect, its tables under a unique prefix, dropped afterwards."""
    yield from cleaned_warehouse(warehouse_url)


#: Table prefix of the tests that use the shared PostgreSQL/MariaDB databases, so they do not
#: collide with other test modules' `bitrix24_*` tables there.
PREFIX = "dtest_"


@pytest.fixture
def clean_url(warehouse_url: str) -> Iterator[str]:
    """The warehouse URL with every `dtest_*` table dropped before and after the test."""
    drop_tables(warehouse_url)
    yield warehouse_url
    drop_tables(warehouse_url)


def drop_tables(url: str, prefix: str = PREFIX) -> None:
    """Drop the tables (and state tables) whose names start with `prefix`."""
    engine = sa.create_engine(url)
    try:
        names = sa.inspect(engine).get_table_names()
        quote = engine.dialect.identifier_preparer.quote
        with engine.begin() as connection:
            for name in names:
                if name.startswith((prefix, f"_{prefix}")):
                    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")
    finally:
        engine.dispose()


def resources(portal: EmulatedPortal, url: str, **options: Any) -> dict[str, Any]:
    """The two resources under their default keys."""
    return {
        "bitrix24": Bitrix24Resource(webhook_url=portal.webhook_url, plan="unlimited", **options),
        "warehouse": SQLWarehouseResource(url=url),
    }


def select_columns(url: str, table: str, *columns: str, schema: str | None = None) -> list[tuple]:
    """Every row of a warehouse table, only `columns`, in no particular order."""
    engine = sa.create_engine(url)
    try:
        reflected = reflect_table(engine, table, schema=schema)
        with engine.connect() as connection:
            query = sa.select(*(reflected.c[c] for c in columns))
            return [tuple(row) for row in connection.execute(query)]
    finally:
        engine.dispose()


def portal_multifields(portal: EmulatedPortal, entity: str, kind: str) -> dict[int, list[tuple]]:
    """owner id -> [(value id, value type, value)] of one multi-field kind on the portal."""
    found = portal.store.multifields(entity, portal.store.ids(entity))
    return {
        owner: [(int(v["ID"]), v["VALUE_TYPE"], v["VALUE"]) for v in values[kind]]
        for owner, values in found.items()
        if values.get(kind)
    }


def stored_multifields(url: str, table: str, kind: str) -> dict[int, list[tuple]]:
    """The same, read from the kind's child table, in the stored position order."""
    rows = select_columns(url, table, "parent_id", "position", "value_id", "value_type",
                          "value", "type_id")  # fmt: skip
    out: dict[int, list[tuple]] = {}
    for parent, _, value_id, value_type, value, type_id in sorted(rows):
        assert type_id == kind
        out.setdefault(int(parent), []).append((value_id, value_type, value))
    return out


def stored_rows(url: str, table: str, *columns: str) -> dict[int, tuple]:
    """id -> (columns...) of the live (not deleted) rows of a warehouse table."""
    engine = sa.create_engine(url)
    try:
        reflected = reflect_table(engine, table)
        query = sa.select(reflected.c.id, *(reflected.c[c] for c in columns)).where(
            reflected.c._deleted_at.is_(None)
        )
        with engine.connect() as connection:
            return {int(row[0]): tuple(row[1:]) for row in connection.execute(query)}
    finally:
        engine.dispose()


def materializations(result: Any) -> dict[str, dict[str, Any]]:
    """asset key -> metadata values of a run's materialisations (last one wins)."""
    found: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        found[event.asset_key.to_user_string()] = {
            key: getattr(value, "value", value) for key, value in metadata.items()
        }
    return found
