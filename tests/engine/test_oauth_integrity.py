"""OAuth under faults, over real HTTP: throttled resends after a refresh, a lost refresh
answer, a newer token written by another process, and a repr that never raises."""

import asyncio

from bitrix_core.auth import OAuthAuth
from bitrix_core.client import BitrixClient
from bitrix_core.emulator.limits import Plan
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.throttle import Limits
from bitrix_core.token_stores import InMemoryTokenStore, TokenStore
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
    """16 calls with an expired token are 32 requests: each resend reserves a bucket slot."""
    scale = 0.01
    plan = Plan("small", bucket_size=20, drain_per_s=2.0, operating_limit_s=None)
    async with EmulatedPortal(deals=5, plan=plan, time_scale=scale) as portal:
        auth = await _authorised(portal)
        limits = Limits(bucket_size=20, drain_per_s=2.0 / scale, margin_slots=2, jitter_s=0)
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
