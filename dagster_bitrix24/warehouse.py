"""The warehouse writer: typed tables from Bitrix24 field metadata, safe upserts, cursors.

SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy 2; no Dagster in here.

    >>> from dagster_bitrix24.warehouse import Warehouse
    >>> warehouse = Warehouse("sqlite:///bitrix24.sqlite", table_prefix="bitrix24_")
    >>> layout = warehouse.prepare_table(
    ...     "crm.deal", fields, id_field="ID", change_field="DATE_MODIFY")
    >>> layout.changes            # SchemaChanges: created, added_columns, type_changes, ...
    >>> for page in pages:        # one transaction per chunk
    ...     counts = warehouse.write_chunk(layout, page)  # WriteCounts(inserted, updated, skipped, unchanged)
    >>> warehouse.start_run("crm.deal", run_id)   # rejects are counted per entity and run
    >>> counts = warehouse.write_chunk(layout, page, run_id=run_id)
    >>> warehouse.rejects("crm.deal", run_id)      # (count, examples) of values not stored
    >>> warehouse.commit_cursor("crm.deal", "2024-09-02T18:37:18+03:00")  # after every chunk
    >>> warehouse.read_cursor("crm.deal").value
    >>> warehouse.mark_deleted(layout, all_portal_ids)      # DeleteCounts(marked, restored)
    >>> warehouse.column_schema(layout)    # [(name, SQL type, description), ...]

A Warehouse built from a SQLite file URL runs that file in WAL mode with
`synchronous=NORMAL` (see `_tune_sqlite_file`). `prepare_table` creates `<prefix><entity>` (`bitrix24_crm_deal`) and one child table per
multi-field (`bitrix24_crm_deal_phone`), adds columns for new fields, leaves removed fields'
columns in place, and reports (and logs) a field whose type changed: that column is no longer
written until someone migrates it. To write a chunk and the cursor atomically, or to make a
failure roll the cursor back, pass the connection of `with warehouse.transaction() as tx:` to
`write_chunk(..., connection=tx)` and `commit_cursor(..., connection=tx)`.

A chunk holding a value no column can hold (`'12abc'` in an integer field, a NUL byte) is
written anyway: `screening.screen` makes the value NULL (or cleans it) and the original goes
to the rejects table (`rejects.py`) in the same transaction.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.columns import (
    Dialect,
    converter,
    fit_identifier,
    plan_columns,
    same_family,
    type_family,
)
from dagster_bitrix24.layout import (
    DELETED_AT,
    SYNCED_AT,
    ChildTable,
    SchemaChanges,
    TableLayout,
    TypeChange,
    child_table,
    entity_table,
    synced_at_value,
    with_converters,
)
from dagster_bitrix24.rejects import count_rejects, latest_run_key, rejects_table, write_rejects
from dagster_bitrix24.screening import screen
from dagster_bitrix24.sync_state import (
    CursorState,
    delete_state,
    read_state,
    state_table,
    write_state,
)
from dagster_bitrix24.upsert import WriteCounts, upsert_chunk
from dagster_bitrix24.warehouse_errors import (
    FieldMetadataError,
    RowConversionError,
    WarehouseUnavailableError,
)
from dagster_bitrix24.write_retry import ATTEMPTS, write_with_retry

__all__ = [
    "CursorState", "DeleteCounts", "SchemaChanges", "TableLayout", "TypeChange", "Warehouse",
    "WriteCounts",
]  # fmt: skip

log = logging.getLogger(__name__)
_PREFIX = re.compile(r"[A-Za-z0-9_]*\Z")
_PRESENT = "_bitrix24_present_ids"


@dataclass(frozen=True)
class DeleteCounts:
    """Rows newly marked deleted, and rows that came back and were un-marked."""

    marked: int
    restored: int


def _tune_sqlite_file(engine: sa.Engine) -> None:
    """An embedded SQLite file warehouse writes in WAL mode with synchronous=NORMAL: a commit
    no longer waits for an fsync (the database stays consistent; a power cut may lose the
    last commits, which the next sync fetches again because the cursor did not move either).
    Engines passed in by the caller are left as they are."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _check_sqlite_file(engine: sa.Engine) -> None:
    """Name the path when SQLite could not open its file (it says only "unable to open
    database file"): the folder must exist and be writable."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return
    path = Path(database).resolve()
    problem = None
    if not path.parent.is_dir():
        problem = f"the folder {path.parent} does not exist"
    elif not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        problem = "it is not writable"
    if problem:
        raise WarehouseUnavailableError(
            f"SQLite cannot open the warehouse file {path}: {problem}; create the folder or "
            "set the warehouse URL (WAREHOUSE_URL) to another path"
        )


def _chunk_ids(layout: TableLayout, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The chunk's ids as stored (integers compare as numbers), for an error message."""
    to_id = layout.converters[0]
    ids = []
    for row in rows:
        try:
            ids.append(to_id(row.get(layout.id_field)))
        except (ValueError, TypeError, ArithmeticError):
            continue
    return ids


