"""PortalMethods called directly (no HTTP): output shapes, select, filter, order, paging,
writes, user fields and errors, as the real Bitrix24 server answers them."""

import time
from datetime import datetime

import pytest

from bitrix_core.emulator.methods import MethodError, PortalMethods
from bitrix_core.emulator.store import PortalSizes, PortalStore

NOW = 1_780_000_000


@pytest.fixture(scope="module")
def portal() -> PortalMethods:
    return PortalMethods(PortalStore(seed=5, sizes=PortalSizes(deals=260), now=NOW))


@pytest.fixture
def fresh() -> PortalMethods:
    return PortalMethods(PortalStore(seed=5, sizes=PortalSizes(deals=30)))


def all_rows(portal, method, params):
    rows, start = [], 0
    while start is not None:
        page = portal.call(method, {**params, "start": start})
        rows += page.result
        start = page.next
    return rows


def test_classic_list_shape_strings_and_nulls(portal):
    page = portal.call("crm.deal.list", {})
    assert page.total == 260 and page.next == 50 and page.rows == 50 == len(page.result)
    assert page.counted == 260 and page.offset == 0
    row = page.result[0]
    # fields in crm-deal-fields.md order (CATEGORY_ID before STAGE_ID)
    assert list(row)[:5] == ["ID", "TITLE", "TYPE_ID", "CATEGORY_ID", "STAGE_ID"]
    assert {"UF_CRM_BUDGET", "UF_CRM_DEAL_KIND", "UF_CRM_IS_VIP", "DATE_MODIFY"} <= set(row)
    assert all(v is None or isinstance(v, str) for v in row.values())
    assert row["ID"].isdigit() and row["OPENED"] in ("Y", "N")
    assert row["OPPORTUNITY"].count(".") == 1 and len(row["OPPORTUNITY"].split(".")[1]) == 2
    assert row["DATE_MODIFY"].endswith("+03:00") and "T" in row["DATE_MODIFY"]
    budget = next(r["UF_CRM_BUDGET"] for r in page.result if r["UF_CRM_BUDGET"])
    amount, currency = budget.split("|")
    assert float(amount) >= 0 and currency in ("RUB", "USD", "EUR")


def test_select_star_uf_explicit_and_php_index_form(portal):
    star = portal.call("crm.contact.list", {"select": ["*"]}).result[0]
    assert "NAME" in star and "PHONE" not in star and not any(k.startswith("UF_") for k in star)
    uf = portal.call("crm.contact.list", {"select": ["UF_*"]}).result[0]
    assert list(uf) == ["UF_CRM_LOYALTY"]
    named = portal.call("crm.contact.list", {"SELECT": {"0": "ID", "1": "PHONE", "2": "EMAIL",
                                                        "3": "NOPE"}}).result
    assert set(named[0]) <= {"ID", "PHONE", "EMAIL"}
    phones = [r["PHONE"] for r in named if "PHONE" in r]
    assert phones and set(phones[0][0]) == {"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"}
    assert phones[0][0]["TYPE_ID"] == "PHONE"


def test_paging_next_total_and_start_minus_one(portal):
    rows = all_rows(portal, "crm.deal.list", {"select": ["ID"], "order": {"ID": "ASC"}})
    ids = [int(r["ID"]) for r in rows]
    assert ids == sorted(ids) and len(ids) == 260 == len(set(ids))
    last = portal.call("crm.deal.list", {"select": ["ID"], "start": 250})
    assert last.next is None and last.total == 260 and len(last.result) == 10
    rounded = portal.call("crm.deal.list", {"select": ["ID"], "start": 75})
    assert rounded.offset == 50 and rounded.result[0]["ID"] == rows[50]["ID"]
    fast = portal.call("crm.deal.list", {"select": ["ID"], "start": "-1",
                                         "filter": {">ID": ids[99]}, "order": {"ID": "ASC"}})
    # b24restdocs settings/performance/huge-data.md: the start=-1 answer has `[total] => 0`
    assert fast.next is None and fast.total == 0 and fast.counted == 0
    assert [r["ID"] for r in fast.result] == [r["ID"] for r in rows[100:150]]


