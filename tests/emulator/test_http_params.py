"""Raw-HTTP conformance of parameter decoding: GET, form, multipart, JSON, PHP nesting."""

import json

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal, decode_query


@pytest.fixture
async def portal():
    async with EmulatedPortal(seed=2, deals=120, plan="unlimited") as portal:
        yield portal


async def _rows(portal, *, method="POST", query: str = "", **kwargs) -> list[dict]:
    url = portal.webhook_url + "crm.deal.list" + (f"?{query}" if query else "")
    async with aiohttp.ClientSession() as s, s.request(method, url, **kwargs) as response:
        assert response.status == 200, await response.text()
        return json.loads(await response.text())["result"]


SELECTED = "select%5B%5D=ID&select%5B%5D=TITLE&filter%5B%3EID%5D=100&order%5BID%5D=ASC"


async def test_get_query_with_encoded_brackets_and_operators(portal):
    rows = await _rows(portal, method="GET", query=SELECTED)
    assert rows and all(set(row) == {"ID", "TITLE"} and int(row["ID"]) > 100 for row in rows)


async def test_form_urlencoded_body(portal):
    rows = await _rows(portal, data=SELECTED,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert rows and all(set(row) == {"ID", "TITLE"} and int(row["ID"]) > 100 for row in rows)


async def test_multipart_body(portal):
    form = aiohttp.FormData()
    for name, value in (("select[]", "ID"), ("filter[>ID]", "100"), ("order[ID]", "ASC")):
        form.add_field(name, value)
    rows = await _rows(portal, data=form)
    assert rows and all(set(row) == {"ID"} and int(row["ID"]) > 100 for row in rows)


async def test_json_body(portal):
    rows = await _rows(portal, json={"select": ["ID"], "filter": {">ID": 100}, "order": {"ID": "ASC"}})
    assert rows and all(set(row) == {"ID"} and int(row["ID"]) > 100 for row in rows)


async def test_body_wins_over_query(portal):
    rows = await _rows(portal, query="filter%5B%3EID%5D=5&select%5B%5D=ID",
                       json={"filter": {">ID": 110}, "select": ["ID"]})
    assert rows and all(int(row["ID"]) > 110 for row in rows)


@pytest.mark.parametrize("body,content_type", [
    ('{"select": ["ID"], "filter": {">ID": 100}}', "text/plain"),
    ('{"select": ["ID"], "filter": {">ID": 100}', "application/json"),
], ids=["json-without-content-type", "invalid-json"])
async def test_unreadable_json_becomes_an_empty_parameter_set(portal, body, content_type):
    rows = await _rows(portal, data=body, headers={"Content-Type": content_type})
    assert len(rows) == 50 and rows[0]["ID"] == "1" and len(rows[0]) > 2  # no filter, no select


def test_decode_query_php_semantics():
    assert decode_query("filter%5B%3EID%5D=5&select[]=ID&select[]=TITLE") == {
        "filter": {">ID": "5"}, "select": ["ID", "TITLE"]}
    assert decode_query("fields[PHONE][0][VALUE]=1&fields[PHONE][0][VALUE_TYPE]=WORK") == {
        "fields": {"PHONE": [{"VALUE": "1", "VALUE_TYPE": "WORK"}]}}
    assert decode_query("a[2]=x&a[]=y") == {"a": {"2": "x", "3": "y"}}
    assert decode_query("a=1&a=2&b=&c[x]=1&c=2") == {"a": "2", "b": "", "c": "2"}
    assert decode_query("?start=-1") == {"start": "-1"}
    assert decode_query("") == {}
