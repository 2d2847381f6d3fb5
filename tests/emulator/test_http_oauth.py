"""Raw-HTTP conformance of OAuth: code exchange, REST with `auth=`, expiry, rotation, errors."""

import asyncio

import aiohttp
import pytest

from bitrix_core.emulator import EmulatedPortal

FIELDS = ["access_token", "expires", "expires_in", "scope", "domain", "server_endpoint",
          "status", "client_endpoint", "member_id", "user_id", "refresh_token"]


@pytest.fixture
async def portal():
    async with EmulatedPortal(deals=60, plan="unlimited", time_scale=0.001) as portal:
        yield portal


async def _token(portal, session, *, method="GET", **params) -> tuple[int, dict]:
    client = portal.oauth_client()
    query = {"client_id": client.client_id, "client_secret": client.client_secret, **params}
    if method == "GET":
        request = session.get(client.token_url, params=query)
    else:
        request = session.post(client.token_url, data=query)
    async with request as response:
        return response.status, await response.json()


async def test_code_exchange_and_rest_call_with_auth(portal):
    async with aiohttp.ClientSession() as s:
        status, tokens = await _token(portal, s, grant_type="authorization_code",
                                      code=portal.issue_auth_code())
        assert status == 200 and list(tokens) == FIELDS
        assert tokens["expires_in"] == pytest.approx(3.6)  # 3600 s at time_scale 0.001
        assert tokens["client_endpoint"] == portal.base_url + "/rest/"
        async with s.get(tokens["client_endpoint"] + "crm.deal.get",
                         params={"id": 1, "auth": tokens["access_token"]}) as response:
            assert response.status == 200
            assert (await response.json())["result"]["ID"] == "1"
        async with s.post(tokens["client_endpoint"] + "crm.deal.get.json",
                          json={"id": 2, "auth": tokens["access_token"]}) as response:
            assert response.status == 200


async def test_auth_codes_are_single_use_and_short_lived(portal):
    async with aiohttp.ClientSession() as s:
        code = portal.issue_auth_code()
        assert (await _token(portal, s, grant_type="authorization_code", code=code))[0] == 200
        status, body = await _token(portal, s, grant_type="authorization_code", code=code)
        assert (status, body["error"]) == (400, "invalid_grant")
        code = portal.issue_auth_code()
        await asyncio.sleep(0.05)  # 30 s at time_scale 0.001
        status, body = await _token(portal, s, grant_type="authorization_code", code=code)
        assert body["error"] == "invalid_grant"


async def test_refresh_rotates_and_kills_the_old_refresh_token(portal):
    async with aiohttp.ClientSession() as s:
        _, first = await _token(portal, s, grant_type="authorization_code",
                                code=portal.issue_auth_code())
        status, second = await _token(portal, s, method="POST", grant_type="refresh_token",
                                      refresh_token=first["refresh_token"])
        assert status == 200 and second["refresh_token"] != first["refresh_token"]
        status, body = await _token(portal, s, grant_type="refresh_token",
                                    refresh_token=first["refresh_token"])
        assert (status, body["error"]) == (400, "invalid_grant")
        status, _ = await _token(portal, s, grant_type="refresh_token",
                                 refresh_token=second["refresh_token"])
        assert status == 200


async def test_wrong_client_secret_is_invalid_client(portal):
    async with aiohttp.ClientSession() as s:
        status, body = await _token(portal, s, grant_type="authorization_code",
                                    code=portal.issue_auth_code(), client_secret="nope")
        assert (status, body["error"]) == (401, "invalid_client")
        assert "nope" not in str(body)


async def test_access_token_expires_then_refresh_works(portal):
    async with aiohttp.ClientSession() as s:
        _, tokens = await _token(portal, s, grant_type="authorization_code",
                                 code=portal.issue_auth_code())
        portal.oauth.expire_access_tokens()
        url = tokens["client_endpoint"] + "crm.deal.get"
        async with s.get(url, params={"id": 1, "auth": tokens["access_token"]}) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "expired_token"
        _, fresh = await _token(portal, s, grant_type="refresh_token",
                                refresh_token=tokens["refresh_token"])
        async with s.get(url, params={"id": 1, "auth": fresh["access_token"]}) as response:
            assert response.status == 200


async def test_access_token_lifetime_is_scaled():
    async with EmulatedPortal(deals=60, plan="unlimited", time_scale=0.001) as portal, \
            aiohttp.ClientSession() as s:
        _, tokens = await _token(portal, s, grant_type="authorization_code",
                                 code=portal.issue_auth_code())
        url = tokens["client_endpoint"] + "crm.deal.get"
        async with s.get(url, params={"id": 1, "auth": tokens["access_token"]}) as response:
            assert response.status == 200
        await asyncio.sleep(3.7)  # 3600 s at time_scale 0.001 = 3.6 s
        async with s.get(url, params={"id": 1, "auth": tokens["access_token"]}) as response:
            assert (response.status, (await response.json())["error"]) == (401, "expired_token")


async def test_unknown_or_missing_token_is_refused(portal):
    async with aiohttp.ClientSession() as s:
        async with s.get(portal.base_url + "/rest/crm.deal.get", params={"auth": "x"}) as r:
            assert (r.status, (await r.json())["error"]) == (401, "invalid_token")
        async with s.get(portal.base_url + "/rest/crm.deal.get") as r:
            assert (r.status, (await r.json())["error"]) == (401, "NO_AUTH_FOUND")


def test_secrets_stay_out_of_reprs(portal):
    client = portal.oauth_client()
    assert client.client_secret not in repr(client)
    assert client.client_secret not in repr(portal.oauth)
    code = portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    assert code not in repr(portal) and portal.admin_token not in repr(portal)