def test_filter_operators(portal):
    def ids(filter_):
        return {r["ID"] for r in all_rows(portal, "crm.deal.list",
                                          {"select": ["*"], "filter": filter_})}

    everything = all_rows(portal, "crm.deal.list", {"select": ["*"]})
    by_id = {r["ID"]: r for r in everything}
    assert ids({"STAGE_ID": "WON"}) == {i for i, r in by_id.items() if r["STAGE_ID"] == "WON"}
    assert ids({"!STAGE_ID": "WON"}) == {i for i, r in by_id.items() if r["STAGE_ID"] != "WON"}
    assert ids({"@CATEGORY_ID": ["1", "2"]}) == {i for i, r in by_id.items()
                                                 if r["CATEGORY_ID"] in ("1", "2")}
    assert ids({"!@CATEGORY_ID": {"0": "1"}}) == {i for i, r in by_id.items()
                                                  if r["CATEGORY_ID"] != "1"}
    assert ids({">OPPORTUNITY": "20000", "<=OPPORTUNITY": 30000}) == {
        i for i, r in by_id.items() if 20000 < float(r["OPPORTUNITY"]) <= 30000}
    assert ids({">=ID": "100", "<ID": 120}) == {i for i in by_id if 100 <= int(i) < 120}
    assert ids({"%TITLE": "laptop"}) == {i for i, r in by_id.items() if "laptop" in r["TITLE"]}
    assert ids({"=%TITLE": "Audit%"}) == {i for i, r in by_id.items()
                                          if r["TITLE"].startswith("Audit")}
    assert ids({"!%TITLE": "laptop"}) == {i for i, r in by_id.items()
                                          if "laptop" not in r["TITLE"]}
    assert ids({"COMPANY_ID": ""}) == {i for i, r in by_id.items() if r["COMPANY_ID"] is None}
    assert ids({"NO_SUCH_FIELD": "x"}) == set(by_id)  # unknown keys: ignored, like the server


def test_datetime_filters_in_any_offset(portal):
    rows = all_rows(portal, "crm.deal.list", {"select": ["ID", "DATE_MODIFY"]})
    pivot = sorted(r["DATE_MODIFY"] for r in rows)[130]
    instant = datetime.fromisoformat(pivot)
    as_utc = instant.astimezone(datetime.fromisoformat("2020-01-01T00:00:00+00:00").tzinfo)
    expected = {r["ID"] for r in rows if datetime.fromisoformat(r["DATE_MODIFY"]) >= instant}
    for value in (pivot, as_utc.isoformat(), as_utc.strftime("%Y-%m-%dT%H:%M:%SZ")):
        got = all_rows(portal, "crm.deal.list", {"select": ["ID"],
                                                 "filter": {">=DATE_MODIFY": value}})
        assert {r["ID"] for r in got} == expected, value
    day = pivot[:10]
    got = all_rows(portal, "crm.deal.list", {"select": ["ID"], "filter": {"<DATE_MODIFY": day}})
    assert {r["ID"] for r in got} == {r["ID"] for r in rows if r["DATE_MODIFY"][:10] < day}
    junk = portal.call("crm.deal.list", {"filter": {">DATE_MODIFY": "yesterday-ish"}})
    assert junk.result == [] and junk.total == 0


def test_order_by_several_keys(portal):
    rows = all_rows(portal, "crm.deal.list", {"select": ["ID", "CATEGORY_ID", "OPPORTUNITY"],
                                              "order": {"CATEGORY_ID": "DESC",
                                                        "OPPORTUNITY": "asc"}})
    keys = [(-int(r["CATEGORY_ID"]), float(r["OPPORTUNITY"])) for r in rows]
    assert keys == sorted(keys)


