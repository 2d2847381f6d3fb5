"""A full sync through Dagster under the transport faults of issue 11: the warehouse equals
the portal, or the run fails naming the fault (SQLite warehouse; the engine tests cover the
faults themselves over real HTTP)."""

import json
from typing import Any

import pytest
from dagster import EnvVar, materialize

from bitrix_core.emulator.faults import OFF_HOST
from bitrix_core.emulator.portal import EmulatedPortal
from dagster_bitrix24 import Bitrix24Resource, SQLWarehouseResource, build_bitrix24_assets
from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.conftest import PREFIX, materializations, stored_rows

SCALE = 0.01


def _sync(portal: EmulatedPortal, url: str) -> Any:
    assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX)
    bitrix24 = Bitrix24Resource(webhook_url=portal.webhook_url, plan="standard", time_scale=SCALE)
    resources = {"bitrix24": bitrix24, "warehouse": SQLWarehouseResource(url=url)}
    return materialize([assets], resources=resources, raise_on_error=False)


@pytest.mark.parametrize(
    ("kind", "times"),
    [("php_warning_200", 2), ("empty_200", 2), ("null_200", 2), ("foreign_client", None)],
)
def test_full_sync_under_a_transport_fault_equals_the_portal(kind, times, tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    with EmulatedPortal(seed=3, deals=3000, plan="standard", time_scale=SCALE) as portal:
        if kind == "foreign_client":
            portal.faults.add(kind, delay_s=1.0)  # 100 portal seconds of a full bucket
        else:
            portal.faults.add(kind, method="crm.deal.list", times=times)
        result = _sync(portal, url)
        assert result.success
        stored = stored_rows(url, f"{PREFIX}crm_deal")
        assert set(stored) == set(portal.store.ids("crm.deal")) and len(stored) == 3000
        reported = materializations(result)["bitrix24/crm_deal"]
        assert portal.faults.active() == []  # every programmed fault fired
        if kind == "foreign_client":
            assert reported["query_limit_wait_s"] > 0.3  # the window opened before the run
        else:
            assert reported["retries"] >= times


def test_full_sync_redirected_off_host_fails_naming_the_host(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    with EmulatedPortal(seed=3, deals=300, plan="standard", time_scale=SCALE) as portal:
        portal.faults.add("redirect_off_host", method="crm.deal.list")
        result = _sync(portal, url)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert OFF_HOST in failure.event_specific_data.error.to_string()
    assert Warehouse(url, table_prefix=PREFIX).read_cursor(f"{PREFIX}crm_deal") is None


def test_sync_whose_refresh_answer_was_lost_fails_saying_so_and_how_to_recover(
    tmp_path, monkeypatch
):
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    with EmulatedPortal(seed=3, deals=50, plan="unlimited") as portal:
        app = portal.oauth_client()
        monkeypatch.setenv("TEST_B24_CLIENT_SECRET", app.client_secret)
        bitrix24 = Bitrix24Resource(
            portal_url=f"{app.portal_url}/rest/",
            oauth_server=app.portal_url,
            client_id=app.client_id,
            client_secret=EnvVar("TEST_B24_CLIENT_SECRET"),
            token_file=str(tmp_path / "tokens.json"),
            plan="unlimited",
        )
        bitrix24.authorize(code=portal.issue_auth_code())
        tokens = (tmp_path / "tokens.json").read_text()
        portal.oauth.expire_access_tokens()
        portal.faults.add("token_lost_reset", times=1)
        assets = build_bitrix24_assets(entities=["crm.deal"], table_prefix=PREFIX)
        resources = {"bitrix24": bitrix24, "warehouse": SQLWarehouseResource(url=url)}
        result = materialize([assets], resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = failure.event_specific_data.error.to_string()
    assert "OAuthRefreshLostError" in text and "authorize(code=...)" in text
    assert app.client_secret not in text
    stored = json.loads(tokens)
    assert stored["access_token"] not in text and stored["refresh_token"] not in text
