"""`DialectWriter`: upsert one chunk by id, never replacing a row with an older version,
and mark deleted rows; one subclass per database says the SQL that differs.

The chunk is first de-duplicated (the newest version of an id wins), then the stored change
times of its ids are read in the same transaction to classify every row as inserted,
updated or skipped (older than what is stored). Only inserted and updated rows are sent, with
the dialect's guard in SQL as well (`newer`), so a concurrent writer cannot make an older
version win either.

Every path writes only a row whose content differs from the stored one (every written
column but `_synced_at`; `_deleted_at` included, so a row coming back is written), compared
in the same statement (`differs`). A row left as it was counts as `unchanged`, not
`updated`, and keeps its `_synced_at` (`mark_deleted` never stamps it: the refresh that read
it has its id). Multi-field child rows of every row the guard kept (written or unchanged)
are replaced in the same transaction; a parent counts by its own columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa

from dagster_bitrix24.warehouse.schema.columns import Dialect
from dagster_bitrix24.warehouse.schema.layout import (
    DELETED_AT,
    SYNCED_AT,
    ChildTable,
    TableLayout,
    child_rows,
    convert_rows,
)

ID_BATCH = 5_000
DELETE_BATCH = 500  # ids in one `IN (...)` of `delete_in`
PRESENT = "_bitrix24_present_ids"
CONVERSION_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError)


@dataclass(frozen=True)
class WriteCounts:
    """Rows inserted, updated (stored content changed), skipped (older than, or a duplicate
    of, a newer version) and unchanged (the stored row already held exactly this)."""

    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    unchanged: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.skipped + other.skipped,
            self.unchanged + other.unchanged,
        )

    @property
    def written(self) -> int:
        """Rows inserted or updated."""
        return self.inserted + self.updated


@dataclass(frozen=True)
class DeleteCounts:
    """Rows newly marked deleted, and rows that came back and were un-marked."""

    marked: int
    restored: int


class DialectWriter:
    """The writes of one database: `upsert` a chunk, `mark_deleted` rows, and the plain
    deletes and inserts of the link and rejects tables (`delete_in`, `insert_rows`). Subclasses give
    the guard (`newer`), the comparison (`differs`), the statement sending rows (`send`)
    and their temporary tables."""

    dialect: ClassVar[Dialect]
    temporary: ClassVar[str] = "TEMP"  # CREATE <temporary> TABLE
    drop_temporary: ClassVar[str] = "DROP TABLE"

    # -- what each dialect says ------------------------------------------------------------

    def newer(self, stored: str, incoming: str) -> str:
        """SQL: the incoming change time may replace the stored one (the guard)."""
        return f"({stored} IS NULL OR {incoming} >= {stored})"

    def differs(self, layout: TableLayout, quoted: list[str], old: str, new: str) -> str:
        """SQL: the stored row `old` differs from `new` in a written column (the id and
        `_synced_at` aside; `_deleted_at` included, so a row coming back counts as changed)."""
        raise NotImplementedError

    def send(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
        *, fresh: list[bool],
    ) -> int:  # fmt: skip
        """Upsert `rows` with the guard (`fresh`: which are new ids); the number of rows
        inserted or changed."""
        raise NotImplementedError

    def stored_changes(
        self, connection: sa.Connection, layout: TableLayout, ids: list[Any], *,
        latest: bool = False,
    ) -> dict[Any, Any]:  # fmt: skip
        """id -> stored change value (None without a change column) for the ids already
        stored; `latest`: the newest committed versions, not an older snapshot."""
        table, quoted = names(connection, layout)
        change = layout.change_index
        head = (
            f"SELECT {quoted[0]}, {quoted[change] if change is not None else 'NULL'} "
            f"FROM {table} WHERE {quoted[0]}"
        )
        marker = placeholder(connection)
        stored: dict[Any, Any] = {}
        cursor = connection.connection.cursor()  # the driver's tuples: no Row objects to build
        try:
            for batch in batches(ids):
                sql = f"{head} IN ({', '.join([marker] * len(batch))}){self.locking(latest)}"
                cursor.execute(sql, tuple(batch))
                stored.update(cursor.fetchall())
        finally:
            cursor.close()
        return stored

    def locking(self, latest: bool) -> str:
        """The clause making a read see the newest committed versions (none needed)."""
        return ""

    def replace_child(
        self, connection: sa.Connection, child: ChildTable, parents: list[Any],
        values: list[tuple[Any, ...]],
    ) -> None:  # fmt: skip
        """Replace the child rows of `parents` with `values`."""
        if not parents:
            return
        table, columns = child_names(connection, child)
        parents = self.may_have_children(connection, table, parents)
        self.swap_child_rows(connection, child, (table, columns), parents, values)

    def swap_child_rows(
        self, connection: sa.Connection, child: ChildTable, target: tuple[str, str],
        parents: list[Any], values: list[tuple[Any, ...]],
    ) -> None:  # fmt: skip
        """Delete the child rows of `parents` (each may have some), insert `values`;
        `target` is the quoted table and its column list."""
        table, columns = target
        marker = placeholder(connection)
        for batch in batches(parents):
            sql = f"DELETE FROM {table} WHERE parent_id IN ({', '.join([marker] * len(batch))})"
            connection.exec_driver_sql(sql, tuple(batch))
        if values:
            markers = ", ".join([marker] * len(child.table.columns))
            connection.exec_driver_sql(
                f"INSERT INTO {table} ({columns}) VALUES ({markers})", values
            )

    def may_have_children(
        self, connection: sa.Connection, table: str, parents: list[Any]
    ) -> list[Any]:
        """`parents` less the integer ids above every stored parent id (new rows: nothing
        to delete), read after the parent rows were written."""
        highest = connection.exec_driver_sql(f"SELECT max(parent_id) FROM {table}").scalar()
        above = ids_above(parents, highest)
        return [parent for parent, is_new in zip(parents, above, strict=True) if not is_new]

    def fill_present(self, connection: sa.Connection, ids: list[tuple[Any]]) -> None:
        """Insert `ids` into the temporary table of present ids."""
        if ids:
            connection.exec_driver_sql(
                f"INSERT INTO {PRESENT} (id) VALUES ({placeholder(connection)})", ids
            )

    def delete_in(
        self, connection: sa.Connection, table: sa.Table, column: str, values: Sequence[Any]
    ) -> int:
        """Delete the rows of `table` whose `column` is one of `values`; the rows removed."""
        removed = 0
        for batch in batches(values, DELETE_BATCH):
            where = table.c[column].in_(list(batch))
            removed += connection.execute(table.delete().where(where)).rowcount
        return removed

    def insert_rows(
        self, connection: sa.Connection, table: sa.Table, columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:  # fmt: skip
        """Insert `rows` (values of `columns`, in order) into `table`; a column left out
        takes its default (a sequence's next number)."""
        if rows:
            named = [dict(zip(columns, row, strict=True)) for row in rows]
            connection.execute(table.insert(), named)

    # -- the algorithm, the same everywhere ------------------------------------------------

    def upsert(
        self, connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
        *, synced_at: Any,
    ) -> WriteCounts:  # fmt: skip
        """Write one chunk inside the caller's transaction; return what happened to each row."""
        if not rows:
            return WriteCounts()
        converted = convert_rows(layout, rows, synced_at=synced_at)
        newest = newest_per_id(converted, layout.change_index)
        stored = self.stored_changes(connection, layout, list(newest))
        to_write: list[tuple[Any, ...]] = []
        change = layout.change_index
        for row_id, position in newest.items():
            row = converted[position]
            if row_id in stored and change is not None and not is_newer(row[change], stored[row_id]):
                continue
            to_write.append(row)
        fresh = [r[0] not in stored for r in to_write]
        sent = self.send(connection, layout, to_write, fresh=fresh)
        to_write, sent = self.kept_after_send(connection, layout, to_write, fresh, sent)
        inserted = min(sent, sum(row[0] not in stored for row in to_write))
        kept_positions = [newest[row[0]] for row in to_write]  # children follow every kept row
        self.replace_children(connection, layout, [rows[p] for p in kept_positions],
                              [row[0] for row in to_write])  # fmt: skip
        unchanged = max(len(to_write) - sent, 0)
        return WriteCounts(inserted, len(to_write) - inserted - unchanged,
                           len(rows) - len(to_write), unchanged)  # fmt: skip

    def kept_after_send(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
        fresh: list[bool], written: int,
    ) -> tuple[list[tuple[Any, ...]], int]:  # fmt: skip
        """The rows `send` was given that the guard kept, and how many it wrote: read back
        when fewer were written than sent (unchanged rows, or a newer version another
        writer stored since the read)."""
        if written == len(rows):
            return rows, written
        return self._stored_as_sent(connection, layout, rows), written

    def _stored_as_sent(
        self, connection: sa.Connection, layout: TableLayout, sent: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """The rows of `sent` the guard did not refuse (written, or found unchanged), read
        back after the write: the stored change times were read before it, and another
        writer may have committed a newer version in between (rows this transaction wrote
        stay locked until it commits)."""
        change = layout.change_index
        if change is None:
            return sent
        stored = self.stored_changes(connection, layout, [row[0] for row in sent], latest=True)
        return [row for row in sent if is_newer(row[change], stored.get(row[0]))]

    def replace_children(
        self, connection: sa.Connection, layout: TableLayout, rows: list[Mapping[str, Any]],
        ids: list[Any],
    ) -> None:  # fmt: skip
        for child in layout.children:
            parents, values = child_rows(child, rows, ids)
            self.replace_child(connection, child, parents, values)

    def live_ids(self, connection: sa.Connection, layout: TableLayout, *, before: Any) -> list[Any]:
        """Ids of the rows not marked deleted, only those written before `before` (if given):
        the rows `mark_deleted` may stamp."""
        quote = connection.dialect.identifier_preparer
        query = (
            f"SELECT {quote.quote(layout.id_column)} FROM {quote.format_table(layout.table)} "
            f"WHERE {quote.quote(DELETED_AT)} IS NULL"
        )
        if before is None:
            return [row[0] for row in connection.exec_driver_sql(query)]
        query += f" AND {quote.quote(SYNCED_AT)} < {placeholder(connection)}"
        return [row[0] for row in connection.exec_driver_sql(query, (before,))]

    def mark_deleted(
        self, connection: sa.Connection, layout: TableLayout, ids: list[tuple[Any]],
        *, now: Any, before: Any,
    ) -> DeleteCounts:  # fmt: skip
        """Stamp `_deleted_at` (`now`) on rows whose id is not in `ids`, unless written at
        or after `before`; clear it on the rest. The ids go to a temporary table first."""
        quote = connection.dialect.identifier_preparer
        table = quote.format_table(layout.table)
        id_col, deleted = quote.quote(layout.id_column), quote.quote(DELETED_AT)
        id_type = layout.table.c[layout.id_column].type.compile(dialect=connection.dialect)
        connection.exec_driver_sql(f"{self.drop_temporary} IF EXISTS {PRESENT}")
        connection.exec_driver_sql(
            f"CREATE {self.temporary} TABLE {PRESENT} (id {id_type} PRIMARY KEY)"
        )
        self.fill_present(connection, ids)
        marker = placeholder(connection)
        present = f"EXISTS (SELECT 1 FROM {PRESENT} p WHERE p.id = {table}.{id_col})"
        stale, stamps = "", [now]
        if before is not None:  # (compared in the same statement: no row slips in between)
            stale, stamps = f" AND {quote.quote(SYNCED_AT)} < {marker}", [now, before]
        marked = connection.exec_driver_sql(
            f"UPDATE {table} SET {deleted} = {marker} "
            f"WHERE {deleted} IS NULL AND NOT {present}{stale}",
            tuple(stamps),
        ).rowcount
        restored = connection.exec_driver_sql(
            f"UPDATE {table} SET {deleted} = NULL WHERE {deleted} IS NOT NULL AND {present}"
        ).rowcount
        connection.exec_driver_sql(f"{self.drop_temporary} {PRESENT}")
        return DeleteCounts(marked, restored)


class OnConflictWriter(DialectWriter):
    """SQLite and PostgreSQL: `INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE` the content
    differs and the guard allows (target aliased `cur`)."""

    distinct: ClassVar[str]  # the NULL-safe "differs" operator

    def differs(self, layout: TableLayout, quoted: list[str], old: str, new: str) -> str:
        content = [*quoted[1 : len(layout.columns)], quoted[-1]]
        left = ", ".join(f"{old}.{q}" for q in content)
        right = ", ".join(f"{new}.{q}" for q in content)
        return f"({left}) {self.distinct} ({right})"

    def on_conflict(self, layout: TableLayout, quoted: list[str]) -> str:
        """The ON CONFLICT clause: only a row whose content differs is written, and never
        over a newer version."""
        sets = ", ".join(f"{q} = excluded.{q}" for q in quoted[1:])
        clause = (
            f"ON CONFLICT ({quoted[0]}) DO UPDATE SET {sets} "
            f"WHERE {self.differs(layout, quoted, 'cur', 'excluded')}"
        )
        change = layout.change_index
        if change is None:
            return clause
        column = quoted[change]
        return f"{clause} AND {self.newer(f'cur.{column}', f'excluded.{column}')}"

    def send(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
        *, fresh: list[bool],
    ) -> int:  # fmt: skip
        if not rows:
            return 0
        table, quoted = names(connection, layout)
        values = ", ".join([placeholder(connection)] * len(quoted))
        sql = (
            f"INSERT INTO {table} AS cur ({', '.join(quoted)}) VALUES ({values}) "
            f"{self.on_conflict(layout, quoted)}"
        )
        return connection.exec_driver_sql(sql, rows).rowcount


# -- helpers every dialect uses ------------------------------------------------------------


def is_newer(incoming: Any, stored: Any) -> bool:
    if stored is None:
        return True
    return incoming is not None and incoming >= stored


def newest_per_id(rows: list[tuple[Any, ...]], change: int | None) -> dict[Any, int]:
    """id -> position of the version to keep: the newest change time, the last one on ties."""
    newest = {row[0]: position for position, row in enumerate(rows)}
    if len(newest) == len(rows):  # no id twice: the common case
        return newest
    newest = {}
    for position, row in enumerate(rows):
        previous = newest.get(row[0])
        if previous is None or change is None or is_newer(row[change], rows[previous][change]):
            newest[row[0]] = position
    return newest


def ids_above(ids: list[Any], highest: Any) -> list[bool]:
    """Per id: is it an integer above every stored id (certainly not stored)?"""
    if highest is None:
        return [True] * len(ids)
    if not isinstance(highest, int):
        return [False] * len(ids)
    if min(ids) > highest:
        return [True] * len(ids)
    if max(ids) <= highest:  # a re-sync: every id may be stored
        return [False] * len(ids)
    return [row_id > highest for row_id in ids]


def batches(items: Sequence[Any], size: int = ID_BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def names(connection: sa.Connection, layout: TableLayout) -> tuple[str, list[str]]:
    """The quoted table name and written column names of `layout`."""
    quote = connection.dialect.identifier_preparer
    return quote.format_table(layout.table), [quote.quote(n) for n in layout.written_names]


def child_names(connection: sa.Connection, child: ChildTable) -> tuple[str, str]:
    """The quoted table name and column list of a child table."""
    quote = connection.dialect.identifier_preparer
    columns = ", ".join(quote.quote(c.name) for c in child.table.columns)
    return quote.format_table(child.table), columns


def placeholder(connection: sa.Connection) -> str:
    """The driver's positional parameter marker (DuckDB takes `?` with a tuple)."""
    qmark = connection.dialect.paramstyle == "qmark" or connection.dialect.name == "duckdb"
    return "?" if qmark else "%s"