def test_fields_metadata_format(portal):
    fields = portal.call("crm.deal.fields", {}).result
    for name in ("ID", "TITLE", "TYPE_ID", "STAGE_ID", "CATEGORY_ID", "PROBABILITY",
                 "CURRENCY_ID", "OPPORTUNITY", "IS_MANUAL_OPPORTUNITY", "TAX_VALUE", "COMPANY_ID",
                 "CONTACT_ID", "BEGINDATE", "CLOSEDATE", "OPENED", "CLOSED", "COMMENTS",
                 "ASSIGNED_BY_ID", "CREATED_BY_ID", "MODIFY_BY_ID", "DATE_CREATE", "DATE_MODIFY",
                 "SOURCE_ID", "LEAD_ID"):
        assert set(fields[name]) >= {"type", "isRequired", "isReadOnly", "isImmutable",
                                     "isMultiple", "isDynamic", "title"}, name
    assert fields["STAGE_ID"]["statusType"] == "DEAL_STAGE"
    assert fields["DATE_MODIFY"]["type"] == "datetime" and fields["OPENED"]["type"] == "char"
    kind = fields["UF_CRM_DEAL_KIND"]
    assert kind["type"] == "enumeration" and kind["isDynamic"] is True
    assert kind["items"][0] == {"ID": "101", "VALUE": "New business"}
    assert {"listLabel", "formLabel", "filterLabel", "settings"} <= set(kind)
    types = {f["type"] for f in fields.values()}
    assert {"string", "enumeration", "boolean", "date", "money", "double"} <= types
    phone = portal.call("crm.lead.fields", {}).result["PHONE"]
    assert phone["type"] == "crm_multifield" and phone["isMultiple"] is True


def test_get_and_not_found(portal):
    deal_id = portal.call("crm.deal.list", {"select": ["ID"]}).result[3]["ID"]
    deal = portal.call("crm.deal.get", {"ID": deal_id}).result
    assert deal["ID"] == deal_id and "UF_CRM_SCORE" in deal
    contact = portal.call("crm.contact.get", {"id": 1}).result
    assert "PHONE" in contact or "EMAIL" in contact
    for params in ({"id": 10_000_000}, {}, {"id": "abc"}):
        with pytest.raises(MethodError) as err:
            portal.call("crm.deal.get", params)
        assert err.value.status == 400 and err.value.code == ""


def test_add_update_delete_follow_the_clock(fresh):
    before = time.time()
    new_id = fresh.call("crm.deal.add", {"fields": {"TITLE": "Big one", "OPPORTUNITY": "1500",
                                                    "UF_CRM_IS_VIP": "Y"}}).result
    assert isinstance(new_id, int)
    deal = fresh.call("crm.deal.get", {"id": new_id}).result
    assert deal["TITLE"] == "Big one" and deal["OPPORTUNITY"] == "1500.00"
    assert deal["STAGE_ID"] == "NEW" and deal["UF_CRM_IS_VIP"] == "1"
    created = datetime.fromisoformat(deal["DATE_CREATE"]).timestamp()
    assert before - 1 <= created <= time.time() + 1 and deal["DATE_MODIFY"] == deal["DATE_CREATE"]
    old = fresh.call("crm.deal.list", {"select": ["ID", "DATE_MODIFY"],
                                       "order": {"ID": "ASC"}}).result[0]
    assert fresh.call("crm.deal.update", {"id": old["ID"], "fields": {"TITLE": "Renamed",
                                                                      "ID": 999}}).result is True
    changed = fresh.call("crm.deal.get", {"id": old["ID"]}).result
    assert changed["TITLE"] == "Renamed" and changed["DATE_MODIFY"] > old["DATE_MODIFY"]
    assert fresh.call("crm.deal.delete", {"id": new_id}).result is True
    assert not fresh.call("crm.deal.list", {"filter": {"ID": new_id}}).result
    for method in ("crm.deal.get", "crm.deal.update", "crm.deal.delete"):
        with pytest.raises(MethodError, match="Not found"):
            fresh.call(method, {"id": new_id, "fields": {"TITLE": "x"}})


def test_contact_add_with_multifields(fresh):
    new_id = fresh.call("crm.contact.add", {"fields": {"NAME": "Ann", "PHONE": [
        {"VALUE": "+1 555 0100", "VALUE_TYPE": "MOBILE"}]}}).result
    got = fresh.call("crm.contact.list", {"filter": {"ID": new_id}, "select": ["ID", "PHONE"]})
    assert got.result == [{"ID": str(new_id), "PHONE": [
        {"ID": got.result[0]["PHONE"][0]["ID"], "VALUE_TYPE": "MOBILE", "VALUE": "+1 555 0100",
         "TYPE_ID": "PHONE"}]}]
    assert fresh.call("crm.contact.list", {"filter": {"PHONE": "+1 555 0100"}}).total == 1


