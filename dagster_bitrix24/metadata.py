"""What a materialisation reports: Dagster's standard `dagster/*` keys plus the sync's figures.

Per-entity request figures (`requests`, `batches`, `single_requests`, `retries`,
`throttle_*`) count every HTTP request that carried at least one of the entity's commands,
so a batch shared by two entities counts for both. The run's own totals, each request
counted once, are on every asset of the run as `bitrix24/run_*`.

A range run (one run over many partitions) writes one materialisation per partition: each
carries that partition's rows (`dagster/row_count`) beside the table's (`bitrix24/table_rows`),
the window read and the run's figures; the newest partition's also the column schema and
schema changes, so a 1,000-partition backfill stays light. `dagster/uri` links a real
portal's list page; an emulator on loopback (a random port, gone after the run) gets none.

Schema drift is reported on every run until someone acts: `bitrix24/added_columns`,
`bitrix24/removed_columns` (fields gone from the portal; their columns stay, unwritten) and
`bitrix24/type_changes` (fields whose type changed; their columns are no longer written).

`rows_updated` counts rows whose stored content changed; `rows_unchanged` the rows received
that the warehouse already held exactly so (not written again, `_synced_at` kept).

`values_rejected` counts the values of this run stored as NULL or cleaned instead of as sent
(the originals are in the warehouse's rejects table; the `no_rejected_values` check fails
while the latest run has any).
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from dagster import MetadataValue, TableColumn, TableSchema

from bitrix_core.stats import CallStats
from bitrix_core.transport import is_loopback_host
from dagster_bitrix24.sync import SyncResult
from dagster_bitrix24.warehouse import TableLayout, Warehouse

#: Run-level totals reported on every asset of a run (each HTTP request counted once).
_RUN_TOTALS = (
    "requests",
    "batches",
    "subcommands",
    "single_requests",
    "retries",
    "limit_errors",
    "throttle_waits",
)
#: Figures summed over the tables of an all-smart-processes asset.
_SUMMED = ("rows", "inserted", "updated", "unchanged", "skipped", "deleted", "restored",
           "rejected", "chunks")  # fmt: skip

#: The portal's list page of each entity, for `dagster/uri`.
_LIST_PAGES = {
    "crm.deal": "/crm/deal/list/",
    "crm.lead": "/crm/lead/list/",
    "crm.contact": "/crm/contact/list/",
    "crm.company": "/crm/company/list/",
    "crm.activity": "/crm/activity/",
    "crm.smart_invoice": "/crm/type/31/list/category/0/",
    "tasks.task": "/company/personal/user/0/tasks/",
    "user": "/company/",
    "department": "/company/structure.php",
    "crm.status": "/crm/configs/status/",
    "crm.category": "/crm/deal/category/",
}


def portal_uri(portal: str, entity: str) -> str:
    """The portal page listing an entity (the portal root when there is none)."""
    type_id = entity.removeprefix("crm.item.")
    if type_id.isdigit():
        return f"{portal}/crm/type/{type_id}/list/category/0/"
    return portal + _LIST_PAGES.get(entity, "/")


def without_loopback_uri(metadata: dict[str, Any], portal: str) -> dict[str, Any]:
    """`metadata` without `dagster/uri` when the portal is on loopback (an emulator)."""
    if is_loopback_host(urlsplit(portal).hostname):
        return {key: value for key, value in metadata.items() if key != "dagster/uri"}
    return metadata


def qualified_table(writer: Warehouse, table_name: str) -> str:
    """`schema.table` when the warehouse has a schema, else the table name."""
    schema = getattr(writer, "schema", None)
    return f"{schema}.{table_name}" if schema else table_name


def column_schema(writer: Warehouse, layout: TableLayout) -> TableSchema:
    """The table's columns with their SQL types and the portal's field titles."""
    return TableSchema(
        columns=[
            TableColumn(name=name, type=sql_type, description=description or None)
            for name, sql_type, description in writer.column_schema(layout)
        ]
    )


def result_metadata(result: SyncResult, writer: Warehouse, *, portal: str) -> dict[str, Any]:
    """Metadata of one entity's materialisation."""
    stats = result.stats
    metadata: dict[str, Any] = {
        "dagster/table_name": qualified_table(writer, result.table_name),
        "dagster/uri": MetadataValue.url(portal_uri(portal, result.entity)),
        "bitrix24/mode": result.mode,
        "bitrix24/cursor": _iso(result.cursor_after),
        "bitrix24/cursor_before": _iso(result.cursor_before),
        "bitrix24/window_start": _iso(result.window_start),
        "bitrix24/window_end": _iso(result.window_end),
        "rows_fetched": result.rows,
        "rows_inserted": result.inserted,
        "rows_updated": result.updated,
        "rows_unchanged": result.unchanged,
        "rows_skipped_older": result.skipped,
        "rows_marked_deleted": result.deleted,
        "rows_restored": result.restored,
        "values_rejected": result.rejected,
        "chunks": result.chunks,
        "requests": stats.requests,
        "batches": stats.batches,
        "subcommands": stats.subcommands,
        "single_requests": stats.single_requests,
        "retries": stats.retries,
        "limit_errors": stats.limit_errors,
        "throttle_waits": stats.throttle_waits,
        "throttle_wait_s": round(stats.throttle_wait_s, 3),
        "query_limit_wait_s": round(stats.query_limit_wait_s, 3),
        "strategy": stats.strategy or "none",
        "fallbacks": MetadataValue.json(list(stats.fallbacks)),
    }
    if result.layout is not None:
        metadata["dagster/column_schema"] = column_schema(writer, result.layout)
        rows = writer.row_count(result.layout)
        metadata["dagster/row_count" if result.mode != "window" else "bitrix24/table_rows"] = rows
        metadata.update(schema_change_metadata([result]))
    return {key: value for key, value in metadata.items() if value is not None}


