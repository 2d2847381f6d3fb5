"""Upserts on every dialect: normalised values, never older over newer, child tables."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from dagster_bitrix24.warehouse import Warehouse, WriteCounts
from dagster_bitrix24.warehouse.dialects import PostgresWriter
from dagster_bitrix24.warehouse.errors import RowConversionError
from dagster_bitrix24.warehouse.schema.layout import convert_rows
from dagster_bitrix24.warehouse.screening import ID_REASON
from tests.dagster.test_warehouse_support import (
    DEAL_FIELDS,
    deal,
    select_all,
)

OLD, MID, NEW = (
    "2024-09-01T10:00:00+03:00",
    "2024-09-02T10:00:00+03:00",
    "2024-09-03T10:00:00+03:00",
)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _deals(warehouse: Warehouse):
    return warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )


def test_values_are_normalised_on_the_way_in(warehouse: Warehouse) -> None:
    layout = _deals(warehouse)
    before = datetime.now(UTC).replace(microsecond=0)
    warehouse.write_chunk(layout, [
        deal(1, CLOSED="Y", UF_CRM_VIP=False, PROBABILITY="50", TITLE=""),
        deal(2, CLOSED="N", UF_CRM_VIP="1", OPPORTUNITY="", UF_CRM_BUDGET="", UF_CRM_TAGS=[],
             BEGINDATE="", DATE_MODIFY="2024-09-02T18:37:18-05:00"),
    ])  # fmt: skip
    first, second = select_all(warehouse, layout.table)
    assert (first.id, first.closed, first.uf_crm_vip, first.probability) == (1, True, False, 50)
    assert first.title is None and first.stage_id == "NEW" and first.assigned_by_id == 1
    assert first.opportunity == Decimal("1500.00")
    assert (first.uf_crm_budget, first.uf_crm_budget_currency) == (Decimal("10.50"), "RUB")
    assert first.uf_crm_rate == pytest.approx(1.2345)
    assert first.uf_crm_tags == '["1", "2"]'
    assert first.begindate == date(2024, 9, 2)
    assert _utc(first.date_modify) == datetime(2024, 9, 2, 15, 37, 18, tzinfo=UTC)
    assert _utc(first._synced_at) >= before and first._deleted_at is None
    assert (second.closed, second.uf_crm_vip, second.opportunity) == (False, True, None)
    assert second.uf_crm_budget is None and second.uf_crm_tags is None
    assert second.begindate is None and second.probability is None
    assert _utc(second.date_modify) == datetime(2024, 9, 2, 23, 37, 18, tzinfo=UTC)


def test_insert_update_and_older_versions_skipped(warehouse: Warehouse) -> None:
    layout = _deals(warehouse)
    assert warehouse.write_chunk(layout, [deal(1, MID), deal(2, MID)]) == WriteCounts(2, 0, 0)
    counts = warehouse.write_chunk(layout, [
        deal(1, NEW, TITLE="newer"), deal(2, OLD, TITLE="older"), deal(3, OLD, TITLE="third"),
    ])  # fmt: skip
    assert counts == WriteCounts(inserted=1, updated=1, skipped=1)
    titles = {r.id: r.title for r in select_all(warehouse, layout.table)}
    assert titles == {1: "newer", 2: "Deal 2", 3: "third"}
    same_time = warehouse.write_chunk(layout, [deal(1, NEW, TITLE="same time")])
    assert same_time == WriteCounts(0, 1, 0)
    assert warehouse.row_count(layout) == 3


def test_stored_null_change_time_is_always_updated_and_null_incoming_never_wins(
    warehouse: Warehouse,
) -> None:
    layout = _deals(warehouse)
    warehouse.write_chunk(layout, [deal(1, None, TITLE="no time"), deal(2, MID)])
    counts = warehouse.write_chunk(layout, [deal(1, OLD, TITLE="timed"), deal(2, None)])
    assert counts == WriteCounts(0, 1, 1)
    titles = {r.id: r.title for r in select_all(warehouse, layout.table)}
    assert titles == {1: "timed", 2: "Deal 2"}


def test_newest_duplicate_in_one_chunk_wins(warehouse: Warehouse) -> None:
    layout = _deals(warehouse)
    counts = warehouse.write_chunk(layout, [
        deal(1, NEW, TITLE="newest"), deal(1, OLD, TITLE="old"), deal(1, MID, TITLE="mid"),
    ])  # fmt: skip
    assert counts == WriteCounts(1, 0, 2)
    assert select_all(warehouse, layout.table)[0].title == "newest"


def test_guard_in_sql_refuses_older_rows_even_without_the_pre_read(warehouse: Warehouse) -> None:
    """A concurrent writer stored a newer version between our read and our write."""
    layout = _deals(warehouse)
    warehouse.write_chunk(layout, [deal(1, NEW, TITLE="newer")])
    older = convert_rows(layout, [deal(1, OLD, TITLE="older")], synced_at=None)
    with warehouse.transaction() as connection:
        warehouse.writer.send(connection, layout, older, fresh=[False])
    assert select_all(warehouse, layout.table)[0].title == "newer"


def test_entity_without_change_field_always_updates(warehouse: Warehouse) -> None:
    fields = {"ID": {"type": "integer"}, "NAME": {"type": "string"}}
    layout = warehouse.prepare_table("user", fields, id_field="ID", change_field=None)
    warehouse.write_chunk(layout, [{"ID": "1", "NAME": "a"}])
    assert warehouse.write_chunk(layout, [{"ID": "1", "NAME": "b"}]) == WriteCounts(0, 1, 0)
    assert select_all(warehouse, layout.table)[0].name == "b"


def test_crm_item_rows_with_json_numbers_and_camel_case(warehouse: Warehouse) -> None:
    fields = {"fields": {
        "id": {"type": "integer", "title": "ID"},
        "title": {"type": "string", "title": "Name"},
        "opportunity": {"type": "double", "title": "Amount"},
        "isManualOpportunity": {"type": "boolean", "title": "Manual"},
        "assignedById": {"type": "user", "title": "Responsible"},
        "updatedTime": {"type": "datetime", "title": "Updated"},
    }}  # fmt: skip
    layout = warehouse.prepare_table("crm.item.128", fields, id_field="id",
                                     change_field="updatedTime")  # fmt: skip
    warehouse.write_chunk(layout, [{
        "id": 7, "title": "Item", "opportunity": 1500.5, "isManualOpportunity": "N",
        "assignedById": 3, "updatedTime": "2024-09-02T18:37:18+03:00",
    }])  # fmt: skip
    row = select_all(warehouse, layout.table)[0]
    assert (row.id, row.opportunity, row.is_manual_opportunity, row.assigned_by_id) == (
        7, Decimal("1500.50"), False, 3,
    )  # fmt: skip
    assert layout.table.name.endswith("crm_item_128")


def test_a_bad_value_lands_as_null_and_is_recorded_as_a_reject(warehouse: Warehouse) -> None:
    layout = _deals(warehouse)
    rows = [deal(1), deal(2, PROBABILITY="fifty")]
    assert warehouse.write_chunk(layout, rows, run_id="r1") == WriteCounts(2, 0, 0)
    assert {r.id: r.probability for r in select_all(warehouse, layout.table)} == {1: None, 2: None}
    rows = [deal(4, PROBABILITY="40"), {**deal(3), "ID": "x"}]  # an id no row can be stored by
    assert warehouse.write_chunk(layout, rows, run_id="r1") == WriteCounts(1, 0, 1)
    assert warehouse.row_count(layout) == 3
    assert warehouse.rejects("crm.deal", "r1") == (2, [
        {"field": "PROBABILITY", "row_id": "2", "reason": "not a valid integer"},
        {"field": "ID", "row_id": "x", "reason": ID_REASON},
    ])  # fmt: skip
    assert warehouse.rejects("crm.deal", "r2") == (0, [])
    with pytest.raises(RowConversionError, match=r"PROBABILITY.*row id '2'") as raised:
        convert_rows(layout, [deal(2, PROBABILITY="fifty")], synced_at=None)
    assert "fifty" not in str(raised.value)  # row values go to the rejects table only


def test_multifields_go_to_child_tables_replaced_per_parent(warehouse: Warehouse) -> None:
    layout = _deals(warehouse)
    [phones] = layout.children
    assert phones.table.name == f"{layout.table.name}_phone"
    phone = {"ID": "11", "VALUE_TYPE": "WORK", "VALUE": "+7 900 000", "TYPE_ID": "PHONE"}
    mobile = {"ID": "12", "VALUE_TYPE": "MOBILE", "VALUE": "+7 901 000", "TYPE_ID": "PHONE"}
    warehouse.write_chunk(
        layout, [deal(1, MID, PHONE=[phone, mobile]), deal(2, MID, PHONE=[phone])]
    )
    stored = [tuple(r) for r in select_all(warehouse, phones.table)]
    assert stored == [
        (1, 0, 11, "WORK", "+7 900 000", "PHONE"), (1, 1, 12, "MOBILE", "+7 901 000", "PHONE"),
        (2, 0, 11, "WORK", "+7 900 000", "PHONE"),
    ]  # fmt: skip
    warehouse.write_chunk(layout, [
        deal(1, NEW, PHONE=[mobile]),        # replaced
        deal(2, OLD, PHONE=[]),              # older: children untouched too
    ])  # fmt: skip
    warehouse.write_chunk(layout, [deal(3, NEW)])  # no PHONE key: no phones
    stored = [(r.parent_id, r.value_id) for r in select_all(warehouse, phones.table)]
    assert stored == [(1, 12), (2, 11)]
    warehouse.write_chunk(layout, [deal(2, NEW, PHONE=None)])
    assert [r.parent_id for r in select_all(warehouse, phones.table)] == [1]


def test_a_multifield_left_out_of_a_newer_row_has_no_values_left(warehouse: Warehouse) -> None:
    """The portal leaves an empty multi-field out of the row: the last phone removed on the
    portal is removed here too (an older row leaves the phones alone)."""
    layout = _deals(warehouse)
    phone = {"ID": "11", "VALUE_TYPE": "WORK", "VALUE": "+7 900 000", "TYPE_ID": "PHONE"}
    warehouse.write_chunk(layout, [deal(1, MID, PHONE=[phone]), deal(2, MID, PHONE=[phone])])
    assert warehouse.write_chunk(layout, [deal(1, OLD), deal(2, NEW)]) == WriteCounts(0, 1, 1)
    assert [r.parent_id for r in select_all(warehouse, layout.children[0].table)] == [1]


def test_a_row_refused_after_the_pre_read_keeps_the_newer_rows_children(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer stores a newer version between our read of the stored change times
    and our write: its row and its phones stay, ours count as skipped."""
    layout = _deals(warehouse)
    url = warehouse.engine.url.render_as_string(hide_password=False)
    other = Warehouse(url, table_prefix=warehouse.table_prefix)
    other_layout = _deals(other)

    def with_phone(modified: str, title: str, number: str) -> dict:
        return deal(1, modified, TITLE=title, PHONE=[{"ID": "9", "VALUE": number}])

    warehouse.write_chunk(layout, [with_phone(OLD, "v1", "+111")])
    read_stored = warehouse.writer.stored_changes

    def other_writer_commits_after_the_read(*args, **kwargs):
        stored = read_stored(*args, **kwargs)
        monkeypatch.setattr(warehouse.writer, "stored_changes", read_stored)
        other.write_chunk(other_layout, [with_phone(NEW, "v3", "+333")])
        return stored

    monkeypatch.setattr(warehouse.writer, "stored_changes", other_writer_commits_after_the_read)
    try:
        counts = warehouse.write_chunk(layout, [with_phone(MID, "v2", "+222")])
    finally:
        other.engine.dispose()
    assert counts == WriteCounts(0, 0, 1)
    assert [r.title for r in select_all(warehouse, layout.table)] == ["v3"]
    assert [r.value for r in select_all(warehouse, layout.children[0].table)] == ["+333"]


