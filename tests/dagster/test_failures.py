"""One failure, one message: a cause shared by every entity is reported once, with a remedy."""

from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, materialize

from dagster_bitrix24 import Bitrix24Resource, SQLWarehouseResource, build_bitrix24_assets
from dagster_bitrix24.failures import failure_messages
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
