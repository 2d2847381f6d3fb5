"""Entity specs: the table of known entities and the method -> spec lookup."""

import pytest

from bitrix_core.entities import ENTITIES, EntitySpec, crm_item, spec_for_method
from bitrix_core.errors import BitrixParameterError


def test_known_entities_cover_the_list_shapes():
    expected = {
        "crm.deal",
        "crm.lead",
        "crm.contact",
        "crm.company",
        "crm.activity",
        "user",
        "department",
        "crm.status",
        "crm.category",
        "tasks.task",
        "crm.item",
        "crm.smart_invoice",
    }
    assert expected <= set(ENTITIES)
    deal, task, user = ENTITIES["crm.deal"], ENTITIES["tasks.task"], ENTITIES["user"]
    assert (deal.list_method, deal.id_field, deal.result_key, deal.id_key) == (
        "crm.deal.list",
        "ID",
        None,
        "ID",
    )
    assert (task.result_key, task.id_field, task.id_key) == ("tasks", "id", "ID")
    assert user.filter_param == "FILTER" and deal.filter_param == "filter"
    assert ENTITIES["crm.smart_invoice"].extra_params == {"entityTypeId": 31}


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("crm.deal.list", None, "crm.deal"),
        ("CRM.Deal.List", {}, "crm.deal"),
        ("user.get", None, "user"),
        ("tasks.task.list", None, "tasks.task"),
        ("crm.item.list", {"entityTypeId": 31}, "crm.smart_invoice"),
        ("crm.item.list", {"ENTITYTYPEID": "128"}, "crm.item.128"),
    ],
)
def test_spec_for_method(method, params, name):
    assert spec_for_method(method, params).name == name


def test_spec_for_method_unknown_or_missing_type():
    assert spec_for_method("crm.nothing.list") is None
    assert spec_for_method("crm.item.list", {}) is None


def test_crm_item_spec_is_camel_case():
    spec = crm_item(130)
    assert (spec.id_key, spec.result_key, spec.extra_params) == (
        "id",
        "items",
        {"entityTypeId": 130},
    )
    assert spec_for_method("crm.category.list", {"entityTypeId": 130}).extra_params == {
        "entityTypeId": 130
    }


def test_task_row_keys_are_camel_case():
    assert ENTITIES["tasks.task"].row_key("CHANGED_DATE") == "changedDate"
    assert ENTITIES["crm.deal"].row_key("DATE_MODIFY") == "DATE_MODIFY"


def test_bad_style_is_rejected():
    with pytest.raises(ValueError, match="style"):
        EntitySpec(name="x", list_method="x.list", fields_method=None, style="fancy")
    with pytest.raises(TypeError):
        crm_item("128")


@pytest.mark.parametrize(
    ("changes", "parameter"),
    [
        ({"name": ""}, "EntitySpec.name"),
        ({"list_method": None}, "EntitySpec.list_method"),
        ({"id_field": " "}, "EntitySpec.id_field"),
        ({"filter_case": "lower"}, "EntitySpec.filter_case"),
        ({"extra_params": [("entityTypeId", 2)]}, "EntitySpec.extra_params"),
    ],
)
def test_bad_spec_fields_are_named(changes, parameter):
    options = {"name": "x", "list_method": "x.list", "fields_method": None, **changes}
    with pytest.raises(BitrixParameterError) as raised:
        EntitySpec(**options)
    assert raised.value.parameter == parameter
