"""Delete marking: which stored rows a complete portal id set no longer holds, and the
`_deleted_at` stamps that mark them (the SQL itself is each `DialectWriter`'s)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse.convert import Conversions
from dagster_bitrix24.warehouse.dialects import DeleteCounts, DialectWriter
from dagster_bitrix24.warehouse.schema.layout import TableLayout, synced_at_value


def stamp_bound(
    conversions: Conversions, layout: TableLayout, written_before: datetime | None
) -> Any:
    """`written_before` as the dialect stores `_synced_at` (MySQL: whole seconds)."""
    if written_before is None:
        return None
    if layout.dialect == "mysql":
        written_before = written_before.replace(microsecond=0)
    return conversions.converter("datetime", layout.dialect)(written_before)


def deletion_candidates(
    connection: sa.Connection, writer: DialectWriter, conversions: Conversions,
    layout: TableLayout, present_ids: Iterable[Any], written_before: datetime | None,
) -> list[Any]:  # fmt: skip
    """Rows not marked deleted, written before `written_before`, whose id is not in
    `present_ids`: the ids `mark_deleted` would stamp with the same arguments."""
    to_id = conversions.converter(layout.columns[0].kind, layout.dialect)
    present = {to_id(i) for i in present_ids}
    before = stamp_bound(conversions, layout, written_before)
    live = writer.live_ids(connection, layout, before=before)
    return [row_id for row_id in live if row_id not in present]


def mark_deleted(
    connection: sa.Connection, writer: DialectWriter, conversions: Conversions,
    layout: TableLayout, present_ids: Iterable[Any], written_before: datetime | None,
) -> DeleteCounts:  # fmt: skip
    """Stamp `_deleted_at` on rows (written before `written_before`) whose id is not in
    `present_ids`; clear it on the rest."""
    to_id = conversions.converter(layout.columns[0].kind, layout.dialect)
    ids = [(value,) for value in {to_id(i) for i in present_ids} if value is not None]
    before = stamp_bound(conversions, layout, written_before)
    now = synced_at_value(layout.dialect)
    return writer.mark_deleted(connection, layout, ids, now=now, before=before)
