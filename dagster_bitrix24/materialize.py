"""Running a materialisation: the selected assets' syncs on one client, reported as
Dagster results. `Bitrix24Resource.sync` and the factory's asset body both run this; it
reads the entity of each asset from its spec's metadata (`constants.py`).
"""

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    MaterializeResult,
    TimeWindowPartitionsDefinition,
)
from pydantic import Field

from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24.constants import (
    ENTITY_SPEC_KEY,
    EXCLUDE_KEY,
    LOOKBACK_KEY,
    TABLE_PREFIX_KEY,
    plain,
    spec_from_metadata,
)
from dagster_bitrix24.failures import sync_failure
from dagster_bitrix24.metadata import (
    aggregate_metadata,
    link_metadata,
    partition_metadata,
    range_summary,
    result_metadata,
    run_metadata,
    type_change_warnings,
    without_loopback_uri,
)
from dagster_bitrix24.partitions import partition_key_function
from dagster_bitrix24.sync import ClientSource, SyncOptions, lookback_from_minutes
from dagster_bitrix24.sync.jobs import AssetJob, JobOutcome, run_jobs
from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.connect import warehouse_kind

#: The kinds that name a warehouse dialect.
_DIALECT_KINDS = frozenset({"sqlite", "postgres", "mysql", "duckdb"})


class PortalSource(ClientSource, Protocol):
    """The portal side of a run: `Bitrix24Resource` is one."""

    @property
    def redacted_portal(self) -> str:
        """The portal's base URL with no secret in it."""
        ...


class WarehouseSource(Protocol):
    """The warehouse side of a run: `SQLWarehouseResource` is one."""

    def get_warehouse(self, *, table_prefix: str = ...) -> Warehouse:
        """A new warehouse writer."""
        ...


class Bitrix24SyncConfig(Config):
    """Run config of a Bitrix24 sync (launchpad or schedule)."""

    full_refresh: bool = Field(
        default=False, description="Fetch every row, replace the cursor, mark deleted rows."
    )
    reset_cursor: bool = Field(
        default=False, description="Forget the cursor: fetch every row, rebuild the cursor."
    )
    check_deletes: bool = Field(
        default=False, description="Also compare the portal's id set and mark deleted rows."
    )
    lookback_minutes: float | None = Field(
        default=None, description="Override the lookback behind the cursor, in minutes."
    )
    chunk_rows: int = Field(
        default=SyncOptions.chunk_rows,
        description="Rows written per warehouse transaction (bounds memory).",
    )



def sync_selected_assets(
    context: AssetExecutionContext,
    *,
    bitrix24: PortalSource,
    warehouse: WarehouseSource,
    config: Bitrix24SyncConfig | None = None,
) -> Iterator[MaterializeResult]:
    """Sync the selected entities concurrently on one client; one result per asset.

    Results are reported once every entity has finished, each with the run's request
    totals (`bitrix24/run_*`). If some entities fail, the others still land and report,
    then the step fails naming the failed entities.
    """
    config = config or Bitrix24SyncConfig()
    assets_def = context.assets_def
    specs = [spec for spec in assets_def.specs if spec.key in context.selected_asset_keys]
    partitions_def = assets_def.partitions_def
    window = key_for = None
    partition_keys: list[str] = []
    if isinstance(partitions_def, TimeWindowPartitionsDefinition):
        if config.full_refresh or config.reset_cursor:
            raise BitrixParameterError(
                "config", "full_refresh/reset_cursor apply to unpartitioned assets only"
            )
        partition_keys = _existing_partitions(context, partitions_def)
        time_window = context.partition_time_window
        window = (time_window.start, time_window.end)
        key_for = partition_key_function(partitions_def)
    jobs = {}
    for spec in specs:
        lookback = config.lookback_minutes
        if lookback is None:
            lookback = float(plain(spec.metadata.get(LOOKBACK_KEY, 15.0)))
        options = SyncOptions(
            full_refresh=config.full_refresh,
            reset_cursor=config.reset_cursor,
            check_deletes=config.check_deletes,
            lookback=lookback_from_minutes(lookback),
            window=window,
            partition_key=key_for,
            chunk_rows=config.chunk_rows,
            run_id=context.run_id,
        )
        exclude = tuple(plain(spec.metadata.get(EXCLUDE_KEY, [])) or ())
        entity = spec_from_metadata(spec.metadata[ENTITY_SPEC_KEY])
        jobs[spec.key] = AssetJob(entity, options, exclude)
    prefix = str(plain(specs[0].metadata.get(TABLE_PREFIX_KEY, "bitrix24_"))) if specs else ""
    writer = warehouse.get_warehouse(table_prefix=prefix)
    _check_dialect_kind(context, specs, writer)
    writer.ensure_schema()  # a schema that cannot be created fails before any request
    run = run_jobs(bitrix24, writer, jobs)
    portal = bitrix24.redacted_portal
    totals = run_metadata(run.totals)
    failed: dict[str, BaseException] = {}
    for key, outcome in run.outcomes.items():
        if isinstance(outcome, BaseException):
            failed[key.to_user_string()] = outcome
            continue
        for warning in type_change_warnings(outcome.results):
            context.log.warning(warning)
        metadata = without_loopback_uri({**_metadata(outcome, writer, portal), **totals}, portal)
        if window is not None:
            _add_partition_metadata(context, key, outcome, metadata, partition_keys)
            metadata = {}
        yield MaterializeResult(asset_key=key, metadata=metadata)
    if failed:
        # one message per cause (a wrong code fails every entity alike), in the Failure only,
        # and once per run: a cause another step of the run reported is referred to
        raise sync_failure(context, failed)


