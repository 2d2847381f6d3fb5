"""Converging gaps against the emulator over real HTTP: every row once, batches full."""

import asyncio
import math

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.emulator.store import PortalSizes
from bitrix_core.entities import ENTITIES
from bitrix_core.errors import (
    BitrixBadRequestError,
    BitrixServerError,
    IncompletePaginationError,
    InvalidTokenError,
)
from bitrix_core.pagination import ConvergingPaging, paginate
from bitrix_core.pagination.gap_walk import GapWalk
from bitrix_core.pagination.gaps import Gap
from bitrix_core.pagination.packing import BatchPacker
from bitrix_core.stats import ListStats
from bitrix_core.throttle import Limits

SIZES = PortalSizes(deals=12_000, users=120, tasks=400, smart_items=300)


@pytest.fixture(scope="module")
def portal():
    # time_scale 0.1: tasks pages cost 1.25 s each under the calibrated profile
    portal = EmulatedPortal(seed=3, sizes=SIZES, plan="unlimited", time_scale=0.1).start()
    yield portal
    portal.stop()


def _client(portal, plan="unlimited", scale=1.0):
    """A client of `portal` that respects `plan` on the portal's time scale."""
    return BitrixClient(
        portal.webhook_url, limits=Limits.for_plan(plan).scaled(scale), verbose=False
    )


async def _ids(run, key="ID"):
    return [int(row[key]) async for page in run for row in page.rows]


def _once(got):
    assert len(got) == len(set(got)), "a row came twice"
    return sorted(got)


@pytest.mark.parametrize(
    ("method", "params", "entity", "key"),
    [
        ("crm.deal.list", {"select": ["ID", "TITLE"]}, "crm.deal", "ID"),
        ("crm.item.list", {"entityTypeId": 128, "select": ["id"]}, "crm.item.128", "id"),
        ("tasks.task.list", {"select": ["ID", "TITLE"]}, "tasks.task", "id"),
        ("user.get", {}, "user", "ID"),
    ],
)
async def test_every_shape_returns_each_row_once(portal, client, method, params, entity, key):
    run = client.list(method, params, order=None)
    assert _once(await _ids(run, key)) == portal.store.ids(entity)
    assert run.stats.strategy == "converging"


async def test_user_filter_and_id_bounds_are_kept(portal, client):
    ids = portal.store.ids("crm.deal")
    lo, hi = ids[500], ids[11_000]
    stage = portal.store.raw_rows("crm.deal", ids[:1])[0]["STAGE_ID"]
    params = {"select": ["ID"], "filter": {">ID": lo, "<=ID": hi, "STAGE_ID": stage}}
    got = _once(await _ids(client.list("crm.deal.list", params, order=None)))
    wanted = [
        row["ID"]
        for row in portal.store.raw_rows("crm.deal", ids[501:11_001])
        if row["STAGE_ID"] == stage
    ]
    assert got == sorted(wanted) and len(got) > 100


async def test_clustered_ids_cost_few_extra_commands(portal, client):
    """Ids run 1..66,000 in dense clusters with long holes: the probes see density 1 at both
    ends, five times the truth. Short scout rounds and counts keep the waste small."""
    ids = portal.store.ids("crm.deal")
    assert ids[-1] > 5 * len(ids)
    run = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
    assert _once(await _ids(run)) == ids
    pages = math.ceil(len(ids) / 50)
    assert run.stats.subcommands <= pages * 1.1 + 2


@pytest.mark.parametrize(
    ("plan", "scale", "cut"),
    [
        ("standard", 0.01, "bucket"),  # more than the bucket takes at once: ~180-page gaps
        ("unlimited", 1.0, "latency"),  # the bucket takes it all: gaps one round covers
    ],
)
async def test_a_dense_table_goes_in_full_batches(plan, scale, cut):
    """Dense ids: about one extra command per two gaps, and every batch but round 0 and
    the last two carries 50 commands. On the standard plan (time-scaled) the bucket binds,
    so the gaps are few and wide; with room for everything at once, they are many."""
    with EmulatedPortal(seed=5, deals=150_000, plan=plan, time_scale=scale) as portal:
        ids = portal.store.ids("crm.deal")
        async with _client(portal, plan, scale) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
            assert _once(await _ids(run)) == ids
        assert portal.counters.total().status_503 == 0
    pages = math.ceil(len(ids) / 50)
    gaps = 23 if cut == "bucket" else pages // 20 + 1
    assert run.stats.subcommands <= pages + gaps  # a short page where a gap's two ends meet
    assert run.stats.batches <= math.ceil(run.stats.subcommands / 50) + 2


