"""The cursor table: one row per sync key (cursor value, when it moved, extra JSON).

Cursors live in the warehouse itself, so a cursor can be written in the same transaction
as the last chunk of a window, or in its own transaction after every chunk has landed:
the caller passes the connection of the transaction it controls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class CursorState:
    """A stored cursor: its value, when it was written (UTC) and any extra JSON data."""

    key: str
    value: str
    updated_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def state_table(metadata: sa.MetaData, name: str, *, schema: str | None) -> sa.Table:
    """The cursor table definition."""
    return sa.Table(
        name,
        metadata,
        sa.Column("sync_key", sa.String(255), primary_key=True),
        sa.Column("cursor_value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extra", sa.Text),
        schema=schema,
        comment="dagster-bitrix24 sync cursors",
    )


def read_state(connection: sa.Connection, table: sa.Table, key: str) -> CursorState | None:
    """The cursor stored under `key`, or None."""
    found = connection.execute(sa.select(table).where(table.c.sync_key == key)).first()
    if found is None:
        return None
    updated_at = found.updated_at
    if updated_at.tzinfo is None:  # SQLite and MySQL store naive UTC
        updated_at = updated_at.replace(tzinfo=UTC)
    extra = json.loads(found.extra) if found.extra else {}
    return CursorState(found.sync_key, found.cursor_value, updated_at, extra)


def write_state(
    connection: sa.Connection, table: sa.Table, key: str, value: str,
    extra: Mapping[str, Any] | None,
) -> None:  # fmt: skip
    """Insert or replace the cursor under `key` within the caller's transaction."""
    now = datetime.now(UTC)
    if connection.dialect.name not in ("postgresql", "duckdb"):  # their column has a zone
        now = now.replace(tzinfo=None)
    values = {
        "cursor_value": value,
        "updated_at": now,
        "extra": json.dumps(dict(extra), sort_keys=True, default=str) if extra else None,
    }
    changed = connection.execute(
        sa.update(table).where(table.c.sync_key == key).values(**values)
    ).rowcount
    if not changed:
        connection.execute(sa.insert(table).values(sync_key=key, **values))


def delete_state(connection: sa.Connection, table: sa.Table, key: str) -> bool:
    """Remove the cursor under `key`; True when there was one."""
    return bool(connection.execute(sa.delete(table).where(table.c.sync_key == key)).rowcount)
