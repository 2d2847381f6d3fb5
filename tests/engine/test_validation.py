"""Parameter validation: a named BitrixParameterError before anything is sent."""

import datetime as dt

import pytest

from bitrix_core.errors import BitrixParameterError
from bitrix_core.validation import validate_call


@pytest.mark.parametrize(
    "params",
    [
        None,
        {},
        {"select": ["ID", "UF_*"], "start": -1, "order": {"ID": "asc", "TITLE": "Desc"}},
        {"filter": {op + "ID": 5 for op in ("", "=", "!", "!=", ">", ">=", "<", "<=")}},
        {
            "filter": {
                "@ID": [1, 2],
                "!@ID": (3,),
                "%TITLE": "a",
                "=%TITLE": "a%",
                "%=TITLE": "%a",
                "!%TITLE": "b",
            }
        },
        {
            "filter": {
                ">=DATE_MODIFY": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                "<DATE": dt.date(2024, 1, 1),
            }
        },
        {"filter": {"logic": "OR", "0": {"=stageId": "X"}, "1": {">id": 5}}},
        {"FILTER": {"ACTIVE": True}, "sort": "ID", "order": "desc"},
    ],
)
def test_valid_calls_pass(params):
    validate_call("crm.deal.list", params)


@pytest.mark.parametrize(
    ("method", "params", "parameter"),
    [
        ("crm deal list", None, "method"),
        ("", None, "method"),
        ("crm..deal", None, "method"),
        (None, None, "method"),
        ("crm.deal.list", ["ID"], "params"),
        ("crm.deal.list", {"select": "ID"}, "select"),
        ("crm.deal.list", {"select": ["ID", 5]}, "select[1]"),
        ("crm.deal.list", {"filter": ["ID"]}, "filter"),
        ("crm.deal.list", {"filter": {"=>ID": 5}}, "filter[=>ID]"),
        ("crm.deal.list", {"filter": {"ID ": 5}}, "filter[ID ]"),
        ("crm.deal.list", {"filter": {"@ID": 5}}, "filter[@ID]"),
        ("crm.deal.list", {"filter": {"ID": object()}}, "filter[ID]"),
        (
            "crm.deal.list",
            {"filter": {">DATE_MODIFY": dt.datetime(2024, 1, 1)}},
            "filter[>DATE_MODIFY]",
        ),
        ("crm.deal.list", {"filter": {"logic": "XOR"}}, "filter[logic]"),
        ("crm.deal.list", {"filter": {"0": {"=>X": 1}}}, "filter[0][=>X]"),
        ("crm.deal.list", {"order": {"ID": "up"}}, "order[ID]"),
        ("crm.deal.list", {"order": ["ID"]}, "order"),
        ("crm.deal.list", {"order": {">ID": "ASC"}}, "order[>ID]"),
        ("user.get", {"order": "sideways"}, "order"),
        ("user.get", {"sort": ""}, "sort"),
        ("crm.deal.list", {"start": "50"}, "start"),
        ("crm.deal.list", {"start": True}, "start"),
        ("crm.deal.list", {"start": -2}, "start"),
    ],
)
def test_bad_input_names_the_parameter(method, params, parameter):
    with pytest.raises(BitrixParameterError) as caught:
        validate_call(method, params)
    assert caught.value.parameter == parameter
    assert parameter in str(caught.value)
