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
