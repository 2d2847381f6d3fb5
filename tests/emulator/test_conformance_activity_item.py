"""Raw-HTTP conformance of crm.activity, smart-process items, date values and the 60-second
request cap with the documented examples of b24restdocs (each test names the page it quotes)."""

import json
import re
import time
from datetime import date

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal
from bitrix_core.emulator.costs import CostModel
from bitrix_core.emulator.limits import PLANS

# api-reference/crm/timeline/activities/activity-base/crm-activity-fields.md, "Response
# Handling" example (44 fields, in its order)
ACTIVITY_FIELDS = [
    "ID", "OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID", "PROVIDER_ID", "PROVIDER_TYPE_ID",
    "PROVIDER_GROUP_ID", "ASSOCIATED_ENTITY_ID", "SUBJECT", "START_TIME", "END_TIME",
    "DEADLINE", "COMPLETED", "STATUS", "RESPONSIBLE_ID", "PRIORITY", "NOTIFY_TYPE",
    "NOTIFY_VALUE", "DESCRIPTION", "DESCRIPTION_TYPE", "DIRECTION", "LOCATION", "CREATED",
    "AUTHOR_ID", "LAST_UPDATED", "EDITOR_ID", "SETTINGS", "ORIGIN_ID", "ORIGINATOR_ID",
    "RESULT_STATUS", "RESULT_STREAM", "RESULT_SOURCE_ID", "PROVIDER_PARAMS", "PROVIDER_DATA",
    "RESULT_MARK", "RESULT_VALUE", "RESULT_SUM", "RESULT_CURRENCY_ID", "AUTOCOMPLETE_RULE",
    "BINDINGS", "COMMUNICATIONS", "FILES", "WEBDAV_ELEMENTS", "IS_INCOMING_CHANNEL",
]  # fmt: skip
# crm-activity-list.md / crm-activity-get.md, the row of "Response Handling" (39 keys)
ACTIVITY_ROW = set(ACTIVITY_FIELDS) - {
    "BINDINGS", "COMMUNICATIONS", "FILES", "WEBDAV_ELEMENTS", "IS_INCOMING_CHANNEL",
}  # fmt: skip

# api-reference/crm/universal/crm-item-fields.md, "Response Handling" (a smart process's
# fields, in order, without the portal-specific parentId1248)
ITEM_FIELDS = {
    "id": "ID", "title": "TITLE", "xmlId": "XML_ID", "createdTime": "CREATED_TIME",
    "updatedTime": "UPDATED_TIME", "createdBy": "CREATED_BY", "updatedBy": "UPDATED_BY",
    "assignedById": "ASSIGNED_BY_ID", "opened": "OPENED", "webformId": "WEBFORM_ID",
    "begindate": "BEGINDATE", "closedate": "CLOSEDATE", "companyId": "COMPANY_ID",
    "contactId": "CONTACT_ID", "contactIds": "CONTACT_IDS", "contacts": "CONTACTS",
    "observers": "OBSERVERS", "categoryId": "CATEGORY_ID", "movedTime": "MOVED_TIME",
    "movedBy": "MOVED_BY", "stageId": "STAGE_ID", "previousStageId": "PREVIOUS_STAGE_ID",
    "sourceId": "SOURCE_ID", "sourceDescription": "SOURCE_DESCRIPTION",
    "currencyId": "CURRENCY_ID", "isManualOpportunity": "IS_MANUAL_OPPORTUNITY",
    "opportunity": "OPPORTUNITY", "taxValue": "TAX_VALUE", "mycompanyId": "MYCOMPANY_ID",
    "lastActivityBy": "LAST_ACTIVITY_BY", "lastActivityTime": "LAST_ACTIVITY_TIME",
    "parentId1": "PARENT_ID_1", "parentId2": "PARENT_ID_2",
}  # fmt: skip

_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
_MIDNIGHT = re.compile(r"^\d{4}-\d\d-\d\dT00:00:00\+03:00$")


