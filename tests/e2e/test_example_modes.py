"""The example keeps the demo and a real portal apart, and runs one sync per portal at a time."""

import pytest
import sqlalchemy as sa
from bitrix24_example.resources import ExampleWarehouseResource, claim_warehouse
from dagster import DagsterInstance, Failure, asset, materialize
from dagster._core.instance.config import PoolGranularity
from dagster._core.instance.ref import InstanceRef

from tests.e2e.dagster_dev import EXAMPLE_DIR


@asset(required_resource_keys={"warehouse"})
def touches_the_warehouse() -> None:
    """Any asset using the warehouse resource."""


def _run(instance: DagsterInstance, url: str, portal: str):
    warehouse = ExampleWarehouseResource(url=url, portal=portal)
    return materialize(
        [touches_the_warehouse], resources={"warehouse": warehouse}, instance=instance,
        raise_on_error=False,
    )  # fmt: skip


def test_an_instance_with_the_demos_history_refuses_a_real_portal(tmp_path):
    instance = DagsterInstance.ephemeral()
    assert _run(instance, f"sqlite:///{tmp_path / 'demo.sqlite'}", "demo").success
    refused = _run(instance, f"sqlite:///{tmp_path / 'real.sqlite'}", "x.bitrix24.com")
    assert not refused.success
    messages = " ".join(
        e.event_specific_data.error.message
        for e in refused.all_events
        if getattr(e.event_specific_data, "error", None)
    )
    assert "holds the run history of the demo portal, not x.bitrix24.com" in messages
    assert "use another DAGSTER_HOME for each portal" in messages
    assert _run(DagsterInstance.ephemeral(), f"sqlite:///{tmp_path / 'real.sqlite'}",
                "x.bitrix24.com").success  # fmt: skip


def test_a_warehouse_with_the_demos_rows_refuses_a_real_portal(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    claim_warehouse(engine, "demo")
    claim_warehouse(engine, "demo")  # the same portal again: fine
    with pytest.raises(Failure, match="holds data of the demo portal, not x.bitrix24.com"):
        claim_warehouse(engine, "x.bitrix24.com")
    engine.dispose()


def test_the_examples_instance_runs_one_sync_per_portal_at_a_time(tmp_path):
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(EXAMPLE_DIR))  # what dg dev does
    with DagsterInstance.from_ref(ref) as instance:
        config = instance.get_concurrency_config().pool_config
    assert config.default_pool_limit == 1
    assert config.pool_granularity == PoolGranularity.RUN
