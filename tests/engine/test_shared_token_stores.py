"""OAuth token stores machines share (Redis, PostgreSQL) across real processes: two workers
whose access token expired at once both end up on the newest tokens (one refresh, nobody
locked out), and a worker killed while holding the refresh lock holds nobody up."""

import asyncio
import multiprocessing
import os
import signal
import time
import uuid

import pytest

from bitrix_core.auth import OAuthAuth
from bitrix_core.client import BitrixClient
from bitrix_core.emulator import EmulatedPortal
from bitrix_core.redaction import fingerprint
from bitrix_core.throttle import Limits
from bitrix_core.token_store_redis import RedisTokenStore
from bitrix_core.token_store_urls import token_store_from_url
from bitrix_core.token_stores import TokenStore
from bitrix_core.transport import Transport

_WORKERS = 2
_LOCK_TTL_S = 1.5


@pytest.fixture(autouse=True)
def _forget_redis_tokens(shared_state_url):
    """Delete the test's token keys from Redis afterwards (tokens themselves never expire)."""
    yield
    if shared_state_url.startswith("redis"):
        import redis

        with redis.Redis.from_url(shared_state_url) as client:
            for key in client.scan_iter("bitrix24:oauth:portal-*"):
                client.delete(key)


def _store(url: str, key: str) -> TokenStore:
    if url.startswith("redis"):
        return RedisTokenStore(url, key=key, lock_ttl_s=_LOCK_TTL_S, lock_timeout=10)
    return token_store_from_url(url, key=key)


def _auth(app, store: TokenStore) -> OAuthAuth:  # noqa: ANN001 - the emulator's OAuthClient
    return OAuthAuth(
        client_id=app.client_id,
        client_secret=app.client_secret,
        token_store=store,
        oauth_server=app.portal_url,
        client_endpoint=f"{app.portal_url}/rest/",
    )


def _call_with_expired_token(app, url: str, key: str, ready, results) -> None:  # noqa: ANN001
    """A worker whose first call meets `expired_token`: it refreshes or re-reads the store."""
    auth = _auth(app, _store(url, key))

    async def run() -> str:
        async with BitrixClient(auth=auth, limits=Limits.for_plan("unlimited")) as client:
            deal = await client.call("crm.deal.get", {"id": 1})
        return deal["ID"]

    ready.wait(timeout=60)
    try:
        deal_id = asyncio.run(run())
    except Exception as error:  # locked out: report it rather than hang the test
        results.put((type(error).__name__, auth.refresh_count, ""))
        return
    results.put((deal_id, auth.refresh_count, fingerprint(auth.tokens.access_token)))


def _hold_refresh_lock(url: str, key: str, ready) -> None:  # noqa: ANN001
    """Take the store's refresh lock, say so, then hang until killed."""

    async def hold() -> None:
        async with _store(url, key).refresh_lock():
            ready.set()
            await asyncio.sleep(600)

    asyncio.run(hold())


async def _authorise(portal: EmulatedPortal, store: TokenStore) -> OAuthAuth:
    auth = _auth(portal.oauth_client(), store)
    async with Transport() as transport:
        await auth.exchange_code(portal.issue_auth_code(), transport)
    return auth


def test_two_workers_refreshing_at_once_both_end_on_the_newest_tokens(shared_state_url):
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(_WORKERS + 1), context.Queue()
    key = f"portal-{uuid.uuid4().hex[:8]}"
    with EmulatedPortal(deals=10, plan="unlimited") as portal:
        store = _store(shared_state_url, key)
        issued = asyncio.run(_authorise(portal, store)).tokens
        portal.oauth.expire_access_tokens()
        app = portal.oauth_client()
        workers = [
            context.Process(
                target=_call_with_expired_token,
                args=(app, shared_state_url, key, ready, results),
            )
            for _ in range(_WORKERS)
        ]
        for worker in workers:
            worker.start()
        ready.wait(timeout=60)
        answers = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=10)
        stored = store.load()
        assert stored is not None and stored.refresh_token != issued.refresh_token
        # the stored refresh token is the live one: the next worker can refresh with it
        later = _auth(app, store)

        async def refresh_again() -> None:
            async with Transport() as transport:
                await later.refresh(transport)

        asyncio.run(refresh_again())
    assert [deal_id for deal_id, _, _ in answers] == ["1"] * _WORKERS  # nobody locked out
    assert sum(count for _, count, _ in answers) == 1  # one refreshed, the other re-read
    assert {access for _, _, access in answers} == {fingerprint(stored.access_token)}
    assert later.refresh_count == 1


def test_a_worker_killed_holding_the_refresh_lock_holds_nobody_up(shared_state_url):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    key = f"portal-{uuid.uuid4().hex[:8]}"
    _store(shared_state_url, key)  # creates the table and row before the race
    holder = context.Process(target=_hold_refresh_lock, args=(shared_state_url, key, ready))
    holder.start()
    assert ready.wait(timeout=60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=10)
    killed_at = time.monotonic()

    async def take() -> None:
        async with _store(shared_state_url, key).refresh_lock():
            pass

    asyncio.run(asyncio.wait_for(take(), timeout=_LOCK_TTL_S + 3))
    assert time.monotonic() - killed_at <= _LOCK_TTL_S + 1  # the lock expired with its holder