async def _post(portal, method, body=None) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(portal.webhook_url + method, json=body or {}) as response,
    ):
        return response.status, json.loads(await response.text())


async def _call(portal, method, body=None):
    status, body = await _post(portal, method, body)
    assert status == 200, body
    return body["result"]


@pytest.fixture
async def portal():
    async with EmulatedPortal(deals=200, plan="unlimited", time_scale=0.01) as portal:
        yield portal


async def test_activity_fields_are_the_documented_set_with_its_flags(portal):
    fields = await _call(portal, "crm.activity.fields")
    assert list(fields) == ACTIVITY_FIELDS
    # crm-activity-fields.md, quoted field by field
    assert fields["OWNER_TYPE_ID"] == {
        "type": "crm_enum_ownertype", "isRequired": False, "isReadOnly": False,
        "isImmutable": True, "isMultiple": False, "isDynamic": False, "title": "Owner Type",
    }  # fmt: skip
    assert fields["TYPE_ID"]["isRequired"] and fields["TYPE_ID"]["isImmutable"]
    assert fields["BINDINGS"] == {
        "type": "crm_activity_binding", "isRequired": False, "isReadOnly": True,
        "isImmutable": False, "isMultiple": True, "isDynamic": False, "title": "Bindings",
    }  # fmt: skip
    assert fields["COMMUNICATIONS"]["isRequired"] and fields["COMMUNICATIONS"]["isMultiple"]
    assert fields["WEBDAV_ELEMENTS"]["isDeprecated"] is True
    assert fields["WEBDAV_ELEMENTS"]["type"] == fields["FILES"]["type"] == "diskfile"
    assert fields["SETTINGS"]["type"] == fields["PROVIDER_PARAMS"]["type"] == "object"
    assert (fields["RESULT_SUM"]["type"], fields["END_TIME"]["title"]) == ("double", "Deadline")


async def test_activity_rows_have_the_documented_keys_and_value_formats(portal):
    # crm-activity-list.md row: "ID": "20", "OWNER_TYPE_ID": "3", "TYPE_ID": "2",
    # "PROVIDER_ID": "VOXIMPLANT_CALL", "PROVIDER_TYPE_ID": "CALL", "PROVIDER_GROUP_ID": null,
    # "ASSOCIATED_ENTITY_ID": "0", "START_TIME": "2020-09-27T13:25:00+03:00", "DEADLINE":
    # "2020-09-27T13:25:00+03:00" (= START_TIME for a call), "COMPLETED": "Y", "STATUS": "2",
    # "DESCRIPTION": "", "LOCATION": "", "SETTINGS": [], "PROVIDER_PARAMS": [],
    # "RESULT_MARK": "0", "RESULT_VALUE": null, "AUTOCOMPLETE_RULE": "0"
    rows = await _call(portal, "crm.activity.list", {"order": {"ID": "ASC"}})
    assert len(rows) == 50
    providers = {"1": ("CRM_MEETING", "MEETING"), "2": ("VOXIMPLANT_CALL", "CALL"),
                 "3": ("CRM_TASKS_TASK", "TASK"), "4": ("CRM_EMAIL", "EMAIL")}  # fmt: skip
    for row in rows:
        assert set(row) == ACTIVITY_ROW
        assert all(row[k].isdigit() for k in ("ID", "OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID"))
        assert (row["PROVIDER_ID"], row["PROVIDER_TYPE_ID"]) == providers[row["TYPE_ID"]]
        assert row["STATUS"] == ("2" if row["COMPLETED"] == "Y" else "1")
        # crm-activity-fields.md: DEADLINE "is taken from START_TIME for calls and meetings
        # and from END_TIME for tasks"
        by_type = "START_TIME" if row["TYPE_ID"] in ("1", "2") else "END_TIME"
        assert row["DEADLINE"] == row[by_type]
        assert all(_ISO.match(row[k]) for k in ("CREATED", "LAST_UPDATED", "START_TIME"))
        assert row["SETTINGS"] == [] and row["PROVIDER_PARAMS"] == []
        assert (row["ASSOCIATED_ENTITY_ID"], row["DESCRIPTION"], row["LOCATION"]) == ("0", "", "")
        assert (row["RESULT_MARK"], row["AUTOCOMPLETE_RULE"], row["RESULT_VALUE"]) == (
            "0",
            "0",
            None,
        )
    assert {r["TYPE_ID"] for r in rows} == set(providers)
    one = await _call(portal, "crm.activity.get", {"id": rows[0]["ID"]})
    assert one == rows[0]


