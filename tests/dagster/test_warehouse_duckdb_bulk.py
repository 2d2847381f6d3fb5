"""DuckDB writes the link and rejects tables in bulk (Arrow relations, not rows bound one by
one): what it stores, and the counts it reports, equal SQLite's for the same input."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.test_warehouse_support import DEAL_FIELDS, deal, select_all

DEALS = 3_000  # more ids than one `IN (...)` batch, more links than one VALUES batch


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Warehouse, Warehouse]:
    """A SQLite and a DuckDB file warehouse."""
    return (Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}", table_prefix="b_"),
            Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}", table_prefix="b_"))  # fmt: skip


def _bound_rows(warehouse: Warehouse) -> list[int]:
    """Rows of values SQLAlchemy sends per statement (grows while the warehouse writes)."""
    sent: list[int] = []

    @sa.event.listens_for(warehouse.engine, "before_cursor_execute")
    def _count(_c: Any, _cur: Any, _sql: str, parameters: Any, _ctx: Any, many: bool) -> None:
        if many or (isinstance(parameters, (list, tuple)) and len(parameters) > 50):
            sent.append(len(parameters))

    return sent


def _links(deals: range, contacts: int, shift: int = 0) -> list[tuple[Any, ...]]:
    return [(d, d * 10 + k + shift, k * 10, k % 3, k == 0) for d in deals for k in range(contacts)]


def _stored_links(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    table = warehouse.link_table("crm.deal.contact").table
    return [tuple(row)[:5] for row in select_all(warehouse, table)]


def test_links_stored_and_counted_as_sqlite_stores_them(pair: tuple[Warehouse, ...]) -> None:
    first = _links(range(1, DEALS + 1), 2)
    # the second run: deals 1..1000 lose a contact, 1001..2000 change theirs, 2001..2500
    # have none, 2501..3000 are not listed (a full sync drops them), 3001..3200 are new
    second = (_links(range(1, 1001), 1) + _links(range(1001, 2001), 3, shift=5)
              + _links(range(3001, 3201), 2))  # fmt: skip
    listed = list(range(1, 2501)) + list(range(3001, 3201))
    results = []
    for warehouse in pair:
        sent = _bound_rows(warehouse)
        table = warehouse.link_table("crm.deal.contact")
        counts = [
            table.replace(list(range(1, DEALS + 1)), first),
            table.replace(list(range(1, DEALS + 1)), first),  # the same page again
            table.row_count(),
            table.replace(listed, second),
            table.drop_deals(table.deals_missing(set(listed))),
            table.drop_deals(table.deals_missing(set(listed))),
            table.row_count(),
        ]
        results.append((counts, _stored_links(warehouse), sent))
    (sqlite_counts, sqlite_rows, _), (duckdb_counts, duckdb_rows, duckdb_sent) = results
    assert sqlite_counts == [6000, 6000, 6000, 4400, 1000, 0, 4400]
    assert duckdb_counts == sqlite_counts
    assert duckdb_rows == sqlite_rows == sorted(second)
    assert duckdb_sent == []  # every row went as one relation, none as bound values


def _hostile(deal_id: int) -> dict[str, Any]:
    """A deal with one or two values no column can hold (long, NUL, unicode, money)."""
    values: dict[str, Any] = {}
    if deal_id % 3 == 0:
        values["PROBABILITY"] = f"{deal_id}x" + "é" * 1_200  # cut to RAW_LIMIT
    elif deal_id % 3 == 1:
        values["TITLE"] = f"Deal\x00 {deal_id}"
    else:
        values["UF_CRM_BUDGET"] = f"abc{deal_id}|EUR"
    if deal_id % 5 == 0:
        values["OPPORTUNITY"] = "ÿ" if deal_id % 2 else {"nested": [deal_id]}
    return deal(deal_id, **values)


def _stored_rejects(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    rows = select_all(warehouse, warehouse._rejects)
    return [(r.reject_id, r.run_id, r.entity, r.row_id, r.field, r.raw_value, r.reason)
            for r in rows]  # fmt: skip


def test_rejects_stored_and_counted_as_sqlite_stores_them(pair: tuple[Warehouse, ...]) -> None:
    rows = [_hostile(i) for i in range(1, 1_801)]
    results = []
    for warehouse in pair:
        sent = _bound_rows(warehouse)
        layout = warehouse.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID",
                                         change_field="DATE_MODIFY")  # fmt: skip
        began = datetime.now(UTC) - timedelta(seconds=1)
        counts = [warehouse.write_chunk(layout, rows, run_id=run) for run in ("r1", "r2")]
        times = [r.rejected_at for r in select_all(warehouse, warehouse._rejects)]
        if times[0].tzinfo is None:  # SQLite keeps no offset: stored as UTC
            times = [moment.replace(tzinfo=UTC) for moment in times]
        assert all(began <= moment <= datetime.now(UTC) for moment in times)
        stored = [{k: v for k, v in row._mapping.items() if k != "_synced_at"}
                  for row in select_all(warehouse, layout.table)]  # fmt: skip
        results.append((counts, _stored_rejects(warehouse), warehouse.rejects("crm.deal", "r2"),
                        stored, sent))  # fmt: skip
    sqlite, duckdb = results
    assert len(sqlite[1]) == 2 * (1_800 + 360)
    assert sum(row[5] == "3x" + "é" * 998 for row in sqlite[1]) == 2  # cut to RAW_LIMIT
    assert duckdb[:4] == sqlite[:4]  # counts, reject rows in id order, examples, entity rows
    assert duckdb[4] == []
