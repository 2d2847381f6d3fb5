"""Answers a client must neither trust nor die of, over real HTTP: 200s that are not JSON,
and redirects that would carry the credentials off the portal's host."""

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import BitrixServerError
from bitrix_core.throttle import Limits
from tests.engine.conftest import FAST_RETRY

BAD_200 = ["php_warning_200", "empty_200", "null_200"]


@pytest.mark.parametrize("kind", BAD_200)
async def test_a_read_answered_by_a_non_json_200_is_retried(kind):
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add(kind, method="crm.deal.get", times=1)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            assert (await client.call("crm.deal.get", {"id": 2}))["ID"] == "2"
        assert client.stats.retries == 1
        assert portal.counters["crm.deal.get"].requests == 2


@pytest.mark.parametrize("kind", BAD_200)
async def test_a_write_answered_by_a_non_json_200_is_not_resent(kind):
    async with EmulatedPortal(deals=5, plan="unlimited") as portal:
        portal.faults.add(kind, method="crm.deal.add", times=1)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            with pytest.raises(BitrixServerError) as caught:
                await client.call("crm.deal.add", {"fields": {"TITLE": "once"}})
        assert caught.value.status == 200 and "JSON" in str(caught.value)
        assert portal.counters["crm.deal.add"].requests == 1
        assert portal.store.count("crm.deal") == 6  # it did run: resending would duplicate it


@pytest.mark.parametrize("kind", BAD_200)
async def test_batched_reads_under_a_non_json_200_are_retried_and_all_rows_arrive(kind):
    async with EmulatedPortal(deals=400, plan="unlimited") as portal:
        portal.faults.add(kind, method="crm.deal.list", times=2)
        async with BitrixClient(
            portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY
        ) as client:
            rows = await client.get_all("crm.deal.list", {"select": ["ID"]}, verify=True)
            answers = await client.call_many([("crm.deal.get", {"id": 1})] * 3)
        assert len({row["ID"] for row in rows}) == len(rows) == 400
        assert [a["ID"] for a in answers] == ["1"] * 3
        assert client.stats.retries >= 2
