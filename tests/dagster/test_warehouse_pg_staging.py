"""PostgreSQL conversion in SQL (`dialects/postgresql_staging.py`, the warehouse resource's
`convert_in_database`) stores exactly what the Python converters store."""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import sqlalchemy as sa

from dagster_bitrix24 import SQLWarehouseResource
from dagster_bitrix24.warehouse import Warehouse, WriteCounts
from dagster_bitrix24.warehouse.dialects import PostgresWriter
from dagster_bitrix24.warehouse.errors import RowConversionError
from dagster_bitrix24.warehouse.schema.layout import convert_rows, synced_at_value
from tests.dagster.test_warehouse_columns import _TRICKY
from tests.dagster.test_warehouse_support import DEAL_FIELDS, cleaned_warehouse, deal, select_all

_FIELDS = {
    "ID": {"type": "integer"}, "INT": {"type": "integer"}, "RATE": {"type": "double"},
    "OPPORTUNITY": {"type": "double"}, "BUDGET": {"type": "money"}, "FLAG": {"type": "char"},
    "DAY": {"type": "date"}, "AT": {"type": "datetime"}, "NOTE": {"type": "string"},
    "TAGS": {"type": "integer", "isMultiple": True},
}  # fmt: skip
# Shapes the portal sends all the time: the SQL path must take them, not hand them back.
_COMMON = {
    "INT": "42", "RATE": "1.2345", "OPPORTUNITY": "1500.00", "BUDGET": "10.50|RUB",
    "FLAG": "Y", "DAY": "2024-09-02T03:00:00+03:00", "AT": "2024-09-02T18:37:18+03:00",
    "NOTE": "text", "TAGS": ["1", "2"],
}  # fmt: skip


@pytest.fixture
def postgres(warehouse_url: str) -> Iterator[Warehouse]:
    if not warehouse_url.startswith("postgresql"):
        pytest.skip("the SQL conversion path is PostgreSQL's")
    yield from cleaned_warehouse(warehouse_url)


def _stored(warehouse: Warehouse, table: sa.Table) -> dict[Any, tuple[Any, ...]]:
    return {row.id: tuple(row)[1:-2] for row in select_all(warehouse, table)}


def compare_with_python_path(
    postgres: Warehouse, path: str, write: Callable[..., WriteCounts | None],
    values: Callable[[str], list[Any]], *, base_row: Mapping[str, Any] | None = None,
) -> tuple[int, int]:  # fmt: skip
    """Write one row per field and value of `values(field)` through `write(connection,
    layout, rows, synced_at=...)` (a fast path, None when it declines) and through the Python
    converters: a value the fast path takes is one Python takes, a common value is never
    declined, and both tables end up alike. Returns (taken, declined)."""
    by_path = postgres.prepare_table(f"by.{path}", _FIELDS, id_field="ID", change_field=None)
    by_python = postgres.prepare_table("by.python", _FIELDS, id_field="ID", change_field=None)
    synced_at = synced_at_value("postgresql")
    taken = declined = 0
    row_id = 0
    with postgres.transaction() as connection:
        for field in [f for f in _FIELDS if f != "ID"]:
            for value in values(field):
                row_id += 1
                row = {**(base_row or {}), "ID": str(row_id), field: value}
                try:
                    converted = convert_rows(by_python, [row], synced_at=synced_at)
                except RowConversionError:
                    converted = None
                else:
                    postgres.writer.send(connection, by_python, converted, fresh=[True])
                counts = write(connection, by_path, [row], synced_at=synced_at)
                if counts is None:  # declined: the chunk goes through the Python path
                    declined += 1
                    assert value is not _COMMON[field], (field, value)
                    continue
                taken += 1
                assert converted is not None, f"{path} took {value!r} for {field}, Python refused"
                assert counts == WriteCounts(1, 0, 0)
    by_path_rows = _stored(postgres, by_path.table)
    expected = {k: v for k, v in _stored(postgres, by_python.table).items() if k in by_path_rows}
    assert by_path_rows == expected
    return taken, declined


