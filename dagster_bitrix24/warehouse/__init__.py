"""The warehouse writer (no Dagster in here): typed tables from Bitrix24 field metadata
(`schema/`), API values converted by one rule table (`convert/`), one `DialectWriter` per
database (`dialects/`), cursors (`state.py`), rejects, retries and named errors.

    >>> from dagster_bitrix24.warehouse import Warehouse
    >>> warehouse = Warehouse("sqlite:///bitrix24.sqlite", table_prefix="bitrix24_")

See `writer.Warehouse` for the whole API.
"""

from dagster_bitrix24.warehouse.dialects import DeleteCounts, WriteCounts
from dagster_bitrix24.warehouse.schema.layout import SchemaChanges, TableLayout, TypeChange
from dagster_bitrix24.warehouse.state import CursorState
from dagster_bitrix24.warehouse.writer import Warehouse, table_name_for

__all__ = [
    "CursorState", "DeleteCounts", "SchemaChanges", "TableLayout", "TypeChange", "Warehouse",
    "WriteCounts", "table_name_for",
]  # fmt: skip
