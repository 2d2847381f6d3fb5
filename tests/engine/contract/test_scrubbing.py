"""Recording never writes a secret: record against the emulator with canary secrets, then
search the cassette file for them."""

from bitrix_core.auth import OAuthAuth, WebhookAuth
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.token_stores import InMemoryTokenStore
from bitrix_core.transport import Transport
from tests.engine.contract.recorder import PLACEHOLDER_WEBHOOK, PORTAL_HOST, contract_vcr

WEBHOOK_CANARY = "whcanary7f3a9"
SECRET_CANARY = "secretcanary-5d1e-XYZ"


async def test_recorded_cassette_holds_no_secret_and_no_portal_host(tmp_path):
    async with EmulatedPortal(
        deals=3, plan="unlimited", webhook_code=WEBHOOK_CANARY, client_secret=SECRET_CANARY
    ) as portal:
        client = portal.oauth_client()
        store = InMemoryTokenStore()
        oauth = OAuthAuth(
            client_id=client.client_id,
            client_secret=SECRET_CANARY,
            token_store=store,
            oauth_server=client.portal_url,
        )
        webhook = WebhookAuth(portal.webhook_url)
        recorder = contract_vcr(record=True, origins=[portal.base_url], directory=tmp_path)
        seen: list[str] = []
        with recorder.use_cassette("canary.yaml"):
            async with Transport(timeout=5) as transport:
                url = webhook.method_url("crm.deal.list")
                await transport.post(url, {"select": ["ID"]}, method="crm.deal.list")
                code = portal.issue_auth_code()
                first = await oauth.exchange_code(code, transport)
                url = oauth.method_url("crm.deal.list")
                await transport.post(url, oauth.auth_params(), method="crm.deal.list")
                portal.oauth.expire_access_tokens()
                await oauth.refresh(transport)
                await transport.post(url, oauth.auth_params(), method="crm.deal.list")
                seen += [code, first.access_token, first.refresh_token]
                seen += [oauth.tokens.access_token, oauth.tokens.refresh_token]

    text = (tmp_path / "canary.yaml").read_text()
    assert text.count("uri:") == 5
    for secret in (WEBHOOK_CANARY, SECRET_CANARY, *seen):
        assert secret not in text
    assert f"{portal.host}:{portal.port}" not in text
    assert PORTAL_HOST in text
    assert "client_secret=***" in text and "refresh_token=***" in text and "auth=***" in text

    replay = contract_vcr(record=False, directory=tmp_path)
    with replay.use_cassette("canary.yaml"):
        async with Transport(timeout=5) as transport:
            url = WebhookAuth(PLACEHOLDER_WEBHOOK).method_url("crm.deal.list")
            envelope = await transport.post(url, {"select": ["ID"]}, method="crm.deal.list")
    assert [row["ID"] for row in envelope["result"]] == ["1", "2", "3"]
