"""One failure, one message: a cause shared by every entity is reported once, with a remedy."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    JobDefinition,
    execute_job,
    materialize,
    reconstructable,
)
from dagster.components.testing.utils import component_defs

from dagster_bitrix24 import (
    Bitrix24Component,
    Bitrix24Resource,
    SQLWarehouseResource,
    build_bitrix24_assets,
)
from dagster_bitrix24.failures import failure_messages
from dagster_bitrix24.schedules import RANGE_END, RANGE_START
from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.errors import WarehouseUnavailableError


def _errors(instance: DagsterInstance, run_id: str) -> list[str]:
    """Every error-level message of the run, step failures included."""
    return [
        record.user_message + (
            record.dagster_event.step_failure_data.error.message
            if record.dagster_event and record.dagster_event.step_failure_data else ""
        )
        for record in instance.all_logs(run_id)
        if record.level >= 40 and not (
            record.dagster_event and record.dagster_event.event_type == DagsterEventType.RUN_FAILURE
        )
    ]  # fmt: skip


def test_a_wrong_webhook_code_is_one_error_naming_the_cause(portal, tmp_path):
    code = portal.webhook_url.rstrip("/").rsplit("/", 1)[1]
    wrong = portal.webhook_url.replace(f"/{code}/", "/wr0ngc0de/")
    assets = build_bitrix24_assets(entities=["crm.deal", "crm.lead", "user"])
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [assets],
        resources={
            "bitrix24": Bitrix24Resource(webhook_url=wrong),
            "warehouse": SQLWarehouseResource(url=f"sqlite:///{tmp_path / 'w.sqlite'}"),
        },
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    [error] = _errors(instance, result.run_id)
    assert "3 assets (bitrix24/crm_deal, bitrix24/crm_lead, bitrix24/user)" in error
    assert "HTTP 401" in error and "check BITRIX24_WEBHOOK_URL" in error
    assert "wr0ngc0de" not in error


def test_different_causes_stay_apart():
    lines = failure_messages({"a": ValueError("one"), "b": ValueError("one"), "c": KeyError("two")})
    assert lines == ["2 assets (a, b): ValueError: one", "c: KeyError: 'two'"]


def test_a_sqlite_file_in_a_missing_folder_names_its_path(tmp_path):
    path = tmp_path / "no" / "such" / "warehouse.sqlite"
    with pytest.raises(WarehouseUnavailableError, match=str(Path(path.parent))):
        Warehouse(f"sqlite:///{path}")


#: A run shaped like the example's hourly job: the component's partitioned CRM step and
#: its directory step, one schedule's job over both.
HOURLY_YAML = """
portal: main
webhook_url_env: TEST_BITRIX24_WEBHOOK
plan: unlimited
entities: [crm.deal, crm.lead, user, department]
warehouse_url: {url}
partitions: {{granularity: daily, start: "2020-01-01"}}
schedule: "0 * * * *"
checks: false
"""


def _wrong_code(url: str) -> str:
    code = url.rstrip("/").rsplit("/", 1)[1]
    return url.replace(f"/{code}/", "/wr0ngc0de/")


def _step_failures(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> its failure's message."""
    return {
        record.step_key: record.dagster_event.step_failure_data.error.message
        for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    }


def test_a_wrong_code_is_one_error_for_a_run_of_two_bitrix24_steps(portal, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_BITRIX24_WEBHOOK", _wrong_code(portal.webhook_url))
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    defs = component_defs(component=Bitrix24Component.resolve_from_yaml(HOURLY_YAML.format(url=url)))
    job = defs.resolve_job_def("bitrix24_main_job")
    instance = DagsterInstance.ephemeral()
    today = datetime.now(UTC).date().isoformat()
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, tags={RANGE_START: today, RANGE_END: today}
    )

    assert not result.success  # loudly: both steps failed, their assets are not materialised
    failures = _step_failures(instance, result.run_id)
    assert set(failures) == {"bitrix24_main", "bitrix24_main_directory"}
    naming = [e for e in _errors(instance, result.run_id) if "HTTP 401" in e]
    [error] = naming  # the cause once, in the step that failed of it first
    assert "2 assets (bitrix24/crm_deal, bitrix24/crm_lead)" in error
    assert "check BITRIX24_WEBHOOK_URL" in error
    reference = failures["bitrix24_main_directory"]
    assert "2 assets (bitrix24/user, bitrix24/department): the same failure as step " \
        "bitrix24_main (InvalidTokenError)" in reference  # fmt: skip
    assert "wr0ngc0de" not in str(list(instance.all_logs(result.run_id)))


def hourly_job() -> JobDefinition:
    """The job of `HOURLY_YAML`, its warehouse from TEST_BITRIX24_WAREHOUSE: rebuilt in each
    step's process by the multiprocess executor."""
    yaml = HOURLY_YAML.format(url="null") + "warehouse_url_env: TEST_BITRIX24_WAREHOUSE\n"
    defs = component_defs(component=Bitrix24Component.resolve_from_yaml(yaml))
    return defs.resolve_job_def("bitrix24_main_job")


def test_steps_failing_at_once_in_parallel_processes_still_show_the_cause_once(
    portal, tmp_path, monkeypatch
):
    monkeypatch.setenv("TEST_BITRIX24_WEBHOOK", _wrong_code(portal.webhook_url))
    monkeypatch.setenv("TEST_BITRIX24_WAREHOUSE", f"sqlite:///{tmp_path / 'w.sqlite'}")
    today = datetime.now(UTC).date().isoformat()
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        result = execute_job(
            reconstructable(hourly_job), instance, raise_on_error=False,
            tags={RANGE_START: today, RANGE_END: today},
        )  # fmt: skip
        assert not result.success
        failures = _step_failures(instance, result.run_id)
        assert set(failures) == {"bitrix24_main", "bitrix24_main_directory"}
        [error] = [e for e in _errors(instance, result.run_id) if "HTTP 401" in e]
        assert "check BITRIX24_WEBHOOK_URL" in error
        assert sum("the same failure as step" in e for e in failures.values()) == 1


def test_a_different_failure_in_the_second_step_is_shown_in_full(portal, tmp_path):
    crm = build_bitrix24_assets(entities=["crm.deal"])
    directory = build_bitrix24_assets(
        entities=["user"], name="directory", bitrix24_resource_key="elsewhere"
    )
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [crm, directory],
        resources={
            "bitrix24": Bitrix24Resource(webhook_url=_wrong_code(portal.webhook_url)),
            "elsewhere": Bitrix24Resource(  # nothing listens on port 9: another cause
                webhook_url="http://127.0.0.1:9/rest/1/abc/", time_scale=0.01
            ),
            "warehouse": SQLWarehouseResource(url=f"sqlite:///{tmp_path / 'w.sqlite'}"),
        },
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    failures = _step_failures(instance, result.run_id)
    assert "HTTP 401" in failures["bitrix24_default"]
    assert "check the host in BITRIX24_WEBHOOK_URL" in failures["directory"]
    assert "same failure" not in " ".join(failures.values())