class UnresolvedReferences:
    """The client's batcher, but every reference in a linked group names a missing command,
    as on a portal that leaves references unresolved (`>ID` and `<ID` read it as 0)."""

    def __init__(self, batcher):
        self.batcher = batcher

    async def run(self, method, params, *, stats=None, idempotent=True):
        return await self.batcher.run(method, params, stats=stats, idempotent=idempotent)

    def __getattr__(self, name):  # the rest of the batcher: queue state, run_alone
        return getattr(self.batcher, name)

    async def run_linked(self, commands, **options):
        broken = []
        for key, method, params in commands:
            conditions = {
                name: "$result[missing][49][ID]" if str(value).startswith("$result[") else value
                for name, value in params["filter"].items()
            }
            broken.append((key, method, {**params, "filter": conditions}))
        return await self.batcher.run_linked(broken, **options)


async def test_unresolved_references_lose_nothing(portal, client):
    ids = portal.store.ids("crm.deal")[:3_000]
    params = {"select": ["ID"], "filter": {"<=ID": ids[-1]}}
    run = paginate(UnresolvedReferences(client.batcher), "crm.deal.list", params, order=None)
    assert _once(await _ids(run)) == ids


async def test_failed_commands_inside_batches_are_asked_for_again():
    with EmulatedPortal(seed=6, deals=6_000, plan="unlimited") as portal:
        async with _client(portal) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
            pages = aiter(run)
            got = [int(row["ID"]) for row in (await anext(pages)).rows]  # the probes are back
            for _ in range(5):  # five page commands inside the gaps' batches answer 500
                portal.faults.add("internal_error", method="crm.deal.list", times=1)
            got += [int(row["ID"]) async for page in pages for row in page.rows]
        assert portal.faults.active() == []  # all five fired
        assert _once(got) == portal.store.ids("crm.deal")
        assert "retry_failed" in run.stats.fallbacks and run.stats.retries >= 1
        assert client.stats.retries == run.stats.retries  # the run's totals agree


async def test_rows_deleted_after_they_were_counted_come_at_most_once_and_the_rest_all_come():
    """Rows deleted once the gaps were counted: the counts are too high, so the two ends of
    a gap overlap; the rows both fetched are kept once."""
    with EmulatedPortal(seed=8, deals=5_000, plan="unlimited") as portal:
        async with _client(portal) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
            pages = aiter(run)
            got = []
            for _ in range(26):  # round 0's 24 pages, then the first scout's (counted)
                got += [int(row["ID"]) for row in (await anext(pages)).rows]
            doomed = set(portal.store.ids("crm.deal")[::3]) - set(got)
            for row_id in doomed:
                portal.store.delete("crm.deal", row_id)
            got += [int(row["ID"]) async for page in pages for row in page.rows]
            kept = portal.store.ids("crm.deal")
    assert len(got) == len(set(got))
    assert set(kept) <= set(got) <= set(kept) | doomed
    assert len(doomed) > 1_000


async def test_ordered_lists_cannot_ask_for_converging(client):
    with pytest.raises(ValueError, match="order=None"):
        client.list("crm.deal.list", {}, strategy="converging", order="id")
    with pytest.raises(ValueError):
        ConvergingPaging(gap_pages=0)


class _Chain:
    def __init__(self, commands):
        self.commands = commands


def _sizes(batches):
    return [[chain.commands for chain in batch] for batch in batches]


def test_packer_fills_the_fullest_batch_first_and_drains_the_rest():
    packer = BatchPacker()
    assert packer.place(_Chain(30)) == []
    assert packer.place(_Chain(40)) == []  # does not fit beside 30: a second batch
    assert packer.tightest_free() == 10
    assert _sizes(packer.place(_Chain(10))) == [[40, 10]]  # the fullest batch it fits
    assert _sizes(packer.place(_Chain(20))) == [[30, 20]]
    assert packer.open_commands == 0 and packer.tightest_free() == 0
    packer.place(_Chain(5))
    packer.place(_Chain(48))
    assert _sizes(packer.drain()) == [[48], [5]]  # fullest first
    assert packer.drain() == []
    with pytest.raises(ValueError):
        packer.place(_Chain(51))