def _existing_partitions(
    context: AssetExecutionContext, partitions_def: TimeWindowPartitionsDefinition
) -> list[str]:
    """The run's partition keys that exist now.

    A range may end on a partition that does not exist yet (today's, with end_offset=0):
    Dagster runs it and stretches the time window over it, but records no materialisation
    for it. The run still syncs up to the present; its metadata goes on the existing keys.
    """
    last = partitions_def.get_last_partition_window()
    keys = [
        key for key in context.partition_keys
        if last and partitions_def.time_window_for_partition_key(key).end <= last.end
    ]  # fmt: skip
    if not keys:
        raise BitrixParameterError(
            "partitions", "the run's partition range holds no partition that exists yet"
        )
    return keys


def _check_dialect_kind(
    context: AssetExecutionContext, specs: Sequence[AssetSpec], writer: Warehouse
) -> None:
    """Warn when the assets' kinds name another warehouse dialect than the one written to."""
    actual = warehouse_kind(writer.engine.url.render_as_string(hide_password=True))
    for spec in specs:
        named = set(spec.kinds) & _DIALECT_KINDS
        if named and actual not in named:
            context.log.warning(
                f"{spec.key.to_user_string()}: kinds name {sorted(named)} but the warehouse "
                f"is {actual}; build the assets with warehouse= the resource they write to"
            )


def _add_partition_metadata(
    context: AssetExecutionContext, key: AssetKey, outcome: JobOutcome, summary: dict[str, Any],
    keys: Sequence[str],
) -> None:  # fmt: skip
    """Each partition of the run gets its own rows beside the table's, the window and the
    run's figures; the newest also the column schema and the rows changed after it (in a
    partition that does not exist yet)."""
    partitions_def = context.assets_def.partitions_def
    assert isinstance(partitions_def, TimeWindowPartitionsDefinition)
    existing = set(keys)
    later = sum(
        count
        for result in outcome.results
        for partition, count in result.partition_counts.items()
        if partition not in existing
    )
    if later:
        context.log.warning(
            f"{key.to_user_string()}: {later} row(s) changed after the last existing partition "
            f"{keys[-1]} were stored; their partition's own run counts them once it exists"
        )
        summary = {**summary, "bitrix24/rows_after_last_partition": later}
    table_name = summary.get("dagster/table_name")
    for partition in keys:
        window = partitions_def.time_window_for_partition_key(partition)
        facts = partition_metadata(
            outcome.results, partition, window=(window.start, window.end), table_name=table_name
        )
        facts = {**range_summary(summary, keys, newest=partition == keys[-1]), **facts}
        context.add_asset_metadata(facts, asset_key=key, partition_key=partition)


def _metadata(outcome: JobOutcome, writer: Warehouse, portal: str) -> dict[str, Any]:
    if outcome.aggregate:
        return aggregate_metadata(outcome.results, writer, portal=portal)
    if outcome.columns is not None:
        return link_metadata(
            outcome.results[0], writer, portal=portal, row_count=outcome.row_count,
            columns=outcome.columns,
        )  # fmt: skip
    return result_metadata(outcome.results[0], writer, portal=portal)
