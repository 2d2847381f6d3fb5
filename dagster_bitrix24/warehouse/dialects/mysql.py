"""MySQL/MariaDB: `INSERT ... ON DUPLICATE KEY UPDATE col = IF(guard, VALUES(col), col)`.

The change-time column is assigned LAST because later assignments see earlier updated
values; `_synced_at` is assigned FIRST, only when a column differs byte for byte (`CAST AS
BINARY`: a collation finds 'Acme' = 'ACME'), so an unchanged row stays as it was and its
affected-rows count says unchanged.

Chunks of `load_threshold` rows or more go by the bulk path (`mysql_load`): LOAD DATA LOCAL
INFILE into a temporary stage, new and refused ids found by joins on the server, one guarded
INSERT ... SELECT with the same ON DUPLICATE KEY UPDATE (its stored columns qualified by the
table's name); executemany when the connection or server does not allow LOCAL INFILE, and
always with `bulk_load=False` (`Warehouse(mysql_bulk_load=False)`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import sqlalchemy as sa

from dagster_bitrix24.warehouse.dialects import mysql_load
from dagster_bitrix24.warehouse.dialects.base import (
    DialectWriter,
    WriteCounts,
    batches,
    child_names,
    names,
    newest_per_id,
    placeholder,
)
from dagster_bitrix24.warehouse.schema.columns import Dialect
from dagster_bitrix24.warehouse.schema.layout import (
    ChildTable,
    TableLayout,
    child_rows,
    convert_rows,
)

_FOUND_ROWS = 2  # CLIENT_FOUND_ROWS of the MySQL protocol
LOAD_THRESHOLD = 1_000
_EPOCH, _MICROSECOND = datetime(1970, 1, 1), timedelta(microseconds=1)


class MysqlWriter(DialectWriter):
    """The writes of a MySQL/MariaDB warehouse."""

    dialect: ClassVar[Dialect] = "mysql"
    temporary: ClassVar[str] = "TEMPORARY"
    # MySQL commits the open transaction on a DROP TABLE, but not on DROP TEMPORARY TABLE
    drop_temporary: ClassVar[str] = "DROP TEMPORARY TABLE"
    load_threshold: int = LOAD_THRESHOLD  # rows from which LOAD DATA is used

    def __init__(self, *, bulk_load: bool = True, load_threshold: int | None = None) -> None:
        """`bulk_load=False`: every chunk by executemany; `load_threshold`: rows from which
        a chunk is loaded (the class's default unless given)."""
        self.bulk_load = bulk_load
        if load_threshold is not None:
            self.load_threshold = load_threshold

    def differs(self, layout: TableLayout, quoted: list[str], old: str, new: str) -> str:
        """Against VALUES() (`new` unused); `old` qualifies the stored columns ("" or
        "table."). Text compared byte for byte, not by collation."""
        content = [*quoted[1 : len(layout.columns)], quoted[-1]]
        kinds = [spec.kind for spec in layout.columns[1:]] + ["datetime"]
        same = " AND ".join(
            f"CAST({old}{q} AS BINARY) <=> CAST(VALUES({q}) AS BINARY)"
            if kind in ("text", "key", "json") else f"{old}{q} <=> VALUES({q})"
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

    def _update(self, layout: TableLayout, quoted: list[str], target: str = "") -> str:
        """ON DUPLICATE KEY UPDATE with the guard per column (see the module docstring);
        `target` ("table.") qualifies the stored columns, as an INSERT ... SELECT needs."""
        t = target
        synced = quoted[len(layout.columns)]
        differs = self.differs(layout, quoted, t, "")
        change = layout.change_index
        if change is None:
            first = f"{t}{synced} = IF({differs}, VALUES({synced}), {t}{synced})"
            rest = ", ".join(f"{t}{q} = VALUES({q})" for q in quoted[1:] if q != synced)
            return f"ON DUPLICATE KEY UPDATE {first}, {rest}"
        column = quoted[change]
        guard = self.newer(f"{t}{column}", f"VALUES({column})")
        first = f"{t}{synced} = IF({guard} AND {differs}, VALUES({synced}), {t}{synced})"
        ordered = [q for q in quoted[1:] if q not in (column, synced)] + [column]
        sets = ", ".join(f"{t}{q} = IF({guard}, VALUES({q}), {t}{q})" for q in ordered)
        return f"ON DUPLICATE KEY UPDATE {first}, {sets}"

    def kept_after_send(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
        fresh: list[bool], written: int,
    ) -> tuple[list[tuple[Any, ...]], int]:  # fmt: skip
        """Checked also whenever an id was new at the read: the affected rows count a
        newer version another writer inserted since (refused) as our insert, and an older
        one (updated by us) one higher, hiding a refused row. When the count looks right,
        one aggregate read (`_none_refused`) says whether any row was refused; if so, or
        when the count is off, the rows are read back and each refused new id is taken out
        of the written count."""
        if written == len(rows) and (
            not any(fresh) or self._none_refused(connection, layout, rows)
        ):
            return rows, written
        kept = self._stored_as_sent(connection, layout, rows)
        ids = {row[0] for row in kept}
        return kept, written - sum(new and row[0] not in ids
                                   for row, new in zip(rows, fresh, strict=True))  # fmt: skip

    def _none_refused(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]]
    ) -> bool:
        """Whether every row sent is stored with its own change value, read under lock as
        a count and a sum: the guard leaves each stored value at or above ours (a NULL of
        ours under a stored value shows in the count), so equal figures mean none above.
        False when the values cannot be summed here (the caller then reads them back)."""
        change = layout.change_index
        if change is None:
            return True
        kind = layout.columns[change].kind
        table, quoted = names(connection, layout)
        column = quoted[change]
        try:
            ours = [_measure(row[change], kind) for row in rows if row[change] is not None]
        except TypeError:
            return False
        if kind == "datetime":
            column = f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01', {column})"
        marker, count, total = placeholder(connection), 0, 0
        for batch in batches([row[0] for row in rows]):
            found, summed = connection.exec_driver_sql(
                f"SELECT COUNT({column}), SUM({column}) FROM {table} WHERE {quoted[0]} "
                f"IN ({', '.join([marker] * len(batch))}) LOCK IN SHARE MODE", tuple(batch),
            ).one()  # fmt: skip
            count, total = count + found, total + int(summed or 0)
        return (count, total) == (len(ours), sum(ours))

    def upsert(
        self, connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
        *, synced_at: Any,
    ) -> WriteCounts:  # fmt: skip
        """Large chunks by the bulk path when it is on and LOCAL INFILE is allowed, others
        as every dialect writes them."""
        if (
            self.bulk_load
            and len(rows) >= self.load_threshold
            and mysql_load.local_infile_enabled(connection)
        ):
            counts = self._load_upsert(connection, layout, rows, synced_at=synced_at)
            if counts is not None:
                return counts
        return super().upsert(connection, layout, rows, synced_at=synced_at)

    def _load_upsert(
        self, connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
        *, synced_at: Any,
    ) -> WriteCounts | None:  # fmt: skip
        """The newest versions staged; the stored versions compared on the server (no
        stored values read back); the refused rows taken out, the rest merged; counted as
        `DialectWriter.upsert` counts. None when the server did not take the load (nothing
        written).

        After the merge the rows the guard refused are read under lock every time: the
        affected rows cannot tell them apart when another writer committed, since our
        comparison, a newer version of one id (1 affected row where 2 were counted) and an
        older version of an id new to us (2 where 1 was counted). A refused id our
        REPEATABLE READ snapshot does not hold was new to us: not counted as inserted."""
        converted = convert_rows(layout, rows, synced_at=synced_at)
        newest = newest_per_id(converted, layout.change_index)
        table, quoted = names(connection, layout)
        columns, id_col, change = ", ".join(quoted), quoted[0], layout.change_index
        kinds = tuple(spec.kind for spec in layout.columns) + ("datetime", "datetime")
        staged = [converted[position] for position in newest.values()]
        if not mysql_load.stage(connection, table, columns, mysql_load.tsv_builder(kinds)(staged)):
            return None
        inserted = mysql_load.count_new(connection, table, id_col)
        to_write, refused_at_first = staged, set()
        if change is not None and inserted < len(staged):
            refused_at_first = mysql_load.refused_ids(connection, table, id_col, quoted[change])
            if refused_at_first:  # older than the stored version: not merged
                to_write = [row for row in staged if row[0] not in refused_at_first]
                mysql_load.unstage(connection, id_col, list(refused_at_first))
        affected = mysql_load.merge(connection, table, columns, self._update(layout, quoted,
                                                                             f"{table}."))  # fmt: skip
        merged = len(to_write)
        if change is not None:  # read under lock whatever the affected rows say (see below)
            refused = mysql_load.refused_ids(connection, table, id_col, quoted[change],
                                             latest=True)  # fmt: skip
            if refused:  # newer versions another writer committed since the comparison
                to_write = [row for row in to_write if row[0] not in refused]
                inserted -= len(refused) - mysql_load.count_seen(connection, table, id_col,
                                                                  list(refused))  # fmt: skip
        sent = _written(connection, affected, merged, inserted)
        if sent != len(to_write):  # unchanged rows
            inserted = min(sent, inserted)
        kept_rows = [rows[newest[row[0]]] for row in to_write]
        kept_ids = [row[0] for row in to_write]
        if len(to_write) == len(staged) - len(refused_at_first):  # the stage holds the kept rows
            for child in layout.children:
                _, values = child_rows(child, kept_rows, kept_ids)
                self._replace_staged_child(connection, child, values, id_col)
            mysql_load.drop_stage(connection)
        else:
            mysql_load.drop_stage(connection)
            self.replace_children(connection, layout, kept_rows, kept_ids)
        unchanged = max(len(to_write) - sent, 0)
        return WriteCounts(inserted, len(to_write) - inserted - unchanged,
                           len(rows) - len(to_write), unchanged)  # fmt: skip

    def _replace_staged_child(
        self, connection: sa.Connection, child: ChildTable, values: list[tuple[Any, ...]],
        id_column: str,
    ) -> None:  # fmt: skip
        """Replace the child rows of every staged parent: one DELETE joined with the stage,
        the new rows by LOAD DATA (by executemany when the server does not take them)."""
        table, columns = child_names(connection, child)
        delete = f"DELETE c FROM {table} c JOIN {mysql_load.STAGE} s ON c.parent_id = s.{id_column}"
        connection.exec_driver_sql(delete)
        if not values:
            return
        id_kind = "integer" if isinstance(values[0][0], int) else "key"
        kinds = (id_kind, "integer", "integer", "text", "text", "text")
        text = mysql_load.tsv_builder(kinds)(values)
        if not mysql_load.load_table(connection, table, columns, text):
            connection.exec_driver_sql(delete)  # what the load left
            markers = ", ".join([placeholder(connection)] * len(child.table.columns))
            connection.exec_driver_sql(
                f"INSERT INTO {table} ({columns}) VALUES ({markers})", values
            )


def _measure(value: Any, kind: str) -> int:
    """A change value as the integer `_none_refused` sums: microseconds since 1970 for a
    (naive UTC) datetime; TypeError for anything else than that or an integer."""
    if kind == "datetime" and isinstance(value, datetime) and value.tzinfo is None:
        return (value - _EPOCH) // _MICROSECOND
    if kind == "integer" and isinstance(value, int):
        return value
    raise TypeError(kind)


def _written(connection: sa.Connection, rowcount: int, sent: int, inserted: int) -> int:
    """Rows inserted or changed, from MySQL's affected rows: 1 per insert, 2 per changed row,
    and per row left as it was 1 with CLIENT_FOUND_ROWS (SQLAlchemy always sets it), else 0."""
    flags = getattr(connection.connection.dbapi_connection, "client_flag", None)
    if flags is None or flags & _FOUND_ROWS:
        return rowcount - sent + inserted
    return inserted + (rowcount - inserted) // 2
