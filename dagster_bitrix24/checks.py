"""Asset checks for synced entities: row count vs the portal, duplicate ids, freshness,
rejected values.

    checks = build_bitrix24_checks(assets, max_lag=timedelta(hours=2))
    Definitions(assets=[assets], asset_checks=[checks], resources=...)

All checks of one run share one `BitrixClient`; each reads the warehouse table directly.
"""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetsDefinition,
    multi_asset_check,
)

from bitrix_core.client import BitrixClient
from bitrix_core.entities import EntitySpec
from dagster_bitrix24.constants import ENTITY_SPEC_KEY, TABLE_PREFIX_KEY, spec_from_metadata
from dagster_bitrix24.sync import partitions_state_key
from dagster_bitrix24.sync.links import DEAL_CONTACT
from dagster_bitrix24.sync.smart_processes import SMART_PROCESSES
from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.schema.evolve import reflect_table
from dagster_bitrix24.warehouse.schema.layout import DELETED_AT

COUNT_CHECK = "row_count_matches_portal"
DUPLICATE_CHECK = "unique_ids"
FRESHNESS_CHECK = "freshness"
REJECTS_CHECK = "no_rejected_values"
#: What each check tests, as the UI shows it.
_CHECK_DESCRIPTIONS = {
    COUNT_CHECK: "The table's live rows (not marked deleted) equal the portal's count now "
    "(a warning: the portal may have changed since the sync).",
    DUPLICATE_CHECK: "No id is stored twice in the table.",
    FRESHNESS_CHECK: "A sync reaching the present (an incremental run, or a partition run "
    "over today) committed within {lag}; runs over older partitions do not count.",
    REJECTS_CHECK: "The entity's latest sync stored every value: none went to the rejects "
    "table (a value the column could not hold is stored as NULL and its raw text kept there).",
}


@dataclass(frozen=True)
class _Target:
    check_key: AssetCheckKey
    entity: EntitySpec
    table_prefix: str


def build_bitrix24_checks(
    assets_def: AssetsDefinition,
    *,
    max_lag: timedelta = timedelta(hours=2),
    count_tolerance: float = 0.0,
    name: str | None = None,
    bitrix24_resource_key: str = "bitrix24",
    warehouse_resource_key: str = "warehouse",
) -> Any:
    """Four checks per entity of a Bitrix24 multi-asset.

    `row_count_matches_portal`: live rows in the table vs the portal's count (a relative
    `count_tolerance` allows for changes since the sync); `unique_ids`: no id twice;
    `freshness`: the cursor was committed within `max_lag` (entities with a change time), or,
    for partitioned assets, a partition run reaching the present ended within `max_lag`;
    `no_rejected_values`: the entity's latest run stored every value as sent (its rejects,
    NULL or cleaned in the table, are listed in the warehouse's rejects table).
    """
    targets: dict[AssetCheckKey, _Target] = {}
    specs: list[AssetCheckSpec] = []
    for spec in assets_def.specs:
        entity = spec_from_metadata(spec.metadata[ENTITY_SPEC_KEY])
        stored = spec.metadata.get(TABLE_PREFIX_KEY)  # a plain str, or a MetadataValue
        prefix = str(getattr(stored, "value", stored) or "bitrix24_")
        names = _check_names(entity)
        for check_name in names:
            description = _CHECK_DESCRIPTIONS[check_name].format(lag=max_lag)
            check_spec = AssetCheckSpec(check_name, asset=spec.key, description=description)
            specs.append(check_spec)
            targets[check_spec.key] = _Target(check_spec.key, entity, prefix)

    specs_keys = [spec.key for spec in specs]

    @multi_asset_check(
        specs=specs,
        name=name or f"{assets_def.node_def.name}_checks",
        can_subset=True,
        required_resource_keys={bitrix24_resource_key, warehouse_resource_key},
    )
    def _bitrix24_checks(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        selected = [targets[key] for key in specs_keys if key in context.selected_asset_check_keys]
        bitrix24 = getattr(context.resources, bitrix24_resource_key)
        warehouse = getattr(context.resources, warehouse_resource_key)
        counts = _portal_counts(bitrix24, [t for t in selected if t.check_key.name == COUNT_CHECK])
        for target in selected:
            writer = warehouse.get_warehouse(table_prefix=target.table_prefix)
            table = _reflect(writer, writer.table_name(target.entity.name))
            if target.check_key.name == COUNT_CHECK:
                portal = counts[target.entity.name]
                yield _count_result(target, writer, table, portal, count_tolerance)
            elif target.check_key.name == DUPLICATE_CHECK:
                yield _duplicate_result(target, writer, table)
            elif target.check_key.name == REJECTS_CHECK:
                yield _rejects_result(target, writer)
            else:
                yield _freshness_result(target, writer, max_lag)

    return _bitrix24_checks


def _check_names(entity: EntitySpec) -> list[str]:
    """The checks an entity gets: links only freshness, the all-smart-processes asset none
    (it spans one table per type; list the types as their own assets to check them)."""
    if entity.name == SMART_PROCESSES:
        return []
    if entity.name == DEAL_CONTACT:
        return [FRESHNESS_CHECK]
    names = [COUNT_CHECK, DUPLICATE_CHECK, REJECTS_CHECK]
    if entity.change_time_field:
        names.append(FRESHNESS_CHECK)
    return names


def _portal_counts(bitrix24: Any, targets: list[_Target]) -> dict[str, int | None]:
    """The portal's row count of each entity: one counting page each, in shared batches."""

    async def count_all() -> list[Any]:
        async with bitrix24.get_client() as client:
            return await asyncio.gather(
                *(_count(client, target.entity) for target in targets), return_exceptions=True
            )

    answers = asyncio.run(count_all()) if targets else []
    return {
        target.entity.name: None if isinstance(answer, BaseException) else answer
        for target, answer in zip(targets, answers, strict=True)
    }


async def _count(client: BitrixClient, entity: EntitySpec) -> int | None:
    if not entity.keyset:  # dictionaries: small, and not every one takes an id filter
        return len(await client.get_all(entity.list_method, dict(entity.extra_params)))
    total = await client.count(entity.list_method, dict(entity.extra_params), spec=entity)
    if total is not None:
        return int(total)
    return len(await client.get_all(entity.list_method, dict(entity.extra_params)))


def _reflect(writer: Warehouse, table_name: str) -> sa.Table | None:
    """The warehouse table as it exists now, or None before the first sync."""
    try:
        return reflect_table(writer.engine, table_name, schema=writer.schema)
    except sa.exc.NoSuchTableError:
        return None


def _missing(target: _Target, table_name: str) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=target.check_key.name,
        asset_key=target.check_key.asset_key,
        passed=False,
        description=f"table {table_name} does not exist yet: materialise the asset first",
    )


