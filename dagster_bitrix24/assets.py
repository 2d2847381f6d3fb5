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
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    EnvVar,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
    multi_asset,
)

from bitrix_core.entities import ENTITIES, EntitySpec, crm_item
from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24.constants import (
    ENTITY_SPEC_KEY,
    EXCLUDE_KEY,
    LOOKBACK_KEY,
    TABLE_PREFIX_KEY,
    spec_to_metadata,
)
from dagster_bitrix24.materialize import Bitrix24SyncConfig, sync_selected_assets
from dagster_bitrix24.resources import SQLWarehouseResource
from dagster_bitrix24.sync.links import DEAL_CONTACT, DEAL_CONTACT_SPEC
from dagster_bitrix24.sync.smart_processes import SMART_PROCESSES
from dagster_bitrix24.translator import (
    ENTITY_KEY,
    Bitrix24EntityProps,
    DagsterBitrix24Translator,
    entity_slug,
)
from dagster_bitrix24.warehouse import table_name_for
from dagster_bitrix24.warehouse.connect import warehouse_kind

_TABLE_PREFIX = re.compile(r"[A-Za-z0-9_]*")
_DESCRIPTIONS = {
    SMART_PROCESSES: "Every smart process the portal reports (crm.type.list) and smart "
    "invoices, discovered at each run; one table per type: {prefix}crm_item_<entityTypeId>",
    DEAL_CONTACT: "Contacts linked to each deal (crm.deal.contact.items.get) from {portal}",
}


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


def dialect_kind(warehouse: SQLWarehouseResource | str | None) -> str | None:
    """The Dagster kind (sqlite, postgres, mysql, duckdb) of a warehouse resource or URL.

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
