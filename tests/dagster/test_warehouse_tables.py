"""DDL from field metadata, hostile identifiers and schema evolution, on every dialect."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.errors import FieldMetadataError
from dagster_bitrix24.warehouse.schema.columns import identifier
from dagster_bitrix24.warehouse.schema.evolve import stored_columns
from tests.dagster.test_warehouse_support import (
    DEAL_FIELDS,
    HOSTILE,
    deal,
    select_all,
)


def _columns(warehouse: Warehouse, table: str) -> dict[str, dict]:
    if warehouse.dialect_name == "duckdb":  # duckdb_engine's get_columns fails on SA 2.1
        return _duckdb_columns(warehouse, table)
    inspector = sa.inspect(warehouse.engine)
    return {c["name"]: c for c in inspector.get_columns(table)}


def _primary_key(warehouse: Warehouse, table: str) -> list[str]:
    if warehouse.dialect_name == "duckdb":
        with warehouse.engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT constraint_column_names FROM duckdb_constraints() "
                "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
                (table,),
            ).scalar_one()
    return sa.inspect(warehouse.engine).get_pk_constraint(table)["constrained_columns"]


def _duckdb_columns(warehouse: Warehouse, table: str) -> dict[str, dict]:
    with warehouse.engine.connect() as connection:
        types = stored_columns(connection, sa.inspect(connection), table, None)
        found = connection.exec_driver_sql(
            "SELECT column_name, comment, is_nullable FROM duckdb_columns() WHERE table_name = ?",
            (table,),
        ).fetchall()
    return {
        name: {"name": name, "type": types[name], "comment": comment, "nullable": nullable}
        for name, comment, nullable in found
    }


def test_table_has_typed_columns_a_primary_key_and_bookkeeping(warehouse: Warehouse) -> None:
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )
    assert layout.changes.created
    assert layout.table.name == f"{warehouse.table_prefix}crm_deal"
    columns = _columns(warehouse, layout.table.name)
    assert _primary_key(warehouse, layout.table.name) == ["id"]
    expected = {
        "id": sa.Integer if warehouse.dialect_name == "sqlite" else sa.BigInteger,  # rowid
        "assigned_by_id": sa.BigInteger, "probability": sa.BigInteger,
        "opportunity": sa.Numeric, "uf_crm_budget": sa.Numeric, "uf_crm_rate": sa.Float,
        "begindate": sa.Date, "date_modify": sa.DateTime, "_synced_at": sa.DateTime,
        "_deleted_at": sa.DateTime, "title": sa.String, "stage_id": sa.String,
        "uf_crm_tags": sa.String, "uf_crm_budget_currency": sa.String,
    }  # fmt: skip
    for name, sql_class in expected.items():
        assert isinstance(columns[name]["type"], sql_class), (name, columns[name]["type"])
    if warehouse.dialect_name == "mysql":  # BOOLEAN is TINYINT(1) there
        assert str(columns["closed"]["type"]).startswith("TINYINT")
    else:
        assert isinstance(columns["closed"]["type"], sa.Boolean)
    if warehouse.dialect_name == "postgresql":
        assert columns["date_modify"]["type"].timezone
    opportunity = columns["opportunity"]["type"]
    assert (opportunity.precision, opportunity.scale) == (18, 2)
    assert "phone" not in columns
    assert sa.inspect(warehouse.engine).has_table(layout.children[0].table.name)


def test_column_comments_carry_user_field_labels_where_supported(warehouse: Warehouse) -> None:
    layout = warehouse.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID", change_field=None)
    columns = _columns(warehouse, layout.table.name)
    if warehouse.dialect_name == "sqlite":
        pytest.skip("SQLite has no column comments")
    assert columns["uf_crm_vip"]["comment"] == "VIP client (UF_CRM_VIP)"
    assert columns["stage_id"]["comment"] == "Deal Stage (STAGE_ID)"


def test_column_schema_describes_every_column(warehouse: Warehouse) -> None:
    layout = warehouse.prepare_table(
        "crm.deal", DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY"
    )
    schema = {name: (sql_type, text) for name, sql_type, text in warehouse.column_schema(layout)}
    assert schema["id"][0] == ("INTEGER" if warehouse.dialect_name == "sqlite" else "BIGINT")
    assert schema["uf_crm_budget"] == ("NUMERIC(18, 2)", "Budget (UF_CRM_BUDGET)")
    assert list(schema)[-2:] == ["_synced_at", "_deleted_at"]


def test_hostile_field_name_and_label_never_become_sql(warehouse: Warehouse) -> None:
    fields = {
        **DEAL_FIELDS,
        HOSTILE: {"type": "string", "listLabel": "x'); DROP TABLE y; --", "title": HOSTILE},
        "UF_CRM_`x`": {"type": "integer", "title": "back`tick"},
    }
    layout = warehouse.prepare_table("crm.deal", fields, id_field="ID", change_field=None)
    counts = warehouse.write_chunk(layout, [deal(1, **{HOSTILE: "evil", "UF_CRM_`x`": "5"})])
    assert counts.inserted == 1
    row = select_all(warehouse, layout.table)[0]._mapping
    assert row[identifier(HOSTILE)] == "evil"
    assert row[identifier("UF_CRM_`x`")] == 5
    assert sa.inspect(warehouse.engine).has_table(layout.table.name)


def test_bad_table_options_are_named_errors(warehouse_url: str) -> None:
    with pytest.raises(FieldMetadataError, match="table_prefix"):
        Warehouse(warehouse_url, table_prefix="x; DROP TABLE y")
    with pytest.raises(FieldMetadataError, match="entity_name"):
        Warehouse(warehouse_url).table_name("")


def test_new_field_becomes_a_column_and_removed_field_stays(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    first = warehouse.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID", change_field=None)
    warehouse.write_chunk(first, [deal(1)])
    fields = {k: v for k, v in DEAL_FIELDS.items() if k != "UF_CRM_RATE"}
    fields["UF_CRM_NEW"] = {"type": "integer", "listLabel": "New one", "title": "UF_CRM_NEW"}
    fields["EMAIL"] = {"type": "crm_multifield", "isMultiple": True, "title": "E-mail"}
    with caplog.at_level(logging.INFO, logger="dagster_bitrix24.warehouse"):
        second = warehouse.prepare_table("crm.deal", fields, id_field="ID", change_field=None)
    assert not second.changes.created
    assert second.changes.added_columns == ("uf_crm_new",)
    assert second.changes.removed_columns == ("uf_crm_rate",)
    assert "uf_crm_new" in caplog.text
    columns = _columns(warehouse, second.table.name)
    assert {"uf_crm_new", "uf_crm_rate"} <= set(columns)
    if warehouse.dialect_name != "sqlite":
        assert columns["uf_crm_new"]["comment"] == "New one (UF_CRM_NEW)"
    warehouse.write_chunk(second, [deal(2, UF_CRM_NEW="7", EMAIL=[{"VALUE": "a@b.c"}])])
    rows = {r.id: r for r in select_all(warehouse, second.table)}
    assert rows[1].uf_crm_new is None and rows[2].uf_crm_new == 7
    assert float(rows[1].uf_crm_rate) == pytest.approx(1.2345)
    assert rows[2].uf_crm_rate is None  # the removed field is no longer written
    email = next(c for c in second.children if c.spec.field == "EMAIL")
    assert [r.value for r in select_all(warehouse, email.table)] == ["a@b.c"]
    again = warehouse.prepare_table("crm.deal", fields, id_field="ID", change_field=None)
    assert not again.changes


def test_type_change_is_reported_and_logged_not_coerced(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    first = warehouse.prepare_table("crm.deal", DEAL_FIELDS, id_field="ID", change_field=None)
    warehouse.write_chunk(first, [deal(1, TITLE="keep me")])
    fields = {**DEAL_FIELDS, "TITLE": {"type": "integer", "title": "Name"}}
    with caplog.at_level(logging.WARNING, logger="dagster_bitrix24.warehouse"):
        second = warehouse.prepare_table("crm.deal", fields, id_field="ID", change_field=None)
    [change] = second.changes.type_changes
    assert (change.column, change.field, change.wanted) == ("title", "TITLE", "integer")
    assert "TITLE changed type" in caplog.text
    assert second.frozen == ("title",)
    assert isinstance(_columns(warehouse, second.table.name)["title"]["type"], sa.String)
    warehouse.write_chunk(second, [deal(1, TITLE="12")])
    assert select_all(warehouse, second.table)[0].title == "keep me"


def test_links_written_after_a_read_started_are_not_its_to_drop(warehouse: Warehouse) -> None:
    """A full links run judges only links stored before its read started: another run may
    have stored links of a deal created meanwhile, which this read could not see."""
    table = warehouse.link_table("crm.deal.contact")
    table.replace([1, 2], [(1, 10, 10, 0, True), (2, 20, 10, 0, True)])
    started = datetime.now(UTC) + timedelta(seconds=2)  # (MySQL keeps whole seconds)
    assert table.deals_missing(set()) == [1, 2]
    assert table.deals_missing({1}, started) == [2]
    assert table.deals_missing(set(), datetime.now(UTC) - timedelta(seconds=2)) == []
