"""crm.category.list / get / fields (deal and smart-type pipelines) as the real portal answers."""

import pytest

from bitrix_core.emulator.methods import MethodError, PortalMethods
from bitrix_core.emulator.store import PortalSizes, PortalStore


@pytest.fixture(scope="module")
def portal() -> PortalMethods:
    return PortalMethods(PortalStore(seed=3, sizes=PortalSizes(deals=20)))


def test_fields_describe_every_key_a_row_can_carry(portal):
    for type_id, extra in ((2, {"originId", "originatorId"}), (128, {"isSystem", "code"})):
        fields = portal.call("crm.category.fields", {"entityTypeId": type_id}).result["fields"]
        assert set(fields) == {"id", "name", "sort", "entityTypeId", "isDefault", *extra}
        rows = portal.call("crm.category.list", {"entityTypeId": type_id}).result["categories"]
        assert set().union(*rows) == set(fields)
    deal = portal.call("crm.category.fields", {"entityTypeId": 2}).result["fields"]
    assert deal["id"] == {"type": "integer", "isRequired": False, "isReadOnly": True,
                          "isImmutable": False, "isMultiple": False, "isDynamic": False,
                          "title": "ID", "upperName": "ID"}
    assert deal["isDefault"]["type"] == "boolean" and deal["entityTypeId"]["isRequired"]


def test_list_and_get_agree(portal):
    listed = portal.call("crm.category.list", {"entityTypeId": 2})
    rows = listed.result["categories"]
    assert listed.total == len(rows) == 3
    assert rows[0] == {"id": 0, "name": "General", "sort": 100, "entityTypeId": 2,
                       "isDefault": "Y"}  # the default pipeline has no origin keys
    assert rows[1]["originId"] == "" and rows[1]["isDefault"] == "N"
    got = portal.call("crm.category.get", {"entityTypeId": 2, "id": rows[1]["id"]}).result
    assert got == {"category": rows[1]}
    default = portal.call("crm.category.get", {"entityTypeId": 2, "id": 0}).result
    assert default == {"category": rows[0]}
    smart = portal.call("crm.category.list", {"entityTypeId": 130}).result["categories"]
    assert {r["entityTypeId"] for r in smart} == {130} and smart[0]["isSystem"] == "N"


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("crm.category.fields", {}, "NOT_FOUND"),
        ("crm.category.fields", {"entityTypeId": 999}, "NOT_FOUND"),
        ("crm.category.list", {"entityTypeId": 1}, "ENTITY_TYPE_NOT_SUPPORTED"),
        ("crm.category.get", {"entityTypeId": 2, "id": 77}, "NOT_FOUND"),
        ("crm.category.get", {"entityTypeId": 2}, "NOT_FOUND"),
    ],
)
def test_errors_are_the_portals(portal, method, params, code):
    with pytest.raises(MethodError) as raised:
        portal.call(method, params)
    assert raised.value.code == code and raised.value.status == 400
