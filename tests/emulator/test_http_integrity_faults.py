"""Raw-HTTP conformance of the integrity fault kinds: non-JSON 200s, a redirect off the
portal's host, a lost token answer, a foreign client draining the request bucket."""

import asyncio
import time

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal
from bitrix_core.emulator.faults import OFF_HOST


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def _post(url: str, body: dict) -> tuple[int, bytes]:
    async with _session() as s, s.post(url, json=body, allow_redirects=False) as response:
        return response.status, await response.read()


@pytest.mark.parametrize(
    ("kind", "starts"),
    [("php_warning_200", b"<br />\n<b>Warning</b>"), ("empty_200", b""), ("null_200", b"null")],
)
async def test_non_json_200_answers_after_the_request_ran(kind, starts):
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add(kind, method="crm.deal.add", times=1)
        status, body = await _post(portal.webhook_url + "crm.deal.add", {"fields": {"TITLE": "x"}})
        assert status == 200 and body.startswith(starts)
        if kind == "php_warning_200":
            assert body.endswith(b"}") and b'"result":6' in body  # the real answer follows
        assert portal.store.count("crm.deal") == 6  # the write happened
        status, body = await _post(portal.webhook_url + "crm.deal.get", {"id": 1})
        assert status == 200 and body.startswith(b'{"result"')


async def test_redirect_off_host_points_at_the_same_path_on_another_host():
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add("redirect_off_host", method="crm.deal.list", times=1)
        url = portal.webhook_url + "crm.deal.list?start=-1"
        async with _session() as s, s.post(url, allow_redirects=False) as response:
            assert response.status == 301
            location = response.headers["Location"]
        assert location == url.replace("127.0.0.1", OFF_HOST)
        assert portal.counters["crm.deal.list"].rows == 0  # nothing ran


@pytest.mark.parametrize("kind", ["token_lost_502", "token_lost_reset"])
async def test_lost_token_answer_rotates_the_refresh_token_anyway(kind):
    async with EmulatedPortal(deals=1, plan="unlimited") as portal:
        app = portal.oauth_client()
        grant = {"client_id": app.client_id, "client_secret": app.client_secret}
        async with _session() as s:
            first = await (await s.get(app.token_url, params={
                **grant, "grant_type": "authorization_code", "code": portal.issue_auth_code()
            })).json()  # fmt: skip
            portal.faults.add(kind, times=1)
            refresh = {
                **grant, "grant_type": "refresh_token", "refresh_token": first["refresh_token"]
            }  # fmt: skip
            # POST: aiohttp silently resends a GET once when the connection drops
            if kind == "token_lost_502":
                async with s.post(app.token_url, data=refresh) as response:
                    assert response.status == 502 and response.content_type == "text/html"
            else:
                with pytest.raises(aiohttp.ServerDisconnectedError):
                    await s.post(app.token_url, data=refresh)
            async with s.get(app.token_url, params=refresh) as response:
                assert response.status == 400
                assert (await response.json())["error"] == "invalid_grant"  # it was rotated


async def test_foreign_client_drains_the_bucket_for_its_window_only():
    scale = 0.01
    async with EmulatedPortal(deals=5, plan="standard", time_scale=scale) as portal:
        url = portal.webhook_url + "crm.deal.get"
        portal.faults.add("foreign_client", delay_s=0.3)
        started = time.monotonic()
        refused = [(await _post(url, {"id": 1}))[0] for _ in range(3)]
        assert refused == [503, 503, 503]
        await asyncio.sleep(max(0.0, started + 0.3 - time.monotonic()) + 0.01)
        assert (await _post(url, {"id": 1}))[0] == 200  # window over; a slot drained since
        assert portal.faults.active() == []
        assert portal.counters["crm.deal.get"].status_503 == 3
