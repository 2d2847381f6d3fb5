"""Raw-HTTP conformance of the CRM field sets with the documented `crm.*.fields` examples of
b24restdocs: names, flags, and rows whose values have the documented format."""

import json
import re

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal

# api-reference/crm/deals/crm-deal-fields.md, "Response Handling" example (45 fields)
DEAL_FIELDS = [
    "ID",
    "TITLE",
    "TYPE_ID",
    "CATEGORY_ID",
    "STAGE_ID",
    "STAGE_SEMANTIC_ID",
    "IS_NEW",
    "IS_RECURRING",
    "IS_RETURN_CUSTOMER",
    "IS_REPEATED_APPROACH",
    "PROBABILITY",
    "CURRENCY_ID",
    "OPPORTUNITY",
    "IS_MANUAL_OPPORTUNITY",
    "TAX_VALUE",
    "COMPANY_ID",
    "CONTACT_ID",
    "CONTACT_IDS",
    "QUOTE_ID",
    "BEGINDATE",
    "CLOSEDATE",
    "OPENED",
    "CLOSED",
    "COMMENTS",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "MOVED_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "MOVED_TIME",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "LEAD_ID",
    "ADDITIONAL_INFO",
    "LOCATION_ID",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "LAST_ACTIVITY_TIME",
    "LAST_ACTIVITY_BY",
]

# api-reference/crm/leads/crm-lead-fields.md, "Response Handling" example (57 fields)
LEAD_FIELDS = [
    "ID",
    "TITLE",
    "HONORIFIC",
    "NAME",
    "SECOND_NAME",
    "LAST_NAME",
    "BIRTHDATE",
    "COMPANY_TITLE",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "STATUS_ID",
    "STATUS_DESCRIPTION",
    "STATUS_SEMANTIC_ID",
    "POST",
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
    "ADDRESS_LOC_ADDR_ID",
    "CURRENCY_ID",
    "OPPORTUNITY",
    "IS_MANUAL_OPPORTUNITY",
    "OPENED",
    "COMMENTS",
    "HAS_PHONE",
    "HAS_EMAIL",
    "HAS_IMOL",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "MOVED_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "MOVED_TIME",
    "COMPANY_ID",
    "CONTACT_ID",
    "CONTACT_IDS",
    "IS_RETURN_CUSTOMER",
    "DATE_CLOSED",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "LAST_ACTIVITY_TIME",
    "LAST_ACTIVITY_BY",
    "PHONE",
    "EMAIL",
    "WEB",
    "IM",
    "LINK",
]

# api-reference/crm/contacts/crm-contact-fields.md, "Response Handling" example (49 fields)
CONTACT_FIELDS = [
    "ID",
    "HONORIFIC",
    "NAME",
    "SECOND_NAME",
    "LAST_NAME",
    "PHOTO",
    "BIRTHDATE",
    "TYPE_ID",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "POST",
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
    "ADDRESS_LOC_ADDR_ID",
    "COMMENTS",
    "OPENED",
    "EXPORT",
    "HAS_PHONE",
    "HAS_EMAIL",
    "HAS_IMOL",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "COMPANY_ID",
    "COMPANY_IDS",
    "LEAD_ID",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
    "ORIGIN_VERSION",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "LAST_ACTIVITY_TIME",
    "LAST_ACTIVITY_BY",
    "PHONE",
    "EMAIL",
    "WEB",
    "IM",
    "LINK",
]

# api-reference/crm/companies/crm-company-fields.md, "Response Handling" example (57 fields)
COMPANY_FIELDS = [
    "ID",
    "TITLE",
    "COMPANY_TYPE",
    "LOGO",
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
    "ADDRESS_LOC_ADDR_ID",
    "ADDRESS_LEGAL",
    "REG_ADDRESS",
    "REG_ADDRESS_2",
    "REG_ADDRESS_CITY",
    "REG_ADDRESS_POSTAL_CODE",
    "REG_ADDRESS_REGION",
    "REG_ADDRESS_PROVINCE",
    "REG_ADDRESS_COUNTRY",
    "REG_ADDRESS_COUNTRY_CODE",
    "REG_ADDRESS_LOC_ADDR_ID",
    "BANKING_DETAILS",
    "INDUSTRY",
    "EMPLOYEES",
    "CURRENCY_ID",
    "REVENUE",
    "OPENED",
    "COMMENTS",
    "HAS_PHONE",
    "HAS_EMAIL",
    "HAS_IMOL",
    "IS_MY_COMPANY",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "CONTACT_ID",
    "LEAD_ID",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
    "ORIGIN_VERSION",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "LAST_ACTIVITY_TIME",
    "LAST_ACTIVITY_BY",
    "LAST_COMMUNICATION_TIME",
    "PHONE",
    "EMAIL",
    "WEB",
    "IM",
    "LINK",
]

