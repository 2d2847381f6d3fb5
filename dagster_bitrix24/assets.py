"""The multi-asset factory and decorator: one multi-asset per portal, entities as its assets.

    defs = Definitions(
        assets=[build_bitrix24_assets(entities=["crm.deal", "crm.contact", "user"])],
        resources={"bitrix24": Bitrix24Resource(webhook_url=EnvVar("BITRIX24_WEBHOOK_URL")),
                   "warehouse": SQLWarehouseResource(url=EnvVar("WAREHOUSE_URL"))},
    )

One run materialises the selected entities concurrently on ONE `BitrixClient`, so one
limiter paces them all and their page commands share batches. The assets default to the
Dagster pool `bitrix24/<portal>`, so parallel runs cannot overrun the portal either.
"""

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    EnvVar,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
    multi_asset,
)
from pydantic import Field

from bitrix_core.entities import ENTITIES, EntitySpec, crm_item
from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24.failures import CAUSES_KEY, failure_groups, group_message
from dagster_bitrix24.links import DEAL_CONTACT, DEAL_CONTACT_SPEC
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
from dagster_bitrix24.resources import SQLWarehouseResource, warehouse_kind
from dagster_bitrix24.run_jobs import AssetJob, JobOutcome, run_jobs
from dagster_bitrix24.smart_processes import SMART_PROCESSES
from dagster_bitrix24.sync import SyncOptions, lookback_from_minutes
from dagster_bitrix24.translator import (
    ENTITY_KEY,
    Bitrix24EntityProps,
    DagsterBitrix24Translator,
    entity_slug,
)
from dagster_bitrix24.warehouse import table_name_for

#: Asset-spec metadata key holding the entity's `EntitySpec` as a JSON-ready dict.
ENTITY_SPEC_KEY = "bitrix24/entity_spec"
#: Asset-spec metadata key holding the default lookback in minutes.
LOOKBACK_KEY = "bitrix24/lookback_minutes"
#: Asset-spec metadata key holding the warehouse table prefix.
TABLE_PREFIX_KEY = "bitrix24/table_prefix"
#: Asset-spec metadata key of the `crm.item` asset: types synced by their own assets.
EXCLUDE_KEY = "bitrix24/exclude_entities"
#: The kinds that name a warehouse dialect.
_DIALECT_KINDS = frozenset({"sqlite", "postgres", "mysql"})
_TABLE_PREFIX = re.compile(r"[A-Za-z0-9_]*")
_DESCRIPTIONS = {
    SMART_PROCESSES: "Every smart process the portal reports (crm.type.list) and smart "
    "invoices, discovered at each run; one table per type: {prefix}crm_item_<entityTypeId>",
    DEAL_CONTACT: "Contacts linked to each deal (crm.deal.contact.items.get) from {portal}",
}


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


def resolve_entities(entities: Iterable[str | EntitySpec]) -> list[EntitySpec]:
    """Entity names ("crm.deal", "crm.item.128") or `EntitySpec`s -> specs, names unique.

    "crm.item" is every smart process, discovered at run time; "crm.deal.contact" the
    deal-contact links.
    """
    specs: list[EntitySpec] = []
    for entity in entities:
        if isinstance(entity, EntitySpec):
            specs.append(entity)
        elif entity == DEAL_CONTACT:
            specs.append(DEAL_CONTACT_SPEC)
        elif isinstance(entity, str) and entity in ENTITIES:
            specs.append(ENTITIES[entity])
        elif isinstance(entity, str) and entity.startswith("crm.item.") and entity[9:].isdigit():
            specs.append(crm_item(int(entity[9:])))
        else:
            known = ", ".join(sorted({*ENTITIES, DEAL_CONTACT}) + ["crm.item.<entityTypeId>"])
            raise BitrixParameterError("entities", f"unknown entity {entity!r}; known: {known}")
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BitrixParameterError("entities", f"listed more than once: {duplicates}")
    if not specs:
        raise BitrixParameterError("entities", "name at least one entity")
    return specs


def partitionable(spec: EntitySpec) -> bool:
    """Whether rows of the entity fall in change-time partitions (links follow their deal)."""
    return bool(spec.change_time_field) or spec.name == DEAL_CONTACT


def spec_to_metadata(spec: EntitySpec) -> dict[str, Any]:
    """An `EntitySpec` as a JSON-ready dict (stored on the asset spec)."""
    data = asdict(spec)
    data["extra_params"] = dict(spec.extra_params)
    return data


