"""build_bitrix24_schedule: a tick's run request, executed against the emulator."""

from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    RunRequest,
    build_schedule_context,
)

from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24 import build_bitrix24_assets, build_bitrix24_schedule, change_time_partitions
from dagster_bitrix24.schedules import recent_partition_range
from tests.dagster.conftest import materializations, resources

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _tick(schedule, at: datetime):
    with build_schedule_context(scheduled_execution_time=at) as context:
        return schedule.evaluate_tick(context).run_requests


def _execute(schedule, assets, request: RunRequest, portal, url: str):
    defs = Definitions(assets=assets, schedules=[schedule], resources=resources(portal, url))
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def(schedule.job_name)
    result = job.execute_in_process(instance=instance, tags=request.tags)
    assert result.success and len(instance.get_runs()) == 1
    return result


def test_partitioned_tick_is_one_run_over_yesterday_and_today(portal, tmp_path):
    now = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)
    today = now.date()
    daily = DailyPartitionsDefinition(start_date=str(today - timedelta(days=30)), end_offset=1)
    crm = build_bitrix24_assets(name="crm", entities=["crm.deal"], partitions_def=daily)
    directory = build_bitrix24_assets(name="directory", entities=["crm.category"])
    schedule = build_bitrix24_schedule([crm, directory], name="hourly")

    (request,) = _tick(schedule, now)
    yesterday = str(today - timedelta(days=1))
    assert request.tags[RANGE_START] == yesterday and request.tags[RANGE_END] == str(today)
    assert request.partition_key is None

    result = _execute(schedule, [crm, directory], request, portal, f"sqlite:///{tmp_path}/w.db")
    events = result.get_asset_materialization_events()
    partitions = sorted(e.materialization.partition for e in events if e.materialization.partition)
    assert partitions == [yesterday, str(today)]
    assert materializations(result)["bitrix24/crm_category"]["dagster/row_count"] == 3

    (wider,) = _tick(build_bitrix24_schedule(crm, recent_partitions=7), now)
    assert wider.tags[RANGE_START] == str(today - timedelta(days=6))


def test_partitions_not_started_yet_skip_the_tick():
    later = DailyPartitionsDefinition(start_date="2099-01-01")
    crm = build_bitrix24_assets(entities=["crm.deal"], partitions_def=later)
    with build_schedule_context(scheduled_execution_time=datetime.now(UTC)) as context:
        outcome = build_bitrix24_schedule(crm).evaluate_tick(context)
    assert not outcome.run_requests and outcome.skip_message


def test_unpartitioned_tick_is_a_plain_incremental_run(portal, tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    assets = build_bitrix24_assets(entities=["crm.deal"])
    schedule = build_bitrix24_schedule(assets, cron_schedule="15 * * * *")
    assert schedule.cron_schedule == "15 * * * *"
    (request,) = _tick(schedule, datetime.now(UTC))
    assert RANGE_START not in request.tags and request.partition_key is None

    first = materializations(_execute(schedule, [assets], request, portal, url))
    assert first["bitrix24/crm_deal"]["bitrix24/mode"] == "full"
    second = materializations(_execute(schedule, [assets], request, portal, url))
    assert second["bitrix24/crm_deal"]["bitrix24/mode"] == "incremental"


@pytest.mark.parametrize(
    ("arguments", "parameter"),
    [
        ({"assets": []}, "assets"),
        ({"assets": ["crm.deal"]}, "assets"),
        ({"recent_partitions": 0}, "recent_partitions"),
    ],
)
def test_bad_schedule_arguments_are_named(arguments, parameter):
    options = {"assets": build_bitrix24_assets(entities=["crm.deal"]), **arguments}
    with pytest.raises(BitrixParameterError) as raised:
        build_bitrix24_schedule(options.pop("assets"), **options)
    assert raised.value.parameter == parameter


def test_change_time_partitions_let_the_schedule_sync_today():
    """Today's partition exists (end_offset=1 by default), so an hourly tick reads today."""
    daily = change_time_partitions("daily", start="2025-01-01")
    now = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)
    assert recent_partition_range(daily, now=now, count=2) == ("2025-03-09", "2025-03-10")
    complete_only = change_time_partitions("daily", start="2025-01-01", end_offset=0)
    assert recent_partition_range(complete_only, now=now, count=2) == ("2025-03-08", "2025-03-09")
