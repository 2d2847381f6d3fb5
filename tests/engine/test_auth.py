"""Webhook and OAuth auth against the emulated portal and its OAuth server, over real HTTP."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from bitrix_core.auth import OAuthAuth, WebhookAuth
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import (
    BitrixAuthError,
    BitrixParameterError,
    BitrixTransportError,
    InvalidTokenError,
    OAuthGrantError,
    TokenExpiredError,
)
from bitrix_core.token_stores import InMemoryTokenStore, JsonFileTokenStore, OAuthTokens
from bitrix_core.transport import Transport

CANARY = "c4n4ryc0de"


@pytest.fixture
async def portal() -> AsyncIterator[EmulatedPortal]:
    async with EmulatedPortal(deals=5, plan="unlimited", webhook_code=CANARY) as portal:
        yield portal


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    async with Transport(timeout=5) as transport:
        yield transport


# --- webhook -------------------------------------------------------------------------------


def test_webhook_url_is_parsed_and_redacted():
    auth = WebhookAuth(f"https://example.bitrix24.com/rest/7/{CANARY}")
    assert auth.user_id == 7
    assert auth.method_url("crm.deal.list") == (
        f"https://example.bitrix24.com/rest/7/{CANARY}/crm.deal.list"
    )
    assert auth.redacted_base == "https://example.bitrix24.com/rest/7/***/"
    assert CANARY not in repr(auth) and auth.auth_params() == {}


@pytest.mark.parametrize(
    "url",
    [
        f"http://example.bitrix24.com/rest/1/{CANARY}/",
        f"https://example.bitrix24.com/rest/x/{CANARY}/",
        "https://example.bitrix24.com/rest/admin/an0therc0de/",
        f"https://example.bitrix24.com/api/1/{CANARY}/",
        f"https://example.bitrix24.com/rest/1/{CANARY}/crm.deal.list",
        f"https://example.bitrix24.com/rest/1/{CANARY}/?auth=1",
        f"ftp://example.bitrix24.com/rest/1/{CANARY}/",
        "",
    ],
)
def test_bad_webhook_urls_are_named_errors_without_the_code(url: str):
    with pytest.raises(BitrixParameterError) as info:
        WebhookAuth(url)
    assert info.value.parameter == "webhook_url"
    assert CANARY not in str(info.value) and "an0therc0de" not in str(info.value)


@pytest.mark.parametrize(
    "url, shown",
    [
        (f"https//example.bitrix24.com/rest/1/{CANARY}/", "https//example.bitrix24.com/rest/1/***/"),
        (f"https//127.0.0.1:8080/rest/1/{CANARY}/", "https//127.0.0.1:8080/rest/1/***/"),
        (f"https//localhost:8080/rest/1/{CANARY}/", "https//localhost:8080/rest/1/***/"),
        (f"https//portal.example.com:8443/rest/1/{CANARY}/", "https//portal.example.com:8443/rest/1/***/"),
        (f"https:/example.bitrix24.com/rest/1/{CANARY}/", "https:/example.bitrix24.com/rest/1/***/"),
        (f"example.bitrix24.com/rest/1/{CANARY}/", "example.bitrix24.com/rest/1/***/"),
        (f"https://example.bitrix24.com/api/1/{CANARY}/", "https://example.bitrix24.com/***/1/***/"),
        (f"https://example.bitrix24.com/rest/1/{CANARY}/?auth={CANARY}", "https://example.bitrix24.com/rest/1/***/?***"),
    ],
)
def test_a_malformed_webhook_url_is_shown_but_for_its_code(url: str, shown: str):
    with pytest.raises(BitrixParameterError) as info:
        WebhookAuth(url)
    assert repr(shown) in str(info.value)  # the typo is visible, the code is not


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "localhost", "[::1]"])
def test_plain_http_is_allowed_to_loopback(host: str):
    assert WebhookAuth(f"http://{host}:8080/rest/1/{CANARY}/").redacted_base.startswith("http://")


async def test_webhook_calls_the_portal_and_wrong_code_is_final(portal, transport):
    auth = WebhookAuth(portal.webhook_url)
    envelope = await transport.post(auth.method_url("crm.deal.list"), {}, method="crm.deal.list")
    assert len(envelope["result"]) == 5
    wrong = WebhookAuth(portal.webhook_url.replace(CANARY, "wrongcode1"))
    with pytest.raises(InvalidTokenError) as info:
        await transport.post(wrong.method_url("crm.deal.list"), {}, method="crm.deal.list")
    assert "wrongcode1" not in str(info.value)
    assert await wrong.handle_auth_error(info.value, transport) is False


# --- OAuth ---------------------------------------------------------------------------------


def _oauth(portal: EmulatedPortal, store, **options) -> OAuthAuth:
    client = portal.oauth_client()
    return OAuthAuth(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_store=store,
        oauth_server=client.portal_url,
        **options,
    )


async def _authorised(portal, transport, store=None, **options) -> OAuthAuth:
    auth = _oauth(portal, store or InMemoryTokenStore(), **options)
    await auth.exchange_code(portal.issue_auth_code(), transport)
    return auth


async def _call(auth: OAuthAuth, transport: Transport) -> dict:
    """What the client does: send, and on an auth error renew once and resend."""
    url = auth.method_url("crm.deal.list")
    try:
        return await transport.post(url, {**auth.auth_params()}, method="crm.deal.list")
    except BitrixAuthError as error:
        if not await auth.handle_auth_error(error, transport):
            raise
    return await transport.post(url, {**auth.auth_params()}, method="crm.deal.list")


async def test_oauth_call_uses_client_endpoint_and_token(portal, transport):
    auth = await _authorised(portal, transport)
    assert auth.method_url("crm.deal.list") == f"{portal.base_url}/rest/crm.deal.list"
    assert len((await _call(auth, transport))["result"]) == 5
    assert auth.tokens.access_token not in repr(auth.tokens)


async def test_expired_token_is_refreshed_once_and_the_call_resent(portal, transport):
    store = InMemoryTokenStore()
    auth = await _authorised(portal, transport, store)
    first = auth.tokens
    portal.oauth.expire_access_tokens()
    assert len((await _call(auth, transport))["result"]) == 5
    assert auth.refresh_count == 1
    assert store.load() == auth.tokens and auth.tokens.refresh_token != first.refresh_token


async def test_concurrent_expiries_share_one_refresh(portal, transport):
    auth = await _authorised(portal, transport)
    portal.oauth.expire_access_tokens()
    results = await asyncio.gather(*(_call(auth, transport) for _ in range(10)))
    assert all(len(result["result"]) == 5 for result in results)
    assert auth.refresh_count == 1


async def test_expiry_of_an_older_token_does_not_refresh_again(portal, transport):
    auth = await _authorised(portal, transport)
    old = auth.tokens.access_token
    portal.oauth.expire_access_tokens()
    with pytest.raises(TokenExpiredError) as info:
        await transport.post(auth.method_url("profile"), {"auth": old}, method="profile")
    assert await auth.handle_auth_error(info.value, transport) is True
    assert auth.refresh_count == 1
    assert await auth.handle_auth_error(info.value, transport) is True  # same stale token
    assert auth.refresh_count == 1


async def test_rotated_tokens_are_saved_before_they_are_used(portal, transport):
    seen_in_use_at_save: list[str] = []

    class Recording(InMemoryTokenStore):
        def save(self, tokens: OAuthTokens) -> None:
            if self.load() is not None:
                seen_in_use_at_save.append(auth.auth_params()["auth"])
            super().save(tokens)

    auth = await _authorised(portal, transport, Recording())
    old = auth.tokens.access_token
    portal.oauth.expire_access_tokens()
    await _call(auth, transport)
    assert seen_in_use_at_save == [old]  # the new token was stored while the old was in use


async def test_dead_refresh_token_is_an_oauth_grant_error_without_retries(portal, transport):
    auth = await _authorised(portal, transport, retry_delay_s=5)
    portal.oauth.clear()  # every token, refresh tokens included, is now unknown
    started = time.monotonic()
    with pytest.raises(InvalidTokenError):
        await _call(auth, transport)  # unknown access token: not renewable
    portal.oauth.expire_access_tokens()
    with pytest.raises(OAuthGrantError) as info:
        await auth.refresh(transport)
    assert info.value.code == "invalid_grant"
    assert time.monotonic() - started < 2  # no backoff sleeps for a permanent refusal
    assert auth.tokens.refresh_token not in str(info.value)


async def test_wrong_client_secret_is_refused_and_not_shown(portal, transport):
    auth = await _authorised(portal, transport)
    client = portal.oauth_client()
    bad = OAuthAuth(
        client_id=client.client_id,
        client_secret="s3cret-canary-value",
        token_store=InMemoryTokenStore(auth.tokens),
        oauth_server=client.portal_url,
    )
    with pytest.raises(OAuthGrantError) as info:
        await bad.refresh(transport)
    assert info.value.code == "invalid_client"
    assert "s3cret-canary-value" not in str(info.value)
    assert "s3cret-canary-value" not in (info.value.url or "")


async def test_unreachable_oauth_server_gives_up_after_bounded_attempts(transport):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tokens = OAuthTokens("a" * 10, "r" * 10, client_endpoint="http://127.0.0.1:1/rest/")
    auth = OAuthAuth(
        client_id="app",
        client_secret="secret-x",
        token_store=InMemoryTokenStore(tokens),
        oauth_server=f"http://127.0.0.1:{port}",
        max_refresh_attempts=3,
        retry_delay_s=0.05,
    )
    started = time.monotonic()
    with pytest.raises(BitrixTransportError):
        await auth.refresh(transport)
    assert 0.15 <= time.monotonic() - started < 2  # waited 0.05 + 0.1 between three attempts


async def test_two_auths_on_one_file_store_refresh_once(portal, transport, tmp_path):
    path = tmp_path / "tokens.json"
    first = await _authorised(portal, transport, JsonFileTokenStore(path))
    second = _oauth(portal, JsonFileTokenStore(path))
    assert second.tokens == first.tokens
    portal.oauth.expire_access_tokens()
    await _call(first, transport)
    await _call(second, transport)  # finds the file already renewed: adopts it
    assert first.refresh_count + second.refresh_count == 1
    assert second.tokens == first.tokens


async def test_non_expiry_auth_errors_are_final(portal, transport):
    auth = await _authorised(portal, transport)
    assert await auth.handle_auth_error(InvalidTokenError("x"), transport) is False


def test_oauth_options_are_validated():
    store = InMemoryTokenStore()
    with pytest.raises(BitrixParameterError) as info:
        OAuthAuth(client_id="", client_secret="s", token_store=store)
    assert info.value.parameter == "client_id"
    with pytest.raises(BitrixParameterError) as info:
        OAuthAuth(
            client_id="a",
            client_secret="s",
            token_store=store,
            oauth_server="http://oauth.example.com",
        )
    assert info.value.parameter == "oauth_server"
    auth = OAuthAuth(client_id="a", client_secret="s", token_store=store)
    with pytest.raises(BitrixParameterError) as info:
        auth.auth_params()
    assert info.value.parameter == "token_store"