def spec_from_metadata(data: Any) -> EntitySpec:
    """The `EntitySpec` stored on an asset spec by `spec_to_metadata`."""
    return EntitySpec(**dict(_plain(data)))


def dialect_kind(warehouse: SQLWarehouseResource | str | None) -> str | None:
    """The Dagster kind (sqlite, postgres, mysql) of a warehouse resource or URL.

    An `EnvVar` URL is read from the environment now; None when it is not set here.
    """
    url = warehouse.url if isinstance(warehouse, SQLWarehouseResource) else warehouse
    if isinstance(url, EnvVar):
        url = url.get_value()
    return warehouse_kind(url) if url else None


def get_bitrix24_asset_specs(
    *,
    entities: Sequence[str | EntitySpec],
    portal: str = "default",
    translator: DagsterBitrix24Translator | None = None,
    table_prefix: str = "bitrix24_",
    warehouse_kind: str | None = None,
    warehouse: SQLWarehouseResource | str | None = None,
    partitions_def: PartitionsDefinition | None = None,
    lookback: timedelta = timedelta(minutes=15),
) -> list:
    """The `AssetSpec`s of the entities, built by the translator.

    Their kinds are `bitrix24` and the warehouse dialect: `warehouse_kind` when given, else
    the dialect of `warehouse` (the `SQLWarehouseResource` the assets write to, or its URL).
    """
    if not isinstance(table_prefix, str) or not _TABLE_PREFIX.fullmatch(table_prefix):
        raise BitrixParameterError(
            "table_prefix", f"use only letters, digits and '_', not {table_prefix!r}"
        )
    translator = translator or DagsterBitrix24Translator()
    kind = warehouse_kind or dialect_kind(warehouse)
    resolved = resolve_entities(entities)
    timeless = [spec.name for spec in resolved if not partitionable(spec)]
    if partitions_def is not None and timeless:
        raise BitrixParameterError(
            "partitions_def",
            f"{', '.join(timeless)} ha{'s' if len(timeless) == 1 else 've'} no change time to "
            "partition by: put them in a second, unpartitioned multi-asset",
        )
    own_types = sorted(
        e.name for e in resolved if e.list_method == "crm.item.list" and e.name != SMART_PROCESSES
    )
    specs = []
    for entity in resolved:
        description = _DESCRIPTIONS.get(entity.name)
        props = Bitrix24EntityProps(
            entity=entity.name,
            table_name=None
            if entity.name == SMART_PROCESSES
            else table_name_for(table_prefix, entity.name),
            portal=portal,
            warehouse_kind=kind,
            description=description.format(prefix=table_prefix, portal=portal)
            if description
            else None,
        )
        metadata = {
            ENTITY_KEY: entity.name,
            ENTITY_SPEC_KEY: spec_to_metadata(entity),
            LOOKBACK_KEY: lookback.total_seconds() / 60,
            TABLE_PREFIX_KEY: table_prefix,
        }
        if entity.name == SMART_PROCESSES:
            metadata[EXCLUDE_KEY] = own_types
        asset_spec = translator.get_asset_spec(props).merge_attributes(metadata=metadata)
        specs.append(asset_spec.replace_attributes(partitions_def=partitions_def, skippable=True))
    return specs


def bitrix24_assets(
    *,
    entities: Sequence[str | EntitySpec],
    portal: str = "default",
    name: str | None = None,
    translator: DagsterBitrix24Translator | None = None,
    table_prefix: str = "bitrix24_",
    warehouse_kind: str | None = None,
    warehouse: SQLWarehouseResource | str | None = None,
    partitions_def: PartitionsDefinition | None = None,
    backfill_policy: BackfillPolicy | None = None,
    pool: str | None = None,
    lookback: timedelta = timedelta(minutes=15),
    op_tags: dict[str, Any] | None = None,
    required_resource_keys: set[str] | None = None,
) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """Decorator: your function body materialises the entities of one portal.

    Example::

        @bitrix24_assets(entities=["crm.deal", "crm.contact"])
        def crm(context: AssetExecutionContext, bitrix24: Bitrix24Resource,
                warehouse: SQLWarehouseResource, config: Bitrix24SyncConfig):
            yield from bitrix24.sync(context=context, warehouse=warehouse, config=config)

    Partitioned assets (over the change time) backfill a range in ONE run by default.
    """
    if not portal or not portal.replace("_", "").replace("-", "").isalnum():
        raise BitrixParameterError("portal", "use letters, digits, '_' or '-'")
    if partitions_def is not None and not isinstance(
        partitions_def, TimeWindowPartitionsDefinition
    ):
        raise BitrixParameterError("partitions_def", "must be a time-window partitioning")
    if lookback < timedelta(0):
        raise BitrixParameterError("lookback", "must not be negative")
    specs = get_bitrix24_asset_specs(
        entities=entities,
        portal=portal,
        translator=translator,
        table_prefix=table_prefix,
        warehouse_kind=warehouse_kind,
        warehouse=warehouse,
        partitions_def=partitions_def,
        lookback=lookback,
    )
    if backfill_policy is None and partitions_def is not None:
        backfill_policy = BackfillPolicy.single_run()
    return multi_asset(
        name=name or f"bitrix24_{entity_slug(portal)}",
        specs=specs,
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        pool=pool if pool is not None else f"bitrix24/{portal}",
        op_tags=op_tags,
        required_resource_keys=required_resource_keys,
    )


