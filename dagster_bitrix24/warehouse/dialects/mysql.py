"""MySQL/MariaDB: `INSERT ... ON DUPLICATE KEY UPDATE col = IF(guard, VALUES(col), col)`.

The change-time column is assigned LAST because later assignments see earlier updated
values; `_synced_at` is assigned FIRST, only when a column differs byte for byte (`CAST AS
BINARY`: a collation finds 'Acme' = 'ACME'), so an unchanged row stays as it was and its
affected-rows count says unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa

from dagster_bitrix24.warehouse.dialects.base import DialectWriter, names, placeholder
from dagster_bitrix24.warehouse.schema.columns import Dialect
from dagster_bitrix24.warehouse.schema.layout import TableLayout

_FOUND_ROWS = 2  # CLIENT_FOUND_ROWS of the MySQL protocol


class MysqlWriter(DialectWriter):
    """The writes of a MySQL/MariaDB warehouse."""

    dialect: ClassVar[Dialect] = "mysql"
    temporary: ClassVar[str] = "TEMPORARY"
    # MySQL commits the open transaction on a DROP TABLE, but not on DROP TEMPORARY TABLE
    drop_temporary: ClassVar[str] = "DROP TEMPORARY TABLE"

    def differs(self, layout: TableLayout, quoted: list[str], old: str, new: str) -> str:
        """Against VALUES(): text compared byte for byte, not by collation."""
        content = [*quoted[1 : len(layout.columns)], quoted[-1]]
        kinds = [spec.kind for spec in layout.columns[1:]] + ["datetime"]
        same = " AND ".join(
            f"CAST({q} AS BINARY) <=> CAST(VALUES({q}) AS BINARY)"
            if kind in ("text", "key", "json") else f"{q} <=> VALUES({q})"
            for q, kind in zip(content, kinds, strict=True)
        )  # fmt: skip
        return f"NOT ({same})"

    def locking(self, latest: bool) -> str:
        """A locking read sees the newest committed versions, not the snapshot the
        REPEATABLE READ transaction took at its first read."""
        return " LOCK IN SHARE MODE" if latest else ""

    def may_have_children(
        self, connection: sa.Connection, table: str, parents: list[Any]
    ) -> list[Any]:
        """Every parent: MySQL's snapshot of the stored maximum may be older than the write."""
        return parents

    def send(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
        *, fresh: list[bool],
    ) -> int:  # fmt: skip
        if not rows:
            return 0
        table, quoted = names(connection, layout)
        values = ", ".join([placeholder(connection)] * len(quoted))
        insert = f"INSERT INTO {table} ({', '.join(quoted)}) VALUES ({values})"
        result = connection.exec_driver_sql(f"{insert} {self._update(layout, quoted)}", rows)
        return _written(connection, result.rowcount, len(rows), sum(fresh))

    def _update(self, layout: TableLayout, quoted: list[str]) -> str:
        """ON DUPLICATE KEY UPDATE with the guard per column (see the module docstring)."""
        synced = quoted[len(layout.columns)]
        differs = self.differs(layout, quoted, "", "")
        change = layout.change_index
        if change is None:
            first = f"{synced} = IF({differs}, VALUES({synced}), {synced})"
            rest = ", ".join(f"{q} = VALUES({q})" for q in quoted[1:] if q != synced)
            return f"ON DUPLICATE KEY UPDATE {first}, {rest}"
        column = quoted[change]
        guard = self.newer(column, f"VALUES({column})")
        first = f"{synced} = IF({guard} AND {differs}, VALUES({synced}), {synced})"
        ordered = [q for q in quoted[1:] if q not in (column, synced)] + [column]
        sets = ", ".join(f"{q} = IF({guard}, VALUES({q}), {q})" for q in ordered)
        return f"ON DUPLICATE KEY UPDATE {first}, {sets}"


def _written(connection: sa.Connection, rowcount: int, sent: int, inserted: int) -> int:
    """Rows inserted or changed, from MySQL's affected rows: 1 per insert, 2 per changed row,
    and per row left as it was 1 with CLIENT_FOUND_ROWS (SQLAlchemy always sets it), else 0."""
    flags = getattr(connection.connection.dbapi_connection, "client_flag", None)
    if flags is None or flags & _FOUND_ROWS:
        return rowcount - sent + inserted
    return inserted + (rowcount - inserted) // 2
