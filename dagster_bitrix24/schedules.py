"""The recurring sync: one schedule for Bitrix24 assets, partitioned or not.

    hourly = build_bitrix24_schedule([crm, directory, sales_funnel], recent_partitions=2)

Partitioned (change-time) assets: each tick requests ONE run over the newest
`recent_partitions` partitions (daily with today's partition: yesterday..today), tagged
`dagster/asset_partition_range_start/end` like a single-run backfill, so a row changed
late moves to today's partition and yesterday's is re-read once more. Unpartitioned
assets in the same selection run in that run too; with no partitioned asset at all the
tick is a plain incremental run (each entity from its cursor).
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from dagster import (
    AssetsDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    TimeWindow,
    TimeWindowPartitionsDefinition,
    define_asset_job,
    partition_loading_context,
    schedule,
)

from bitrix_core.errors import BitrixParameterError

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def build_bitrix24_schedule(
    assets: AssetsDefinition | Sequence[AssetsDefinition],
    *,
    cron_schedule: str = "0 * * * *",
    recent_partitions: int = 2,
    name: str | None = None,
    job_name: str | None = None,
    description: str | None = None,
    execution_timezone: str = "UTC",
    running: bool = False,
) -> ScheduleDefinition:
    """A schedule syncing `assets` (a Bitrix24 multi-asset, plus any assets to run with it).

    Partitioned assets: one run per tick over the newest `recent_partitions` partitions;
    otherwise an incremental run. All partitioned assets must share one time partitioning.
    """
    selected = [assets] if isinstance(assets, AssetsDefinition) else list(assets)
    if not selected or not all(isinstance(a, AssetsDefinition) for a in selected):
        raise BitrixParameterError("assets", "give one or more AssetsDefinition objects")
    if not isinstance(recent_partitions, int) or recent_partitions < 1:
        raise BitrixParameterError("recent_partitions", "must be a whole number of at least 1")
    partitions_def = _shared_partitioning(selected)
    base = selected[0].node_def.name
    job = define_asset_job(
        name=job_name or f"{base}_job",
        selection=AssetSelection.assets(*selected),
        description=description,
    )
    status = DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED
    if partitions_def is None:
        return ScheduleDefinition(
            name=name or f"{base}_schedule", job=job, cron_schedule=cron_schedule,
            execution_timezone=execution_timezone, default_status=status,
            description=description,
        )  # fmt: skip

    @schedule(
        name=name or f"{base}_schedule",
        job=job,
        cron_schedule=cron_schedule,
        execution_timezone=execution_timezone,
        default_status=status,
        description=description,
    )
    def _recent_partitions(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        now = context.scheduled_execution_time or datetime.now(UTC)
        keys = recent_partition_range(partitions_def, now=now, count=recent_partitions)
        if keys is None:
            return SkipReason(f"no partition has started by {now.isoformat()}")
        return RunRequest(run_key=None, tags={RANGE_START: keys[0], RANGE_END: keys[1]})

    return _recent_partitions


def recent_partition_range(
    partitions_def: TimeWindowPartitionsDefinition, *, now: datetime, count: int
) -> tuple[str, str] | None:
    """The first and last keys of the newest `count` partitions as of `now` (None: none yet)."""
    with partition_loading_context(effective_dt=now):
        last = partitions_def.get_last_partition_window()
        if last is None:
            return None
        first = last
        for _ in range(count - 1):
            earlier = partitions_def.get_prev_partition_window(first.start)
            if earlier is None:
                break
            first = earlier
        keys = partitions_def.get_partition_key_range_for_time_window(
            TimeWindow(first.start, last.end)
        )
    return keys.start, keys.end


def _shared_partitioning(
    selected: Sequence[AssetsDefinition],
) -> TimeWindowPartitionsDefinition | None:
    """The one time partitioning of the partitioned assets (None when none is partitioned)."""
    found = {a.partitions_def for a in selected if a.partitions_def is not None}
    if not found:
        return None
    if len(found) > 1:
        raise BitrixParameterError("assets", "partitioned assets must share one partitioning")
    (partitions_def,) = found
    if not isinstance(partitions_def, TimeWindowPartitionsDefinition):
        raise BitrixParameterError("assets", "partitions must be a time-window partitioning")
    return partitions_def