def test_sql_path_stores_what_the_python_path_stores_for_awkward_values(
    postgres: Warehouse,
) -> None:
    values = lambda field: [*_TRICKY, _COMMON[field]]  # noqa: E731
    writer = PostgresWriter(convert_in_database=True)
    taken, declined = compare_with_python_path(postgres, "sql", writer.staged_upsert, values)
    assert taken > 150 and declined > 50


@pytest.fixture
def in_sql(postgres: Warehouse) -> None:
    postgres.writer = PostgresWriter(copy_threshold=10, convert_in_database=True)


@pytest.mark.usefixtures("in_sql")
def test_sql_path_counts_inserts_updates_skips_and_replaces_children(postgres: Warehouse) -> None:
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    old, new = "2024-09-01T10:00:00+03:00", "2024-09-03T10:00:00+03:00"
    older = "2024-08-01T10:00:00+03:00"
    first = [deal(i, old, PHONE=[{"ID": str(i), "VALUE": f"+{i}"}]) for i in range(1, 21)]
    assert postgres.write_chunk(layout, first) == WriteCounts(20, 0, 0)
    second = [deal(i, new if i % 2 else older, TITLE="v2", PHONE=[]) for i in range(11, 41)]
    second[-1]["UF_CRM_VIP"] = True  # a JSON boolean is staged as its text
    second[-2]["OPPORTUNITY"] = 99.5  # and a JSON number
    assert postgres.write_chunk(layout, second) == WriteCounts(20, 5, 5)
    rows = {r.id: r for r in select_all(postgres, layout.table)}
    assert rows[11].title == "v2" and rows[12].title == "Deal 12" and len(rows) == 40
    assert rows[40].uf_crm_vip is True and float(rows[39].opportunity) == 99.5
    phones = {r.parent_id for r in select_all(postgres, layout.children[0].table)}
    assert phones == set(range(1, 21)) - set(range(11, 21, 2))


@pytest.mark.usefixtures("in_sql")
def test_sql_path_hands_bad_values_and_duplicates_to_the_python_path(postgres: Warehouse) -> None:
    layout = postgres.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    rows = [deal(i) for i in range(1, 21)]
    rows[7]["PROBABILITY"] = "fifty"
    assert postgres.write_chunk(layout, rows, run_id="r") == WriteCounts(20, 0, 0)
    assert select_all(postgres, layout.table)[7].probability is None
    assert postgres.rejects("crm.deal", "r")[0] == 1
    layout = postgres.prepare_table("crm.lead", DEAL_FIELDS, id_field="ID",
                                    change_field="DATE_MODIFY")  # fmt: skip
    rows[7]["PROBABILITY"] = " 7 "  # SQL declines this shape; Python takes it
    rows.append(deal(3, "2024-09-03T10:00:00+03:00", TITLE="newest"))
    assert postgres.write_chunk(layout, rows) == WriteCounts(20, 0, 1)
    stored = {r.id: r for r in select_all(postgres, layout.table)}
    assert stored[8].probability == 7 and stored[3].title == "newest"


def test_the_warehouse_resource_lets_a_user_choose_the_sql_path(warehouse_url: str) -> None:
    chosen = SQLWarehouseResource(url=warehouse_url, convert_in_database=True).get_warehouse()
    default = SQLWarehouseResource(url=warehouse_url).get_warehouse()
    try:
        writers = chosen.writer, default.writer
    finally:
        chosen.engine.dispose()
        default.engine.dispose()
    if not warehouse_url.startswith("postgresql"):  # the other writers have no such path
        assert not any(isinstance(w, PostgresWriter) for w in writers)
        return
    assert isinstance(writers[0], PostgresWriter) and writers[0].convert_in_database
    assert isinstance(writers[1], PostgresWriter) and not writers[1].convert_in_database
