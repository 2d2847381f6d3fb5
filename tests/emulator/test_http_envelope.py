"""Raw-HTTP conformance: routing, auth, the envelope's shape and PHP JSON quirks."""

import json

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal
from bitrix_core.emulator.envelope import php_json


@pytest.fixture
async def portal():
    async with EmulatedPortal(seed=3, deals=120, plan="standard", time_scale=0.01) as portal:
        yield portal


async def _get(url: str, **kwargs) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status, await response.text()


async def test_success_envelope_keys_in_order_with_next_and_total(portal):
    status, text = await _get(portal.webhook_url + "crm.deal.list.json?start=0")
    body = json.loads(text)
    assert status == 200
    assert list(body) == ["result", "next", "total", "time"]
    assert body["next"] == 50 and body["total"] == 120
    assert isinstance(body["next"], int) and isinstance(body["total"], int)
    assert len(body["result"]) == 50
    assert list(body["time"]) == [
        "start", "finish", "duration", "processing",
        "date_start", "date_finish", "operating_reset_at", "operating",
    ]
    assert body["time"]["date_start"].endswith("+03:00")
    assert body["time"]["finish"] >= body["time"]["start"]


async def test_last_page_has_no_next_and_start_minus_one_no_total(portal):
    _, text = await _get(portal.webhook_url + "crm.deal.list?start=100")
    assert list(json.loads(text)) == ["result", "total", "time"]
    _, text = await _get(portal.webhook_url + "crm.deal.list?start=-1")
    body = json.loads(text)
    assert "next" not in body and body.get("total", 0) == 0


@pytest.mark.parametrize("suffix", ["crm.deal.list", "crm.deal.list.json", "crm.deal.list/",
                                    "CRM.Deal.List", "crm.deal.list.json/"])
async def test_webhook_url_forms_and_case_insensitive_method(portal, suffix):
    status, text = await _get(portal.webhook_url + suffix)
    assert status == 200, text
    assert "result" in json.loads(text)


async def test_wrong_webhook_code_is_401_no_auth_found(portal):
    status, text = await _get(f"{portal.base_url}/rest/1/wrongcode123/crm.deal.list")
    assert status == 401
    assert json.loads(text) == {"error": "NO_AUTH_FOUND",
                                "error_description": "Wrong authorization data"}


@pytest.mark.parametrize("path", ["/rest/1/code", "/rest/1/", "/rest/x/code/crm.deal.list",
                                  "/rest/1/a/b/crm.deal.list"])
async def test_malformed_webhook_url_is_404_method_not_found(portal, path):
    status, text = await _get(portal.base_url + path)
    assert status == 404
    assert json.loads(text)["error"] == "ERROR_METHOD_NOT_FOUND"


async def test_unknown_method_is_404_method_not_found(portal):
    status, text = await _get(portal.webhook_url + "crm.nothing.here")
    assert status == 404
    assert text == '{"error":"ERROR_METHOD_NOT_FOUND","error_description":"Method not found!"}'


async def test_error_bodies_carry_no_time_block(portal):
    status, text = await _get(portal.webhook_url + "crm.deal.get?id=999999")
    body = json.loads(text)
    assert status == 400 and set(body) == {"error", "error_description"}


async def test_slash_is_escaped_on_the_wire(portal):
    code = portal.issue_auth_code()
    client = portal.oauth_client()
    status, text = await _get(client.token_url, params={
        "grant_type": "authorization_code", "client_id": client.client_id,
        "client_secret": client.client_secret, "code": code})
    assert status == 200
    assert '"client_endpoint":"http:\\/\\/127.0.0.1:' in text
    assert "://" not in text


def test_php_json_quirks():
    assert php_json({"a": {}, "b": {0: "x", 1: "y"}, "c": {"1": "x"}, "d": "a/b"}) == (
        '{"a":[],"b":["x","y"],"c":{"1":"x"},"d":"a\\/b"}'
    )
    assert php_json({"0": 1, "2": 3}) == '{"0":1,"2":3}'
    assert php_json("Сделка") == '"\\u0421\\u0434\\u0435\\u043b\\u043a\\u0430"'


async def test_empty_sections_are_empty_lists_in_batch(portal):
    status, text = await _get(portal.webhook_url + "batch", params={"cmd[a]": "crm.deal.list?start=-1"})
    assert status == 200
    assert '"result_error":[]' in text and '"result_next":[]' in text
