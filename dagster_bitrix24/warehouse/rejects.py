"""The rejects table: every value a sync could not store as sent, with why and which run.

`_<prefix>rejects` (`_bitrix24_rejects`) holds one row per rejected value: entity, row id,
field, the raw value as text (cut to `RAW_LIMIT` characters; a NUL byte shown as `\\0`),
the reason, the run id and the time. It is the only place a raw row value is written
outside the entity tables: errors and Dagster metadata carry counts and names only.
Which run is an entity's latest is kept in the cursor table under `latest_run_key(table)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse.dialects.base import DialectWriter
from dagster_bitrix24.warehouse.schema.columns import fit_identifier
from dagster_bitrix24.warehouse.screening import Reject

RAW_LIMIT = 1_000
_WRITTEN = ("run_id", "entity", "row_id", "field", "raw_value", "reason", "rejected_at")


def rejects_table(
    metadata: sa.MetaData, name: str, *, schema: str | None, sequence: bool = False
) -> sa.Table:
    """The rejects table definition; `sequence`: its key numbered by a sequence (DuckDB has
    neither SERIAL nor AUTO_INCREMENT)."""
    numbered = [sa.Sequence(fit_identifier(f"{name}_seq"), schema=schema)] if sequence else []
    return sa.Table(
        name,
        metadata,
        sa.Column("reject_id", sa.Integer, *numbered, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), comment="the sync run that met the value"),
        sa.Column("entity", sa.String(255), nullable=False, comment="e.g. crm.deal"),
        sa.Column("row_id", sa.String(255), comment="the row's id as the portal sent it"),
        sa.Column("field", sa.String(255), nullable=False, comment="the portal's field name"),
        sa.Column("raw_value", sa.Text, comment=f"the value as sent, cut to {RAW_LIMIT} chars"),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index(fit_identifier(f"ix_{name}_entity_run"), "entity", "run_id"),
        schema=schema,
        comment="dagster-bitrix24: values not stored as sent (NULL or cleaned in the table)",
    )


def latest_run_key(table_name: str) -> str:
    """The cursor-table key holding the id of the entity's latest run."""
    return f"{table_name}#latest_run"


def raw_text(value: Any) -> str | None:
    """A raw value as storable text: strings as they are, anything else as JSON."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:RAW_LIMIT].replace("\x00", "\\0")


def _text(value: Any, limit: int = 255) -> str | None:
    return None if value is None else raw_text(value)[:limit]  # type: ignore[index]


def write_rejects(
    connection: sa.Connection, table: sa.Table, entity: str, rejects: Sequence[Reject],
    *, run_id: str | None, writer: DialectWriter,
) -> None:  # fmt: skip
    """Record `rejects` in the caller's transaction (`writer.insert_rows`: in bulk on
    DuckDB; `reject_id` numbered in their order)."""
    if not rejects:
        return
    now = datetime.now(UTC)
    writer.insert_rows(connection, table, _WRITTEN, [
        (run_id, entity, _text(r.row_id), _text(r.field), raw_text(r.raw), r.reason[:255], now)
        for r in rejects
    ])  # fmt: skip


def count_rejects(
    connection: sa.Connection, table: sa.Table, entity: str, run_id: str
) -> tuple[int, list[dict[str, Any]]]:
    """The number of rejects of `entity` in run `run_id`, and up to five of them (field,
    row id, reason: no raw values) as examples."""
    where = sa.and_(table.c.entity == entity, table.c.run_id == run_id)
    total = connection.execute(sa.select(sa.func.count()).select_from(table).where(where))
    count = int(total.scalar_one())
    examples = connection.execute(
        sa.select(table.c.field, table.c.row_id, table.c.reason).where(where)
        .order_by(table.c.reject_id).limit(5)
    ).all()  # fmt: skip
    return count, [{"field": f, "row_id": i, "reason": r} for f, i, r in examples]
