"""Linked id-window pages against the emulator: every row once, pages (nearly) full."""

import asyncio
import math

import pytest

from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.emulator.store import PortalSizes
from bitrix_core.entities import ENTITIES
from bitrix_core.pagination import IdWindowPaging, paginate
from bitrix_core.pagination.chain import Density, IdWindow, LinkedWalker, reference


@pytest.fixture(scope="module")
def portal():
    portal = EmulatedPortal(seed=3, sizes=PortalSizes(deals=12_000), plan="unlimited").start()
    yield portal
    portal.stop()


class PlainRunner:
    """The client's batcher without `run_linked`: one page per request, as on a portal
    that would not resolve references."""

    def __init__(self, batcher):
        self.batcher = batcher

    async def run(self, method, params, *, stats=None, idempotent=True):
        return await self.batcher.run(method, params, stats=stats, idempotent=idempotent)


@pytest.mark.parametrize("ordered", [True, False])
async def test_dense_and_sparse_ids_come_once_with_few_extra_commands(portal, client, ordered):
    run = client.list("crm.deal.list", {"select": ["ID", "TITLE"]}, order="id" if ordered else None)
    got = [int(row["ID"]) async for page in run for row in page.rows]
    expected = portal.store.ids("crm.deal")
    assert (got if ordered else sorted(got)) == expected
    pages = math.ceil(len(expected) / 50)
    assert run.stats.subcommands <= pages * 1.08 + 2  # two probes, short window ends
    assert run.stats.batches <= math.ceil(run.stats.subcommands / 50) + 6


async def test_user_filter_and_id_bounds_are_kept(portal, client):
    ids = portal.store.ids("crm.deal")
    lo, hi = ids[1_000], ids[9_000]
    stage = portal.store.raw_rows("crm.deal", ids[:1])[0]["STAGE_ID"]
    params = {"select": ["ID"], "filter": {">=ID": lo, "<ID": hi, "STAGE_ID": stage}}
    got = [
        int(row["ID"]) async for page in client.list("crm.deal.list", params) for row in page.rows
    ]
    wanted = [
        row["ID"]
        for row in portal.store.raw_rows("crm.deal", ids[1_000:9_000])
        if row["STAGE_ID"] == stage
    ]
    assert got == sorted(wanted) and len(got) > 100


async def test_small_windows_still_exact(portal, client):
    strategy = IdWindowPaging(window_rows=60, max_windows=3)
    ids = portal.store.ids("crm.deal")[:1_500]
    params = {"select": ["ID"], "filter": {"<=ID": ids[-1]}}
    run = client.list("crm.deal.list", params, strategy=strategy)
    assert [int(row["ID"]) async for page in run for row in page.rows] == ids


async def test_without_linked_groups_one_page_per_command(portal, client):
    run = paginate(PlainRunner(client.batcher), "crm.deal.list", {"select": ["ID"]})
    got = [int(row["ID"]) async for page in run for row in page.rows]
    assert got == portal.store.ids("crm.deal")
    assert run.stats.subcommands <= math.ceil(len(got) / 50) * 1.05 + 2


async def test_linked_group_refers_to_earlier_results_in_one_batch(portal, client):
    spec = ENTITIES["crm.deal"]
    base = {"select": ["ID"], "order": {"ID": "ASC"}, "start": -1}
    commands = [("a0", "crm.deal.list", {**base, "filter": {">=ID": 1}})]
    for index in range(1, 4):
        after = reference(spec, f"a{index - 1}")
        commands.append((f"a{index}", "crm.deal.list", {**base, "filter": {">ID": after}}))
    before = client.stats.batches
    results = await client.batcher.run_linked(commands)
    ids = [int(row["ID"]) for outcome in results for row in outcome.result]
    assert ids == portal.store.ids("crm.deal")[:200]
    assert client.stats.batches - before == 1