# api-reference/user/user-fields.md, "Response Handling" example (62 fields)
USER_FIELDS = [
    "ID",
    "XML_ID",
    "ACTIVE",
    "NAME",
    "LAST_NAME",
    "SECOND_NAME",
    "TITLE",
    "EMAIL",
    "LAST_LOGIN",
    "DATE_REGISTER",
    "TIME_ZONE",
    "IS_ONLINE",
    "TIMESTAMP_X",
    "LAST_ACTIVITY_DATE",
    "PERSONAL_GENDER",
    "PERSONAL_PROFESSION",
    "PERSONAL_WWW",
    "PERSONAL_BIRTHDAY",
    "PERSONAL_PHOTO",
    "PERSONAL_ICQ",
    "PERSONAL_PHONE",
    "PERSONAL_FAX",
    "PERSONAL_MOBILE",
    "PERSONAL_PAGER",
    "PERSONAL_STREET",
    "PERSONAL_CITY",
    "PERSONAL_STATE",
    "PERSONAL_ZIP",
    "PERSONAL_COUNTRY",
    "PERSONAL_MAILBOX",
    "PERSONAL_NOTES",
    "WORK_PHONE",
    "WORK_COMPANY",
    "WORK_POSITION",
    "WORK_DEPARTMENT",
    "WORK_WWW",
    "WORK_FAX",
    "WORK_PAGER",
    "WORK_STREET",
    "WORK_MAILBOX",
    "WORK_CITY",
    "WORK_STATE",
    "WORK_ZIP",
    "WORK_COUNTRY",
    "WORK_PROFILE",
    "WORK_LOGO",
    "WORK_NOTES",
    "UF_SKYPE_LINK",
    "UF_ZOOM",
    "UF_EMPLOYMENT_DATE",
    "UF_TIMEMAN",
    "UF_DEPARTMENT",
    "UF_INTERESTS",
    "UF_SKILLS",
    "UF_WEB_SITES",
    "UF_XING",
    "UF_LINKEDIN",
    "UF_TWITTER",
    "UF_SKYPE",
    "UF_DISTRICT",
    "UF_PHONE_INNER",
    "USER_TYPE",
]

DOCUMENTED = {
    "crm.deal": DEAL_FIELDS,
    "crm.lead": LEAD_FIELDS,
    "crm.contact": CONTACT_FIELDS,
    "crm.company": COMPANY_FIELDS,
}
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


async def _call(portal, method, body=None) -> dict:
    async with (
        aiohttp.ClientSession() as session,
        session.post(portal.webhook_url + method, json=body or {}) as response,
    ):
        assert response.status == 200
        return json.loads(await response.text())["result"]


@pytest.fixture
async def portal():
    async with EmulatedPortal(deals=300, plan="unlimited", time_scale=0.01) as portal:
        yield portal


@pytest.mark.parametrize("entity", list(DOCUMENTED))
async def test_standard_fields_are_the_documented_set_in_order(portal, entity):
    fields = await _call(portal, f"{entity}.fields")
    standard = [name for name, meta in fields.items() if not meta["isDynamic"]]
    assert standard == DOCUMENTED[entity]