def test_a_failing_chunk_rolls_back_parent_and_children(warehouse: Warehouse) -> None:
    layout = _deals(warehouse)
    phone = {"ID": "11", "VALUE_TYPE": "WORK", "VALUE": "+7", "TYPE_ID": "PHONE"}
    warehouse.write_chunk(layout, [deal(1, MID, PHONE=[phone])])
    with pytest.raises(RuntimeError), warehouse.transaction() as connection:
        warehouse.write_chunk(layout, [deal(1, NEW, TITLE="lost", PHONE=[])],
                              connection=connection)  # fmt: skip
        raise RuntimeError("the window failed")
    assert select_all(warehouse, layout.table)[0].title == "Deal 1"
    assert len(select_all(warehouse, layout.children[0].table)) == 1


def test_large_chunks_take_the_bulk_path(warehouse: Warehouse) -> None:
    """On PostgreSQL this is binary COPY; elsewhere the same executemany path."""
    if warehouse.dialect_name == "postgresql":
        warehouse.writer = PostgresWriter(copy_threshold=10)
    layout = _deals(warehouse)
    first = [deal(i, MID, PHONE=[{"ID": str(i), "VALUE": f"+{i}"}]) for i in range(1, 301)]
    assert warehouse.write_chunk(layout, first) == WriteCounts(300, 0, 0)
    second = [deal(i, NEW if i % 2 else OLD, TITLE="v2") for i in range(151, 451)]
    assert warehouse.write_chunk(layout, second) == WriteCounts(150, 75, 75)
    rows = {r.id: r.title for r in select_all(warehouse, layout.table)}
    assert len(rows) == 450
    assert rows[151] == "v2" and rows[152] == f"Deal {152}" and rows[450] == "v2"
    assert warehouse.row_count(layout) == 450
    with warehouse.engine.connect() as connection:
        children = connection.execute(
            sa.select(sa.func.count()).select_from(layout.children[0].table)
        ).scalar_one()
    assert children == 225  # the 75 newer rows 151-299 came without their phones


def test_copy_of_an_id_another_writer_inserted_falls_back_to_the_guarded_merge(
    warehouse: Warehouse,
) -> None:
    if warehouse.dialect_name != "postgresql":
        pytest.skip("the COPY path is PostgreSQL's")
    layout = _deals(warehouse)
    warehouse.write_chunk(layout, [deal(1, NEW, TITLE="newer"), deal(2, OLD)])
    rows = convert_rows(
        layout, [deal(1, OLD, TITLE="stale"), deal(2, NEW, TITLE="fresh")], synced_at=None
    )
    with warehouse.transaction() as connection:  # both believed new: the COPY hits the key
        PostgresWriter(copy_threshold=1).send(connection, layout, rows, fresh=[True, True])
    titles = {r.id: r.title for r in select_all(warehouse, layout.table)}
    assert titles == {1: "newer", 2: "fresh"}