def test_userfield_add_appears_in_fields_and_lists(fresh):
    uf_id = fresh.call("crm.deal.userfield.add", {"fields": {
        "FIELD_NAME": "REGION", "USER_TYPE_ID": "enumeration", "EDIT_FORM_LABEL": "Region",
        "LIST": [{"VALUE": "North"}, {"VALUE": "South"}]}}).result
    assert isinstance(uf_id, int)
    field = fresh.call("crm.deal.fields", {}).result["UF_CRM_REGION"]
    assert field["type"] == "enumeration" and field["listLabel"] == "Region"
    south = field["items"][1]["ID"]
    listed = {u["FIELD_NAME"]: u for u in fresh.call("crm.deal.userfield.list", {}).result}
    assert listed["UF_CRM_REGION"]["ID"] == str(uf_id) and len(listed["UF_CRM_REGION"]["LIST"]) == 2
    row = fresh.call("crm.deal.list", {"select": ["UF_*"]}).result[0]
    assert "UF_CRM_REGION" in row and row["UF_CRM_REGION"] is None
    deal = fresh.call("crm.deal.add", {"fields": {"UF_CRM_REGION": south}}).result
    assert fresh.call("crm.deal.get", {"id": deal}).result["UF_CRM_REGION"] == south
    with pytest.raises(MethodError):
        fresh.call("crm.deal.userfield.add", {"fields": {"FIELD_NAME": "UF_CRM_REGION",
                                                         "USER_TYPE_ID": "string"}})
    with pytest.raises(MethodError):
        fresh.call("crm.deal.userfield.add", {"fields": {"FIELD_NAME": "X",
                                                         "USER_TYPE_ID": "nonsense"}})


def test_deal_contact_items(portal):
    deal = portal.call("crm.deal.list", {"filter": {"!CONTACT_ID": ""}, "select": ["ID",
                                                                                  "CONTACT_ID"]})
    first = deal.result[0]
    items = portal.call("crm.deal.contact.items.get", {"id": first["ID"]}).result
    assert items[0] == {"CONTACT_ID": int(first["CONTACT_ID"]), "SORT": 10, "ROLE_ID": 0,
                        "IS_PRIMARY": "Y"}


def test_crm_item_list_camel_numbers(portal):
    page = portal.call("crm.item.list", {"entityTypeId": "2", "select": ["id", "title",
                                                                         "opportunity",
                                                                         "updatedTime",
                                                                         "ufCrmDealKind"],
                                         "filter": {">opportunity": 1000},
                                         "order": {"id": "desc"}})
    items = page.result["items"]
    assert set(page.result) == {"items"} and page.total and len(items) == 50
    first = items[0]
    assert set(first) == {"id", "title", "opportunity", "updatedTime", "ufCrmDealKind"}
    assert isinstance(first["id"], int) and isinstance(first["opportunity"], float)
    assert first["opportunity"] > 1000 and items[1]["id"] < first["id"]
    smart = portal.call("crm.item.list", {"entityTypeId": 128, "start": -1}).result["items"][0]
    assert smart["stageId"].startswith("DT128_") and "ufCrm128_ProjectCode" in smart
    assert isinstance(smart["categoryId"], int) and isinstance(smart["assignedById"], int)
    fields = portal.call("crm.item.fields", {"entityTypeId": 31}).result["fields"]
    assert fields["updatedTime"]["type"] == "datetime" and fields["id"]["upperName"] == "ID"


