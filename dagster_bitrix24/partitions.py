"""Time partitions over an entity's change time, and counting rows per partition key."""

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from bitrix_core.errors import BitrixParameterError

Granularity = Literal["hourly", "daily", "monthly"]

_DEFINITIONS: dict[str, Callable[..., TimeWindowPartitionsDefinition]] = {
    "hourly": HourlyPartitionsDefinition,
    "daily": DailyPartitionsDefinition,
    "monthly": MonthlyPartitionsDefinition,
}


def change_time_partitions(
    granularity: Granularity, *, start: str | datetime, timezone: str = "UTC",
    end_offset: int = 1,
) -> TimeWindowPartitionsDefinition:  # fmt: skip
    """A Dagster partitions definition over the change time (`DATE_MODIFY`, `updatedTime`...).

    `start` is the first partition, e.g. "2024-01-01" (hourly: "2024-01-01-00:00").
    `end_offset=1` (the default) includes the partition in progress (today's, for daily),
    so that a schedule over the newest partitions syncs today's changes; 0 stops at the
    last complete one.
    """
    try:
        definition = _DEFINITIONS[granularity]
    except KeyError:
        raise BitrixParameterError(
            "granularity", f"must be one of {sorted(_DEFINITIONS)}, not {granularity!r}"
        ) from None
    return definition(start_date=start, timezone=timezone, end_offset=end_offset)


def partition_key_function(
    partitions_def: TimeWindowPartitionsDefinition,
) -> Callable[[datetime], str | None]:
    """A function from a change time to its partition key (None before the first partition).

    Partition boundaries fall on whole minutes, so keys are cached per minute.
    """
    cache: dict[int, str | None] = {}
    first = partitions_def.start.timestamp()

    def key_for(moment: datetime) -> str | None:
        timestamp = moment.timestamp()
        minute = int(timestamp // 60)
        if minute not in cache:
            cache[minute] = (
                None
                if timestamp < first
                else partitions_def.get_partition_key_for_timestamp(minute * 60.0)
            )
        return cache[minute]

    return key_for