def build_bitrix24_assets(
    *,
    entities: Sequence[str | EntitySpec],
    portal: str = "default",
    name: str | None = None,
    translator: DagsterBitrix24Translator | None = None,
    table_prefix: str = "bitrix24_",
    warehouse_kind: str | None = None,
    warehouse: SQLWarehouseResource | str | None = None,
    partitions_def: PartitionsDefinition | None = None,
    backfill_policy: BackfillPolicy | None = None,
    pool: str | None = None,
    lookback: timedelta = timedelta(minutes=15),
    op_tags: dict[str, Any] | None = None,
    bitrix24_resource_key: str = "bitrix24",
    warehouse_resource_key: str = "warehouse",
) -> AssetsDefinition:
    """One multi-asset syncing `entities` of one portal into the warehouse.

    Resources come from `bitrix24_resource_key` (a `Bitrix24Resource`) and
    `warehouse_resource_key` (a `SQLWarehouseResource`); run config is `Bitrix24SyncConfig`.
    Pass the same warehouse resource (or its URL) as `warehouse=` so the assets' kinds name
    its dialect; `warehouse_kind=` names a kind outright.
    """

    @bitrix24_assets(
        entities=entities,
        portal=portal,
        name=name,
        translator=translator,
        table_prefix=table_prefix,
        warehouse_kind=warehouse_kind,
        warehouse=warehouse,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        pool=pool,
        lookback=lookback,
        op_tags=op_tags,
        required_resource_keys={bitrix24_resource_key, warehouse_resource_key},
    )
    def _bitrix24_sync(context: AssetExecutionContext, config: Bitrix24SyncConfig):
        yield from sync_selected_assets(
            context,
            bitrix24=getattr(context.resources, bitrix24_resource_key),
            warehouse=getattr(context.resources, warehouse_resource_key),
            config=config,
        )

    return _bitrix24_sync


def sync_selected_assets(
    context: AssetExecutionContext,
    *,
    bitrix24: Any,
    warehouse: Any,
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
            lookback = float(_plain(spec.metadata.get(LOOKBACK_KEY, 15.0)))
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
        exclude = tuple(_plain(spec.metadata.get(EXCLUDE_KEY, [])) or ())
        entity = spec_from_metadata(spec.metadata[ENTITY_SPEC_KEY])
        jobs[spec.key] = AssetJob(entity, options, exclude)
    prefix = str(_plain(specs[0].metadata.get(TABLE_PREFIX_KEY, "bitrix24_"))) if specs else ""
    writer = warehouse.get_warehouse(table_prefix=prefix)
    _check_dialect_kind(context, specs, writer)
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
        # one message per cause (a wrong code fails every entity alike), in the Failure only
        groups = failure_groups(failed)
        raise Failure(
            description="Bitrix24 sync failed: " + " | ".join(map(group_message, groups)),
            metadata={CAUSES_KEY: MetadataValue.json([asdict(group) for group in groups])},
        )


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


def _check_dialect_kind(context: AssetExecutionContext, specs: Sequence[Any], writer: Any) -> None:
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
    context: AssetExecutionContext, key: Any, outcome: JobOutcome, summary: dict[str, Any],
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


def _metadata(outcome: JobOutcome, writer: Any, portal: str) -> dict[str, Any]:
    if outcome.aggregate:
        return aggregate_metadata(outcome.results, writer, portal=portal)
    if outcome.columns is not None:
        return link_metadata(
            outcome.results[0], writer, portal=portal, row_count=outcome.row_count,
            columns=outcome.columns,
        )  # fmt: skip
    return result_metadata(outcome.results[0], writer, portal=portal)


def _plain(value: Any) -> Any:
    """A metadata entry's raw value (Dagster may wrap it in a MetadataValue)."""
    return getattr(value, "value", value)
