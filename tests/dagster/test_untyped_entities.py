"""Entities whose `*.fields` gives no types (user.fields: titles only) get typed columns."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from dagster import materialize

from dagster_bitrix24 import build_bitrix24_assets
from dagster_bitrix24.warehouse.schema.evolve import reflect_table
from dagster_bitrix24.warehouse.schema.field_types import sampled_type, typed_metadata
from tests.dagster.conftest import PREFIX, resources


def test_users_are_typed_booleans_integers_and_utc_times(portal, clean_url):
    assets = build_bitrix24_assets(entities=["user", "department"], table_prefix=PREFIX)
    assert materialize([assets], resources=resources(portal, clean_url)).success
    engine = sa.create_engine(clean_url)
    try:
        table = reflect_table(engine, f"{PREFIX}user")
        types = {c.name: c.type for c in table.columns}
        with engine.connect() as connection:
            rows = {r.id: r for r in connection.execute(sa.select(table))}
        departments = reflect_table(engine, f"{PREFIX}department")
        parent = departments.c.parent.type
    finally:
        engine.dispose()
    assert isinstance(types["id"], sa.Integer) and isinstance(parent, sa.Integer)
    assert isinstance(types["date_register"], sa.DateTime)
    truth = {r["ID"]: r for r in portal.store.raw_rows("user")}
    assert {i: r.active for i, r in rows.items()} == {i: bool(t["ACTIVE"]) for i, t in truth.items()}
    assert {r.active for r in rows.values()} == {True, False}  # not 'True' / NULL
    some = next(iter(rows))
    registered = rows[some].date_register
    registered = registered if registered.tzinfo else registered.replace(tzinfo=UTC)
    assert registered == datetime.fromtimestamp(truth[some]["DATE_REGISTER"], UTC)
    assert rows[some].uf_department == f"[{truth[some]['UF_DEPARTMENT']}]"


def test_titles_only_metadata_takes_the_built_in_types_and_keeps_unknown_fields() -> None:
    typed = typed_metadata("user.get", {"ACTIVE": "Active", "NAME": "First name",
                                        "UF_DEPARTMENT": "Departments"})  # fmt: skip
    assert typed == {
        "ACTIVE": {"title": "Active", "type": "boolean"}, "NAME": {"title": "First name"},
        "UF_DEPARTMENT": {"title": "Departments", "type": "integer", "isMultiple": True},
    }  # fmt: skip
    given = {"ACTIVE": {"type": "string", "title": "Active"}}  # a type the portal gives wins
    assert typed_metadata("user.get", given) == given


@pytest.mark.parametrize(("values", "expected"), [
    ([True, None, False], {"type": "boolean"}), ([1, "", 7], {"type": "integer"}),
    ([1, 2.5], {"type": "double"}), ([[1], {}], {"type": "string", "isMultiple": True}),
    (["2024-09-02T18:37:18+03:00", None], {"type": "datetime"}),
    (["2024-09-02T18:37:18"], {"type": "string"}), (["5", 5], {"type": "string"}),
    ([None, ""], {"type": "string"}), ([True, 1], {"type": "string"}),
])  # fmt: skip
def test_sampled_values_keep_their_json_type(values: list, expected: dict) -> None:
    assert sampled_type(values) == expected