def _count_result(
    target: _Target, writer: Warehouse, table: sa.Table | None, portal: int | None, tolerance: float
) -> AssetCheckResult:
    if table is None:
        return _missing(target, writer.table_name(target.entity.name))
    query = sa.select(sa.func.count()).select_from(table)
    if DELETED_AT in table.c:
        query = query.where(table.c[DELETED_AT].is_(None))
    with writer.engine.connect() as connection:
        stored = int(connection.execute(query).scalar_one())
    if portal is None:
        passed, description = False, "the portal's count could not be read"
    else:
        allowed = tolerance * max(portal, 1)
        passed = abs(stored - portal) <= allowed
        description = f"warehouse {stored} rows, portal {portal}"
    return AssetCheckResult(
        check_name=COUNT_CHECK,
        asset_key=target.check_key.asset_key,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={"warehouse_rows": stored, "portal_rows": portal if portal is not None else -1},
    )


def _duplicate_result(target: _Target, writer: Warehouse, table: sa.Table | None) -> AssetCheckResult:
    if table is None:
        return _missing(target, writer.table_name(target.entity.name))
    id_column = table.c[list(table.c.keys())[0]]
    primary = list(table.primary_key.columns)
    if primary:
        id_column = primary[0]
    duplicated = (
        sa.select(id_column, sa.func.count().label("copies"))
        .group_by(id_column)
        .having(sa.func.count() > 1)
    )
    with writer.engine.connect() as connection:
        rows = connection.execute(duplicated.limit(20)).all()
        total = connection.execute(
            sa.select(sa.func.count()).select_from(duplicated.subquery())
        ).scalar_one()
    return AssetCheckResult(
        check_name=DUPLICATE_CHECK,
        asset_key=target.check_key.asset_key,
        passed=total == 0,
        description=f"{total} ids stored more than once" if total else "every id is unique",
        metadata={"duplicated_ids": int(total), "examples": [str(row[0]) for row in rows]},
    )


def _rejects_result(target: _Target, writer: Warehouse) -> AssetCheckResult:
    """Fails while the entity's latest run has rejects (values stored as NULL or cleaned)."""
    count, examples = writer.rejects(target.entity.name)
    return AssetCheckResult(
        check_name=REJECTS_CHECK,
        asset_key=target.check_key.asset_key,
        passed=count == 0,
        description=(
            f"{count} values of the latest run not stored as sent (originals in "
            f"{writer.rejects_table_name})"
            if count else "the latest run stored every value as sent"
        ),
        metadata={"rejected_values": count, "examples": examples},
    )


def _freshness_result(target: _Target, writer: Warehouse, max_lag: timedelta) -> AssetCheckResult:
    """The newer of the cursor and the last partition run that reached the present."""
    table_name = writer.table_name(target.entity.name)
    states = [writer.read_cursor(key) for key in (table_name, partitions_state_key(table_name))]
    found = [s for s in states if s is not None]
    state = max(found, key=lambda s: s.updated_at) if found else None
    if state is None:
        return AssetCheckResult(
            check_name=FRESHNESS_CHECK,
            asset_key=target.check_key.asset_key,
            passed=False,
            description="no sync has committed a cursor yet",
        )
    lag = datetime.now(UTC) - state.updated_at
    return AssetCheckResult(
        check_name=FRESHNESS_CHECK,
        asset_key=target.check_key.asset_key,
        passed=lag <= max_lag,
        description=f"the last sync reaching the present committed {_ago(lag)} ago"
        f" (allowed {max_lag})",
        metadata={
            "lag_minutes": round(lag.total_seconds() / 60, 2),
            "cursor": state.value,
            "last_sync": state.updated_at.isoformat(),
        },
    )


def _ago(lag: timedelta) -> str:
    """A lag as people say it: seconds under two minutes, else minutes."""
    seconds = max(lag.total_seconds(), 0.0)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