def test_a_gap_counted_far_denser_than_planned_is_cut_again(client):
    walk = GapWalk(client.batcher, ENTITIES["crm.deal"], {}, None, gap_pages=180, max_gaps=23)
    planned = Gap(1_000, 101_000, remaining=9_000)  # 180 pages: as planned, walked as one
    assert walk._cut(planned) == [planned]
    dense = Gap(1_000, 101_000, remaining=50_000)  # 1,000 pages: six gaps of ~170 pages
    parts = walk._cut(dense)
    assert [(p.lo, p.hi) for p in parts][:2] == [(1_000, 17_666), (17_666, 34_333)]
    assert len(parts) == 6 and parts[-1].hi == 101_000
    assert all(p.remaining is None for p in parts)  # each is scouted and counted anew


async def test_a_dense_cluster_between_sparse_ends_comes_whole():
    """Round 0 sees sparse ends, so the gaps are planned wide; the one holding the dense
    cluster is counted far above plan and cut again. Every row still comes once."""
    with EmulatedPortal(seed=9, deals=40_000, plan="unlimited") as portal:
        ids = portal.store.ids("crm.deal")
        cluster = set(ids[8_000:33_000])
        for row_id in ids:
            if row_id not in cluster and row_id % 25:
                portal.store.delete("crm.deal", row_id)
        kept = portal.store.ids("crm.deal")
        async with _client(portal) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
            assert _once(await _ids(run)) == kept
    assert run.stats.subcommands <= math.ceil(len(kept) / 50) * 1.15 + 30


async def test_verify_costs_one_counting_request(portal, client):
    """The portal counts the filter in a request of its own beside the walk (the count
    after the walk is needed only when rows went missing)."""
    plain = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
    await _ids(plain)
    verified = client.list("crm.deal.list", {"select": ["ID"]}, order=None, verify=True)
    assert _once(await _ids(verified)) == portal.store.ids("crm.deal")
    assert verified.stats.subcommands == plain.stats.subcommands
    assert verified.stats.requests == plain.stats.requests + 1
    assert verified.stats.single_requests == plain.stats.single_requests + 1


async def test_verify_passes_when_counted_rows_vanish_before_they_are_fetched():
    with EmulatedPortal(seed=8, deals=5_000, plan="unlimited") as portal:
        async with _client(portal) as client:
            run = paginate(
                client.batcher, "crm.deal.list", {"select": ["ID"]}, order=None, verify=True
            )
            pages = aiter(run)
            got = []
            for _ in range(26):  # round 0's 24 pages, then the first scout's (counted)
                got += [int(row["ID"]) for row in (await anext(pages)).rows]
            for row_id in set(portal.store.ids("crm.deal")[::3]) - set(got):
                portal.store.delete("crm.deal", row_id)
            got += [int(row["ID"]) async for page in pages for row in page.rows]
            live = set(portal.store.ids("crm.deal"))
    assert live <= set(got) and len(got) == len(set(got))  # rows deleted meanwhile: no loss


async def test_a_fault_that_persists_raises_instead_of_asking_forever():
    with EmulatedPortal(seed=6, deals=3_000, plan="unlimited") as portal:
        portal.faults.add("internal_error", method="crm.deal.list")  # every command, always
        async with _client(portal) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
            with pytest.raises(BitrixServerError):
                async with asyncio.timeout(30):
                    await _ids(run)
        assert run.stats.requests <= 10


async def test_errors_that_asking_again_cannot_cure_raise_at_once(portal):
    wrong = portal.webhook_url.rstrip("/").rsplit("/", 1)[0] + "/wrongcode/"
    async with BitrixClient(wrong, limits=Limits.for_plan("unlimited"), verbose=False) as client:
        with pytest.raises(InvalidTokenError):
            async with asyncio.timeout(30):
                await _ids(client.list("crm.deal.list", {"select": ["ID"]}, order=None))
        assert client.stats.requests <= 2
    async with _client(portal) as client:
        with pytest.raises(BitrixBadRequestError):
            async with asyncio.timeout(30):
                await _ids(client.list("crm.item.list", {"entityTypeId": 999_999}, order=None))


