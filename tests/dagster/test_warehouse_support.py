"""Shared pieces of the warehouse tests: deal metadata, rows, a warehouse that cleans up."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse import Warehouse

HOSTILE = 'UF_CRM_1"; DROP TABLE x; --'

DEAL_FIELDS: dict[str, dict[str, Any]] = {
    "ID": {"type": "integer", "isRequired": False, "isReadOnly": True, "isMultiple": False,
           "title": "ID"},
    "TITLE": {"type": "string", "title": "Name"},
    "STAGE_ID": {"type": "crm_status", "statusType": "DEAL_STAGE", "title": "Deal Stage"},
    "CLOSED": {"type": "char", "title": "Closed"},
    "OPPORTUNITY": {"type": "double", "title": "Amount"},
    "PROBABILITY": {"type": "integer", "title": "Probability"},
    "ASSIGNED_BY_ID": {"type": "user", "title": "Responsible"},
    "BEGINDATE": {"type": "date", "title": "Start date"},
    "DATE_MODIFY": {"type": "datetime", "title": "Modified on"},
    "UF_CRM_VIP": {"type": "boolean", "listLabel": "VIP client", "title": "UF_CRM_VIP"},
    "UF_CRM_BUDGET": {"type": "money", "listLabel": "Budget", "title": "UF_CRM_BUDGET"},
    "UF_CRM_TAGS": {"type": "enumeration", "isMultiple": True, "listLabel": "Tags",
                    "items": [{"ID": "1", "VALUE": "a"}], "title": "UF_CRM_TAGS"},
    "UF_CRM_RATE": {"type": "double", "formLabel": "Rate", "title": "UF_CRM_RATE"},
    "PHONE": {"type": "crm_multifield", "isMultiple": True, "title": "Phone"},
}  # fmt: skip


def deal(deal_id: int, modified: str = "2024-09-02T18:37:18+03:00", **values: Any) -> dict:
    """A crm.deal.list row: every value a string."""
    row = {
        "ID": str(deal_id), "TITLE": f"Deal {deal_id}", "STAGE_ID": "NEW", "CLOSED": "N",
        "OPPORTUNITY": "1500.00", "PROBABILITY": "", "ASSIGNED_BY_ID": "1",
        "BEGINDATE": "2024-09-02T03:00:00+03:00", "DATE_MODIFY": modified,
        "UF_CRM_VIP": "0", "UF_CRM_BUDGET": "10.50|RUB", "UF_CRM_TAGS": ["1", "2"],
        "UF_CRM_RATE": "1.2345",
    }  # fmt: skip
    row.update(values)
    return row


def cleaned_warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    """A warehouse with a unique table prefix; its tables are dropped afterwards.

    Test modules wrap it in their own `warehouse` fixture (`yield from ...`)."""
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    result = Warehouse(warehouse_url, table_prefix=prefix)
    yield result
    drop_prefixed(result.engine, prefix)
    result.engine.dispose()


def drop_prefixed(engine: sa.Engine, prefix: str) -> None:
    """Drop every table whose name starts with `prefix` (or `_` + prefix)."""
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as connection:
        for name in sa.inspect(connection).get_table_names():
            if name.startswith((prefix, "_" + prefix)):
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")


def select_all(warehouse: Warehouse, table: sa.Table) -> list[sa.Row[Any]]:
    """Every row of `table`, ordered by its first column(s)."""
    order = list(table.primary_key.columns) or [list(table.columns)[0]]
    with warehouse.engine.connect() as connection:
        return list(connection.execute(sa.select(table).order_by(*order)))