async def test_deal_field_flags_follow_the_documented_example(portal):
    # crm-deal-fields.md: CONTACT_IDS {"type": "crm_contact", "isMultiple": true};
    # CONTACT_ID {"isDeprecated": true}; COMPANY_ID {"settings": {"parentEntityTypeId": 4}};
    # STAGE_SEMANTIC_ID / MOVED_TIME / LAST_ACTIVITY_TIME read-only; CATEGORY_ID immutable
    fields = await _call(portal, "crm.deal.fields")
    assert fields["CONTACT_IDS"]["type"] == "crm_contact" and fields["CONTACT_IDS"]["isMultiple"]
    assert fields["CONTACT_ID"]["isDeprecated"] is True
    assert fields["COMPANY_ID"]["settings"] == {"parentEntityTypeId": 4}
    assert fields["QUOTE_ID"] == {
        "type": "crm_quote",
        "isRequired": False,
        "isReadOnly": True,
        "isImmutable": False,
        "isMultiple": False,
        "isDynamic": False,
        "title": "Estimate",
        "settings": {"parentEntityTypeId": 7},
    }
    for name in ("STAGE_SEMANTIC_ID", "MOVED_TIME", "LAST_ACTIVITY_TIME", "IS_NEW"):
        assert fields[name]["isReadOnly"] is True, name
    assert fields["CATEGORY_ID"]["isImmutable"] is True
    assert fields["UTM_SOURCE"]["type"] == "string" and fields["LOCATION_ID"]["type"] == "location"


async def test_deal_rows_carry_the_new_fields_in_the_documented_format(portal):
    # crm-deal-get.md example: "STAGE_SEMANTIC_ID": "P", "IS_NEW": "N", "MOVED_TIME":
    # "2024-08-30T14:29:00+02:00", "UTM_SOURCE": "google", "LAST_ACTIVITY_BY": "1", and no
    # CONTACT_IDS (crm-deal-list.md: "The method does not support the field `CONTACT_IDS`")
    rows = await _call(portal, "crm.deal.list", {"order": {"ID": "ASC"}})
    assert rows and all("CONTACT_IDS" not in r for r in rows)
    for r in rows:
        won = r["STAGE_ID"].endswith("WON")
        lost = r["STAGE_ID"].endswith("LOSE")
        assert r["STAGE_SEMANTIC_ID"] == ("S" if won else "F" if lost else "P")
        assert r["IS_NEW"] == ("Y" if r["STAGE_ID"].endswith("NEW") else "N")
        assert _ISO.match(r["MOVED_TIME"]) and _ISO.match(r["LAST_ACTIVITY_TIME"])
        assert r["DATE_CREATE"] <= r["MOVED_TIME"] <= r["DATE_MODIFY"]
        assert r["LAST_ACTIVITY_BY"].isdigit() and r["MOVED_BY_ID"].isdigit()
    assert {r["UTM_SOURCE"] for r in rows} >= {"google", None}
    one = await _call(portal, "crm.deal.get", {"id": rows[0]["ID"]})
    assert set(one) == set(rows[0]) and "CONTACT_IDS" not in one


async def test_contact_ids_are_arrays_in_crm_item_rows(portal):
    # crm.item rows carry the multiple field as a JSON array of ids (crm-deal-fields.md:
    # CONTACT_IDS "isMultiple": true): the deal's contact links, primary (CONTACT_ID) first
    items = (await _call(portal, "crm.item.list", {"entityTypeId": 2}))["items"]
    for item in items[:20]:
        links = await _call(portal, "crm.deal.contact.items.get", {"id": item["id"]})
        assert item["contactIds"] == [int(link["CONTACT_ID"]) for link in links]
        assert item["contactIds"][:1] == ([] if item["contactId"] is None else [item["contactId"]])
    assert max(len(item["contactIds"]) for item in items) == 2
    leads = (await _call(portal, "crm.item.list", {"entityTypeId": 1}))["items"]
    for lead in leads:
        assert lead["contactIds"] == ([] if lead["contactId"] is None else [lead["contactId"]])


async def test_has_phone_and_email_follow_the_multifields(portal):
    # crm-lead-fields.md: HAS_PHONE / HAS_EMAIL "char", read-only: whether the lead has one
    seen = set()
    for entity in ("crm.lead", "crm.contact", "crm.company"):
        rows = await _call(
            portal, f"{entity}.list", {"select": ["ID", "HAS_PHONE", "HAS_EMAIL", "PHONE", "EMAIL"]}
        )
        seen |= {(r["HAS_PHONE"], r["HAS_EMAIL"]) for r in rows}
        for r in rows:
            assert (r["HAS_PHONE"] == "Y") == ("PHONE" in r), (entity, r)
            assert (r["HAS_EMAIL"] == "Y") == ("EMAIL" in r), (entity, r)
    assert {p for p, _ in seen} == {"Y", "N"} and {e for _, e in seen} == {"Y", "N"}


