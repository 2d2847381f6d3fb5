"""The synchronous facade: fast_bitrix24 names and shapes, also inside a running loop."""

import asyncio

import pytest

from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import BitrixBadRequestError, BitrixError, BitrixParameterError
from bitrix_core.facade import Bitrix


@pytest.fixture(scope="module")
def portal():
    portal = EmulatedPortal(seed=5, deals=130, plan="unlimited").start()
    yield portal
    portal.stop()


@pytest.fixture
def bitrix(portal):
    with Bitrix(portal.webhook_url, verbose=False) as bitrix:
        yield bitrix


def test_get_all_returns_every_row_in_id_order(portal, bitrix):
    rows = bitrix.get_all("crm.deal.list", {"select": ["ID", "TITLE"]})
    assert [int(row["ID"]) for row in rows] == portal.store.ids("crm.deal")
    fields = bitrix.get_all("crm.deal.fields")
    assert fields["ID"]["type"] == "integer"


def test_get_by_id_maps_each_id_to_its_result(portal, bitrix):
    ids = portal.store.ids("crm.deal")[:3]
    answer = bitrix.get_by_ID("crm.deal.get", ids)
    assert list(answer) == ids
    assert all(int(answer[i]["ID"]) == i for i in ids)
    with pytest.raises(BitrixParameterError):
        bitrix.get_by_ID("crm.deal.get", [])


def test_call_with_one_dict_or_a_list(portal, bitrix):
    first, second = portal.store.ids("crm.deal")[:2]
    assert int(bitrix.call("crm.deal.get", {"id": first})["ID"]) == first
    both = bitrix.call("crm.deal.get", [{"id": second}, {"id": first}])
    assert isinstance(both, tuple) and [int(r["ID"]) for r in both] == [second, first]
    new_id = bitrix.call("crm.deal.add", {"fields": {"TITLE": "from the facade"}})
    assert int(new_id) in portal.store.ids("crm.deal")
    with pytest.raises(BitrixError):
        bitrix.call("crm.deal.get", [{"id": 10**9}])


def test_call_batch_returns_results_by_command(portal, bitrix):
    first = portal.store.ids("crm.deal")[0]
    answer = bitrix.call_batch(
        {"halt": 0, "cmd": {"one": f"crm.deal.get?id={first}", "fields": "crm.deal.fields"}}
    )
    assert int(answer["one"]["ID"]) == first and "TITLE" in answer["fields"]
    with pytest.raises(BitrixBadRequestError):
        bitrix.call_batch({"halt": 0, "cmd": {"bad": "crm.deal.get?id=999999999"}})


async def test_works_inside_a_running_event_loop(portal):
    assert asyncio.get_running_loop().is_running()
    bitrix = Bitrix(portal.webhook_url, verbose=False)
    try:
        rows = bitrix.get_all("crm.deal.list", {"select": ["ID"]})
        assert not isinstance(rows, asyncio.Task | asyncio.Future)
        assert len(rows) == portal.store.count("crm.deal")
    finally:
        bitrix.close()
    with pytest.raises(RuntimeError, match="closed"):
        bitrix.get_all("crm.deal.list")


def test_repr_hides_the_webhook_code(portal):
    code = portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    with Bitrix(portal.webhook_url, verbose=False) as bitrix:
        assert code not in repr(bitrix)
