"""Many portals from one definition: three emulated portals into one SQLite file or one
PostgreSQL database kept apart by table prefix, or into schemas the sync creates (PostgreSQL,
MariaDB, DuckDB), each table equal to its own portal; one multi-asset, pool and resource per
portal, one schedule over them."""

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from dagster import AssetKey

from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24 import Bitrix24Portal, SQLWarehouseResource, build_bitrix24_portals
from dagster_bitrix24.warehouse.schema.evolve import reflect_table
from tests.conftest import _database_url
from tests.dagster.test_schema_creation import drop_schema

ENTITIES = ["crm.deal", "crm.contact"]


@pytest.fixture
def portals(monkeypatch) -> Iterator[dict[str, EmulatedPortal]]:
    """Three small portals of different sizes and data (unlimited plan), their webhook URLs
    in the environment; names unique per test (they are schema names on PostgreSQL)."""
    tag = uuid.uuid4().hex[:6]
    started = {
        f"p{tag}_{n}": EmulatedPortal(seed=n, deals=40 * n, plan="unlimited").start()
        for n in (1, 2, 3)
    }
    for name, portal in started.items():
        monkeypatch.setenv(f"TEST_{name.upper()}_WEBHOOK", portal.webhook_url)
    try:
        yield started
    finally:
        for portal in started.values():
            portal.stop()


def _definition(portals: dict[str, EmulatedPortal]) -> list[Bitrix24Portal]:
    return [
        Bitrix24Portal(name, webhook_url_env=f"TEST_{name.upper()}_WEBHOOK", entities=ENTITIES)
        for name in portals
    ]


def _run_all(defs) -> None:  # noqa: ANN001
    result = defs.resolve_job_def("bitrix24_portals_job").execute_in_process()
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks)


def _stored(url: str, table: str, schema: str | None, column: str) -> dict[int, str]:
    engine = sa.create_engine(url)
    try:
        reflected = reflect_table(engine, table, schema=schema)
        with engine.connect() as connection:
            rows = connection.execute(sa.select(reflected.c.id, reflected.c[column]))
            return {int(key): value for key, value in rows}
    finally:
        engine.dispose()


def _portal_deals(portal: EmulatedPortal) -> dict[int, str]:
    return {row["ID"]: row["TITLE"] for row in portal.store.raw_rows("crm.deal")}


def _assert_each_portal_equal(url, portals, table_for, schema_for=lambda name: None):  # noqa: ANN001
    for name, portal in portals.items():
        stored = _stored(url, table_for(name, "crm_deal"), schema_for(name), "title")
        assert stored == _portal_deals(portal), name
        contacts = _stored(url, table_for(name, "crm_contact"), schema_for(name), "id")
        assert sorted(contacts) == sorted(portal.store.ids("crm.contact")), name
    counts = [len(_portal_deals(portal)) for portal in portals.values()]
    assert len(set(counts)) == 3  # three different portals: a mix-up could not pass


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'portals.sqlite'}"
    return _database_url("BITRIX24_TEST_POSTGRES_URL")


def test_portals_by_table_prefix_land_apart_in_one_database(portals, shared_url):
    prefix = f"mp{uuid.uuid4().hex[:6]}_"
    defs = build_bitrix24_portals(
        _definition(portals),
        warehouse=SQLWarehouseResource(url=shared_url),
        table_prefix=prefix,
        cron_schedule="30 * * * *",
    )
    names = list(portals)
    for name in names:
        key = AssetKey([name, "bitrix24", "crm_deal"])
        assets = defs.resolve_assets_def(key)
        assert assets.node_def.name == f"bitrix24_{name}"
        assert assets.op.pool == f"bitrix24/{name}"
        assert assets.specs_by_key[key].group_name == f"bitrix24_{name}"
        assert defs.resources[f"bitrix24_{name}"].webhook_url.env_var_name == (
            f"TEST_{name.upper()}_WEBHOOK"
        )
    schedule = defs.resolve_schedule_def("bitrix24_portals_schedule")
    assert schedule.cron_schedule == "30 * * * *"
    try:
        _run_all(defs)
        _assert_each_portal_equal(shared_url, portals, lambda name, t: f"{prefix}{name}_{t}")
    finally:
        engine = sa.create_engine(shared_url)
        from tests.dagster.test_warehouse_support import drop_prefixed

        drop_prefixed(engine, prefix)
        engine.dispose()