def schema_change_metadata(results: Sequence[SyncResult]) -> dict[str, Any]:
    """What the tables' schema checks found, under `bitrix24/added_columns`,
    `bitrix24/removed_columns` and `bitrix24/type_changes` (only the keys with something).

    One table: column lists. Several tables (all smart processes): `{table: columns}`.
    A removed field's column stays (no longer written) and a retyped field's column is no
    longer written until migrated, so both are reported on every run until someone acts.
    """
    found: dict[str, dict[str, Any]] = {"added_columns": {}, "removed_columns": {},
                                        "type_changes": {}}  # fmt: skip
    for result in results:
        changes = getattr(result.layout, "changes", None)
        if changes is None:
            continue
        retyped = [type_change_entry(result.table_name, change) for change in changes.type_changes]
        for name, values in (("added_columns", list(changes.added_columns)),
                             ("removed_columns", list(changes.removed_columns)),
                             ("type_changes", retyped)):  # fmt: skip
            if values:
                found[name][result.table_name] = values
    single = len(results) == 1
    return {
        f"bitrix24/{name}": MetadataValue.json(
            next(iter(by_table.values())) if single else by_table
        )
        for name, by_table in found.items()
        if by_table
    }


def type_change_entry(table_name: str, change: Any) -> dict[str, str]:
    """One retyped field, JSON-ready: where it is, what is stored, what the portal says now."""
    return {
        "table": table_name,
        "column": change.column,
        "field": change.field,
        "stored_type": change.stored,
        "portal_type": str(change.wanted),
    }


def type_change_warnings(results: Sequence[SyncResult]) -> list[str]:
    """One run-log warning per retyped field of the results' tables."""
    warnings = []
    for result in results:
        changes = getattr(result.layout, "changes", None)
        for change in getattr(changes, "type_changes", ()):
            warnings.append(
                f"{result.entity}: field {change.field} changed type on the portal (stored "
                f"{change.stored}, now {change.wanted}); column {result.table_name}."
                f"{change.column} is no longer written until it is migrated"
            )
    return warnings


def run_metadata(totals: CallStats) -> dict[str, Any]:
    """The run's request totals, each HTTP request counted once (`bitrix24/run_*`)."""
    metadata: dict[str, Any] = {
        f"bitrix24/run_{name}": getattr(totals, name) for name in _RUN_TOTALS
    }
    metadata["bitrix24/run_throttle_wait_s"] = round(totals.throttle_wait_s, 3)
    return metadata


