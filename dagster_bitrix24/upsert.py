"""Upsert one chunk of converted rows by id, never replacing a row with an older version.

The chunk is first de-duplicated (the newest version of an id wins), then the stored change
times of its ids are read in the same transaction to classify every row as inserted,
updated or skipped (older than what is stored). Only inserted and updated rows are sent, with
a guard in SQL as well, so a concurrent writer cannot make an older version win either:

- SQLite and PostgreSQL: `INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE cur.change IS NULL
  OR excluded.change >= cur.change`. PostgreSQL chunks of `COPY_THRESHOLD` rows or more
  with unique ids first take the text COPY path (`pg_copy`: COPY lines built from the API
  strings, no pre-read: ids above the stored maximum straight into the table, the rest
  merged from a temporary table with the guard (stored ids UPDATEd, the others INSERTed
  with the guarded ON CONFLICT, counted by `xmax = 0`), in blocks whose merge runs on the
  server while Python builds the next block); a chunk it declines
  is converted in Python and sent by binary COPY (psycopg 3) after the pre-read.
- MySQL/MariaDB: `INSERT ... ON DUPLICATE KEY UPDATE col = IF(guard, VALUES(col), col)`, the
  change-time column assigned LAST because later assignments see earlier updated values.

Every path writes only a row whose content differs from the stored one (every written
column but `_synced_at`; `_deleted_at` included, so a row coming back is written): compared
in the same statement, `(cur.*) IS DISTINCT FROM (new.*)` on PostgreSQL, `IS NOT` on
SQLite; on MySQL `_synced_at` is assigned first, only when a column differs byte for byte
(`CAST AS BINARY`: a collation finds 'Acme' = 'ACME'), so the row stays as it was and its
affected-rows count says unchanged. A row left as it was counts as `unchanged`, not
`updated`, and keeps its `_synced_at` (`Warehouse.mark_deleted` never stamps it: the refresh
that read it has its id).

Multi-field child rows of every row the guard kept (written or unchanged) are replaced in
the same transaction; a parent counts by its own columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa

from dagster_bitrix24.columns import to_int
from dagster_bitrix24.layout import ChildTable, TableLayout, child_rows, convert_rows
from dagster_bitrix24.pg_copy import copy_blocks, copy_text
from dagster_bitrix24.pg_staging import Unstageable, staged_write

COPY_THRESHOLD = 2_000
MERGE_BLOCK = 4_000
_ID_BATCH = 5_000
_STAGE = "_bitrix24_stage"
_CONVERSION_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError)
_FOUND_ROWS = 2  # CLIENT_FOUND_ROWS of the MySQL protocol


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


def upsert_chunk(
    connection: sa.Connection,
    layout: TableLayout,
    rows: Sequence[Mapping[str, Any]],
    *,
    synced_at: Any,
    convert_in_database: bool = False,
) -> WriteCounts:
    """Write one chunk inside the caller's transaction; return what happened to each row.

    `convert_in_database` (PostgreSQL): stage raw text and convert in SQL (`pg_staging`).
    """
    if not rows:
        return WriteCounts()
    if convert_in_database and layout.row_stager is not None and len(rows) >= COPY_THRESHOLD:
        counts = _staged_upsert(connection, layout, rows, synced_at=synced_at)
        if counts is not None:
            return counts
    if layout.line_builder is not None and len(rows) >= COPY_THRESHOLD:
        counts = _text_copy_upsert(connection, layout, rows, synced_at=synced_at)
        if counts is not None:
            return counts
    converted = convert_rows(layout, rows, synced_at=synced_at)
    newest = _newest_per_id(converted, layout.change_index)
    stored = _stored_changes(connection, layout, list(newest))
    to_write: list[tuple[Any, ...]] = []
    inserted = 0
    change = layout.change_index
    for row_id, position in newest.items():
        row = converted[position]
        if row_id not in stored:
            inserted += 1
        elif change is not None and not _is_newer(row[change], stored[row_id]):
            continue
        to_write.append(row)
    if layout.dialect == "postgresql" and len(to_write) >= COPY_THRESHOLD:
        sent = _copy_send(
            connection, layout, to_write, fresh=[r[0] not in stored for r in to_write]
        )
    else:
        sent = _send(connection, layout, to_write, inserted=inserted)
    if sent != len(to_write):  # unchanged rows, or a newer version another writer stored
        to_write = _stored_as_sent(connection, layout, to_write)
        inserted = min(sent, sum(row[0] not in stored for row in to_write))
    kept_positions = [newest[row[0]] for row in to_write]  # children follow every kept row
    _replace_children(connection, layout, [rows[p] for p in kept_positions],
                      [row[0] for row in to_write])  # fmt: skip
    unchanged = max(len(to_write) - sent, 0)
    return WriteCounts(inserted, len(to_write) - inserted - unchanged,
                       len(rows) - len(to_write), unchanged)  # fmt: skip


def _stored_as_sent(
    connection: sa.Connection, layout: TableLayout, sent: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """The rows of `sent` the guard did not refuse (written, or found unchanged), read back
    after the write: the stored change times were read before it, and another writer may
    have committed a newer version in between (rows this transaction wrote stay locked until
    it commits)."""
    change = layout.change_index
    if change is None:
        return sent
    stored = _stored_changes(connection, layout, [row[0] for row in sent], latest=True)
    return [row for row in sent if _is_newer(row[change], stored.get(row[0]))]


def _staged_upsert(
    connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
    *, synced_at: Any,
) -> WriteCounts | None:  # fmt: skip
    """PostgreSQL: raw text staged and converted in SQL (see `pg_staging`); None when the
    chunk has to go through the Python converters (an id twice, a value SQL does not take)."""
    id_field = layout.id_field
    if len({row.get(id_field) for row in rows}) != len(rows):
        return None
    assert layout.row_stager is not None
    try:
        staged = layout.row_stager(rows)
    except (Unstageable, ValueError, TypeError):  # e.g. JSON of a value json cannot encode
        return None
    result = staged_write(connection, layout, staged, synced_at=synced_at)
    if result is None:
        return None
    if layout.children:
        to_id = layout.converters[0]
        by_id = {to_id(row.get(id_field)): row for row in rows}
        _replace_children(connection, layout, [by_id[i] for i in result.ids], result.ids)
    kept = result.written + result.unchanged
    return WriteCounts(
        result.inserted, result.written - result.inserted, len(rows) - kept, result.unchanged
    )


def _text_copy_upsert(
    connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
    *, synced_at: Any,
) -> WriteCounts | None:  # fmt: skip
    """PostgreSQL: COPY text built from the API strings (`pg_copy`), new ids straight into
    the table, known ids into a temporary table merged with the guard. None (rolled back)
    hands the chunk to the Python converters: an id twice, a value a converter or
    PostgreSQL refuses."""
    from psycopg import errors  # psycopg is only needed for PostgreSQL

    assert layout.line_builder is not None
    try:
        ids = _ids_of(layout, rows)
    except _CONVERSION_ERRORS:
        return None
    if None in ids or len(set(ids)) != len(ids):
        return None
    try:  # a savepoint inside the caller's transaction (psycopg's own transaction() would
        # BEGIN and COMMIT by itself on a connection that has not run a statement yet)
        with connection.begin_nested():
            return _copy_and_merge(connection, layout, rows, ids, synced_at=synced_at)
    except (errors.DataError, errors.CardinalityViolation, *_CONVERSION_ERRORS):
        return None


def _copy_and_merge(
    connection: sa.Connection, layout: TableLayout, rows: Sequence[Mapping[str, Any]],
    ids: list[Any], *, synced_at: Any,
) -> WriteCounts:  # fmt: skip
    """Integer ids above the stored maximum are new: COPY straight into the table (a
    concurrent writer storing one first sends them to the merge). Every other row is COPYed
    into a temporary table and merged with the guard (`_merge_in_blocks`)."""
    from psycopg.errors import UniqueViolation

    table, quoted = _names(connection, layout)
    columns = ", ".join(quoted)
    tail = f"\t{copy_text(synced_at)}\t"
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(f"SELECT max({quoted[0]}) FROM {table}")
        highest = cursor.fetchone()[0]
        above = _above(ids, highest)
        if all(above) or not any(above):
            new, old = (list(rows), []) if above[0] else ([], list(rows))
        else:
            new = [row for row, is_new in zip(rows, above, strict=True) if is_new]
            old = [row for row, is_new in zip(rows, above, strict=True) if not is_new]
        if new:
            try:
                with raw.transaction():  # type: ignore[union-attr]
                    _copy_text(cursor, layout, table, columns, new, tail)
            except UniqueViolation:  # a concurrent writer stored some of them first
                new, old, above = [], list(rows), [False] * len(rows)
        written = [i for i, is_new in zip(ids, above, strict=True) if is_new]
        inserted = updated = unchanged = 0
        children: list[tuple[ChildTable, list[Any], list[tuple[Any, ...]]]] = []

        def prepare_children() -> None:  # child values of every row, kept for those written
            children.extend((child, *child_rows(child, rows, ids)) for child in layout.children)

        if old:
            old_ids = [i for i, is_new in zip(ids, above, strict=True) if not is_new]
            inserted, updated, unchanged, merged_ids = _merge_in_blocks(
                cursor, layout, table, quoted, old, old_ids, synced_at=synced_at,
                during_last_merge=prepare_children,
            )  # fmt: skip
            written += merged_ids
    if layout.children:
        if not children:
            prepare_children()
        kept = set(written) if len(written) < len(ids) else None  # None: every row kept
        for child, parents, values in children:
            if kept is not None:
                parents, values = (
                    [p for p in parents if p in kept],
                    [v for v in values if v[0] in kept],
                )
            _replace_child(connection, child, parents, values)
    inserted += len(new)
    skipped = len(rows) - inserted - updated - unchanged
    return WriteCounts(inserted, updated, skipped, unchanged)


def _merge_in_blocks(
    cursor: Any, layout: TableLayout, table: str, quoted: list[str],
    rows: Sequence[Mapping[str, Any]], ids: list[Any], *, synced_at: Any,
    during_last_merge: Callable[[], None],
) -> tuple[int, int, int, list[Any]]:  # fmt: skip
    """COPY `rows` into a temporary table and merge them with the guard, `MERGE_BLOCK` rows
    at a time: each block's UPDATE is sent in pipeline mode and the next block's COPY text is
    built while the server runs it, the first half of it while the server parses the block
    before (Python and the server overlap instead of taking turns). The bookkeeping columns
    are set by the merge, not parsed from every line; Python runs `during_last_merge` while
    the server runs the last UPDATE. `_merge_block` says what follows an UPDATE that did not
    write every row. Returns (inserted, updated, unchanged, ids of the rows kept: written
    or unchanged)."""
    from psycopg.sql import Literal

    staged = ", ".join(quoted[: len(layout.columns)])
    merge = _MergeSql(layout, table, quoted, Literal(synced_at).as_string(cursor))
    raw = cursor.connection
    cursor.execute(f"DROP TABLE IF EXISTS {_STAGE}")
    cursor.execute(
        f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {staged} FROM {table} WITH NO DATA"
    )
    starts = range(0, len(rows), MERGE_BLOCK)
    blocks = [rows[start : start + MERGE_BLOCK] for start in starts]
    _copy_text(cursor, layout, _STAGE, staged, blocks[0], "")  # built as it is sent
    inserted = updated = unchanged = 0
    written: list[Any] = []
    head, head_text = 0, ""  # rows of the next block built while the server parsed, their text
    for index, start in enumerate(starts):  # block `index` is in the temporary table
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        with raw.pipeline():
            cursor.execute(merge.update or merge.insert)
            if following is not None:
                text = head_text + _block_text(layout, following[head:], "")
            else:
                during_last_merge()
        block_ids = ids[start : start + MERGE_BLOCK]
        block_inserted, block_updated, block_unchanged, block_kept = _merge_block(
            cursor, merge, block_ids
        )
        inserted += block_inserted
        updated += block_updated
        unchanged += block_unchanged
        written += block_kept
        if following is not None:
            after = blocks[index + 2] if index + 2 < len(blocks) else []
            cursor.execute(f"TRUNCATE {_STAGE}")
            with cursor.copy(f"COPY {_STAGE} ({staged}) FROM STDIN (NULL '')") as copy:
                copy.write(text)  # queued: the server parses it while the next head is built
                head = len(after) // 2
                head_text = _block_text(layout, after[:head], "")
    # the table goes at commit (or with the next chunk's DROP)
    return inserted, updated, unchanged, written


def _merge_block(cursor: Any, merge: _MergeSql, ids: list[Any]) -> tuple[int, int, int, list[Any]]:
    """After a block's first statement: its counts, and the rows that follow an UPDATE that
    did not write every row (new ids, unchanged rows, or a newer version stored). Returns
    (inserted, updated, unchanged, ids kept: written or unchanged)."""
    if merge.update is None:  # no change column: the first statement upserted what differs
        fresh = [is_new for (is_new,) in cursor.fetchall()]
        return sum(fresh), len(fresh) - sum(fresh), len(ids) - len(fresh), ids
    updated = cursor.rowcount
    if updated == len(ids):  # every staged row changed
        return 0, updated, 0, ids
    cursor.execute(merge.insert_after_update)
    fresh = [is_new for (is_new,) in cursor.fetchall()]
    inserted = sum(fresh)
    updated += len(fresh) - inserted
    if updated + inserted == len(ids):  # every staged row was written
        return inserted, updated, 0, ids
    refused = {row_id for (row_id,) in cursor.execute(merge.refused).fetchall()}
    # the rest hold the staged content already: unchanged (or another writer's same version)
    unchanged = len(ids) - inserted - updated - len(refused)
    return inserted, updated, unchanged, [i for i in ids if i not in refused]


class _MergeSql:
    """The statements merging the temporary table into `table` with the guard.

    With a change column, `update` writes the stored ids the guard allows whose content
    differs (one WAL record per row; no RETURNING: a re-sync needs nothing but its row
    count); `insert_after_update` adds the other rows with the guarded ON CONFLICT, which
    also catches an id another writer stored after the UPDATE's snapshot, leaving out first
    the rows whose stored version has the staged change time (the UPDATE's own, unchanged
    rows, or another writer's of that change time). `refused` lists the staged ids whose
    stored version is newer than the staged one. Without a change column `insert` alone
    (ON CONFLICT DO UPDATE of the rows that differ), and `update` is None.
    `RETURNING (xmax = 0)` tells an insert from an update."""

    def __init__(self, layout: TableLayout, table: str, quoted: list[str], stamp: str) -> None:
        id_column, synced, deleted = quoted[0], *quoted[len(layout.columns) :]
        names = quoted[: len(layout.columns)]
        stamped = f"CAST({stamp} AS timestamptz)"
        select = (
            f"SELECT {', '.join(f's.{q}' for q in names)}, {stamped}, CAST(NULL AS timestamptz) "
            f"FROM {_STAGE} s"
        )
        returning = f"{_on_conflict(layout, quoted, 'postgresql')} RETURNING (cur.xmax = 0)"
        insert = f"INSERT INTO {table} AS cur ({', '.join(quoted)}) "
        self.insert = f"{insert}{select} {returning}"
        self.update: str | None = None
        if layout.change_index is None:
            return
        change = quoted[layout.change_index]
        allowed = f"(cur.{change} IS NULL OR s.{change} >= cur.{change})"
        content = [*names[1:], deleted]
        staged = [*(f"s.{q}" for q in names[1:]), "CAST(NULL AS timestamptz)"]
        differs = (
            f"({', '.join(f'cur.{q}' for q in content)}) IS DISTINCT FROM ({', '.join(staged)})"
        )
        sets = ", ".join(f"{q} = s.{q}" for q in names[1:])
        self.update = (
            f"UPDATE {table} AS cur SET {sets}, {synced} = {stamped}, {deleted} = NULL "
            f"FROM {_STAGE} s WHERE cur.{id_column} = s.{id_column} AND {allowed} AND {differs}"
        )
        same = (
            f"SELECT 1 FROM {table} AS cur WHERE cur.{id_column} = s.{id_column} "
            f"AND cur.{change} IS NOT DISTINCT FROM s.{change}"
        )
        self.insert_after_update = f"{insert}{select} WHERE NOT EXISTS ({same}) {returning}"
        self.refused = (
            f"SELECT s.{id_column} FROM {_STAGE} s JOIN {table} AS cur "
            f"ON cur.{id_column} = s.{id_column} WHERE {allowed} IS NOT TRUE"
        )


def _block_text(layout: TableLayout, rows: Sequence[Mapping[str, Any]], tail: str) -> str:
    return "".join(_text_blocks(layout, rows, tail))


def _text_blocks(
    layout: TableLayout, rows: Sequence[Mapping[str, Any]], tail: str
) -> Iterator[str]:
    assert layout.line_builder is not None
    lines, values = layout.line_builder
    width = len(layout.columns) + tail.count("\t")  # each tail value follows a tab
    return copy_blocks(lines, values, rows, tail, width=width)


def _ids_of(layout: TableLayout, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The converted id of every row; integer ids sent as ASCII digits (the API's shape) are
    read in C (`_digit_ids`), the same values `to_int` gives."""
    to_id = layout.converters[0]
    if to_id is to_int:
        try:
            texts = list(map(itemgetter(layout.id_field), rows))
            digits = "".join(texts)  # TypeError unless every id is a string
        except (KeyError, TypeError):
            pass
        else:
            if digits.isdigit() and digits.isascii() and "" not in texts:
                return _digit_ids(texts)
    return [to_id(row.get(layout.id_field)) for row in rows]


def _digit_ids(texts: list[str]) -> list[int | None]:
    """ASCII digit strings as ints, read in C as one JSON array; `int` one by one when JSON
    would not read them alike (orjson reads over 18 digits as a float; "007" is not JSON)."""
    if len(max(texts, key=len)) <= 18:
        try:
            return orjson.loads("[" + ",".join(texts) + "]")
        except orjson.JSONDecodeError:
            pass
    return list(map(to_int, texts))


def _above(ids: list[Any], highest: Any) -> list[bool]:
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


def _copy_text(
    cursor: Any, layout: TableLayout, table: str, columns: str,
    rows: Sequence[Mapping[str, Any]], tail: str,
) -> None:  # fmt: skip
    """COPY `rows` into `table`, each block built while the server parses the one before."""
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (NULL '')") as copy:
        for block in _text_blocks(layout, rows, tail):
            copy.write(block)


def _is_newer(incoming: Any, stored: Any) -> bool:
    if stored is None:
        return True
    return incoming is not None and incoming >= stored


def _newest_per_id(rows: list[tuple[Any, ...]], change: int | None) -> dict[Any, int]:
    """id -> position of the version to keep: the newest change time, the last one on ties."""
    newest = {row[0]: position for position, row in enumerate(rows)}
    if len(newest) == len(rows):  # no id twice: the common case
        return newest
    newest = {}
    for position, row in enumerate(rows):
        previous = newest.get(row[0])
        if previous is None or change is None or _is_newer(row[change], rows[previous][change]):
            newest[row[0]] = position
    return newest


def _batches(items: Sequence[Any], size: int = _ID_BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _names(connection: sa.Connection, layout: TableLayout) -> tuple[str, list[str]]:
    quote = connection.dialect.identifier_preparer
    return quote.format_table(layout.table), [quote.quote(n) for n in layout.written_names]


def _marker(connection: sa.Connection) -> str:
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _stored_changes(
    connection: sa.Connection, layout: TableLayout, ids: list[Any], *, latest: bool = False
) -> dict[Any, Any]:
    """id -> stored change value (None without a change column) for the ids already stored.

    `latest`: MySQL reads the newest committed versions (a locking read), not the snapshot
    its REPEATABLE READ transaction took at its first read."""
    table, quoted = _names(connection, layout)
    id_col = quoted[0]
    change = layout.change_index
    change_col = quoted[change] if change is not None else "NULL"
    head = f"SELECT {id_col}, {change_col} FROM {table} WHERE {id_col}"
    stored: dict[Any, Any] = {}
    if layout.dialect == "postgresql":
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(f"{head} = ANY(%s)", (ids,), binary=True)
            return dict(cursor.fetchall())
    marker = _marker(connection)
    locking = " LOCK IN SHARE MODE" if latest and layout.dialect == "mysql" else ""
    cursor = connection.connection.cursor()  # the driver's tuples: no Row objects to build
    try:
        for batch in _batches(ids):
            sql = f"{head} IN ({', '.join([marker] * len(batch))}){locking}"
            cursor.execute(sql, tuple(batch))
            stored.update(cursor.fetchall())
    finally:
        cursor.close()
    return stored


def _send(
    connection: sa.Connection,
    layout: TableLayout,
    rows: list[tuple[Any, ...]],
    *,
    inserted: int = 0,
) -> int:
    """Upsert `rows` with the guard; the number of rows inserted or changed (`inserted` of
    them are new ids: MySQL's row count needs it)."""
    if not rows:
        return 0
    table, quoted = _names(connection, layout)
    values = ", ".join([_marker(connection)] * len(quoted))
    insert = f"INSERT INTO {table} AS cur ({', '.join(quoted)}) VALUES ({values})"
    if layout.dialect == "mysql":
        insert = f"INSERT INTO {table} ({', '.join(quoted)}) VALUES ({values})"
        result = connection.exec_driver_sql(f"{insert} {_mysql_update(layout, quoted)}", rows)
        return _mysql_written(connection, result.rowcount, len(rows), inserted)
    sql = f"{insert} {_on_conflict(layout, quoted, connection.dialect.name)}"
    return connection.exec_driver_sql(sql, rows).rowcount


def _mysql_written(connection: sa.Connection, rowcount: int, sent: int, inserted: int) -> int:
    """Rows inserted or changed, from MySQL's affected rows: 1 per insert, 2 per changed row,
    and per row left as it was 1 with CLIENT_FOUND_ROWS (SQLAlchemy always sets it), else 0."""
    flags = getattr(connection.connection.dbapi_connection, "client_flag", None)
    if flags is None or flags & _FOUND_ROWS:
        return rowcount - sent + inserted
    return inserted + (rowcount - inserted) // 2


def _differs(layout: TableLayout, quoted: list[str], old: str, new: str, dialect: str) -> str:
    """SQL: the stored row `old` differs from `new` in a written column (the id and
    `_synced_at` aside; `_deleted_at` included, so a row coming back counts as changed)."""
    names = [*quoted[1 : len(layout.columns)], quoted[-1]]
    if dialect == "mysql":  # `new` is VALUES(); text compared byte for byte, not by collation
        kinds = [spec.kind for spec in layout.columns[1:]] + ["datetime"]
        same = " AND ".join(
            f"CAST({q} AS BINARY) <=> CAST(VALUES({q}) AS BINARY)"
            if kind in ("text", "key", "json") else f"{q} <=> VALUES({q})"
            for q, kind in zip(names, kinds, strict=True)
        )  # fmt: skip
        return f"NOT ({same})"
    operator = "IS NOT" if dialect == "sqlite" else "IS DISTINCT FROM"
    left = ", ".join(f"{old}.{q}" for q in names)
    right = ", ".join(f"{new}.{q}" for q in names)
    return f"({left}) {operator} ({right})"


def _on_conflict(layout: TableLayout, quoted: list[str], dialect: str) -> str:
    """ON CONFLICT clause of SQLite and PostgreSQL (target aliased `cur`): only a row whose
    content differs is written, and never over a newer version."""
    sets = ", ".join(f"{q} = excluded.{q}" for q in quoted[1:])
    differs = _differs(layout, quoted, "cur", "excluded", dialect)
    clause = f"ON CONFLICT ({quoted[0]}) DO UPDATE SET {sets} WHERE {differs}"
    change = layout.change_index
    if change is None:
        return clause
    column = quoted[change]
    return f"{clause} AND (cur.{column} IS NULL OR excluded.{column} >= cur.{column})"


def _mysql_update(layout: TableLayout, quoted: list[str]) -> str:
    """ON DUPLICATE KEY UPDATE with the guard per column: `_synced_at` assigned FIRST and
    only when the content differs (later assignments see earlier updated values), the change
    column assigned LAST. A row left as it was counts as unchanged in the affected rows."""
    synced = quoted[len(layout.columns)]
    differs = _differs(layout, quoted, "", "", "mysql")
    change = layout.change_index
    if change is None:
        first = f"{synced} = IF({differs}, VALUES({synced}), {synced})"
        rest = ", ".join(f"{q} = VALUES({q})" for q in quoted[1:] if q != synced)
        return f"ON DUPLICATE KEY UPDATE {first}, {rest}"
    column = quoted[change]
    guard = f"({column} IS NULL OR VALUES({column}) >= {column})"
    first = f"{synced} = IF({guard} AND {differs}, VALUES({synced}), {synced})"
    ordered = [q for q in quoted[1:] if q not in (column, synced)] + [column]
    sets = ", ".join(f"{q} = IF({guard}, VALUES({q}), {q})" for q in ordered)
    return f"ON DUPLICATE KEY UPDATE {first}, {sets}"


def _copy_send(
    connection: sa.Connection, layout: TableLayout, rows: list[tuple[Any, ...]],
    *, fresh: list[bool],
) -> int:  # fmt: skip
    """PostgreSQL bulk path: binary COPY of new ids straight into the table (a savepoint
    falls back to merging if a concurrent writer got there first), and COPY of the rest
    into a temporary table merged with one guarded INSERT ... SELECT. Returns the number of
    rows stored."""
    from psycopg.errors import UniqueViolation  # psycopg is only needed for PostgreSQL

    table, quoted = _names(connection, layout)
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
            f"{_on_conflict(layout, quoted, 'postgresql')}"
        )
        merged = cursor.rowcount
        cursor.execute(f"DROP TABLE {_STAGE}")
    return copied + merged


def _copy(
    cursor: Any, table: str, columns: str, types: list[int], rows: list[tuple[Any, ...]]
) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _replace_children(
    connection: sa.Connection, layout: TableLayout, rows: list[Mapping[str, Any]],
    ids: list[Any],
) -> None:  # fmt: skip
    for child in layout.children:
        parents, values = child_rows(child, rows, ids)
        _replace_child(connection, child, parents, values)


def _replace_child(
    connection: sa.Connection, child: ChildTable, parents: list[Any],
    values: list[tuple[Any, ...]],
) -> None:  # fmt: skip
    """Replace the child rows of `parents` with `values`."""
    if not parents:
        return
    quote = connection.dialect.identifier_preparer
    table = quote.format_table(child.table)
    names = ", ".join(quote.quote(c.name) for c in child.table.columns)
    parents = _may_have_children(connection, table, parents)
    if connection.dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            if parents:
                cursor.execute(f"DELETE FROM {table} WHERE parent_id = ANY(%s)", (parents,))
            if values:
                cursor.execute(f"SELECT {names} FROM {table} LIMIT 0")
                types = [column.type_code for column in cursor.description]
                _copy(cursor, table, names, types, values)
        return
    marker = _marker(connection)
    for batch in _batches(parents):
        sql = f"DELETE FROM {table} WHERE parent_id IN ({', '.join([marker] * len(batch))})"
        connection.exec_driver_sql(sql, tuple(batch))
    if values:
        placeholders = ", ".join([marker] * len(child.table.columns))
        connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({placeholders})", values)


def _may_have_children(connection: sa.Connection, table: str, parents: list[Any]) -> list[Any]:
    """`parents` less the integer ids above every stored parent id (new rows: nothing to
    delete). PostgreSQL and SQLite read the newest committed maximum here, after the parent
    rows were written; MySQL's snapshot may be older, so it keeps every parent."""
    if connection.dialect.name == "mysql":
        return parents
    highest = connection.exec_driver_sql(f"SELECT max(parent_id) FROM {table}").scalar()
    above = _above(parents, highest)
    return [parent for parent, is_new in zip(parents, above, strict=True) if not is_new]
