"""Raw-HTTP conformance with the documented examples of b24restdocs (each test names the
page it follows)."""

import json

import aiohttp
import pytest

from bitrix_core import BitrixClient, BitrixParameterError, Limits
from bitrix_core.emulator import EmulatedPortal


async def _post(session, url, body) -> tuple[int, dict]:
    async with session.post(url, json=body) as response:
        return response.status, json.loads(await response.text())


@pytest.fixture
async def portal():
    async with EmulatedPortal(deals=60, plan="unlimited", time_scale=0.01) as portal:
        yield portal


@pytest.mark.parametrize("name", ["filter", "order"])
@pytest.mark.parametrize("value", ["ID", ["ID"], 5])
async def test_a_filter_or_order_that_is_not_a_map_is_refused(portal, name, value):
    # api-reference/crm/deals/crm-deal-list.md, "Error Handling": HTTP 400,
    # {"error": "", "error_description": "Parameter 'filter' must be array."}
    async with aiohttp.ClientSession() as s:
        for method in ("crm.deal.list", "crm.lead.list", "crm.activity.list"):
            status, body = await _post(s, portal.webhook_url + method, {name: value})
            assert status == 400
            assert body == {"error": "", "error_description": f"Parameter '{name}' must be array."}


async def test_an_empty_or_mapped_filter_still_lists(portal):
    async with aiohttp.ClientSession() as s:
        for value in ([], {}, {">ID": 0}):
            status, body = await _post(s, portal.webhook_url + "crm.deal.list",
                                       {"filter": value, "order": {"ID": "ASC"}})
            assert status == 200 and len(body["result"]) == 50


@pytest.mark.parametrize("params", [{"filter": "ID"}, {"filter": ["ID"]}, {"order": "ID"}])
async def test_our_engine_never_sends_a_malformed_filter_or_order(portal, params):
    async with BitrixClient(portal.webhook_url, limits=Limits.for_plan("unlimited"),
                            verbose=False) as client:
        with pytest.raises(BitrixParameterError):
            await client.call("crm.deal.list", params)
        with pytest.raises(BitrixParameterError):
            client.list("crm.deal.list", params)
    assert portal.counters["crm.deal.list"].requests == 0


async def test_status_list_rows_have_the_documented_shape(portal):
    # api-reference/crm/status/crm-status-list.md, "Response Handling": {"ID": "103",
    # "ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "PREPARATION", ..., "NAME_INIT": "", "SORT": "20",
    # "SYSTEM": "N", "CATEGORY_ID": null, "COLOR": "#2FC6F6", "SEMANTICS": null,
    # "EXTRA": {"SEMANTICS": "process", "COLOR": "#2FC6F6"}}; WON: "SEMANTICS": "S",
    # EXTRA "success"; LOSE: "F", "failure".
    async with aiohttp.ClientSession() as s:
        status, body = await _post(s, portal.webhook_url + "crm.status.list",
                                   {"order": {"SORT": "ASC"}, "filter": {"ENTITY_ID": "DEAL_STAGE"}})
        other = await _post(s, portal.webhook_url + "crm.status.list",
                            {"filter": {"ENTITY_ID": "DEAL_STAGE_1"}})
    assert status == 200
    rows = {row["STATUS_ID"]: row for row in body["result"]}
    preparation = rows["PREPARATION"]
    assert list(preparation) == ["ID", "ENTITY_ID", "STATUS_ID", "NAME", "NAME_INIT", "SORT",
                                 "SYSTEM", "CATEGORY_ID", "COLOR", "SEMANTICS", "EXTRA"]
    assert (preparation["NAME_INIT"], preparation["SORT"], preparation["SYSTEM"]) == ("", "20", "N")
    assert preparation["CATEGORY_ID"] is None and preparation["SEMANTICS"] is None
    assert preparation["EXTRA"] == {"SEMANTICS": "process", "COLOR": preparation["COLOR"]}
    assert (rows["WON"]["SEMANTICS"], rows["WON"]["EXTRA"]["SEMANTICS"]) == ("S", "success")
    assert (rows["LOSE"]["SEMANTICS"], rows["LOSE"]["EXTRA"]["SEMANTICS"]) == ("F", "failure")
    assert rows["NEW"]["NAME_INIT"] == rows["NEW"]["NAME"] and rows["NEW"]["SYSTEM"] == "Y"
    assert {row["CATEGORY_ID"] for row in other[1]["result"]} == {"1"}  # other pipelines: set


async def test_a_start_minus_one_page_carries_total_zero(portal):
    # settings/performance/huge-data.md, the answer without the count: "[total] => 0", no next
    async with aiohttp.ClientSession() as s:
        status, body = await _post(s, portal.webhook_url + "crm.deal.list",
                                   {"order": {"ID": "ASC"}, "filter": {">ID": 0}, "start": -1})
    assert status == 200
    assert list(body) == ["result", "total", "time"] and body["total"] == 0
    assert len(body["result"]) == 50


async def test_batch_processing_is_a_float_when_every_command_failed(portal):
    async with aiohttp.ClientSession() as s:
        status, body = await _post(s, portal.webhook_url + "batch",
                                   {"cmd": {"a": "no.such.method", "b": "batch?cmd=x"}})
    assert status == 200 and set(body["result"]["result_error"]) == {"a", "b"}
    assert type(body["time"]["processing"]) is float


async def test_portal_deleted_is_a_500(portal):
    # _includes/system-errors.md: `500` | `PORTAL_DELETED` | Portal was deleted
    portal.faults.add("portal_deleted", method="crm.deal.get", times=1)
    async with aiohttp.ClientSession() as s:
        status, body = await _post(s, portal.webhook_url + "crm.deal.get", {"id": 1})
    assert (status, body) == (500, {"error": "PORTAL_DELETED",
                                    "error_description": "Portal was deleted"})


async def test_department_sort_is_an_integer(portal):
    # api-reference/departments/department-get.md: {"ID": "15", "NAME": "R&D", "SORT": 500,
    # "PARENT": "1"}
    async with aiohttp.ClientSession() as s:
        status, body = await _post(s, portal.webhook_url + "department.get", {})
    assert status == 200
    rows = body["result"]
    assert all(type(row["SORT"]) is int and type(row["ID"]) is str for row in rows)
    assert all(type(row["PARENT"]) is str for row in rows if row["PARENT"] is not None)