async def test_a_deal_written_with_contact_ids_reads_them_back(portal):
    # crm-deal-fields.md: CONTACT_ID is deprecated in favour of CONTACT_IDS; the first of the
    # list is the single contact
    new_id = await _call(
        portal, "crm.deal.add", {"fields": {"TITLE": "x", "CONTACT_IDS": [3, "5"]}}
    )
    got = (await _call(portal, "crm.item.get", {"entityTypeId": 2, "id": new_id}))["item"]
    assert got["contactIds"] == [3, 5] and got["contactId"] == 3
    listed = await _call(portal, "crm.item.list", {"entityTypeId": 2, "filter": {"id": new_id}})
    assert listed["items"][0]["contactIds"] == [3, 5]
    links = await _call(portal, "crm.deal.contact.items.get", {"id": new_id})
    assert [(int(x["CONTACT_ID"]), x["IS_PRIMARY"]) for x in links] == [(3, "Y"), (5, "N")]
    await _call(portal, "crm.deal.update", {"id": new_id, "fields": {"CONTACT_ID": 7}})
    got = (await _call(portal, "crm.item.get", {"entityTypeId": 2, "id": new_id}))["item"]
    assert got["contactIds"] == [7]


async def test_a_custom_field_without_settings_has_the_documented_defaults(portal):
    # api-reference/crm/_include/user-fields-for-examples-cut.md: a string field's settings
    # {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 0, "DEFAULT_VALUE": ""}
    await _call(
        portal,
        "crm.deal.userfield.add",
        {"fields": {"FIELD_NAME": "H8_NOTE", "USER_TYPE_ID": "string"}},
    )
    fields = await _call(portal, "crm.deal.fields")
    assert fields["UF_CRM_H8_NOTE"]["settings"] == {
        "SIZE": 20,
        "ROWS": 1,
        "REGEXP": "",
        "MIN_LENGTH": 0,
        "MAX_LENGTH": 0,
        "DEFAULT_VALUE": "",
    }
    listed = await _call(portal, "crm.deal.userfield.list")
    assert (
        next(f for f in listed if f["FIELD_NAME"] == "UF_CRM_H8_NOTE")["SETTINGS"]
        == fields["UF_CRM_H8_NOTE"]["settings"]
    )


async def test_user_fields_are_the_documented_set_and_rows_have_its_formats(portal):
    fields = await _call(portal, "user.fields")
    assert list(fields) == USER_FIELDS and fields["UF_DEPARTMENT"] == "Units"
    # user-get.md example: "SECOND_NAME": "", "IS_ONLINE": "Y", "PERSONAL_BIRTHDAY":
    # "2018-07-14T00:00:00+00:00" or "", "UF_EMPLOYMENT_DATE": "", "UF_DEPARTMENT": [1]
    users = await _call(portal, "user.get")
    for user in users:
        assert set(user) == set(USER_FIELDS) and user["SECOND_NAME"] == ""
        assert user["IS_ONLINE"] in ("Y", "N") and isinstance(user["ACTIVE"], bool)
        for name in ("PERSONAL_BIRTHDAY", "UF_EMPLOYMENT_DATE"):
            assert user[name] == "" or (_ISO.match(user[name]) and "T00:00:00" in user[name])
        # user-get.md example: "TIMESTAMP_X": {}, "LAST_ACTIVITY_DATE": {} (times the
        # user sync does not read: users have no change field)
        assert user["TIMESTAMP_X"] == {} and user["LAST_ACTIVITY_DATE"] == {}
        assert isinstance(user["UF_DEPARTMENT"], list)
    assert any(u["PERSONAL_BIRTHDAY"] for u in users)


async def test_task_rows_always_carry_group_and_sub_status(portal):
    # tasks-task-list.md example: "group": [] (no workgroup), "subStatus": "2"; with a
    # workgroup, tasks-task-complete.md: "group": {"id": "125", "name": ..., "opened": false, ...}
    tasks = (await _call(portal, "tasks.task.list", {"select": ["ID", "STATUS"]}))["tasks"]
    for task in tasks:
        assert set(task) == {"id", "status", "group", "subStatus"}
        assert task["subStatus"] == task["status"]
        assert task["group"] == [] or set(task["group"]) >= {"id", "name", "opened"}
    assert {bool(t["group"]) for t in tasks} == {True, False}
    one = (await _call(portal, "tasks.task.get", {"taskId": tasks[0]["id"]}))["task"]
    assert one["group"] == tasks[0]["group"] and one["subStatus"] == tasks[0]["status"]
