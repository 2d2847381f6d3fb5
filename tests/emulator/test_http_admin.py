"""Raw-HTTP conformance of the admin API and the counters it exposes."""

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal
from bitrix_core.emulator.app import ADMIN_HEADER


@pytest.fixture
async def portal():
    async with EmulatedPortal(deals=80, plan="standard", time_scale=0.01) as portal:
        yield portal


async def _admin(portal, verb: str, path: str, body=None, token=None) -> tuple[int, object]:
    headers = {ADMIN_HEADER: portal.admin_token if token is None else token}
    async with aiohttp.ClientSession() as s, s.request(
        verb, f"{portal.base_url}/_emulator/{path}", json=body, headers=headers
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_admin_calls_need_the_admin_token_not_the_webhook_code(portal):
    code = portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    for token in ("", code, "wrong"):
        status, body = await _admin(portal, "GET", "counters", token=token)
        assert status == 401 and body["error"] == "ACCESS_DENIED"
    assert (await _admin(portal, "POST", "reset", token=code))[0] == 401


async def test_counters_over_http_and_from_python(portal):
    async with aiohttp.ClientSession() as s:
        async with s.post(portal.webhook_url + "crm.deal.list", json={"start": 0}) as r:
            assert r.status == 200
        async with s.post(portal.webhook_url + "batch", json={"cmd": {
            "a": "crm.deal.list?start=50", "b": "crm.deal.get?id=1"}}) as r:
            assert r.status == 200
    status, body = await _admin(portal, "GET", "counters")
    assert status == 200
    deal_list = body["methods"]["crm.deal.list"]
    assert deal_list == {"requests": 1, "batches": 1, "subcommands": 1, "rows": 80,
                         "status_503": 0, "status_429": 0, "status_500": 0,
                         "operating_s": pytest.approx(deal_list["operating_s"])}
    assert deal_list["operating_s"] > 0
    assert body["methods"]["batch"]["requests"] == 1
    assert body["total"]["rows"] == 81
    assert portal.counters["crm.deal.list"].rows == 80


async def test_faults_over_http(portal):
    status, fault = await _admin(portal, "POST", "faults",
                                 {"kind": "internal_error", "method": "crm.deal.get", "times": 1})
    assert status == 200 and fault["kind"] == "internal_error"
    assert len((await _admin(portal, "GET", "faults"))[1]) == 1
    async with aiohttp.ClientSession() as s, s.post(
        portal.webhook_url + "crm.deal.get", json={"id": 1}
    ) as r:
        assert r.status == 500
    status, body = await _admin(portal, "POST", "faults", {"kind": "meteor"})
    assert status == 400 and body["error"] == "INVALID_REQUEST"
    await _admin(portal, "POST", "faults", {"kind": "reset"})
    assert (await _admin(portal, "DELETE", "faults"))[0] == 200
    assert (await _admin(portal, "GET", "faults"))[1] == []


async def test_mutate_changes_what_the_portal_serves(portal):
    async def total() -> int:
        async with aiohttp.ClientSession() as s, s.post(
            portal.webhook_url + "crm.deal.list", json={"start": 0}
        ) as r:
            return (await r.json())["total"]

    before = await total()
    status, changes = await _admin(portal, "POST", "mutate",
                                   {"seed": 7, "adds": 5, "deletes": 2, "entities": ["crm.deal"]})
    assert status == 200
    assert len(changes["crm.deal"]["added"]) == 5 and len(changes["crm.deal"]["deleted"]) == 2
    assert await total() == before + 3


async def test_reset_clears_counters_bucket_and_faults(portal):
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.post(portal.webhook_url + "crm.deal.get", json={"id": 1}):
                pass
    portal.faults.add("overload")
    status, _ = await _admin(portal, "POST", "reset")
    assert status == 200
    assert portal.counters.methods() == [] and portal.faults.active() == []
    status, _ = await _admin(portal, "POST", "reset", {"data": True})
    assert status == 200 and portal.store.count("crm.deal") == 80


async def test_auth_code_and_token_expiry_over_admin(portal):
    status, body = await _admin(portal, "POST", "oauth/code")
    assert status == 200 and len(body["code"]) == 32
    assert (await _admin(portal, "POST", "oauth/expire"))[0] == 200


async def test_a_planted_raw_value_is_sent_as_is_in_lists_gets_and_batches_until_cleared(portal):
    """The test facility behind the hostile-value sync tests (see emulator/planted.py)."""
    before = portal.store.raw_rows("crm.deal", [3])[0]["DATE_MODIFY"]
    body = {"entity": "crm.deal", "id": 3, "key": "BEGINDATE", "value": "0000-00-00"}
    assert await _admin(portal, "POST", "plant", body) == (200, {"planted": True})
    assert portal.store.raw_rows("crm.deal", [3])[0]["DATE_MODIFY"] >= before  # an edit
    async with aiohttp.ClientSession() as s:
        async with s.post(portal.webhook_url + "crm.deal.list", json={"start": 0}) as r:
            rows = {row["ID"]: row for row in (await r.json())["result"]}
        async with s.post(portal.webhook_url + "batch", json={"cmd": {"a": "crm.deal.get?id=3"}}) as r:
            got = (await r.json())["result"]["result"]["a"]
    assert rows["3"]["BEGINDATE"] == "0000-00-00" and rows["4"]["BEGINDATE"] != "0000-00-00"
    assert got["BEGINDATE"] == "0000-00-00"
    assert (await _admin(portal, "POST", "plant", {"entity": "crm.deal", "id": 3, "clear": True}))[0] == 200
    async with aiohttp.ClientSession() as s, s.post(
        portal.webhook_url + "crm.deal.get", json={"id": 3}
    ) as r:
        assert (await r.json())["result"]["BEGINDATE"] != "0000-00-00"
    status, answer = await _admin(portal, "POST", "plant", {"entity": "crm.deal", "id": 999, "key": "X"})
    assert status == 400 and answer["error"] == "INVALID_REQUEST"