def link_metadata(
    result: SyncResult, writer: Warehouse, *, portal: str, row_count: int | None,
    columns: Sequence[tuple[str, str, str]] | None,
) -> dict[str, Any]:  # fmt: skip
    """Metadata of a link table (no layout: its count and columns come with the result)."""
    metadata = result_metadata(result, writer, portal=portal)
    if columns:
        metadata["dagster/column_schema"] = TableSchema(
            columns=[TableColumn(name=n, type=t, description=d or None) for n, t, d in columns]
        )
    if row_count is not None:
        key = "dagster/row_count" if result.mode != "window" else "bitrix24/table_rows"
        metadata[key] = row_count
    return metadata


def aggregate_metadata(
    results: Sequence[SyncResult], writer: Warehouse, *, portal: str
) -> dict[str, Any]:
    """Metadata of the all-smart-processes asset: one table per type, figures summed.

    `dagster/table_name` only when it wrote a single table; `bitrix24/tables` lists them all.
    """
    tables = {r.entity: qualified_table(writer, r.table_name) for r in results}
    metadata: dict[str, Any] = {
        "dagster/uri": MetadataValue.url(portal + "/crm/type/"),
        "bitrix24/tables": MetadataValue.json(tables),
        "bitrix24/entity_type_ids": MetadataValue.json(
            sorted(int(r.entity.rsplit(".", 1)[-1]) if r.entity[-1].isdigit() else 31
                   for r in results)
        ),
        "bitrix24/cursors": MetadataValue.json({r.entity: _iso(r.cursor_after) for r in results}),
    }  # fmt: skip
    names = {"rows": "rows_fetched", "inserted": "rows_inserted", "updated": "rows_updated",
             "unchanged": "rows_unchanged", "skipped": "rows_skipped_older", "deleted": "rows_marked_deleted",
             "restored": "rows_restored", "rejected": "values_rejected",
             "chunks": "chunks"}  # fmt: skip
    for name in _SUMMED:
        metadata[names[name]] = sum(getattr(r, name) for r in results)
    metadata["subcommands"] = sum(r.stats.subcommands for r in results)
    if len(tables) == 1:
        metadata["dagster/table_name"] = next(iter(tables.values()))
    metadata.update(schema_change_metadata(results))
    if results and all(r.layout is not None for r in results):
        key = "bitrix24/table_rows" if results[0].mode == "window" else "dagster/row_count"
        metadata[key] = sum(writer.row_count(r.layout) for r in results if r.layout is not None)
    return metadata


def partition_metadata(
    results: Sequence[SyncResult], partition_key: str, *, window: tuple[datetime, datetime],
    table_name: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The facts of one partition of a range run: its table, its rows (summed over tables),
    its window.

    Light on purpose: a backfill writes one event per partition; the run's figures are
    added by `range_summary`, its column schema on the newest partition only.
    """
    table = {"dagster/table_name": table_name} if table_name else {}
    return {
        **table,
        "dagster/row_count": sum(r.partition_counts.get(partition_key, 0) for r in results),
        "bitrix24/partition_start": window[0].isoformat(),
        "bitrix24/partition_end": window[1].isoformat(),
    }


#: Run metadata only the newest partition of a range run carries (large, and the same).
_NEWEST_ONLY = ("dagster/column_schema", "bitrix24/added_columns", "bitrix24/removed_columns",
                "bitrix24/type_changes", "bitrix24/rows_after_last_partition")  # fmt: skip


def range_summary(
    metadata: Mapping[str, Any], partition_keys: Sequence[str], *, newest: bool = True
) -> dict[str, Any]:
    """The run's metadata for each partition event of a range run (`newest`: all of it)."""
    dropped = {"dagster/row_count", *(() if newest else _NEWEST_ONLY)}
    return {
        **{key: value for key, value in metadata.items() if key not in dropped},
        "bitrix24/partition_range": f"{partition_keys[0]}..{partition_keys[-1]}",
        "bitrix24/partitions": len(partition_keys),
    }


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None