async def test_an_added_activity_reads_back_with_the_documented_defaults(portal):
    new_id = await _call(portal, "crm.activity.add", {"fields": {
        "OWNER_TYPE_ID": 2, "OWNER_ID": 1, "TYPE_ID": 2, "SUBJECT": "Call",
        "SETTINGS": {"H10": "y"}}})  # fmt: skip
    row = await _call(portal, "crm.activity.get", {"id": new_id})
    assert set(row) == ACTIVITY_ROW and row["SETTINGS"] == {"H10": "y"}
    assert (row["PROVIDER_PARAMS"], row["STATUS"], row["COMPLETED"]) == ([], "1", "N")
    assert (row["ASSOCIATED_ENTITY_ID"], row["RESULT_STATUS"], row["DESCRIPTION"]) == ("0", "0", "")


async def test_smart_item_fields_are_the_documented_set_with_its_flags(portal):
    fields = (await _call(portal, "crm.item.fields", {"entityTypeId": 128}))["fields"]
    standard = {name: meta["upperName"] for name, meta in fields.items() if not meta["isDynamic"]}
    assert list(standard.items()) == list(ITEM_FIELDS.items())
    # crm-item-fields.md, quoted field by field
    assert fields["opened"] == {
        "type": "boolean", "isRequired": True, "isReadOnly": False, "isImmutable": False,
        "isMultiple": False, "isDynamic": False, "title": "Publicly available",
        "upperName": "OPENED",
    }  # fmt: skip
    assert fields["mycompanyId"]["settings"] == {
        "isMyCompany": True, "parentEntityTypeId": 4, "isEmbeddedEditorEnabled": True,
    }  # fmt: skip
    assert fields["parentId2"]["type"] == "crm_entity"
    assert fields["parentId2"]["settings"] == {"parentEntityTypeId": 2}
    assert fields["contactId"]["isDeprecated"] is True and fields["observers"]["isMultiple"]
    assert fields["sourceDescription"]["type"] == "text"
    assert fields["movedTime"]["isReadOnly"] and fields["previousStageId"]["isReadOnly"]


async def test_smart_items_carry_the_documented_keys_and_value_formats(portal):
    # crm-item-add.md item: "opened": "N", "isManualOpportunity": "Y", "begindate":
    # "2024-06-18T02:00:00+02:00", "movedBy": 1, "taxValue": 0, "webformId": null,
    # "parentId1220": 2, "observers": [2, 3], "contactIds": [4, 5], ..., "entityTypeId": 2
    items = (await _call(portal, "crm.item.list", {"entityTypeId": 128}))["items"]
    listed = set(ITEM_FIELDS) - {"contacts"}
    for item in items:
        assert {k for k in item if not k.startswith("ufCrm")} == listed
        assert item["opened"] in ("Y", "N") and item["isManualOpportunity"] in ("Y", "N")
        assert all(_ISO.match(item[k]) for k in ("createdTime", "updatedTime", "movedTime"))
        assert _MIDNIGHT.match(item["begindate"]) and _MIDNIGHT.match(item["closedate"])
        assert isinstance(item["observers"], list) and isinstance(item["contactIds"], list)
        assert all(type(item[k]) is int for k in ("id", "createdBy", "movedBy", "categoryId"))
        assert isinstance(item["opportunity"], float) and item["taxValue"] == 0
        assert item["parentId2"] is None or type(item["parentId2"]) is int
    assert any(item["observers"] for item in items) and any(item["parentId2"] for item in items)
    got = await _call(portal, "crm.item.get", {"entityTypeId": 128, "id": items[0]["id"]})
    assert got["item"] == {**items[0], "entityTypeId": 128}
    added = await _call(portal, "crm.item.add", {
        "entityTypeId": 128, "fields": {"title": "x", "observers": [2, 3], "begindate": "2024-06-18"}})  # fmt: skip
    item = added["item"]
    assert (item["observers"], item["createdBy"], item["updatedBy"]) == ([2, 3], 1, 1)
    assert item["begindate"] == "2024-06-18T00:00:00+03:00" and "contacts" not in item
    assert list(item)[-1] == "entityTypeId" and item["entityTypeId"] == 128


