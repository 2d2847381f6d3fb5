"""Raw-HTTP conformance of programmed faults: every kind, alone and inside a batch."""

import json
import time

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal


@pytest.fixture
async def portal():
    async with EmulatedPortal(deals=60, plan="unlimited", time_scale=0.01) as portal:
        yield portal


def _session() -> aiohttp.ClientSession:
    # a fresh connection per request, so aiohttp never silently retries on a pooled one
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def _post(url: str, body: dict) -> tuple[int, str, str]:
    async with _session() as s, s.post(url, json=body) as response:
        return response.status, response.content_type, await response.text()


@pytest.mark.parametrize(("kind", "status", "code"), [
    ("internal_error", 500, "INTERNAL_SERVER_ERROR"),
    ("expired_token", 401, "expired_token"),
    ("query_limit", 503, "QUERY_LIMIT_EXCEEDED"),
    ("overload", 503, "OVERLOAD_LIMIT"),
])
async def test_error_body_faults_fire_n_times_then_stop(portal, kind, status, code):
    portal.faults.add(kind, method="crm.deal.get", times=2)
    url = portal.webhook_url + "crm.deal.get"
    answers = [await _post(url, {"id": 1}) for _ in range(3)]
    assert [a[0] for a in answers] == [status, status, 200]
    assert json.loads(answers[0][2])["error"] == code
    other = await _post(portal.webhook_url + "crm.deal.list", {"start": -1})
    assert other[0] == 200  # only the targeted method


async def test_a_fault_with_after_lets_that_many_requests_through_first(portal):
    fault = portal.faults.add("internal_error", method="crm.deal.get", times=1, after=2)
    url = portal.webhook_url + "crm.deal.get"
    answers = [await _post(url, {"id": 1}) for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 500, 200]
    assert fault.fired == 1
    with pytest.raises(ValueError, match="after applies"):
        portal.faults.add("drop_row_high", method="crm.deal.list", after=1)


@pytest.mark.parametrize("status", [502, 503])
async def test_html_error_pages(portal, status):
    portal.faults.add(f"html_{status}", times=1)
    got, content_type, text = await _post(portal.webhook_url + "crm.deal.get", {"id": 1})
    assert (got, content_type) == (status, "text/html")
    assert text.startswith("<html>") and str(status) in text
    assert portal.counters["crm.deal.get"].status_503 == (1 if status == 503 else 0)


async def test_connection_reset_without_an_answer(portal):
    portal.faults.add("reset", method="crm.deal.get", times=1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _post(portal.webhook_url + "crm.deal.get", {"id": 1})
    assert (await _post(portal.webhook_url + "crm.deal.get", {"id": 1}))[0] == 200


async def test_truncated_body_declares_more_than_it_sends(portal):
    portal.faults.add("truncated", method="crm.deal.get", times=1)
    with pytest.raises(aiohttp.ClientPayloadError):
        await _post(portal.webhook_url + "crm.deal.get", {"id": 1})


async def test_slow_answer_is_late_but_complete(portal):
    portal.faults.add("slow", method="crm.deal.get", times=1, delay_s=0.3)
    started = time.perf_counter()
    status, _, _ = await _post(portal.webhook_url + "crm.deal.get", {"id": 1})
    assert status == 200 and time.perf_counter() - started >= 0.3
    async with _session() as s:
        with pytest.raises(TimeoutError):
            portal.faults.add("slow", times=1, delay_s=0.5)
            await s.post(portal.webhook_url + "crm.deal.get", json={"id": 1},
                         timeout=aiohttp.ClientTimeout(total=0.1))


async def test_probability_faults_are_seeded(portal):
    url = portal.webhook_url + "crm.deal.get"

    async def run() -> list[int]:
        portal.faults.clear()
        portal.faults.add("internal_error", method="crm.deal.get", probability=0.5)
        return [(await _post(url, {"id": 1}))[0] for _ in range(12)]

    first, second = await run(), await run()
    assert first == second and set(first) == {200, 500}


async def test_in_batch_error_faults_hit_one_subcommand_http_faults_the_batch(portal):
    portal.faults.add("internal_error", method="crm.deal.get", times=1)
    cmd = {"a": "crm.deal.get?id=1", "b": "crm.deal.get?id=2", "c": "crm.deal.list?start=-1"}
    status, _, text = await _post(portal.webhook_url + "batch", {"cmd": cmd})
    sections = json.loads(text)["result"]
    assert status == 200
    assert sections["result_error"] == {"a": {"error": "INTERNAL_SERVER_ERROR",
                                              "error_description": "Internal server error"}}
    assert set(sections["result"]) == {"b", "c"}
    portal.faults.add("html_502", method="crm.deal.list", times=1)
    status, content_type, _ = await _post(portal.webhook_url + "batch", {"cmd": cmd})
    assert (status, content_type) == (502, "text/html")


def test_bad_fault_programs_are_refused(portal):
    with pytest.raises(ValueError, match="unknown fault kind"):
        portal.faults.add("meteor")
    with pytest.raises(ValueError, match="probability"):
        portal.faults.add("reset", probability=2)
