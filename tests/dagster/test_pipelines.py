"""Deal pipelines (crm.category) land in a typed table equal to the portal's list."""

import sqlalchemy as sa
from dagster import materialize

from bitrix_core.emulator.methods import PortalMethods
from dagster_bitrix24 import build_bitrix24_assets
from dagster_bitrix24.warehouse.schema.evolve import reflect_table
from tests.dagster.conftest import PREFIX, materializations, resources, stored_rows


def test_deal_pipelines_land_typed_and_equal_to_the_portal(portal, clean_url):
    assets = build_bitrix24_assets(entities=["crm.category"], table_prefix=PREFIX)
    result = materialize([assets], resources=resources(portal, clean_url))
    reported = materializations(result)["bitrix24/crm_category"]
    columns = {c.name: c.type for c in reported["dagster/column_schema"].columns}
    assert {"id", "name", "sort", "entity_type_id", "is_default", "origin_id"} <= set(columns)

    listed = PortalMethods(portal.store).call("crm.category.list", {"entityTypeId": 2})
    portal_rows = listed.result["categories"]
    table = f"{PREFIX}crm_category"
    stored = stored_rows(clean_url, table, "name", "sort", "entity_type_id", "is_default")
    assert stored == {
        row["id"]: (row["name"], row["sort"], 2, row["isDefault"] == "Y") for row in portal_rows
    }
    engine = sa.create_engine(clean_url)
    try:
        kinds = {c.name: c.type for c in reflect_table(engine, table).columns}
    finally:
        engine.dispose()
    assert isinstance(kinds["sort"], sa.Integer) and isinstance(kinds["entity_type_id"], sa.Integer)
