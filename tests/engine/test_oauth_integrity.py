"""OAuth under faults, over real HTTP: throttled resends after a refresh, a lost refresh
answer, a newer token written by another process, and a repr that never raises."""

import asyncio
import json

import pytest
from aiohttp import web

from bitrix_core.auth import OAuthAuth
from bitrix_core.client import BitrixClient
from bitrix_core.emulator.limits import Plan
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import OAuthGrantError, OAuthRefreshLostError
from bitrix_core.throttle import Limits
from bitrix_core.token_stores import (
    InMemoryTokenStore,
    JsonFileTokenStore,
    OAuthTokens,
    TokenStore,
)
from bitrix_core.transport import Transport


def _oauth(portal: EmulatedPortal, store: TokenStore, **options) -> OAuthAuth:
    app = portal.oauth_client()
    return OAuthAuth(
        client_id=app.client_id,
        client_secret=app.client_secret,
        token_store=store,
        oauth_server=app.portal_url,
        **options,
    )


async def _authorised(portal: EmulatedPortal, store: TokenStore | None = None, **options):
    auth = _oauth(portal, store or InMemoryTokenStore(), **options)
    async with Transport(timeout=5) as transport:
        await auth.exchange_code(portal.issue_auth_code(), transport)
    return auth


def test_repr_of_an_auth_with_an_empty_store_does_not_raise():
    auth = OAuthAuth(client_id="app.1", client_secret="s3cr3t-x", token_store=InMemoryTokenStore())
    shown = repr(auth)
    assert "app.1" in shown and "not authorised" in shown and "s3cr3t-x" not in shown


async def test_resend_after_a_refresh_takes_its_own_throttle_slot():
    """16 calls with an expired token are 32 requests: each resend reserves a bucket slot.
    Time scale 0.05 (40 requests/s): at 0.01 a loaded host that stalls the emulator's thread
    for 20 ms delivers paced requests together and the portal refuses some (4 x 503 seen)."""
    scale = 0.05
    plan = Plan("small", bucket_size=20, drain_per_s=2.0, operating_limit_s=None)
    async with EmulatedPortal(deals=5, plan=plan, time_scale=scale) as portal:
        auth = await _authorised(portal)
        limits = Limits(bucket_size=20, drain_per_s=2.0 / scale, jitter_s=0.02)  # burst 16
        async with BitrixClient(auth=auth, limits=limits) as client:
            portal.oauth.expire_access_tokens()
            deals = await asyncio.gather(
                *(client.call("crm.deal.get", {"id": 1}) for _ in range(16))
            )
        assert {deal["ID"] for deal in deals} == {"1"}
        served = portal.counters["crm.deal.get"]
        assert served.requests == 32 and auth.refresh_count == 1
        assert client.stats.requests == 32  # every request sent was reserved and counted
        assert served.status_503 == 0 and client.stats.limit_errors == 0


@pytest.mark.parametrize("kind", ["token_lost_502", "token_lost_reset"])
async def test_a_lost_refresh_answer_is_reported_as_lost_with_the_way_out(kind, tmp_path):
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        store = JsonFileTokenStore(tmp_path / "tokens.json")
        auth = await _authorised(portal, store, retry_delay_s=0.01)
        before = store.load()
        portal.faults.add(kind, times=1)  # the server rotates, then the answer is lost
        portal.oauth.expire_access_tokens()
        async with BitrixClient(auth=auth, limits=Limits.for_plan("unlimited")) as client:
            with pytest.raises(OAuthRefreshLostError) as caught:
                await client.call("crm.deal.get", {"id": 1})
        text = str(caught.value)
        assert "answer to a refresh was lost" in text and "authorize(code=...)" in text
        assert before is not None and store.load() == before  # nothing half-saved
        for secret in (before.access_token, before.refresh_token):
            assert secret not in text
        # The next run is told the token is dead and how to re-authorize ...
        later = _oauth(portal, store)
        async with BitrixClient(auth=later, limits=Limits.for_plan("unlimited")) as client:
            with pytest.raises(OAuthGrantError) as caught:
                await client.call("crm.deal.get", {"id": 1})
        assert type(caught.value) is OAuthGrantError and "re-authorize" in str(caught.value)
        # ... and doing so is the way out.
        async with Transport(timeout=5) as transport:
            await later.exchange_code(portal.issue_auth_code(), transport)
        async with BitrixClient(auth=later, limits=Limits.for_plan("unlimited")) as client:
            assert (await client.call("crm.deal.get", {"id": 1}))["ID"] == "1"


async def test_tokens_another_process_wrote_during_a_refused_refresh_are_used(tmp_path):
    """The store is re-read after a refused refresh: a process that refreshed meanwhile
    (one that does not take the lock) left working tokens there."""
    store = JsonFileTokenStore(tmp_path / "tokens.json")
    store.save(OAuthTokens("old-acc3ss", "old-r3fresh", client_endpoint="http://127.0.0.1:1/"))
    newer = OAuthTokens("new-acc3ss", "new-r3fresh", client_endpoint="http://127.0.0.1:1/")

    async def token(request: web.Request) -> web.Response:
        JsonFileTokenStore(store.path).save(newer)  # the other process, mid-flight
        body = {"error": "invalid_grant", "error_description": "Invalid grant"}
        return web.Response(status=400, text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/oauth/token/", token)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    auth = OAuthAuth(
        client_id="app", client_secret="s3cret", token_store=store,
        oauth_server=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    try:
        async with Transport(timeout=5) as transport:
            await auth.refresh(transport)
    finally:
        await runner.cleanup()
    assert auth.tokens == newer and auth.auth_params() == {"auth": "new-acc3ss"}
