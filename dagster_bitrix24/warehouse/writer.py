"""The warehouse writer: typed tables from Bitrix24 field metadata, safe upserts, cursors.

SQLite, PostgreSQL, MySQL/MariaDB and DuckDB (`duckdb:///path.duckdb`, the `duckdb` extra)
through SQLAlchemy 2; no Dagster in here.

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
`synchronous=NORMAL` (see `connect.py`). Rows are written by the database's `DialectWriter`
(`dialects/`); on PostgreSQL chunks of `copy_threshold` rows or more go by COPY, merged
`merge_block` rows at a time, and `convert_in_database=True` converts them in SQL; on
MySQL/MariaDB chunks of 1,000 rows or more go by LOAD DATA LOCAL INFILE, which
`mysql_bulk_load=False` turns off (the engine then never sets the driver's `local_infile`).
`prepare_table` creates `<prefix><entity>` (`bitrix24_crm_deal`) and one child table per
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
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse import delete_marking
from dagster_bitrix24.warehouse.chunk_write import chunk_ids, write_screened
from dagster_bitrix24.warehouse.connect import dialect_of, open_engine
from dagster_bitrix24.warehouse.convert import Conversions
from dagster_bitrix24.warehouse.dialects import (
    DeleteCounts,
    DialectWriter,
    DuckdbWriter,
    MysqlWriter,
    PostgresWriter,
    SqliteWriter,
    WriteCounts,
)
from dagster_bitrix24.warehouse.dialects.postgresql import COPY_THRESHOLD, MERGE_BLOCK
from dagster_bitrix24.warehouse.errors import FieldMetadataError
from dagster_bitrix24.warehouse.links import LinkTable, link_table
from dagster_bitrix24.warehouse.rejects import (
    count_rejects,
    latest_run_key,
    rejects_table,
)
from dagster_bitrix24.warehouse.schema.columns import Dialect, fit_identifier, plan_columns
from dagster_bitrix24.warehouse.schema.evolve import evolve
from dagster_bitrix24.warehouse.schema.layout import (
    DELETED_AT,
    ChildTable,
    SchemaChanges,
    TableLayout,
    child_table,
    entity_table,
    with_converters,
)
from dagster_bitrix24.warehouse.schema_creation import ensure_schema
from dagster_bitrix24.warehouse.screening import (
    Reject,
    surrogates_replaced,
)
from dagster_bitrix24.warehouse.state import (
    CursorState,
    delete_state,
    read_state,
    state_table,
    write_state,
)
from dagster_bitrix24.warehouse.write_retry import ATTEMPTS, write_with_retry

log = logging.getLogger(__name__)
_PREFIX = re.compile(r"[A-Za-z0-9_]*\Z")


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
        copy_threshold: int = COPY_THRESHOLD,
        merge_block: int = MERGE_BLOCK,
        write_attempts: int = ATTEMPTS,
        mysql_bulk_load: bool = True,
    ) -> None:
        if not isinstance(table_prefix, str) or not _PREFIX.match(table_prefix):
            raise FieldMetadataError(
                f"table_prefix must hold only letters, digits and '_', not {table_prefix!r}"
            )
        self.engine = (
            open_engine(engine_or_url, local_infile=mysql_bulk_load)
            if isinstance(engine_or_url, str)
            else engine_or_url
        )
        self.dialect_name: Dialect = dialect_of(self.engine)
        self.schema = schema
        self._schema_ready = schema is None
        self.table_prefix = table_prefix
        self.write_attempts = write_attempts
        self.conversions = Conversions()
        self.writer: DialectWriter = (
            PostgresWriter(
                copy_threshold=copy_threshold, merge_block=merge_block,
                convert_in_database=convert_in_database,
            )
            if self.dialect_name == "postgresql"
            else SqliteWriter() if self.dialect_name == "sqlite"
            else DuckdbWriter() if self.dialect_name == "duckdb"
            else MysqlWriter(bulk_load=mysql_bulk_load)
        )  # fmt: skip
        self._state = state_table(
            sa.MetaData(), fit_identifier(f"_{table_prefix}sync_state"), schema=schema
        )
        self._state_ready = False
        self._rejects = rejects_table(
            sa.MetaData(), fit_identifier(f"_{table_prefix}rejects"), schema=schema,
            sequence=self.dialect_name == "duckdb",
        )  # fmt: skip

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"Warehouse({url!r}, schema={self.schema!r}, table_prefix={self.table_prefix!r})"

    # -- tables ---------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the warehouse's schema when it is missing (`schema_creation`); the first
        table or cursor does it too. A named error when it cannot be created."""
        if not self._schema_ready:
            assert self.schema is not None
            ensure_schema(self.engine, self.schema)
            self._schema_ready = True

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
        self.ensure_schema()
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
                changes = evolve(connection, inspector, table, columns, schema=self.schema)
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
        return replace(with_converters(layout, self.conversions), changes=changes)

    def link_table(self, entity_name: str) -> LinkTable:
        """The deal-contact link table of `entity_name` (created if missing)."""
        self.ensure_schema()
        table = link_table(sa.MetaData(), self.table_name(entity_name), self.dialect_name,
                           schema=self.schema)  # fmt: skip
        table.create(self.engine, checkfirst=True)
        return LinkTable(self.engine, table, self.dialect_name, self.writer)

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
        serialization failure is rolled back and redone, `write_attempts` times in all
        (`write_retry`); in the caller's, the caller redoes its transaction. A database error
        is a `WarehouseWriteError` without row values. Text no driver can encode (a lone
        UTF-16 surrogate) fails the first try; in its own transaction the chunk is then
        redone with each such character replaced (U+FFFD) and recorded as a reject."""

        def attempt(chunk: Sequence[Mapping[str, Any]], early: list[Reject]) -> WriteCounts:
            if connection is not None:
                return write_screened(connection, self.writer, self._rejects, layout, chunk,
                                      run_id=run_id, early=early)  # fmt: skip
            with self.engine.begin() as own:
                return write_screened(own, self.writer, self._rejects, layout, chunk,
                                      run_id=run_id, early=early)  # fmt: skip

        def retried(chunk: Sequence[Mapping[str, Any]], early: list[Reject]) -> WriteCounts:
            return write_with_retry(
                lambda: attempt(chunk, early), table=layout.table.name,
                ids=lambda: chunk_ids(layout, chunk),
                attempts=1 if connection is not None else self.write_attempts,
            )  # fmt: skip

        try:
            return retried(rows, [])
        except UnicodeEncodeError:
            if connection is not None:  # the caller's transaction cannot be redone here
                raise
        return retried(*surrogates_replaced(layout, rows))

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

    def deletion_candidates(
        self, layout: TableLayout, present_ids: Iterable[Any], *,
        written_before: datetime | None = None,
    ) -> list[Any]:  # fmt: skip
        """The ids `mark_deleted` would stamp with the same arguments: rows not marked
        deleted, written before `written_before`, whose id is not in `present_ids`."""
        with self.engine.connect() as connection:
            return delete_marking.deletion_candidates(
                connection, self.writer, self.conversions, layout, present_ids, written_before
            )

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
        so there a row written in that second is not stamped either (`delete_marking.py`).
        """
        if connection is not None:
            return delete_marking.mark_deleted(
                connection, self.writer, self.conversions, layout, present_ids, written_before
            )
        with self.engine.begin() as own:
            return delete_marking.mark_deleted(
                own, self.writer, self.conversions, layout, present_ids, written_before
            )

    # -- cursors --------------------------------------------------------------------------

    def _state_table(self, connection: sa.Connection) -> sa.Table:
        if not self._state_ready:
            self.ensure_schema()
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