async def test_a_smart_item_added_without_fields_takes_the_documented_defaults(portal):
    # crm-item-add.md, "Parameter fields", SPA tab: title "By default, it is generated
    # according to the template `{entityTypeName} #{id}`"; assignedById "Default - the user
    # ID who calls the method"; opened "Default - `Y`"; begindate "Default - Create date
    # item"; closedate "Default - Create date item + 7 days"; stageId "Default - the first
    # available stage relative to the funnel"; sourceId "Default - first available source";
    # isManualOpportunity "Default - `N`"; webformId, observers "Default is `null`"
    added = (await _call(portal, "crm.item.add", {"entityTypeId": 128, "fields": {}}))["item"]
    assert added["title"] == f"Projects #{added['id']}"
    assert (added["assignedById"], added["opened"], added["isManualOpportunity"]) == (1, "Y", "N")
    begin = added["begindate"][:10]
    assert begin == time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3 * 3600))  # +03:00
    assert _day(added["closedate"]) - _day(added["begindate"]) == 7
    category = added["categoryId"]
    stages = await _call(portal, "crm.status.list", {
        "filter": {"ENTITY_ID": f"DYNAMIC_128_STAGE_{category}"}, "order": {"SORT": "ASC"}})  # fmt: skip
    assert added["stageId"] == stages[0]["STATUS_ID"]
    sources = await _call(portal, "crm.status.list", {
        "filter": {"ENTITY_ID": "SOURCE"}, "order": {"SORT": "ASC"}})  # fmt: skip
    assert added["sourceId"] == sources[0]["STATUS_ID"]
    assert added["webformId"] is None and added["observers"] == []
    given = (await _call(portal, "crm.item.add", {"entityTypeId": 128, "fields": {
        "title": "Pilot", "opened": "N", "stageId": "DT128_20:CLIENT"}}))["item"]  # fmt: skip
    assert (given["title"], given["opened"], given["stageId"]) == ("Pilot", "N", "DT128_20:CLIENT")


def _day(value: str) -> int:
    """The day number of an ISO date-time's date."""
    return date.fromisoformat(value[:10]).toordinal()


async def test_dates_are_sent_as_midnight_with_the_portal_offset(portal):
    # crm-deal-get.md: "BEGINDATE": "2024-08-30T02:00:00+02:00", "CLOSEDATE":
    # "2024-09-09T02:00:00+02:00" - a date goes out as an ISO time with an offset (there the
    # server's midnight, UTC, in the user's +02:00; here server and portal share +03:00)
    rows = await _call(
        portal,
        "crm.deal.list",
        {"select": ["ID", "BEGINDATE", "CLOSEDATE", "UF_CRM_CONTRACT_DATE"]},
    )
    for row in rows:
        assert _MIDNIGHT.match(row["BEGINDATE"]) and _MIDNIGHT.match(row["CLOSEDATE"])
        assert row["UF_CRM_CONTRACT_DATE"] is None or _MIDNIGHT.match(row["UF_CRM_CONTRACT_DATE"])
    assert any(row["UF_CRM_CONTRACT_DATE"] for row in rows)
    for written in ("2024-03-01", "2024-03-01T00:00:00+03:00", "01.03.2024"):
        new_id = await _call(portal, "crm.deal.add", {"fields": {"BEGINDATE": written}})
        got = await _call(portal, "crm.deal.get", {"id": new_id})
        assert got["BEGINDATE"] == "2024-03-01T00:00:00+03:00", written
    found = await _call(portal, "crm.deal.list", {
        "filter": {"BEGINDATE": "2024-03-01T00:00:00+03:00"}, "select": ["ID"]})  # fmt: skip
    assert len(found) == 3
    item = (await _call(portal, "crm.item.get", {"entityTypeId": 2, "id": new_id}))["item"]
    assert item["begindate"] == "2024-03-01T00:00:00+03:00"


