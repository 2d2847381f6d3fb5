"""PostgreSQL: `INSERT ... ON CONFLICT` with `IS DISTINCT FROM`, and COPY for bulk.

A chunk of `copy_threshold` rows or more first takes the text COPY path
(`postgresql_copy`), or with `convert_in_database` the SQL staging path
(`postgresql_staging`); a chunk they decline is converted in Python and, still that large,
sent by binary COPY (psycopg 3) after the pre-read: new ids straight into the table, the
rest into a temporary table merged with one guarded INSERT ... SELECT. Child rows and the
present ids of `mark_deleted` are COPYed too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa

from dagster_bitrix24.warehouse.dialects.base import (
    PRESENT,
    OnConflictWriter,
    WriteCounts,
    names,
)
from dagster_bitrix24.warehouse.dialects.postgresql_copy import copy_upsert
from dagster_bitrix24.warehouse.dialects.postgresql_staging import staged_upsert
from dagster_bitrix24.warehouse.schema.columns import Dialect
from dagster_bitrix24.warehouse.schema.layout import ChildTable, TableLayout

COPY_THRESHOLD = 2_000
MERGE_BLOCK = 4_000
_STAGE = "_bitrix24_stage"


class PostgresWriter(OnConflictWriter):
    """The writes of a PostgreSQL warehouse: chunks of `copy_threshold` rows or more go by
    COPY, merged `merge_block` rows at a time; `convert_in_database` converts them in SQL."""

    dialect: ClassVar[Dialect] = "postgresql"
    distinct: ClassVar[str] = "IS DISTINCT FROM"

    def __init__(
        self, *, copy_threshold: int = COPY_THRESHOLD, merge_block: int = MERGE_BLOCK,
        convert_in_database: bool = False,
    ) -> None:  # fmt: skip
        self.copy_threshold = copy_threshold
        self.merge_block = merge_block
        self.convert_in_database = convert_in_database

    def upsert(
        self, connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
        *, synced_at: Any,
    ) -> WriteCounts:  # fmt: skip
        if len(rows) >= self.copy_threshold:
            counts = None
            if self.convert_in_database and layout.row_stager is not None:
                counts = self.staged_upsert(connection, layout, rows, synced_at=synced_at)
            if counts is None and layout.line_builder is not None:
                counts = self.copy_upsert(connection, layout, rows, synced_at=synced_at)
            if counts is not None:
                return counts
        return super().upsert(connection, layout, rows, synced_at=synced_at)

    def copy_upsert(
        self, connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
        *, synced_at: Any,
    ) -> WriteCounts | None:  # fmt: skip
        """The text COPY path alone (`postgresql_copy`); None when it declines the chunk."""
        return copy_upsert(
            self, connection, layout, rows, synced_at=synced_at, merge_block=self.merge_block
        )

    def staged_upsert(
        self, connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
        *, synced_at: Any,
    ) -> WriteCounts | None:  # fmt: skip
        """The SQL staging path alone (`postgresql_staging`); None when it declines."""
        return staged_upsert(self, connection, layout, rows, synced_at=synced_at)

    def stored_changes(
        self, connection: sa.Connection, layout: TableLayout, ids: list[Any], *,
        latest: bool = False,
    ) -> dict[Any, Any]:  # fmt: skip
        """One `= ANY(array)` read (READ COMMITTED sees the newest versions anyway)."""
        table, quoted = names(connection, layout)
        change = layout.change_index
        change_col = quoted[change] if change is not None else "NULL"
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(
                f"SELECT {quoted[0]}, {change_col} FROM {table} WHERE {quoted[0]} = ANY(%s)",
                (ids,), binary=True,
            )  # fmt: skip
            return dict(cursor.fetchall())

    def send(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
        *, fresh: list[bool],
    ) -> int:  # fmt: skip
        if len(rows) < self.copy_threshold:
            return super().send(connection, layout, rows, fresh=fresh)
        return self._copy_send(connection, layout, rows, fresh=fresh)

    def _copy_send(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
        *, fresh: list[bool],
    ) -> int:  # fmt: skip
        """Binary COPY of new ids straight into the table (a savepoint falls back to merging
        if a concurrent writer got there first), and COPY of the rest into a temporary table
        merged with one guarded INSERT ... SELECT. Returns the number of rows stored."""
        from psycopg.errors import UniqueViolation  # psycopg is only needed for PostgreSQL

        table, quoted = names(connection, layout)
        columns = ", ".join(quoted)
        new = [row for row, is_new in zip(rows, fresh, strict=True) if is_new]
        old = [row for row, is_new in zip(rows, fresh, strict=True) if not is_new]
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(f"SELECT {columns} FROM {table} LIMIT 0")
            types = [column.type_code for column in cursor.description]
            copied = 0
            if new:
                try:
                    with raw.transaction():  # type: ignore[union-attr]
                        _copy(cursor, table, columns, types, new)
                    copied = len(new)
                except UniqueViolation:
                    old.extend(new)
            if not old:
                return copied
            cursor.execute(f"DROP TABLE IF EXISTS {_STAGE}")
            cursor.execute(
                f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {columns} FROM {table} "
                "WITH NO DATA"
            )
            _copy(cursor, _STAGE, columns, types, old)
            cursor.execute(
                f"INSERT INTO {table} AS cur ({columns}) SELECT {columns} FROM {_STAGE} "
                f"{self.on_conflict(layout, quoted)}"
            )
            merged = cursor.rowcount
            cursor.execute(f"DROP TABLE {_STAGE}")
        return copied + merged

    def swap_child_rows(
        self, connection: sa.Connection, child: ChildTable, target: tuple[str, str],
        parents: list[Any], values: list[tuple[Any, ...]],
    ) -> None:  # fmt: skip
        """DELETE by `= ANY(array)`, then binary COPY of the new values."""
        table, columns = target
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            if parents:
                cursor.execute(f"DELETE FROM {table} WHERE parent_id = ANY(%s)", (parents,))
            if values:
                cursor.execute(f"SELECT {columns} FROM {table} LIMIT 0")
                types = [column.type_code for column in cursor.description]
                _copy(cursor, table, columns, types, values)

    def fill_present(self, connection: sa.Connection, ids: list[tuple[Any]]) -> None:
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {PRESENT} (id) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in ids:
                copy.write_row(row)


def _copy(
    cursor: Any, table: str, columns: str, types: list[int], rows: list[tuple[Any, ...]]
) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
