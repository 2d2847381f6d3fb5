"""Typed DataFrames from rows and field metadata, offline and from the emulator."""

import pandas as pd
import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.dataframe import dataframe, to_dataframe
from bitrix_core.entities import ENTITIES


@pytest.fixture(scope="module")
def portal():
    from bitrix_core.emulator.portal import EmulatedPortal

    portal = EmulatedPortal(seed=3, deals=120, plan="unlimited").start()
    yield portal
    portal.stop()


FIELDS = {
    "ID": {"type": "integer"},
    "OPPORTUNITY": {"type": "double"},
    "UF_PRICE": {"type": "money"},
    "CLOSED": {"type": "char"},
    "UF_FLAG": {"type": "boolean"},
    "DATE_MODIFY": {"type": "datetime"},
    "BIRTHDATE": {"type": "date"},
    "ASSIGNED_BY_ID": {"type": "user"},
    "TITLE": {"type": "string"},
    "PHONE": {"type": "crm_multifield", "isMultiple": True},
}


def test_columns_get_the_dtype_of_their_bitrix_type():
    rows = [
        {
            "ID": "1",
            "OPPORTUNITY": "10.50",
            "UF_PRICE": "99.5|RUB",
            "CLOSED": "Y",
            "UF_FLAG": False,
            "DATE_MODIFY": "2024-09-02T18:37:18+03:00",
            "BIRTHDATE": "1990-01-02",
            "ASSIGNED_BY_ID": "7",
            "TITLE": "a",
            "PHONE": [{"VALUE": "+1"}],
            "EXTRA": 5,
        },
        {
            "ID": "2",
            "OPPORTUNITY": "",
            "UF_PRICE": None,
            "CLOSED": "N",
            "UF_FLAG": "1",
            "DATE_MODIFY": None,
            "BIRTHDATE": "",
            "ASSIGNED_BY_ID": None,
            "TITLE": None,
            "PHONE": None,
            "EXTRA": None,
        },
    ]
    frame = to_dataframe(rows, {"fields": FIELDS}, spec=ENTITIES["crm.deal"])
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        "ID": "Int64",
        "OPPORTUNITY": "Float64",
        "UF_PRICE": "Float64",
        "CLOSED": "boolean",
        "UF_FLAG": "boolean",
        "DATE_MODIFY": "datetime64[ns, UTC]",
        "BIRTHDATE": "datetime64[ns]",
        "ASSIGNED_BY_ID": "Int64",
        "TITLE": "string",
        "PHONE": "object",
        "EXTRA": "string",
    }
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["DATE_MODIFY"] == pd.Timestamp("2024-09-02T15:37:18Z")
    assert (first["OPPORTUNITY"], first["UF_PRICE"], first["CLOSED"]) == (10.5, 99.5, True)
    assert pd.isna(second["OPPORTUNITY"]) and pd.isna(second["DATE_MODIFY"])
    assert second["UF_FLAG"] is True or second["UF_FLAG"] == True  # noqa: E712
    assert first["PHONE"] == [{"VALUE": "+1"}]


def test_values_that_do_not_fit_stay_strings():
    frame = to_dataframe([{"ID": "1", "N": "abc"}], {"N": {"type": "integer"}})
    assert str(frame["N"].dtype) == "string" and frame["N"][0] == "abc"


def test_task_rows_match_upper_case_metadata():
    frame = to_dataframe(
        [{"id": "3", "changedDate": "2024-01-01T00:00:00+00:00"}],
        {"fields": {"ID": {"type": "integer"}, "CHANGED_DATE": {"type": "datetime"}}},
        spec=ENTITIES["tasks.task"],
    )
    assert str(frame["id"].dtype) == "Int64"
    assert str(frame["changedDate"].dtype) == "datetime64[ns, UTC]"


async def test_dataframe_from_the_emulator(portal):
    async with BitrixClient(portal.webhook_url, verbose=False) as client:
        frame = await dataframe(client, "crm.deal.list", {"select": ["*"]})
    assert list(frame["ID"]) == portal.store.ids("crm.deal")
    assert str(frame["ID"].dtype) == "Int64"
    assert str(frame["DATE_MODIFY"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["OPPORTUNITY"].dtype) == "Float64"
    assert str(frame["TITLE"].dtype) == "string"
