"""Raw-HTTP conformance of `batch`: cmd forms, halt, limits, references, five sections."""

import json

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal


@pytest.fixture
async def portal():
    async with EmulatedPortal(seed=5, deals=120, plan="standard", time_scale=0.01) as portal:
        yield portal


async def _batch(portal, body) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as session, session.post(
        portal.webhook_url + "batch.json", json=body
    ) as response:
        text = await response.text()
        return response.status, json.loads(text), text


async def test_map_cmd_five_sections_and_time(portal):
    status, body, _ = await _batch(portal, {"halt": 0, "cmd": {
        "page": "crm.deal.list?order%5BID%5D=ASC&start=0",
        "last": "crm.deal.list?order[ID]=ASC&start=100",
    }})
    assert status == 200
    assert list(body) == ["result", "time"]
    sections = body["result"]
    assert list(sections) == ["result", "result_error", "result_total", "result_next",
                              "result_time"]
    assert len(sections["result"]["page"]) == 50 and len(sections["result"]["last"]) == 20
    assert sections["result_error"] == []
    assert sections["result_total"] == {"page": 120, "last": 120}
    assert sections["result_next"] == {"page": 50}  # the last page has no next
    assert set(sections["result_time"]) == {"page", "last"}
    processing = sum(t["processing"] for t in sections["result_time"].values())
    assert body["time"]["processing"] == pytest.approx(processing, abs=1e-5)
    assert "next" not in sections["result"]["page"]


async def test_list_cmd_sections_become_lists_and_keys_case_insensitive(portal):
    status, body, text = await _batch(portal, {"HALT": 0, "CMD": [
        "crm.deal.list?start=-1", "crm.deal.get?id=1"]})
    assert status == 200
    assert isinstance(body["result"]["result"], list) and len(body["result"]["result"]) == 2
    assert body["result"]["result"][1]["ID"] == "1"


async def test_form_encoded_batch_and_halt(portal):
    data = {"halt": "1", "cmd[a]": "crm.deal.get?id=1", "cmd[b]": "crm.deal.get?id=99999999",
            "cmd[c]": "crm.deal.get?id=2"}
    async with aiohttp.ClientSession() as session, session.post(
        portal.webhook_url + "batch", data=data
    ) as response:
        body = await response.json()
    sections = body["result"]
    assert set(sections["result"]) == {"a"}
    assert set(sections["result_error"]) == {"b"}  # c never ran
    data["halt"] = "0"
    async with aiohttp.ClientSession() as session, session.post(
        portal.webhook_url + "batch", data=data
    ) as response:
        sections = (await response.json())["result"]
    assert set(sections["result"]) == {"a", "c"} and set(sections["result_error"]) == {"b"}


async def test_commands_past_fifty_are_refused_each(portal):
    cmd = {f"c{i}": f"crm.deal.get?id={i + 1}" for i in range(53)}
    status, body, _ = await _batch(portal, {"cmd": cmd})
    assert status == 200
    sections = body["result"]
    assert len(sections["result"]) == 50
    assert set(sections["result_error"]) == {"c50", "c51", "c52"}
    assert {e["error"] for e in sections["result_error"].values()} == {
        "ERROR_BATCH_LENGTH_EXCEEDED"}


async def test_nested_batch_and_unknown_method_land_in_result_error(portal):
    _, body, _ = await _batch(portal, {"cmd": {
        "nested": "batch?cmd[x]=crm.deal.get%3Fid%3D1", "nope": "crm.nope.list", "ok": "crm.deal.get?id=3"}})
    errors = body["result"]["result_error"]
    assert errors["nested"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert errors["nope"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert body["result"]["result"]["ok"]["ID"] == "3"


async def test_whole_value_reference_is_replaced_by_the_value(portal):
    _, body, _ = await _batch(portal, {"cmd": {
        "c0": "crm.deal.list?order[ID]=ASC&select[]=ID&start=-1",
        "c1": "crm.deal.get?id=$result[c0][49][ID]",
        "c2": "crm.deal.list?order[ID]=ASC&select[]=ID&start=-1&filter[>ID]=$result[c0][49][ID]",
    }})
    result = body["result"]["result"]
    last_id = result["c0"][49]["ID"]
    assert result["c1"]["ID"] == last_id
    assert int(result["c2"][0]["ID"]) > int(last_id)


async def test_embedded_reference_substitutes_scalars_only(portal):
    _, body, _ = await _batch(portal, {"cmd": {
        "c0": "crm.deal.list?order[ID]=ASC&start=0",
        "c1": "crm.deal.list?order[ID]=ASC&start=-1&filter[TITLE]=x$total[c0]y",
        "c2": "crm.deal.list?order[ID]=ASC&start=-1&filter[TITLE]=x$result[c0]y",
        "c3": "crm.deal.list?order[ID]=ASC&start=-1&filter[>ID]=$next[c0]",
    }})
    result = body["result"]["result"]
    assert result["c1"] == [] and result["c2"] == []  # filters on literal texts match nothing
    assert int(result["c3"][0]["ID"]) > int(result["c0"][49]["ID"]) - 1


async def test_missing_reference_stays_literal_text(portal):
    _, body, _ = await _batch(portal, {"cmd": {
        "c0": "crm.deal.list?order[ID]=ASC&start=100",
        "c1": "crm.deal.get?id=$result[c0][49][ID]",
    }})
    sections = body["result"]
    assert len(sections["result"]["c0"]) == 20
    assert "c1" in sections["result_error"]  # ran with the literal "$result[c0][49][ID]"
