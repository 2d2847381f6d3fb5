"""The reads the Dagster layer builds on, through the client's public API only: a list run
with an entity's own spec counting into the caller's statistics, and `count`."""

import asyncio

import pytest

from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.emulator.store import PortalSizes
from bitrix_core.entities import crm_item
from bitrix_core.pagination.base import linked
from bitrix_core.stats import ListStats


@pytest.fixture(scope="module")
def portal():
    portal = EmulatedPortal(seed=5, sizes=PortalSizes(deals=1_200, smart_items=150)).start()
    yield portal
    portal.stop()


async def test_count_is_the_portals_count_of_the_filter(portal, client):
    rows = portal.store.raw_rows("crm.deal")
    stage = rows[0]["STAGE_ID"]
    assert await client.count("crm.deal.list") == len(rows)
    wanted = sum(row["STAGE_ID"] == stage for row in rows)
    assert await client.count("crm.deal.list", {"filter": {"STAGE_ID": stage}}) == wanted
    assert 0 < wanted < len(rows)


async def test_counts_asked_at_once_share_a_batch(portal, client):
    before = client.stats.requests
    counts = await asyncio.gather(*(client.count(name) for name in ("crm.deal.list",) * 5))
    assert counts == [len(portal.store.ids("crm.deal"))] * 5
    assert client.stats.requests - before == 1


async def test_a_list_with_a_spec_counts_into_the_callers_stats(portal, client):
    spec = crm_item(next(e.entity_type_id for e in _smart(portal)))
    stats = ListStats()
    params = {**spec.extra_params, "select": ["id"]}
    first = client.list(spec.list_method, params, spec=spec, order=None, stats=stats, verify=True)
    rows = [row async for page in first for row in page.rows]
    assert len(rows) == await client.count(spec.list_method, spec.extra_params, spec=spec) > 0
    again = client.list(spec.list_method, params, spec=spec, order=None, stats=stats)
    await again.all()
    assert first.stats is stats and again.stats is stats
    assert stats.rows == 2 * len(rows) and stats.requests >= 3  # two walks and a count


async def test_the_client_sends_linked_pages_and_a_bare_runner_does_not(client):
    class Bare:
        async def run(self, method, params, *, stats=None, idempotent=True):
            return await client.batcher.run(method, params, stats=stats, idempotent=idempotent)

    assert linked(client.batcher) is client.batcher
    assert linked(Bare()) is None


def _smart(portal):
    return [
        e for e in portal.store.entities.values() if e.entity_type_id and e.entity_type_id != 31
    ]
