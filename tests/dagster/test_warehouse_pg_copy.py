"""PostgreSQL text COPY (`dialects/postgresql_copy.py`) stores exactly what the Python
converters store."""

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from dagster_bitrix24.warehouse import Warehouse, WriteCounts
from dagster_bitrix24.warehouse.convert.values import to_int
from dagster_bitrix24.warehouse.dialects import PostgresWriter, postgresql_copy
from dagster_bitrix24.warehouse.schema.columns import ColumnSpec
from dagster_bitrix24.warehouse.schema.layout import convert_rows, synced_at_value
from tests.dagster.test_warehouse_columns import _TRICKY
from tests.dagster.test_warehouse_pg_staging import _COMMON, compare_with_python_path
from tests.dagster.test_warehouse_support import DEAL_FIELDS, cleaned_warehouse, deal, select_all

# Shapes that only matter to COPY text: escapes, and text PostgreSQL reads but Python does not.
_COPY_TRICKY = [
    "tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "\\.", "007", "-5",
    "+5", "1e3", "1.5.0", ".5", "5.", "١٢", "2024-09-02T24:00:00+03:00",
    "2024-09-02T18:37:18+16:00", "2024-W36-1T18:37:18+03:00", "2024-09-02X18:37:18+03:00",
    "2024-09-02T18:37:18+03:75", "0000-01-01T00:00:00+00:00", "2024-09-02 ", " 2024-09-02",
    "yes", "on", "t", ["tab\t", "quote\"", "back\\"], "12.5|RUB", "|RUB", "007.50|USD",
    "5.|EUR", "1.2.3|RUB", "١٢|RUB", "12|", "1|2|3", "12 |RUB", "-3|RUB",
]  # fmt: skip


def _writer(warehouse: Warehouse) -> PostgresWriter:
    assert isinstance(warehouse.writer, PostgresWriter)
    return warehouse.writer


@pytest.fixture
def postgres(warehouse_url: str) -> Iterator[Warehouse]:
    if not warehouse_url.startswith("postgresql"):
        pytest.skip("the text COPY path is PostgreSQL's")
    yield from cleaned_warehouse(warehouse_url)


@pytest.mark.parametrize("full_rows", [False, True])  # a row missing fields; every field set
def test_text_copy_stores_what_the_python_path_stores_for_awkward_values(
    postgres: Warehouse, full_rows: bool
) -> None:
    values = lambda field: [*_TRICKY, *_COPY_TRICKY, _COMMON[field], _COMMON[field]]  # noqa: E731
    taken, declined = compare_with_python_path(
        postgres, "copy", _writer(postgres).copy_upsert, values, base_row=_COMMON if full_rows else None
    )
    assert taken > 250 and declined > 50


@pytest.mark.parametrize("merge_block", [4_000, 7])  # one merge; five pipelined ones
def test_text_copy_merges_known_ids_counts_and_replaces_children(
    postgres: Warehouse, merge_block: int
) -> None:
    postgres.writer = PostgresWriter(merge_block=merge_block)
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    old, new = "2024-09-01T10:00:00+03:00", "2024-09-03T10:00:00+03:00"
    older = "2024-08-01T10:00:00+03:00"
    first = [deal(i, old, PHONE=[{"ID": str(i), "VALUE": f"+{i}"}]) for i in range(11, 31)]
    with postgres.transaction() as connection:
        counts = _writer(postgres).copy_upsert(connection, layout, first, synced_at=None)
    assert counts == WriteCounts(20, 0, 0)
    # ids 1..10 lie below the stored maximum: new rows that the merge inserts
    second = [deal(i, new if i % 2 else older, TITLE="v2\tt", PHONE=[]) for i in range(1, 41)]
    synced_at = synced_at_value("postgresql")
    with postgres.transaction() as connection:
        counts = _writer(postgres).copy_upsert(connection, layout, second, synced_at=synced_at)
    assert counts == WriteCounts(20, 10, 10)
    rows = {r.id: r for r in select_all(postgres, layout.table)}
    assert len(rows) == 40 and rows[11].title == "v2\tt" and rows[12].title == "Deal 12"
    stamps = {i: (r._mapping["_synced_at"], r._mapping["_deleted_at"]) for i, r in rows.items()}
    assert stamps[5] == stamps[11] == (synced_at, None) and stamps[12] == (None, None)
    phones = {r.parent_id for r in select_all(postgres, layout.children[0].table)}
    assert phones == set(range(12, 31, 2))
    # a re-sync writing every staged row: each merge's INSERT is skipped (last block shorter)
    newest = "2024-09-05T10:00:00+03:00"
    third = [
        deal(i, newest, TITLE="v3", PHONE=[{"ID": str(i), "VALUE": "+3"}]) for i in range(11, 31)
    ]
    with postgres.transaction() as connection:
        counts = _writer(postgres).copy_upsert(connection, layout, third, synced_at=synced_at)
    assert counts == WriteCounts(0, 20, 0)
    rows = {r.id: r for r in select_all(postgres, layout.table)}
    assert len(rows) == 40 and {rows[i].title for i in range(11, 31)} == {"v3"}
    phones = {r.parent_id for r in select_all(postgres, layout.children[0].table)}
    assert phones == set(range(11, 31))


