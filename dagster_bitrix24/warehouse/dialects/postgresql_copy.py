"""PostgreSQL's text COPY path: COPY lines built from the API strings, no pre-read.

Ids above the stored maximum go straight into the table; the rest are COPYed into a
temporary table and merged with the guard (stored ids UPDATEd, the others INSERTed with the
guarded ON CONFLICT, counted by `xmax = 0`), in blocks whose merge runs on the server while
Python builds the next block. A chunk this path declines (an id twice, a value a converter
or PostgreSQL refuses) returns None, rolled back, and goes through the Python converters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa

from dagster_bitrix24.warehouse.convert.copy_blocks import copy_blocks
from dagster_bitrix24.warehouse.convert.rules import copy_value
from dagster_bitrix24.warehouse.convert.values import to_int
from dagster_bitrix24.warehouse.dialects.base import (
    CONVERSION_ERRORS,
    OnConflictWriter,
    WriteCounts,
    ids_above,
    names,
)
from dagster_bitrix24.warehouse.schema.layout import ChildTable, TableLayout, child_rows

_STAGE = "_bitrix24_stage"


def copy_upsert(
    writer: OnConflictWriter, connection: sa.Connection, layout: TableLayout,
    rows: Sequence[Mapping[str, Any]], *, synced_at: Any, merge_block: int,
) -> WriteCounts | None:  # fmt: skip
    """COPY text built from the API strings, new ids straight into the table, known ids
    into a temporary table merged with `writer`'s guard, `merge_block` rows at a time. None
    (rolled back) hands the chunk to the Python converters: an id twice, a value a converter
    or PostgreSQL refuses."""
    from psycopg import errors  # psycopg is only needed for PostgreSQL

    assert layout.line_builder is not None
    try:
        ids = ids_of(layout, rows)
    except CONVERSION_ERRORS:
        return None
    if None in ids or len(set(ids)) != len(ids):
        return None
    try:  # a savepoint inside the caller's transaction (psycopg's own transaction() would
        # BEGIN and COMMIT by itself on a connection that has not run a statement yet)
        with connection.begin_nested():
            return _copy_and_merge(
                writer, connection, layout, rows, ids, synced_at=synced_at,
                merge_block=merge_block,
            )  # fmt: skip
    except (errors.DataError, errors.CardinalityViolation, *CONVERSION_ERRORS):
        return None


def _copy_and_merge(
    writer: OnConflictWriter, connection: sa.Connection, layout: TableLayout,
    rows: Sequence[Mapping[str, Any]], ids: list[Any], *, synced_at: Any, merge_block: int,
) -> WriteCounts:  # fmt: skip
    """Integer ids above the stored maximum are new: COPY straight into the table (a
    concurrent writer storing one first sends them to the merge). Every other row is COPYed
    into a temporary table and merged with the guard (`_merge_in_blocks`)."""
    from psycopg.errors import UniqueViolation

    table, quoted = names(connection, layout)
    columns = ", ".join(quoted)
    tail = f"\t{copy_value(synced_at)}\t"
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(f"SELECT max({quoted[0]}) FROM {table}")
        highest = cursor.fetchone()[0]
        above = ids_above(ids, highest)
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
                cursor, writer, layout, table, quoted, old, old_ids, synced_at=synced_at,
                during_last_merge=prepare_children, size=merge_block,
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
            writer.replace_child(connection, child, parents, values)
    inserted += len(new)
    skipped = len(rows) - inserted - updated - unchanged
    return WriteCounts(inserted, updated, skipped, unchanged)


def _merge_in_blocks(
    cursor: Any, writer: OnConflictWriter, layout: TableLayout, table: str, quoted: list[str],
    rows: Sequence[Mapping[str, Any]], ids: list[Any], *, synced_at: Any,
    during_last_merge: Callable[[], None], size: int,
) -> tuple[int, int, int, list[Any]]:  # fmt: skip
    """COPY `rows` into a temporary table and merge them with the guard, `size` rows
    at a time: each block's UPDATE is sent in pipeline mode and the next block's COPY text is
    built while the server runs it, the first half of it while the server parses the block
    before (Python and the server overlap instead of taking turns). The bookkeeping columns
    are set by the merge, not parsed from every line; Python runs `during_last_merge` while
    the server runs the last UPDATE. `merge_block_counts` says what follows an UPDATE that did not
    write every row. Returns (inserted, updated, unchanged, ids of the rows kept: written
    or unchanged)."""
    from psycopg.sql import Literal

    staged = ", ".join(quoted[: len(layout.columns)])
    merge = _MergeSql(writer, layout, table, quoted, Literal(synced_at).as_string(cursor))
    raw = cursor.connection
    cursor.execute(f"DROP TABLE IF EXISTS {_STAGE}")
    cursor.execute(
        f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {staged} FROM {table} WITH NO DATA"
    )
    starts = range(0, len(rows), size)
    blocks = [rows[start : start + size] for start in starts]
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
        block_ids = ids[start : start + size]
        block_inserted, block_updated, block_unchanged, block_kept = merge_block_counts(
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


def merge_block_counts(
    cursor: Any, merge: _MergeSql, ids: list[Any]
) -> tuple[int, int, int, list[Any]]:
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

    def __init__(
        self, writer: OnConflictWriter, layout: TableLayout, table: str, quoted: list[str],
        stamp: str,
    ) -> None:  # fmt: skip
        id_column, synced, deleted = quoted[0], *quoted[len(layout.columns) :]
        names = quoted[: len(layout.columns)]
        stamped = f"CAST({stamp} AS timestamptz)"
        select = (
            f"SELECT {', '.join(f's.{q}' for q in names)}, {stamped}, CAST(NULL AS timestamptz) "
            f"FROM {_STAGE} s"
        )
        returning = f"{writer.on_conflict(layout, quoted)} RETURNING (cur.xmax = 0)"
        insert = f"INSERT INTO {table} AS cur ({', '.join(quoted)}) "
        self.insert = f"{insert}{select} {returning}"
        self.update: str | None = None
        if layout.change_index is None:
            return
        change = quoted[layout.change_index]
        allowed = writer.newer(f"cur.{change}", f"s.{change}")
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


def ids_of(layout: TableLayout, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The converted id of every row; integer ids sent as ASCII digits (the API's shape) are
    read in C (`_digit_ids`), the same values `to_int` gives."""
    to_id = layout.converters[0]
    if layout.columns[0].kind == "integer":
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


def _copy_text(
    cursor: Any, layout: TableLayout, table: str, columns: str,
    rows: Sequence[Mapping[str, Any]], tail: str,
) -> None:  # fmt: skip
    """COPY `rows` into `table`, each block built while the server parses the one before."""
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (NULL '')") as copy:
        for block in _text_blocks(layout, rows, tail):
            copy.write(block)