@pytest.mark.parametrize("warehouse_url", ["postgres", "mysql", "duckdb"], indirect=True)
def test_portals_by_schema_land_apart_in_schemas_the_first_sync_creates(portals, warehouse_url):
    """No schema exists before the run (names unique per test): each portal's step creates
    its own (a database on MariaDB)."""
    url = warehouse_url
    engine = sa.create_engine(url)
    assert not set(portals) & set(sa.inspect(engine).get_schema_names())
    engine.dispose()
    try:
        defs = build_bitrix24_portals(
            _definition(portals),
            warehouse=SQLWarehouseResource(url=url),
            separate_by="schema",
            cron_schedule=None,
        )
        for name in portals:
            assert defs.resources[f"warehouse_{name}"].schema_name == name
        _run_all(defs)
        _assert_each_portal_equal(
            url, portals, lambda name, t: f"bitrix24_{t}", schema_for=lambda name: name
        )
    finally:
        for name in portals:
            drop_schema(url, name)


def test_a_warehouse_per_schema_keeps_the_writer_options() -> None:
    """Each portal's warehouse resource writes as the one given (nothing is connected)."""
    names = ["acme", "globex"]
    defs = build_bitrix24_portals(
        [Bitrix24Portal(name, webhook_url_env="UNUSED_WEBHOOK", entities=ENTITIES)
         for name in names],
        warehouse=SQLWarehouseResource(
            url="mysql+pymysql://reader@127.0.0.1/crm", mysql_bulk_load=False,
            convert_in_database=True,
        ),
        separate_by="schema",
        cron_schedule=None,
    )  # fmt: skip
    for name in names:
        resource = defs.resources[f"warehouse_{name}"]
        assert (resource.schema_name, resource.mysql_bulk_load, resource.convert_in_database) == (
            name, False, True,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("portals", "options", "message"),
    [
        ([], {}, "one or more"),
        ([("Acme", "A")], {}, "lower-case"),
        ([("acme", "A"), ("acme", "B")], {}, "more than once"),
        ([("acme", "not a variable")], {}, "environment variable"),
        ([("acme", "A")], {"separate_by": "schema"}, "SQLite has no schemas"),
        ([("acme", "A")], {"separate_by": "database"}, "'table_prefix' or 'schema'"),
    ],
)
def test_bad_portal_definitions_fail_before_anything_is_built(portals, options, message):
    with pytest.raises(BitrixParameterError, match=message):
        build_bitrix24_portals(
            [Bitrix24Portal(name, webhook_url_env=env, entities=ENTITIES) for name, env in portals],
            warehouse=SQLWarehouseResource(url="sqlite:///unused.sqlite"),
            **options,
        )


COMPONENT_YAML = """
portals:
{portals}
warehouse_url: {url}
table_prefix: {prefix}
schedule: "45 * * * *"
"""


def test_the_component_takes_a_list_of_portals(portals, tmp_path):
    from dagster.components.testing.utils import component_defs

    from dagster_bitrix24 import Bitrix24Component

    listed = "\n".join(
        f"  - {{name: {name}, webhook_url_env: TEST_{name.upper()}_WEBHOOK, plan: unlimited, "
        f"entities: [crm.deal, crm.contact]}}"
        for name in portals
    )
    url = f"sqlite:///{tmp_path / 'component.sqlite'}"
    yaml = COMPONENT_YAML.format(portals=listed, url=url, prefix="cp_")
    defs = component_defs(component=Bitrix24Component.resolve_from_yaml(yaml))
    assert defs.resolve_schedule_def("bitrix24_portals_schedule").cron_schedule == "45 * * * *"
    assert {f"bitrix24_{name}" for name in portals} <= set(defs.resources)
    _run_all(defs)
    _assert_each_portal_equal(url, portals, lambda name, t: f"cp_{name}_{t}")


def test_the_component_refuses_top_level_entities_beside_portals(tmp_path):
    from dagster.components.testing.utils import component_defs

    from dagster_bitrix24 import Bitrix24Component

    yaml = COMPONENT_YAML.format(
        portals="  - {name: acme, webhook_url_env: ACME, entities: [crm.deal]}",
        url=f"sqlite:///{tmp_path / 'w.sqlite'}",
        prefix="cp_",
    )
    component = Bitrix24Component.resolve_from_yaml(yaml + "entities: [crm.deal]\n")
    with pytest.raises(BitrixParameterError, match="entities of each portal"):
        component_defs(component=component)
