"""One chunk's write on a connection: rows a column cannot hold are screened (the value made
NULL or cleaned) and recorded as rejects in the same transaction (`screening.py`,
`rejects.py`); the upsert itself is the dialect's `DialectWriter`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse.dialects import DialectWriter, WriteCounts
from dagster_bitrix24.warehouse.errors import RowConversionError
from dagster_bitrix24.warehouse.rejects import write_rejects
from dagster_bitrix24.warehouse.schema.layout import TableLayout, synced_at_value
from dagster_bitrix24.warehouse.screening import Reject, change_times_ahead, screen


def chunk_ids(layout: TableLayout, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The chunk's ids as stored (integers compare as numbers), for an error message."""
    to_id = layout.converters[0]
    ids = []
    for row in rows:
        try:
            ids.append(to_id(row.get(layout.id_field)))
        except (ValueError, TypeError, ArithmeticError):
            continue
    return ids


def write_screened(
    connection: sa.Connection, writer: DialectWriter, rejects_table: sa.Table,
    layout: TableLayout, rows: Sequence[Mapping[str, Any]], *, run_id: str | None,
    early: list[Reject],
) -> WriteCounts:  # fmt: skip
    """Upsert `rows`; values no column holds, change times ahead of now and `early` rejects
    are recorded as rejects of `run_id`, and rows whose id cannot be stored count as skipped."""
    synced_at = synced_at_value(layout.dialect)
    rows, ahead = change_times_ahead(layout, rows)
    rejects = early + ahead
    counts, dropped = None, 0
    try:  # every path converts before it writes: a refused chunk has written nothing
        counts = writer.upsert(connection, layout, rows, synced_at=synced_at)
    except RowConversionError:
        screened = screen(layout, rows)
        rows, dropped, rejects = screened.rows, screened.dropped, rejects + screened.rejects
    if rejects:  # (each time: a retried chunk's rollback may have taken the table along)
        rejects_table.create(connection, checkfirst=True)
        write_rejects(connection, rejects_table, layout.entity, rejects, run_id=run_id,
                      writer=writer)  # fmt: skip
    if counts is None:
        counts = writer.upsert(connection, layout, rows, synced_at=synced_at)
    return replace(counts, skipped=counts.skipped + dropped)