async def test_limit_answers_inside_linked_batches_are_counted():
    with EmulatedPortal(seed=6, deals=6_000, plan="unlimited") as portal:
        async with _client(portal) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
            pages = aiter(run)
            got = [int(row["ID"]) for row in (await anext(pages)).rows]
            for _ in range(3):
                portal.faults.add("query_limit", method="crm.deal.list", times=1)
            got += [int(row["ID"]) async for page in pages for row in page.rows]
        assert _once(got) == portal.store.ids("crm.deal")
        assert run.stats.limit_errors == portal.counters["crm.deal.list"].status_503 == 3


async def test_chains_shrink_while_commands_fail_so_few_pages_are_lost():
    """One command in ten fails: a 50-page chain would break near its tenth page and lose
    the rest, so chains are halved on a failure (and grow back after rounds that went
    through). Measured: 150k rows with 10% failures took 4,571 commands with this, 11,562
    without."""
    with EmulatedPortal(seed=1, deals=120_000, plan="standard", time_scale=0.01) as portal:
        async with _client(portal, "standard", 0.01) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order=None)
            pages = aiter(run)
            got = [int(row["ID"]) for row in (await anext(pages)).rows]
            portal.faults.add("internal_error", method="crm.deal.list", probability=0.1)
            got += [int(row["ID"]) async for page in pages for row in page.rows]
        assert _once(got) == portal.store.ids("crm.deal")
    assert "shrink" in run.stats.fallbacks
    assert run.stats.subcommands <= 1.8 * math.ceil(len(got) / 50)


async def test_a_shared_stats_object_does_not_hide_a_shortfall():
    """A caller may hand in statistics that already count rows (a sync merges its field
    requests first): the completeness check compares this run's own rows."""
    shared = ListStats(rows=50)
    with EmulatedPortal(seed=12, deals=400, plan="unlimited") as portal:
        async with _client(portal) as client:
            run = paginate(
                client.batcher, "crm.deal.list", {"select": ["ID"]}, order=None,
                verify=True, strategy="offset", stats=shared,
            )  # fmt: skip
            pages = aiter(run)
            await anext(pages)
            for row_id in portal.store.ids("crm.deal")[-30:]:  # not fetched yet
                portal.store.delete("crm.deal", row_id)
            with pytest.raises(IncompletePaginationError) as caught:
                async for _page in pages:
                    pass
    assert (caught.value.expected, caught.value.received) == (400, 370)
    assert shared.rows == 370 + 50


class _MovesRowsIntoTheFilter:
    """The client's batcher; right after the first counted linked group it moves `count`
    deals from the middle of that gap into the caller's filter (`!STAGE_ID=NEW`)."""

    def __init__(self, client, outside: list[int], count: int):
        self.inner, self.client, self.outside, self.count = client.batcher, client, outside, count
        self.moved: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def room(self):
        return 0  # a busy bucket: gaps walked in several rounds

    async def run(self, *args, **kwargs):
        return await self.inner.run(*args, **kwargs)

    async def run_linked(self, commands, **kwargs):
        outcomes = await self.inner.run_linked(commands, **kwargs)
        counted = [params for _, _, params in commands if params.get("start") == 0]
        if counted and not self.moved:
            bounds = counted[0]["filter"]
            inside = [i for i in self.outside if bounds[">=ID"] <= i < bounds["<ID"]]
            middle = len(inside) // 2
            self.moved = inside[max(0, middle - self.count // 2) : middle + self.count // 2]
            for deal_id in self.moved:
                await self.client.call(
                    "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "PREPARATION"}}
                )
        return outcomes


async def test_rows_entering_the_filter_mid_run_do_not_hide_unchanged_rows():
    """60 deals start to match the filter after their gap was counted: the count runs out
    before the two ends meet, and what lies between is counted again, not dropped."""
    unlimited = Limits.for_plan("unlimited")
    async with (
        EmulatedPortal(seed=3, deals=8000, plan="unlimited") as portal,
        BitrixClient(portal.webhook_url, limits=unlimited) as client,
    ):
        not_new = {"filter": {"!STAGE_ID": "NEW"}, "select": ["ID"]}
        before = {int(r["ID"]) for r in await client.get_all("crm.deal.list", not_new)}
        outside = [i for i in portal.store.ids("crm.deal") if i not in before]
        runner = _MovesRowsIntoTheFilter(client, outside, count=60)
        run = paginate(runner, "crm.deal.list", not_new, strategy=ConvergingPaging(), order=None)
        got = {int(row["ID"]) async for page in run for row in page.rows}
        assert runner.moved
        assert before <= got
