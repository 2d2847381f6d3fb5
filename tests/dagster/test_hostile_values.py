"""Hostile values planted on the emulated portal, synced over HTTP into every dialect: the
rows land, the bad values are NULL (or cleaned) and recorded as rejects, the next run is not
blocked, and the `no_rejected_values` check fails until the portal's value is fixed."""

from decimal import Decimal

import pytest
import sqlalchemy as sa
from dagster import AssetSelection, materialize

from dagster_bitrix24 import build_bitrix24_assets, build_bitrix24_checks
from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.conftest import PREFIX, materializations, resources, stored_rows

LONG = "x" * 70_000  # over MySQL's plain TEXT (64 KB)
#: position among the portal's deal ids -> (field, planted raw value)
PLANTED = {
    5: ("BEGINDATE", "0000-00-00"),  # Bitrix24's empty date: NULL, not a reject
    6: ("DATE_CREATE", "0000-00-00T00:00:00+03:00"),  # the same for a time
    7: ("OPPORTUNITY", "1 234.50"),
    8: ("PROBABILITY", "12abc"),
    9: ("CLOSED", "maybe"),
    10: ("OPPORTUNITY", "100|USD"),  # money with its currency: both kept
    11: ("TITLE", "Deal\x00 eleven"),  # NUL stripped (PostgreSQL cannot store it)
    12: ("COMMENTS", LONG),
    13: ("ASSIGNED_BY_ID", "99999999999999999999"),  # over 64 bits
    14: ("UF_CRM_BUDGET", "abc|EUR"),  # a bad amount keeps its currency
}
REJECTED = {7, 8, 9, 11, 13, 14}


def _check(result) -> bool:
    evaluations = result.get_asset_check_evaluations()
    return next(e.passed for e in evaluations if e.check_name == "no_rejected_values")


def test_hostile_values_land_as_null_with_rejects_and_never_block_a_run(portal, clean_url):
    ids = portal.store.ids("crm.deal")
    for position, (field, value) in PLANTED.items():
        portal.store.planted.plant("crm.deal", ids[position], field, value)
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX)
    checks = build_bitrix24_checks(assets)
    res = resources(portal, clean_url)

    first = materialize([assets, checks], resources=res)
    reported = materializations(first)["bitrix24/crm_deal"]
    assert first.success and _check(first) is False
    assert reported["values_rejected"] == len(REJECTED) and reported["rows_fetched"] == 120
    columns = ("begindate", "date_create", "opportunity", "opportunity_currency", "probability",
               "closed", "title", "comments", "assigned_by_id", "uf_crm_budget",
               "uf_crm_budget_currency")  # fmt: skip
    by_id = stored_rows(clean_url, "dtest_crm_deal", *columns)
    stored = {p: dict(zip(columns, by_id[i], strict=True)) for p, i in enumerate(ids)}
    assert len(stored) == 120  # every row landed
    assert stored[5]["begindate"] is None and stored[6]["date_create"] is None
    assert stored[7]["opportunity"] is None and stored[8]["probability"] is None
    assert stored[9]["closed"] is None
    assert (stored[10]["opportunity"], stored[10]["opportunity_currency"]) == (Decimal(100), "USD")
    assert stored[11]["title"] == "Deal eleven" and stored[12]["comments"] == LONG
    assert stored[13]["assigned_by_id"] is None
    assert (stored[14]["uf_crm_budget"], stored[14]["uf_crm_budget_currency"]) == (None, "EUR")
    assert stored[15]["begindate"] is not None and stored[15]["probability"] is not None

    writer = Warehouse(clean_url, table_prefix=PREFIX)
    run_id = first.run_id
    count, examples = writer.rejects("crm.deal", run_id)
    assert count == len(REJECTED)
    assert {e["row_id"] for e in examples} <= {str(ids[p]) for p in REJECTED}
    assert all("12abc" not in str(e) for e in examples)  # no raw values in metadata
    rejects = {(r[0], r[1]): (r[2], r[3]) for r in _rejects(writer, run_id)}
    assert rejects[(str(ids[8]), "PROBABILITY")] == ("12abc", "not a valid integer")
    assert rejects[(str(ids[11]), "TITLE")] == ("Deal\\0 eleven", "NUL bytes removed")
    assert rejects[(str(ids[14]), "UF_CRM_BUDGET")][0] == "abc|EUR"
    assert {row_id for row_id, _ in rejects} == {str(ids[p]) for p in REJECTED}

    second = materialize([assets, checks], resources=res)  # the planted rows are read again
    assert second.success and _check(second) is False
    assert materializations(second)["bitrix24/crm_deal"]["values_rejected"] == len(REJECTED)

    for position in PLANTED:
        portal.store.planted.clear("crm.deal", ids[position])
    fixed = materialize([assets, checks], resources=res)
    assert fixed.success and _check(fixed) is True
    assert materializations(fixed)["bitrix24/crm_deal"]["values_rejected"] == 0
    after = stored_rows(clean_url, "dtest_crm_deal", "probability", "title")
    truth = {row["ID"]: row for row in portal.store.raw_rows("crm.deal", [ids[8], ids[11]])}
    assert after[ids[8]][0] == truth[ids[8]]["PROBABILITY"]
    assert after[ids[11]][1] == truth[ids[11]]["TITLE"]
    only_checks = materialize([assets, checks], resources=res,
                              selection=AssetSelection.all_asset_checks())  # fmt: skip
    assert _check(only_checks) is True
    writer.engine.dispose()


def _rejects(writer: Warehouse, run_id: str) -> list[tuple]:
    table = writer._rejects
    with writer.engine.connect() as connection:
        query = table.select().where(table.c.run_id == run_id)
        return [(r.row_id, r.field, r.raw_value, r.reason) for r in connection.execute(query)]


def test_a_mysql_text_column_made_before_longtext_is_widened(warehouse: Warehouse) -> None:
    if warehouse.dialect_name != "mysql":
        pytest.skip("MySQL/MariaDB only: other dialects' text has no 64 KB limit")
    fields = {"ID": {"type": "integer"}, "TITLE": {"type": "string"}}
    table = warehouse.table_name("crm.deal")
    with warehouse.engine.begin() as connection:  # as an earlier version made it
        connection.exec_driver_sql(
            f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, title TEXT COMMENT 'Name (TITLE)', "
            "_synced_at DATETIME, _deleted_at DATETIME)"
        )
    layout = warehouse.prepare_table("crm.deal", fields, id_field="ID", change_field=None)
    assert not layout.changes.type_changes
    stored = {c["name"]: c for c in sa.inspect(warehouse.engine).get_columns(table)}
    assert type(stored["title"]["type"]).__name__ == "LONGTEXT"
    assert stored["title"]["comment"] == "TITLE"  # the description comes with it
    warehouse.write_chunk(layout, [{"ID": "1", "TITLE": LONG}])
    assert stored_rows(str(warehouse.engine.url.render_as_string(hide_password=False)),
                       table, "title") == {1: (LONG,)}  # fmt: skip