async def test_linked_groups_are_never_split(client):
    base = {"select": ["ID"], "start": -1}
    groups = [[(f"g{g}x{i}", "crm.deal.list", base) for i in range(30)] for g in range(2)]
    before = client.stats.batches
    await asyncio.gather(*(client.batcher.run_linked(group) for group in groups))
    assert client.stats.batches - before == 2  # 30 + 30 do not fit one batch of 50
    with pytest.raises(ValueError):
        await client.batcher.run_linked([("k", "crm.deal.list", base)] * 51)


async def test_chain_crossing_a_short_page_keeps_only_the_windows_rows(portal, client):
    """Six linked pages over a window of 120 rows: page 3 is short, so pages 4-6 refer to a
    missing row; the portal reads the literal reference as `>ID=0` and serves the window's
    first rows again. Those pages are ignored: the window holds each of its rows once."""
    spec = ENTITIES["crm.deal"]
    ids = portal.store.ids("crm.deal")
    window = IdWindow(ids[100], ids[220])
    walker = LinkedWalker(client.batcher, spec, {"select": ["ID"]}, None, Density())
    before = portal.counters["crm.deal.list"].subcommands
    await walker.step(window, count=6)
    assert portal.counters["crm.deal.list"].subcommands - before == 6  # all six ran
    assert [len(page) for page in window.pages] == [50, 50, 20]
    assert [int(row["ID"]) for page in window.pages for row in page] == ids[100:220]
    assert window.done and walker.linked


async def test_counted_first_page_sizes_groups_and_only_a_short_page_ends_a_window(
    portal, client
):
    """A window of exactly 100 rows: its first page is counted, but two full pages do not end
    it (rows may start to match the filter mid-run): a group sized by the count takes the
    short page that ends it along, and the next group is sized exactly."""
    spec = ENTITIES["crm.deal"]
    ids = portal.store.ids("crm.deal")
    walker = LinkedWalker(client.batcher, spec, {"select": ["ID"]}, None, Density())
    window = IdWindow(ids[300], ids[400])
    await walker.step(window, count=2)
    assert [int(row["ID"]) for page in window.pages for row in page] == ids[300:400]
    assert not window.done and window.remaining == 0
    assert IdWindowPaging()._group_size(window, walker) == 1
    await walker.step(window, count=1)
    assert window.done and len(window.pages) == 2
    wide = IdWindow(ids[1_000], ids[1_230])
    await walker.step(wide, count=1)
    assert (wide.remaining, wide.done) == (180, False)
    assert IdWindowPaging()._group_size(wide, walker) == 4  # 180 rows: 4 pages


class UnresolvedReferences:
    """The client's batcher, but every reference in a linked group names a missing command,
    as on a portal that leaves references unresolved: the portal reads them as `>ID=0`."""

    def __init__(self, batcher):
        self.batcher = batcher

    async def run(self, method, params, *, stats=None, idempotent=True):
        return await self.batcher.run(method, params, stats=stats, idempotent=idempotent)

    def __getattr__(self, name):  # the rest of the batcher: queue state, run_alone
        return getattr(self.batcher, name)

    async def run_linked(self, commands, *, stats=None):
        broken = [(key, method, _break_reference(params)) for key, method, params in commands]
        return await self.batcher.run_linked(broken, stats=stats)


def _break_reference(params):
    params = {**params, "filter": dict(params["filter"])}
    for key, value in params["filter"].items():
        if isinstance(value, str) and value.startswith("$result["):
            params["filter"][key] = "$result[missing][49][ID]"
    return params


async def test_pages_below_the_previous_last_id_are_discarded_and_fetched_again(portal, client):
    ids = portal.store.ids("crm.deal")[:1_200]
    params = {"select": ["ID"], "filter": {"<=ID": ids[-1]}}
    run = paginate(UnresolvedReferences(client.batcher), "crm.deal.list", params)
    got = [int(row["ID"]) async for page in run for row in page.rows]
    assert got == ids  # every row once, in order, although linked pages came back wrong