def test_copy_of_ids_another_writer_stored_falls_back_to_the_guarded_merge(
    postgres: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    newer, stale = "2024-09-03T10:00:00+03:00", "2024-09-01T10:00:00+03:00"
    stored = [deal(1, newer, TITLE="newer"), deal(2, stale)]
    with postgres.transaction() as connection:
        assert _writer(postgres).copy_upsert(connection, layout, stored, synced_at=None)
    # as if another writer stored both after the maximum was read: both are thought new
    monkeypatch.setattr(postgresql_copy, "ids_above", lambda ids, highest: [True] * len(ids))
    rows = [deal(1, stale, TITLE="stale"), deal(2, newer, TITLE="fresh")]
    with postgres.transaction() as connection:
        counts = _writer(postgres).copy_upsert(connection, layout, rows, synced_at=None)
    assert counts == WriteCounts(0, 1, 1)
    titles = {r.id: r.title for r in select_all(postgres, layout.table)}
    assert titles == {1: "newer", 2: "fresh"}


def test_ids_another_writer_inserts_while_the_merge_runs_are_neither_lost_nor_fatal(
    postgres: Warehouse,
) -> None:
    """The merge UPDATEs ids stored at its snapshot and INSERTs the rest: ids another
    transaction inserted but had not committed meet the guarded ON CONFLICT once it commits."""
    postgres.writer = PostgresWriter(merge_block=7)
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    old, mid, new = ("2024-09-01T10:00:00+03:00", "2024-09-02T10:00:00+03:00",
                     "2024-09-03T10:00:00+03:00")  # fmt: skip
    assert postgres.write_chunk(layout, [deal(i, old) for i in range(10, 31)]) == WriteCounts(21)
    other = postgres.engine.connect()
    other_pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    theirs = convert_rows(layout, [deal(1, new, TITLE="theirs newer"),
                                          deal(2, old, TITLE="theirs older")], synced_at=None)  # fmt: skip
    postgres.writer.send(other, layout, theirs, fresh=[True, True])  # inserted, not committed: our INSERT waits on them
    ours = [deal(i, mid, TITLE="ours") for i in range(1, 31)]
    outcome: list[Any] = []
    writer_pid: list[int] = []

    def write() -> None:
        try:
            with postgres.transaction() as connection:
                writer_pid.append(connection.connection.driver_connection.info.backend_pid)
                outcome.append(
                    _writer(postgres).copy_upsert(connection, layout, ours, synced_at=None)
                )
        except BaseException as error:  # shown by the assertion below, not lost in the thread
            outcome.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    try:  # the other transaction ends whatever happens, or the table's teardown waits on it
        # each poll its own transaction: a transaction keeps the backend list it read first
        # (pg_stat_activity), so a watcher that connected before the writer never saw it
        with postgres.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            deadline = time.monotonic() + 90  # a loaded host may take seconds to get there
            blocked = False
            while time.monotonic() < deadline:  # until our merge waits on the other one
                if writer_pid:
                    blocking = watcher.exec_driver_sql(
                        f"SELECT pg_blocking_pids({writer_pid[0]})"
                    ).scalar()
                    blocked = other_pid in blocking
                if blocked or not writer.is_alive():  # waiting, or ended without waiting
                    break
                time.sleep(0.01)
        assert blocked, ("the merge never waited on the uncommitted insert", writer.is_alive(),
                         outcome)  # fmt: skip
        other.commit()
    finally:
        other.close()
        writer.join(timeout=30)
    assert outcome == [WriteCounts(inserted=7, updated=22, skipped=1)]
    titles = {r.id: r.title for r in select_all(postgres, layout.table)}
    assert titles == {1: "theirs newer", **{i: "ours" for i in range(2, 31)}}


def test_bad_values_and_duplicates_go_to_the_python_path(postgres: Warehouse) -> None:
    postgres.writer = PostgresWriter(copy_threshold=10)
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    rows = [deal(i) for i in range(1, 21)]
    rows[7]["BEGINDATE"] = "2024-02-30T03:00:00+03:00"
    assert postgres.write_chunk(layout, rows, run_id="r") == WriteCounts(20, 0, 0)
    assert select_all(postgres, layout.table)[7].begindate is None
    assert postgres.rejects("crm.deal", "r")[0] == 1
    layout = postgres.prepare_table("crm.lead", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    rows[7]["BEGINDATE"] = "2024-09-02 "
    rows.append(deal(3, "2024-09-03T10:00:00+03:00", TITLE="newest"))
    assert postgres.write_chunk(layout, rows) == WriteCounts(20, 0, 1)
    stored = {r.id: r for r in select_all(postgres, layout.table)}
    assert str(stored[8].begindate) == "2024-09-02" and stored[3].title == "newest"


@pytest.mark.parametrize(
    ("field", "refused", "position"),
    [("BEGINDATE", "2024-02-30T03:00:00+03:00", 25),  # by the converter, while a merge runs
     ("BEGINDATE", "2024-02-30T03:00:00+03:00", 22),  # ... while the block before is parsed
     ("PROBABILITY", "99999999999999999999", 25)],  # by PostgreSQL, in the block's COPY
)  # fmt: skip
def test_a_value_refused_in_a_later_merge_block_undoes_the_earlier_blocks(
    postgres: Warehouse, field: str, refused: str, position: int
) -> None:
    postgres.writer = PostgresWriter(merge_block=7)
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    old, new = "2024-09-01T10:00:00+03:00", "2024-09-03T10:00:00+03:00"
    with postgres.transaction() as connection:
        first = [deal(i, old) for i in range(1, 31)]
        assert _writer(postgres).copy_upsert(connection, layout, first, synced_at=None)
    second = [deal(i, new, TITLE="v2") for i in range(1, 31)]
    second[position][field] = refused  # in the fourth block (rows 22-28; 22-24 built first)
    with postgres.transaction() as connection:
        assert _writer(postgres).copy_upsert(connection, layout, second, synced_at=None) is None
        assert {r.title for r in select_all(postgres, layout.table)} == {
            f"Deal {i}" for i in range(1, 31)
        }
    assert postgres.write_chunk(layout, second, run_id="r") == WriteCounts(0, 30, 0)
    stored = select_all(postgres, layout.table)
    assert getattr(stored[position], field.lower()) is None
    assert {r.title for r in stored} == {"v2"} and postgres.rejects("crm.deal", "r")[0] == 1


def test_two_merged_chunks_in_one_caller_transaction(postgres: Warehouse) -> None:
    """The temporary table outlives a chunk until commit; the next chunk replaces it."""
    postgres.writer = PostgresWriter(copy_threshold=10, merge_block=7)
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    old, new = "2024-09-01T10:00:00+03:00", "2024-09-03T10:00:00+03:00"
    assert postgres.write_chunk(layout, [deal(i, old) for i in range(1, 41)]) == WriteCounts(40)
    with postgres.transaction() as connection:
        for start in (1, 21):
            chunk = [deal(i, new, TITLE="v2") for i in range(start, start + 20)]
            counts = postgres.write_chunk(layout, chunk, connection=connection)
            assert counts == WriteCounts(0, 20, 0)
    assert {r.title for r in select_all(postgres, layout.table)} == {"v2"}


def test_a_chunk_written_in_the_callers_transaction_is_undone_with_it(
    postgres: Warehouse,
) -> None:
    """The COPY path runs in a savepoint of the caller's transaction: when the caller rolls
    back (say, its cursor write failed), none of the chunk's rows stay."""
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID", change_field=None)
    rows = [deal(i) for i in range(1, _writer(postgres).copy_threshold + 501)]
    with pytest.raises(RuntimeError), postgres.transaction() as connection:
        counts = postgres.write_chunk(layout, rows, connection=connection)
        assert counts.inserted == len(rows)  # (the COPY path took it)
        raise RuntimeError("the caller fails after the chunk")
    assert select_all(postgres, layout.table) == []


@pytest.mark.parametrize(("theirs", "title", "phone", "counts"), [
    ("2024-09-01T10:00:00+03:00", "ours", "+ours", WriteCounts(3, 5, 0)),
    ("2024-09-09T10:00:00+03:00", "theirs", None, WriteCounts(3, 4, 1)),
    ("2024-09-05T10:00:00+03:00", "theirs", "+ours", WriteCounts(3, 4, 0, 1)),  # same version
])  # fmt: skip
def test_an_id_another_writer_commits_between_the_update_and_the_insert(
    postgres: Warehouse, monkeypatch: pytest.MonkeyPatch, theirs: str, title: str,
    phone: str | None, counts: WriteCounts,
) -> None:  # fmt: skip
    """A block whose UPDATE wrote only the stored ids INSERTs the rest; an id another writer
    committed in between meets the guard: an older version is replaced, a newer one kept, the
    same version (change time) kept and counted unchanged (our children then replace
    theirs)."""
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    ours = "2024-09-05T10:00:00+03:00"
    stored = [
        deal(i, "2024-09-01T10:00:00+03:00", PHONE=[{"VALUE": "+old"}]) for i in (1, 3, 5, 7, 9)
    ]
    postgres.write_chunk(layout, [*stored, deal(20, ours)])  # 20: the stored maximum
    merge_block = postgresql_copy.merge_block_counts

    def another_writer_first(*args: Any, **kwargs: Any) -> Any:
        with postgres.transaction() as other:
            theirs_row = deal(2, theirs, TITLE="theirs", PHONE=[{"VALUE": "+theirs"}])
            theirs_values = convert_rows(layout, [theirs_row], synced_at=None)
            postgres.writer.send(other, layout, theirs_values, fresh=[False])
        return merge_block(*args, **kwargs)

    monkeypatch.setattr(postgresql_copy, "merge_block_counts", another_writer_first)
    rows = [deal(i, ours, TITLE="ours", PHONE=[{"VALUE": "+ours"}]) for i in range(1, 9)]
    with postgres.transaction() as connection:
        assert _writer(postgres).copy_upsert(connection, layout, rows, synced_at=None) == counts
    titles = {r.id: r.title for r in select_all(postgres, layout.table)}
    assert titles == {**{i: "ours" for i in range(1, 9)}, 2: title, 9: "Deal 9", 20: "Deal 20"}
    phones = {r.parent_id: r.value for r in select_all(postgres, layout.children[0].table)}
    ours_phones = {i: "+ours" for i in range(1, 9) if i != 2}
    assert phones == {**ours_phones, **({2: phone} if phone else {}), 9: "+old"}


def test_a_table_without_change_column_merges_every_row(postgres: Warehouse) -> None:
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID", change_field=None)
    postgres.write_chunk(layout, [deal(i) for i in (2, 4, 6, 100)])
    rows = [deal(i, TITLE="again") for i in range(1, 8)]  # below the stored maximum
    with postgres.transaction() as connection:
        counts = _writer(postgres).copy_upsert(connection, layout, rows, synced_at=None)
    assert counts == WriteCounts(inserted=4, updated=3, skipped=0)
    titles = {r.id: r.title for r in select_all(postgres, layout.table)}
    assert titles == {**{i: "again" for i in range(1, 8)}, 100: "Deal 100"}


@pytest.mark.parametrize("ids", [
    ["1", "2", "30"], ["007", "8"], ["0", "00"], ["1", ""], ["٣"], ["5", 6], ["+5"], [" 5"],
    ["99999999999999999999999"], ["999999999999999999", "1"], ["1.5"], [None], [True],
])  # fmt: skip
def test_chunk_ids_are_read_as_the_id_converter_reads_them(ids: list[Any]) -> None:
    id_column = ColumnSpec("id", "ID", "integer", "ID")
    layout = SimpleNamespace(columns=(id_column,), converters=(to_int,), id_field="ID")
    rows = [{"ID": i} for i in ids]

    def outcome(read: Any) -> Any:
        try:
            values = read()
        except (ValueError, TypeError) as error:
            return type(error)
        return [(type(v), v) for v in values]

    expected = outcome(lambda: [to_int(row["ID"]) for row in rows])
    assert outcome(lambda: postgresql_copy.ids_of(layout, rows)) == expected
