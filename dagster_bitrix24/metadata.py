"""What a materialisation reports: Dagster's standard `dagster/*` keys plus the sync's figures."""

from typing import Any

from dagster import MetadataValue, TableColumn, TableSchema

from dagster_bitrix24.sync import SyncResult

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


def qualified_table(writer: Any, table_name: str) -> str:
    """`schema.table` when the warehouse has a schema, else the table name."""
    schema = getattr(writer, "schema", None)
    return f"{schema}.{table_name}" if schema else table_name


def column_schema(writer: Any, layout: Any) -> TableSchema:
    """The table's columns with their SQL types and the portal's field titles."""
    return TableSchema(
        columns=[
            TableColumn(name=name, type=sql_type, description=description or None)
            for name, sql_type, description in writer.column_schema(layout)
        ]
    )


def result_metadata(result: SyncResult, writer: Any, *, portal: str) -> dict[str, Any]:
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
        "rows_skipped_older": result.skipped,
        "rows_marked_deleted": result.deleted,
        "rows_restored": result.restored,
        "chunks": result.chunks,
        "requests": stats.requests,
        "batches": stats.batches,
        "subcommands": stats.subcommands,
        "single_requests": stats.single_requests,
        "retries": stats.retries,
        "limit_errors": stats.limit_errors,
        "throttle_waits": stats.throttle_waits,
        "throttle_wait_s": round(stats.throttle_wait_s, 3),
        "strategy": stats.strategy or "none",
        "fallbacks": MetadataValue.json(list(stats.fallbacks)),
    }
    if result.layout is not None:
        metadata["dagster/column_schema"] = column_schema(writer, result.layout)
        if result.mode != "window":
            metadata["dagster/row_count"] = writer.row_count(result.layout)
        changes = getattr(result.layout, "changes", None)
        added = getattr(changes, "added_columns", ())
        if added:
            metadata["bitrix24/added_columns"] = MetadataValue.json(list(added))
    return {key: value for key, value in metadata.items() if value is not None}


def partition_metadata(result: SyncResult, partition_key: str) -> dict[str, Any]:
    """Metadata for one partition of a range run: its own row count."""
    return {"dagster/row_count": result.partition_counts.get(partition_key, 0)}


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None