def table_name_for(table_prefix: str, entity_name: str) -> str:
    """The table an entity is written to: prefix + entity in snake case, fitted to the
    identifier length every dialect accepts (the asset specs name the same table)."""
    if not isinstance(entity_name, str) or not entity_name.strip():
        raise FieldMetadataError("entity_name must be a non-empty string")
    cleaned = re.sub(r"[^a-z0-9]+", "_", entity_name.lower()).strip("_") or "entity"
    return fit_identifier(table_prefix + cleaned)


class Warehouse:
    """Writes Bitrix24 entities into SQL tables; see the module docstring for the API."""

    def __init__(
        self,
        engine_or_url: sa.Engine | str,
        *,
        schema: str | None = None,
        table_prefix: str = "bitrix24_",
        convert_in_database: bool = False,
    ) -> None:
        if not isinstance(table_prefix, str) or not _PREFIX.match(table_prefix):
            raise FieldMetadataError(
                f"table_prefix must hold only letters, digits and '_', not {table_prefix!r}"
            )
        if isinstance(engine_or_url, str):  # errors never print the rows' values
            self.engine = sa.create_engine(engine_or_url, hide_parameters=True)
            _check_sqlite_file(self.engine)
            _tune_sqlite_file(self.engine)
        else:
            self.engine = engine_or_url
        name = self.engine.dialect.name
        if name not in ("sqlite", "postgresql", "mysql", "mariadb"):
            raise FieldMetadataError(f"unsupported warehouse dialect {name!r}")
        self.dialect_name: Dialect = "mysql" if name == "mariadb" else name  # type: ignore[assignment]
        self.schema = schema
        self.table_prefix = table_prefix
        self.convert_in_database = convert_in_database
        self._state = state_table(
            sa.MetaData(), fit_identifier(f"_{table_prefix}sync_state"), schema=schema
        )
        self._state_ready = False
        self._rejects = rejects_table(
            sa.MetaData(), fit_identifier(f"_{table_prefix}rejects"), schema=schema
        )

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"Warehouse({url!r}, schema={self.schema!r}, table_prefix={self.table_prefix!r})"

    # -- tables ---------------------------------------------------------------------------

    def table_name(self, entity_name: str) -> str:
        """The table an entity is written to: see `table_name_for`."""
        return table_name_for(self.table_prefix, entity_name)

    def prepare_table(
        self,
        entity_name: str,
        fields: Mapping[str, Any],
        *,
        id_field: str,
        change_field: str | None,
    ) -> TableLayout:
        """Create or evolve the entity's tables to match `fields`; `.changes` says what changed."""
        name = self.table_name(entity_name)
        columns, multifields = plan_columns(fields, id_field=id_field, change_field=change_field)
        metadata = sa.MetaData()
        table = entity_table(metadata, name, columns, self.dialect_name, schema=self.schema)
        children = tuple(
            child_table(metadata, name, spec, table.c[columns[0].name].type, schema=self.schema)
            for spec in multifields
        )
        with self.engine.begin() as connection:
            inspector = sa.inspect(connection)
            if not inspector.has_table(name, schema=self.schema):
                metadata.create_all(connection)
                changes = SchemaChanges(created=True)
            else:
                changes = self._evolve(connection, inspector, table, columns)
                metadata.create_all(connection, tables=[c for c in children], checkfirst=True)
        self._log(entity_name, name, changes)
        frozen = {change.column for change in changes.type_changes}
        layout = TableLayout(
            entity=entity_name,
            dialect=self.dialect_name,
            table=table,
            columns=tuple(c for c in columns if c.name not in frozen),
            id_field=id_field,
            change_field=change_field,
            children=tuple(
                ChildTable(spec, t) for spec, t in zip(multifields, children, strict=True)
            ),
            frozen=tuple(sorted(frozen)),
        )
        return replace(with_converters(layout), changes=changes)

    def _evolve(
        self, connection: sa.Connection, inspector: sa.Inspector, table: sa.Table,
        columns: Sequence[Any],
    ) -> SchemaChanges:  # fmt: skip
        stored = {c["name"]: c["type"] for c in inspector.get_columns(table.name, self.schema)}
        kinds = {c.name: c for c in columns}
        added: list[str] = []
        type_changes: list[TypeChange] = []
        for column in table.columns:
            if column.name not in stored:
                self._add_column(connection, column)
                added.append(column.name)
                continue
            spec = kinds.get(column.name)
            family = type_family(stored[column.name])
            if spec is not None and not same_family(family, spec.kind):
                type_changes.append(TypeChange(
                    column.name, spec.field, str(stored[column.name]), spec.kind
                ))  # fmt: skip
            elif self.dialect_name == "mysql" and type(stored[column.name]).__name__ == "TEXT":
                self._widen(connection, column)
        removed = tuple(sorted(set(stored) - set(table.columns.keys())))
        for name in removed:  # kept in place, and described, but no longer written
            table.append_column(sa.Column(name, stored[name], comment="no longer on the portal"))
        return SchemaChanges(False, tuple(added), tuple(type_changes), removed)

    def _add_column(self, connection: sa.Connection, column: sa.Column[Any]) -> None:
        dialect = connection.dialect
        spec = sa.schema.CreateColumn(column).compile(dialect=dialect)
        table = dialect.identifier_preparer.format_table(column.table)
        connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {spec}")
        if self.dialect_name == "postgresql" and column.comment:
            connection.execute(sa.schema.SetColumnComment(column))

    def _widen(self, connection: sa.Connection, column: sa.Column[Any]) -> None:
        """MySQL: a TEXT column made before text became LONGTEXT (TEXT holds 64 KB)."""
        dialect = connection.dialect
        spec = sa.schema.CreateColumn(column).compile(dialect=dialect)
        table = dialect.identifier_preparer.format_table(column.table)
        connection.exec_driver_sql(f"ALTER TABLE {table} MODIFY COLUMN {spec}")
        log.info("%s: column %s widened from TEXT to %s", table, column.name, column.type)

    def _log(self, entity: str, table: str, changes: SchemaChanges) -> None:
        if changes.created:
            log.info("%s: created table %s", entity, table)
        if changes.added_columns:
            log.info("%s: added columns %s to %s", entity, ", ".join(changes.added_columns), table)
        for change in changes.type_changes:
            log.warning(
                "%s: field %s changed type (stored %s, portal now %s); column %s.%s is no "
                "longer written until it is migrated",
                entity, change.field, change.stored, change.wanted, table, change.column,
            )  # fmt: skip

    # -- rows -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A connection in a transaction: committed when the block ends, rolled back on error."""
        with self.engine.begin() as connection:
            yield connection

    def write_chunk(
        self,
        layout: TableLayout,
        rows: Sequence[Mapping[str, Any]],
        *,
        connection: sa.Connection | None = None,
        run_id: str | None = None,
    ) -> WriteCounts:
        """Upsert `rows` by id, never older over newer; one transaction unless one is given.
        Values no column can hold are stored as NULL (or cleaned) and recorded as rejects of
        `run_id`; a row whose id cannot be stored is counted as skipped.

        In its own transaction, a chunk that meets a deadlock, lock wait timeout or
        serialization failure is rolled back and redone (`write_retry`); in the caller's,
        the caller redoes its transaction. A database error is a `WarehouseWriteError`
        without row values."""

        def attempt() -> WriteCounts:
            if connection is not None:
                return self._write(connection, layout, rows, run_id)
            with self.engine.begin() as own:
                return self._write(own, layout, rows, run_id)

        return write_with_retry(
            attempt, table=layout.table.name, ids=lambda: _chunk_ids(layout, rows),
            attempts=1 if connection is not None else ATTEMPTS,
        )  # fmt: skip

    def _write(
        self, connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
        run_id: str | None,
    ) -> WriteCounts:  # fmt: skip
        options = {
            "synced_at": synced_at_value(layout.dialect),
            "convert_in_database": self.convert_in_database,
        }
        try:  # every path converts before it writes: a refused chunk has written nothing
            return upsert_chunk(connection, layout, rows, **options)
        except RowConversionError:
            screened = screen(layout, rows)
        # (every time: a retried chunk's rollback may have taken the table's creation along)
        self._rejects.create(connection, checkfirst=True)
        write_rejects(connection, self._rejects, layout.entity, screened.rejects, run_id=run_id)
        counts = upsert_chunk(connection, layout, screened.rows, **options)
        return replace(counts, skipped=counts.skipped + screened.dropped)

    @property
    def rejects_table_name(self) -> str:
        """The table holding rejected values (`_<prefix>rejects`)."""
        return self._rejects.name

    def start_run(self, entity_name: str, run_id: str) -> None:
        """Record `run_id` as the entity's latest run (its rejects are what checks read)."""
        self.commit_cursor(latest_run_key(self.table_name(entity_name)), run_id)

    def rejects(
        self, entity_name: str, run_id: str | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """(count, up to five examples without raw values) of the entity's rejects in
        `run_id`, by default its latest run; (0, []) before any."""
        if run_id is None:
            state = self.read_cursor(latest_run_key(self.table_name(entity_name)))
            if state is None:
                return 0, []
            run_id = state.value
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table(self._rejects.name, schema=self.schema):
                return 0, []
            return count_rejects(connection, self._rejects, entity_name, run_id)

    def mark_deleted(
        self,
        layout: TableLayout,
        present_ids: Iterable[Any],
        *,
        written_before: datetime | None = None,
        connection: sa.Connection | None = None,
    ) -> DeleteCounts:
        """Stamp `_deleted_at` on rows whose id is not in `present_ids`; clear it on the rest.

        `present_ids` must be a complete id set read from the portal; `written_before` is
        when that read started (aware, the clock `write_chunk` stamps `_synced_at` with): a
        row written since (by an overlapping run) is never stamped. MySQL keeps whole seconds,
        so there a row written in that second is not stamped either.
        """
        to_id = converter(layout.columns[0].kind, layout.dialect)
        ids = [(value,) for value in {to_id(i) for i in present_ids} if value is not None]
        before = None
        if written_before is not None:
            if layout.dialect == "mysql":
                written_before = written_before.replace(microsecond=0)
            before = converter("datetime", layout.dialect)(written_before)
        if connection is not None:
            return self._mark_deleted(connection, layout, ids, before)
        with self.engine.begin() as own:
            return self._mark_deleted(own, layout, ids, before)

    def _mark_deleted(
        self, connection: sa.Connection, layout: TableLayout, ids: list[tuple[Any]], before: Any
    ) -> DeleteCounts:
        quote = connection.dialect.identifier_preparer
        table = quote.format_table(layout.table)
        id_col, deleted = quote.quote(layout.id_column), quote.quote(DELETED_AT)
        id_type = layout.table.c[layout.id_column].type.compile(dialect=connection.dialect)
        temporary = {"postgresql": "TEMP", "sqlite": "TEMP", "mysql": "TEMPORARY"}[
            self.dialect_name
        ]
        # MySQL commits the open transaction on a DROP TABLE, but not on DROP TEMPORARY TABLE
        drop = "DROP TEMPORARY TABLE" if self.dialect_name == "mysql" else "DROP TABLE"
        connection.exec_driver_sql(f"{drop} IF EXISTS {_PRESENT}")
        connection.exec_driver_sql(
            f"CREATE {temporary} TABLE {_PRESENT} (id {id_type} PRIMARY KEY)"
        )
        if self.dialect_name == "postgresql":
            raw = connection.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(f"COPY {_PRESENT} (id) FROM STDIN") as copy:  # type: ignore[union-attr]
                for row in ids:
                    copy.write_row(row)
        elif ids:
            marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
            connection.exec_driver_sql(f"INSERT INTO {_PRESENT} (id) VALUES ({marker})", ids)
        now = synced_at_value(layout.dialect)
        marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        present = f"EXISTS (SELECT 1 FROM {_PRESENT} p WHERE p.id = {table}.{id_col})"
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
        connection.exec_driver_sql(f"{drop} {_PRESENT}")
        return DeleteCounts(marked, restored)

    # -- cursors --------------------------------------------------------------------------

    def _state_table(self, connection: sa.Connection) -> sa.Table:
        if not self._state_ready:
            self._state.create(connection, checkfirst=True)
            self._state_ready = True
        return self._state

    def read_cursor(self, key: str) -> CursorState | None:
        """The cursor stored under `key`, or None before the first commit."""
        with self.engine.begin() as connection:
            return read_state(connection, self._state_table(connection), key)

    def commit_cursor(
        self,
        key: str,
        value: str,
        *,
        extra: Mapping[str, Any] | None = None,
        connection: sa.Connection | None = None,
    ) -> None:
        """Store the cursor under `key`: in the caller's transaction when one is given."""
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise FieldMetadataError("a cursor needs a non-empty string key and a string value")
        if connection is not None:
            write_state(connection, self._state_table(connection), key, value, extra)
            return
        with self.engine.begin() as own:
            write_state(own, self._state_table(own), key, value, extra)

    def reset_cursor(self, key: str) -> bool:
        """Forget the cursor under `key` (the next sync starts from scratch)."""
        with self.engine.begin() as connection:
            return delete_state(connection, self._state_table(connection), key)

    # -- description ----------------------------------------------------------------------

    def column_schema(self, layout: TableLayout) -> list[tuple[str, str, str]]:
        """(column, SQL type, description) for every column, for Dagster's TableSchema."""
        dialect = self.engine.dialect
        return [
            (c.name, c.type.compile(dialect=dialect), c.comment or "") for c in layout.table.columns
        ]

    def row_count(self, layout: TableLayout, *, include_deleted: bool = False) -> int:
        """Rows in the entity's table (by default those not marked deleted)."""
        table = layout.table
        query = sa.select(sa.func.count()).select_from(table)
        if not include_deleted:
            query = query.where(table.c[DELETED_AT].is_(None))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())
