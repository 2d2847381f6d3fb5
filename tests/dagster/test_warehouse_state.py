"""Cursor state atomicity and deletion marking, on every dialect."""

from datetime import UTC, datetime, timedelta

import pytest

from dagster_bitrix24.warehouse import DeleteCounts, Warehouse
from dagster_bitrix24.warehouse.errors import FieldMetadataError
from tests.dagster.test_warehouse_support import (
    DEAL_FIELDS,
    deal,
    select_all,
)


def test_cursor_round_trip_update_and_reset(warehouse: Warehouse) -> None:
    assert warehouse.read_cursor("crm.deal") is None
    before = datetime.now(UTC) - timedelta(seconds=2)
    warehouse.commit_cursor("crm.deal", "2024-09-02T18:37:18+03:00", extra={"rows": 5})
    state = warehouse.read_cursor("crm.deal")
    assert state is not None
    assert (state.value, state.extra) == ("2024-09-02T18:37:18+03:00", {"rows": 5})
    assert state.updated_at >= before and state.updated_at.tzinfo is not None
    warehouse.commit_cursor("crm.deal", "2024-09-03T00:00:00+03:00")
    warehouse.commit_cursor("crm.lead", "7")
    assert warehouse.read_cursor("crm.deal").value == "2024-09-03T00:00:00+03:00"
    assert warehouse.read_cursor("crm.deal").extra == {}
    assert warehouse.reset_cursor("crm.deal") is True
    assert warehouse.read_cursor("crm.deal") is None
    assert warehouse.read_cursor("crm.lead").value == "7"
    assert warehouse.reset_cursor("crm.deal") is False


def test_failure_inside_the_transaction_leaves_the_old_cursor_and_rows(
    warehouse: Warehouse,
) -> None:
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )
    warehouse.commit_cursor("crm.deal", "old")
    with pytest.raises(RuntimeError), warehouse.transaction() as connection:
        warehouse.write_chunk(layout, [deal(1)], connection=connection)
        warehouse.commit_cursor("crm.deal", "new", connection=connection)
        raise RuntimeError("the last chunk of the window failed")
    assert warehouse.read_cursor("crm.deal").value == "old"
    assert warehouse.row_count(layout) == 0
    with warehouse.transaction() as connection:
        warehouse.write_chunk(layout, [deal(1)], connection=connection)
        warehouse.commit_cursor("crm.deal", "new", connection=connection)
    assert warehouse.read_cursor("crm.deal").value == "new"
    assert warehouse.row_count(layout) == 1


def test_cursor_needs_a_key_and_a_string_value(warehouse: Warehouse) -> None:
    with pytest.raises(FieldMetadataError):
        warehouse.commit_cursor("", "x")
    with pytest.raises(FieldMetadataError):
        warehouse.commit_cursor("crm.deal", 5)  # type: ignore[arg-type]


def test_mark_deleted_stamps_missing_ids_and_clears_returning_ones(warehouse: Warehouse) -> None:
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )
    warehouse.write_chunk(layout, [deal(i) for i in range(1, 6)])
    assert warehouse.mark_deleted(layout, ["1", "2", 3]) == DeleteCounts(marked=2, restored=0)
    deleted = {r.id for r in select_all(warehouse, layout.table) if r._deleted_at is not None}
    assert deleted == {4, 5}
    assert warehouse.row_count(layout) == 3
    assert warehouse.row_count(layout, include_deleted=True) == 5
    assert warehouse.mark_deleted(layout, ["1", "2", "3"]) == DeleteCounts(0, 0)
    assert warehouse.mark_deleted(layout, [1, 2, 3, 4]) == DeleteCounts(marked=0, restored=1)
    warehouse.write_chunk(layout, [deal(5, "2024-09-04T00:00:00+03:00")])  # seen again
    assert warehouse.row_count(layout) == 5
    assert warehouse.mark_deleted(layout, []) == DeleteCounts(marked=5, restored=0)


def test_mark_deleted_inside_the_callers_transaction_rolls_back_with_it(
    warehouse: Warehouse,
) -> None:
    """Nothing in mark_deleted commits the caller's transaction (MySQL commits on a DROP
    TABLE that is not TEMPORARY)."""
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )
    warehouse.write_chunk(layout, [deal(i) for i in range(1, 4)])
    with pytest.raises(RuntimeError), warehouse.transaction() as connection:
        warehouse.write_chunk(layout, [deal(9)], connection=connection)
        assert warehouse.mark_deleted(layout, [1, 9], connection=connection).marked == 2
        raise RuntimeError("the run failed")
    assert warehouse.row_count(layout) == 3
    assert all(r._deleted_at is None for r in select_all(warehouse, layout.table))


@pytest.mark.slow
def test_mark_deleted_handles_a_large_id_set(warehouse: Warehouse) -> None:
    fields = {"ID": {"type": "integer"}, "NAME": {"type": "string"}}
    layout = warehouse.prepare_table("user", fields, id_field="ID", change_field=None)
    for start in range(0, 100_000, 25_000):
        warehouse.write_chunk(layout, [{"ID": str(i)} for i in range(start, start + 25_000)])
    present = (str(i) for i in range(100_000) if i % 100)
    assert warehouse.mark_deleted(layout, present) == DeleteCounts(marked=1_000, restored=0)