def test_crm_item_writes_and_errors(fresh):
    item = fresh.call("crm.item.add", {"entityTypeId": 130, "fields": {"title": "Pilot",
                                                                        "opportunity": 5}}).result
    new = item["item"]
    assert new["title"] == "Pilot" and new["opportunity"] == 5.0
    updated = fresh.call("crm.item.update", {"entityTypeId": 130, "id": new["id"],
                                             "fields": {"title": "Pilot 2"}}).result["item"]
    assert updated["title"] == "Pilot 2" and updated["updatedTime"] >= new["updatedTime"]
    assert fresh.call("crm.item.get", {"entityTypeId": 130, "id": new["id"]}).result["item"][
        "title"] == "Pilot 2"
    fresh.call("crm.item.delete", {"entityTypeId": 130, "id": new["id"]})
    with pytest.raises(MethodError) as err:
        fresh.call("crm.item.get", {"entityTypeId": 130, "id": new["id"]})
    assert err.value.code == "NOT_FOUND" and err.value.status == 400
    with pytest.raises(MethodError) as err:
        fresh.call("crm.item.list", {"entityTypeId": 999})
    assert err.value.code == "NOT_FOUND"
    with pytest.raises(MethodError) as err:
        fresh.call("crm.item.list", {"entityTypeId": 2, "order": {"noSuchField": "ASC"}})
    assert err.value.code == "INVALID_ARG_VALUE"


def test_types_categories_statuses(portal):
    types = portal.call("crm.type.list", {}).result["types"]
    assert {t["entityTypeId"] for t in types} == {128, 130}
    categories = portal.call("crm.category.list", {"entityTypeId": 2}).result["categories"]
    assert categories[0] == {"id": 0, "name": "General", "sort": 100, "entityTypeId": 2,
                             "isDefault": "Y"}
    stages = portal.call("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_1"}}).result
    assert [s["STATUS_ID"] for s in stages][:2] == ["C1:NEW", "C1:PREPARATION"]
    assert all(isinstance(s["ID"], str) for s in stages)
    sources = portal.call("crm.status.list", {"filter": {"ENTITY_ID": "SOURCE"}}).result
    assert "CALL" in {s["STATUS_ID"] for s in sources}
    assert "statusType" not in portal.call("crm.status.fields", {}).result["ENTITY_ID"]


def test_tasks_users_departments(portal):
    tasks = portal.call("tasks.task.list", {"filter": {">ID": 5, "STATUS": 5},
                                            "select": ["ID", "TITLE", "CHANGED_DATE"],
                                            "order": {"ID": "DESC"}})
    rows = tasks.result["tasks"]
    # group and subStatus come whatever the select (tasks-task-list.md example)
    assert rows and set(rows[0]) == {"id", "title", "changedDate", "group", "subStatus"}
    assert isinstance(rows[0]["id"], str) and int(rows[0]["id"]) > int(rows[-1]["id"])
    assert "STATUS" in portal.call("tasks.task.getFields", {}).result["fields"]
    users = portal.call("user.get", {"sort": "ID", "order": "DESC", "FILTER": {"ACTIVE": True}})
    assert users.total and users.result[0]["ID"] == max(
        (u["ID"] for u in users.result), key=int)
    assert users.result[0]["ACTIVE"] is True and isinstance(users.result[0]["UF_DEPARTMENT"], list)
    assert portal.call("user.get", {"ID": "3"}).result[0]["ID"] == "3"
    departments = portal.call("department.get", {}).result
    assert departments[0]["NAME"] == "Company" and departments[0]["PARENT"] is None
    assert "NAME" in portal.call("department.fields", {}).result


def test_method_names_case_insensitive_and_unknown_is_404(portal):
    assert portal.has("CRM.Deal.List") and not portal.has("crm.deal.nope")
    assert portal.call("CRM.DEAL.LIST", {"Start": -1}).total == 0  # start=-1: no COUNT
    with pytest.raises(MethodError) as err:
        portal.call("crm.deal.nope", {})
    assert err.value.code == "ERROR_METHOD_NOT_FOUND" and err.value.status == 404


def test_broken_batch_reference_reads_as_zero_like_php(portal):
    literal = portal.call("crm.deal.list", {"filter": {">ID": "$result[c0][49][ID]"},
                                            "select": ["ID"], "start": -1})
    first = portal.call("crm.deal.list", {"select": ["ID"], "start": -1})
    assert literal.result == first.result  # the silent corruption a client must avoid