def test_cloud_plans_cap_a_request_at_sixty_seconds():
    # limits.md: "In the Bitrix24 cloud version, one REST request must finish within 60
    # seconds. If processing takes longer, the request is interrupted by timeout."
    assert PLANS["standard"].request_timeout_s == PLANS["enterprise"].request_timeout_s == 60.0
    assert PLANS["unlimited"].request_timeout_s is None


async def test_a_request_past_sixty_seconds_is_an_internal_server_error():
    # deals/user-defined-fields/index.md: "The standard time is 60 seconds. If the request
    # takes longer, it is interrupted with an error INTERNAL_SERVER_ERROR"; the error's text:
    # _includes/system-errors.md, `500` | `INTERNAL_SERVER_ERROR` | Internal server error
    cost = CostModel(base_s=2.0, per_row_s=0.0, count_s=0.0)
    async with EmulatedPortal(deals=20, plan="enterprise", time_scale=0.002, cost=cost) as p:
        fits = {f"c{i}": "crm.deal.get?id=1" for i in range(29)}  # 58 s
        status, body = await _post(p, "batch", {"cmd": fits})
        assert status == 200 and len(body["result"]["result"]) == 29
        assert body["time"]["processing"] == pytest.approx(58 * 0.002)
        began = time.monotonic()
        status, body = await _post(
            p, "batch", {"cmd": {**fits, "c29": "crm.deal.get?id=1", "c30": "crm.deal.get?id=1"}}
        )  # 62 s
        assert (status, body) == (
            500,
            {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"},
        )
        assert time.monotonic() - began >= 60 * 0.002 * 0.95  # cut at 60 s, not later
        assert (await _post(p, "crm.deal.get", {"id": 1}))[0] == 200
    slow = CostModel(base_s=61.0, per_row_s=0.0, count_s=0.0)
    async with EmulatedPortal(deals=20, plan="standard", time_scale=0.002, cost=slow) as p:
        assert (await _post(p, "crm.deal.get", {"id": 1}))[0] == 500


async def test_crm_item_errors_have_the_documented_texts(portal):
    # crm-item-list.md, "Error Handling": {"error": "INVALID_ARG_VALUE", "error_description":
    # "Invalid filter: field 'FIELD' is not allowed in filter"}; "Invalid order: field
    # '`field`' is not allowed in order"; `400` `NOT_FOUND` "SPA not found" (bad entityTypeId)
    status, body = await _post(
        portal, "crm.item.list", {"entityTypeId": 128, "filter": {"FIELD": 1}}
    )
    assert (status, body) == (400, {"error": "INVALID_ARG_VALUE", "error_description":
                                    "Invalid filter: field 'FIELD' is not allowed in filter"})  # fmt: skip
    status, body = await _post(
        portal, "crm.item.list", {"entityTypeId": 128, "order": {"nope": "ASC"}}
    )
    assert body["error_description"] == "Invalid order: field 'nope' is not allowed in order"
    status, body = await _post(portal, "crm.item.get", {"entityTypeId": 999, "id": 1})
    assert (status, body) == (400, {"error": "NOT_FOUND", "error_description": "SPA not found"})
