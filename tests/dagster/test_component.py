"""The `dg` component: YAML in, assets + checks + schedule + resources out, runnable."""

import pytest
from dagster import AssetKey, Definitions, materialize
from dagster.components.testing.utils import component_defs

from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24 import (
    Bitrix24Component,
    Bitrix24Resource,
    SQLWarehouseResource,
    build_bitrix24_assets,
    change_time_partitions,
)
from tests.dagster.conftest import stored_rows

YAML = """
portal: main
webhook_url_env: TEST_BITRIX24_WEBHOOK
plan: unlimited
entities: [crm.deal, crm.company]
warehouse_url: {url}
schedule: "15 * * * *"
lookback_minutes: 5
"""


def test_component_from_yaml_builds_runnable_definitions(portal, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_BITRIX24_WEBHOOK", portal.webhook_url)
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    component = Bitrix24Component.resolve_from_yaml(YAML.format(url=url))
    defs = component_defs(component=component)

    assets = defs.resolve_assets_def(AssetKey(["bitrix24", "crm_deal"]))
    assert assets.node_def.name == "bitrix24_main"
    assert assets.specs_by_key[AssetKey(["bitrix24", "crm_deal"])].kinds == {"bitrix24", "sqlite"}
    schedule = defs.resolve_schedule_def("bitrix24_main_schedule")
    assert schedule.cron_schedule == "15 * * * *"
    assert portal.webhook_url.split("/")[-2] not in repr(defs.resources["bitrix24"])

    result = materialize([assets], selection=[AssetKey(["bitrix24", "crm_company"])])
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == portal.store.count(
        "crm.company"
    )


def test_component_refuses_an_unknown_entity():
    component = Bitrix24Component.resolve_from_yaml("entities: [crm.nothing]")
    with pytest.raises(ValueError, match="crm.nothing"):
        component_defs(component=component)


PARTITIONED_YAML = """
portal: main
webhook_url_env: TEST_BITRIX24_WEBHOOK
plan: unlimited
entities: [crm.deal, user, crm.status]
warehouse_url: {url}
partitions: {{granularity: daily, start: "2020-01-01"}}
"""


def test_a_partitioned_selection_puts_entities_without_change_time_apart(
    portal, tmp_path, monkeypatch
):
    monkeypatch.setenv("TEST_BITRIX24_WEBHOOK", portal.webhook_url)
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    component = Bitrix24Component.resolve_from_yaml(PARTITIONED_YAML.format(url=url))
    defs = component_defs(component=component)

    deals = defs.resolve_assets_def(AssetKey(["bitrix24", "crm_deal"]))
    directory = defs.resolve_assets_def(AssetKey(["bitrix24", "user"]))
    assert deals.node_def.name == "bitrix24_main" and deals.partitions_def is not None
    assert directory.node_def.name == "bitrix24_main_directory"
    assert directory.partitions_def is None
    assert directory.keys == {AssetKey(["bitrix24", "user"]), AssetKey(["bitrix24", "crm_status"])}

    # every asset the YAML lists runs: no per-partition "no change time" failure
    result = materialize([directory])
    assert result.success
    [event] = [
        e for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey(["bitrix24", "user"])
    ]  # fmt: skip
    assert event.materialization.metadata["dagster/row_count"].value == portal.store.count("user")


def test_a_partitioned_factory_refuses_entities_without_change_time_at_load():
    with pytest.raises(BitrixParameterError, match="user, department have no change time"):
        build_bitrix24_assets(
            entities=["crm.deal", "user", "department"],
            partitions_def=change_time_partitions("daily", start="2024-01-01"),
        )


def test_every_yaml_attribute_is_described():
    schema = Bitrix24Component.get_model_cls().model_json_schema()  # what dg and editors show
    assert len(schema["properties"]) == 24
    assert all(field.get("description") for field in schema["properties"].values())


def test_component_can_turn_the_mysql_bulk_path_off() -> None:
    """`warehouse_mysql_bulk_load: false` reaches the writer (no LOAD DATA LOCAL INFILE)."""
    yaml = "entities: [crm.deal]\nwarehouse_url: mysql+pymysql://reader@127.0.0.1/crm\n"
    default = Bitrix24Component.resolve_from_yaml(yaml).warehouse_resource()
    off = Bitrix24Component.resolve_from_yaml(yaml + "warehouse_mysql_bulk_load: false\n")
    resource = off.warehouse_resource()
    assert default.mysql_bulk_load and not resource.mysql_bulk_load
    assert not resource.get_warehouse().writer.bulk_load  # type: ignore[attr-defined]
    assert default.get_warehouse().writer.bulk_load  # type: ignore[attr-defined]


def test_component_limiter_url_from_the_environment_reaches_the_resource(
    portal, tmp_path, monkeypatch
):
    from bitrix_core.limiter_backends import RedisLimiterBackend

    monkeypatch.setenv("TEST_BITRIX24_WEBHOOK", portal.webhook_url)
    monkeypatch.setenv("TEST_BITRIX24_LIMITER", "redis://:c0mp0nent-pw@127.0.0.1:6379/13")
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    yaml = YAML.format(url=url) + "limiter_url_env: TEST_BITRIX24_LIMITER\n"
    defs = component_defs(component=Bitrix24Component.resolve_from_yaml(yaml))
    resource = defs.resources["bitrix24"]
    assert "c0mp0nent-pw" not in repr(resource)
    backend = resource._limiter_kwargs()["backend"]  # get_client needs the run's resolved URL
    assert isinstance(backend, RedisLimiterBackend)
    assert "c0mp0nent-pw" not in repr(backend)


#: One portal's component, as a second `defs.yaml` would hold it.
PREFIXED_YAML = """
key_prefix: {prefix}
webhook_url_env: TEST_{upper}_WEBHOOK
plan: unlimited
entities: [crm.deal, user]
warehouse_url: {url}
schedule: "0 * * * *"
"""


def test_two_portals_components_and_a_python_bound_resource_share_a_code_location(
    portal, tmp_path, monkeypatch
):
    other = EmulatedPortal(seed=11, deals=40, plan="unlimited").start()
    try:
        url = f"sqlite:///{tmp_path / 'w.sqlite'}"
        portals = {"acme": portal, "globex": other}
        loaded = []
        for prefix, served in portals.items():
            monkeypatch.setenv(f"TEST_{prefix.upper()}_WEBHOOK", served.webhook_url)
            yaml = PREFIXED_YAML.format(prefix=prefix, upper=prefix.upper(), url=url)
            loaded.append(component_defs(component=Bitrix24Component.resolve_from_yaml(yaml)))
        python = Definitions(  # the example's way: a bitrix24 resource bound in Python
            assets=[build_bitrix24_assets(entities=["crm.company"])],
            resources={"bitrix24": Bitrix24Resource(webhook_url=portal.webhook_url),
                       "warehouse": SQLWarehouseResource(url=url)},
        )  # fmt: skip
        defs = Definitions.merge(*loaded, python)
        Definitions.validate_loadable(defs)  # what `dg check defs` does

        for prefix in portals:
            key = AssetKey([prefix, "bitrix24", "crm_deal"])
            deals = defs.resolve_assets_def(key)
            assert deals.node_def.name == f"bitrix24_{prefix}"
            assert deals.node_def.pool == f"bitrix24/{prefix}"
            assert deals.specs_by_key[key].group_name == f"bitrix24_{prefix}"
            assert deals.required_resource_keys >= {f"bitrix24_{prefix}", f"warehouse_{prefix}"}
            job = defs.resolve_job_def(f"bitrix24_{prefix}_job")  # each schedule's own job
            result = job.execute_in_process()
            assert result.success
            checked = {(e.asset_key, e.check_name) for e in result.get_asset_check_evaluations()
                       if e.passed}  # fmt: skip  # the checks ran on the prefix's own resources
            assert (AssetKey([prefix, "bitrix24", "user"]), "row_count_matches_portal") in checked
        for prefix, served in portals.items():  # each portal's rows in its own tables
            for entity in ("crm.deal", "user"):
                table = f"bitrix24_{prefix}_{entity.replace('.', '_')}"
                assert set(stored_rows(url, table)) == set(served.store.ids(entity)), table
        assert set(portal.store.ids("crm.deal")) != set(other.store.ids("crm.deal"))
    finally:
        other.stop()


def test_explicit_keys_win_over_the_ones_key_prefix_derives(portal, tmp_path):
    yaml = (
        "key_prefix: [eu, acme]\nportal: main\ntable_prefix: crm_\nresource_key: acme_portal\n"
        "warehouse_resource_key: dwh\nentities: [crm.deal]\n"
        f"warehouse_url: sqlite:///{tmp_path / 'w.sqlite'}\n"
    )
    defs = component_defs(component=Bitrix24Component.resolve_from_yaml(yaml))
    key = AssetKey(["eu", "acme", "bitrix24", "crm_deal"])
    deals = defs.resolve_assets_def(key)
    assert deals.node_def.name == "bitrix24_main" and deals.node_def.pool == "bitrix24/main"
    assert deals.specs_by_key[key].group_name == "bitrix24_eu_acme"
    assert deals.specs_by_key[key].metadata["dagster/table_name"] == "crm_crm_deal"
    assert set(defs.resources) == {"acme_portal", "dwh"}


def test_key_prefix_with_a_portals_list_is_refused_by_name():
    yaml = "key_prefix: acme\nportals: [{name: a, webhook_url_env: A_URL, entities: [crm.deal]}]"
    with pytest.raises(BitrixParameterError, match="'key_prefix': applies to one portal"):
        component_defs(component=Bitrix24Component.resolve_from_yaml(yaml))
