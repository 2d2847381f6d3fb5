"""DuckDB: new ids by `INSERT ... SELECT`, stored ones by `INSERT ... SELECT ... ON CONFLICT
(id) DO UPDATE ... WHERE`, from Arrow tables.

DuckDB runs an executemany one row at a time (about 140 rows/s measured on 20,000-row
chunks of deals), so every bulk write here hands DuckDB the rows as an Arrow table built
with the target columns' types (`arrow_table`, registered as a view for the statement):
upserts, the child tables' rows, the ids looked up and the present ids of delete marking.
The guard and the comparison are PostgreSQL's (`IS DISTINCT FROM`); DuckDB counts only the
rows it inserted or updated, as PostgreSQL does, and the rows it did not write were
unchanged (no read-back: `_stored_as_sent`). The rows of a chunk (converted first, as on
every dialect: a chunk a converter refuses writes nothing) are sent in blocks of `BLOCK`:
DuckDB runs one block's statement without the GIL in a worker thread while Python builds
the next block's Arrow table, one statement at a time on the connection. Times are naive
UTC (`TIMESTAMP`), as on MySQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from typing import Any, ClassVar

import sqlalchemy as sa

from dagster_bitrix24.warehouse.dialects.base import (
    PRESENT,
    OnConflictWriter,
    ids_above,
    names,
)
from dagster_bitrix24.warehouse.schema.columns import Dialect
from dagster_bitrix24.warehouse.schema.layout import ChildTable, TableLayout

_VIEWS = count()
BLOCK = 5_000


class DuckdbWriter(OnConflictWriter):
    """The writes of a DuckDB warehouse."""

    dialect: ClassVar[Dialect] = "duckdb"
    distinct: ClassVar[str] = "IS DISTINCT FROM"
    block: ClassVar[int] = BLOCK

    def send(
        self, connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
        *, fresh: list[bool],
    ) -> int:  # fmt: skip
        """New ids by a plain INSERT, stored ones with ON CONFLICT and the guard: DuckDB's
        ON CONFLICT costs twice the insert even when nothing conflicts, and a new id another
        transaction stored meanwhile fails either way (a duplicate key: this transaction's
        snapshot does not see it)."""
        if not rows:
            return 0
        table, quoted = names(connection, layout)
        types = [layout.table.c[name].type for name in layout.written_names]
        into = f"INSERT INTO {table} AS cur ({', '.join(quoted)}) SELECT * FROM"
        merge = self.on_conflict(layout, quoted)
        new = [row for row, is_new in zip(rows, fresh, strict=True) if is_new]
        stored = [row for row, is_new in zip(rows, fresh, strict=True) if not is_new]
        jobs = [(new[start : start + self.block], "") for start in range(0, len(new), self.block)]
        jobs += [(stored[start : start + self.block], merge)
                 for start in range(0, len(stored), self.block)]  # fmt: skip

        def write(arrow: Any, tail: str) -> int:
            with _registered(connection, arrow) as view:
                return _count(connection, f"{into} {view} {tail}")

        written = 0
        with ThreadPoolExecutor(max_workers=1) as database:  # DuckDB runs without the GIL
            pending = None
            for block, tail in jobs:
                arrow = arrow_table(block, types)
                if pending is not None:
                    written += pending.result()
                pending = database.submit(write, arrow, tail)
            assert pending is not None
            written += pending.result()
        return written

    def _stored_as_sent(
        self, connection: sa.Connection, layout: TableLayout, sent: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """Every row sent: no read-back. A DuckDB transaction reads one snapshot, and a
        row another transaction changed since it began cannot be written (DuckDB aborts
        the write on the conflict, and the chunk is retried), so the guard refused none of
        the rows classified as newer; the rows not written were unchanged."""
        return sent

    def stored_changes(
        self, connection: sa.Connection, layout: TableLayout, ids: list[Any], *,
        latest: bool = False,
    ) -> dict[Any, Any]:  # fmt: skip
        """Read by a join with the ids, none when every id is above the stored maximum (a
        first sync). DuckDB reads the newest committed versions: no lock is needed."""
        if not ids:
            return {}
        table, quoted = names(connection, layout)
        highest = _run(connection, f"SELECT max({quoted[0]}) FROM {table}")[0][0]
        if all(ids_above(ids, highest)):
            return {}
        change = layout.change_index
        stored = f"t.{quoted[change]}" if change is not None else "NULL"
        id_type = layout.table.c[layout.id_column].type
        with _registered(connection, arrow_column(ids, id_type)) as view:
            sql = f"SELECT t.{quoted[0]}, {stored} FROM {table} t JOIN {view} v ON t.{quoted[0]} = v.c0"
            return dict(_run(connection, sql))

    def swap_child_rows(
        self, connection: sa.Connection, child: ChildTable, target: tuple[str, str],
        parents: list[Any], values: list[tuple[Any, ...]],
    ) -> None:  # fmt: skip
        """One DELETE and one INSERT, each of an Arrow relation."""
        table, columns = target
        id_type = child.table.c.parent_id.type
        if parents:
            with _registered(connection, arrow_column(parents, id_type)) as view:
                _run(connection, f"DELETE FROM {table} WHERE parent_id IN (SELECT c0 FROM {view})")
        if values:
            types = [column.type for column in child.table.columns]
            with _registered(connection, arrow_table(values, types)) as view:
                _run(connection, f"INSERT INTO {table} ({columns}) SELECT * FROM {view}")

    def fill_present(self, connection: sa.Connection, ids: list[tuple[Any]]) -> None:
        if ids:
            id_type = sa.BigInteger() if isinstance(ids[0][0], int) else sa.Text()
            with _registered(connection, arrow_table(ids, [id_type])) as view:
                _run(connection, f"INSERT INTO {PRESENT} (id) SELECT c0 FROM {view}")

    def delete_in(
        self, connection: sa.Connection, table: sa.Table, column: str, values: Sequence[Any]
    ) -> int:
        """One `DELETE ... IN (SELECT ...)` of the values as an Arrow column."""
        if not values:
            return 0
        quote = connection.dialect.identifier_preparer
        delete = f"DELETE FROM {quote.format_table(table)} WHERE {quote.quote(column)}"
        with _registered(connection, arrow_column(values, table.c[column].type)) as view:
            return _count(connection, f"{delete} IN (SELECT c0 FROM {view})")

    def insert_rows(
        self, connection: sa.Connection, table: sa.Table, columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:  # fmt: skip
        """One `INSERT ... SELECT` of the rows as an Arrow table; a left-out column numbered
        by a sequence takes `nextval` in the row order."""
        if not rows:
            return
        quote = connection.dialect.identifier_preparer
        sequences = [(c.name, c.default) for c in table.c if isinstance(c.default, sa.Sequence)]
        numbered = [(name, s) for name, s in sequences if name not in columns]
        targets = [quote.quote(name) for name, _ in numbered] + [quote.quote(c) for c in columns]
        values = [f"nextval('{quote.format_sequence(s)}')" for _, s in numbered]
        values += [f"c{i}" for i in range(len(columns))]
        into = f"INSERT INTO {quote.format_table(table)} ({', '.join(targets)})"
        with _registered(connection, arrow_table(rows, [table.c[c].type for c in columns])) as view:
            _run(connection, f"{into} SELECT {', '.join(values)} FROM {view}")


def arrow_column(values: Sequence[Any], sql_type: sa.types.TypeEngine[Any]) -> Any:
    """One column `c0` of `values` as an Arrow table."""
    import pyarrow as pa  # the duckdb extra

    return pa.Table.from_arrays([pa.array(values, type=_arrow_type(pa, sql_type))], names=["c0"])


def arrow_table(rows: Sequence[tuple[Any, ...]], types: Sequence[sa.types.TypeEngine[Any]]) -> Any:
    """`rows` as an Arrow table of columns c0, c1, ... typed as `types` (SQL column types)."""
    import pyarrow as pa  # the duckdb extra

    columns = list(zip(*rows, strict=True)) if rows else [() for _ in types]
    arrays = [
        pa.array(values, type=_arrow_type(pa, sql_type))
        for values, sql_type in zip(columns, types, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(types))])


def _arrow_type(pa: Any, sql_type: sa.types.TypeEngine[Any]) -> Any:
    if isinstance(sql_type, sa.Boolean):
        return pa.bool_()
    if isinstance(sql_type, sa.Integer):
        return pa.int64()
    if isinstance(sql_type, sa.Float):
        return pa.float64()
    if isinstance(sql_type, sa.Numeric):
        return pa.decimal128(sql_type.precision or 18, sql_type.scale or 0)
    if isinstance(sql_type, sa.DateTime):  # aware values as UTC instants
        return pa.timestamp("us", tz="UTC" if sql_type.timezone else None)
    if isinstance(sql_type, sa.Date):
        return pa.date32()
    return pa.string()


class _registered:
    """`with _registered(connection, arrow) as view:` the Arrow table as a view of the
    connection for the block's statements."""

    def __init__(self, connection: sa.Connection, table: Any) -> None:
        self.raw = _raw(connection)
        self.table = table
        self.name = f"_bitrix24_rows_{next(_VIEWS)}"

    def __enter__(self) -> str:
        # a result SQLAlchemy read one row of (`scalar()`) is still open: DuckDB registers
        # nothing until it is run to its end
        self.raw.complete()
        self.raw.register(self.name, self.table)
        return self.name

    def __exit__(self, error_type: Any, *_: Any) -> None:
        if error_type is None:  # after an error the transaction is aborted: the view goes
            self.raw.unregister(self.name)  # with the connection's rollback


def _raw(connection: sa.Connection) -> Any:
    return connection.connection.driver_connection


def _run(connection: sa.Connection, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` on the driver's connection and read its result whole (DuckDB takes no
    other statement while a result is unread)."""
    rows: list[tuple[Any, ...]] = _raw(connection).execute(sql).fetchall()
    return rows


def _count(connection: sa.Connection, sql: str) -> int:
    """Run a DML statement; the rows DuckDB says it wrote."""
    found = _run(connection, sql)
    return int(found[0][0]) if found else 0
