"""Pagination strategies against the emulator over real HTTP: exactly the portal's rows."""

from collections import Counter

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.emulator.store import PortalSizes
from bitrix_core.entities import ENTITIES, EntitySpec
from bitrix_core.errors import BitrixParameterError, IncompletePaginationError
from bitrix_core.pagination import IdWindowPaging, paginate

SIZES = PortalSizes(deals=1500, users=120, tasks=400, smart_items=300)
STRATEGIES = ["idwindow", "keyset", "offset"]


@pytest.fixture(scope="module")
def portal():
    # time_scale 0.1: tasks pages cost 1.25 s each under the calibrated profile
    portal = EmulatedPortal(seed=7, sizes=SIZES, plan="unlimited", time_scale=0.1).start()
    yield portal
    portal.stop()


def _most_common(portal, entity, column):
    return Counter(row[column] for row in portal.store.raw_rows(entity)).most_common(1)[0][0]


def _ids(portal, entity, column=None, value=None, lo=None, hi=None):
    rows = portal.store.raw_rows(entity)
    return [
        row["ID"]
        for row in rows
        if (column is None or row[column] == value)
        and (lo is None or row["ID"] >= lo)
        and (hi is None or row["ID"] < hi)
    ]


async def _collect(run, spec=None):
    key = (spec or run.spec).id_field
    return [int(row[key]) async for page in run for row in page.rows]


SHAPES = [
    ("crm.deal.list", {"select": ["ID", "TITLE"]}, "crm.deal"),
    ("crm.item.list", {"entityTypeId": 128, "select": ["id", "title"]}, "crm.item.128"),
    ("tasks.task.list", {"select": ["ID", "TITLE"]}, "tasks.task"),
    ("user.get", {}, "user"),
]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("method", "params", "entity"), SHAPES)
async def test_every_strategy_returns_exactly_the_portals_rows(
    portal, client, strategy, method, params, entity
):
    run = client.list(method, params, strategy=strategy)
    got = await _collect(run)
    assert got == portal.store.ids(entity)
    assert run.stats.strategy == strategy and run.stats.rows == len(got)


FILTERED = [
    ("crm.deal.list", {}, "crm.deal", "filter", "STAGE_ID", "STAGE_ID"),
    ("crm.item.list", {"entityTypeId": 128}, "crm.item.128", "filter", "categoryId", "CATEGORY_ID"),
    ("tasks.task.list", {}, "tasks.task", "filter", "STATUS", "STATUS"),
]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("method", "base", "entity", "fkey", "field", "column"), FILTERED)
async def test_user_filters_are_kept(
    portal, client, strategy, method, base, entity, fkey, field, column
):
    value = _most_common(portal, entity, column)
    run = client.list(method, {**base, fkey: {field: value}}, strategy=strategy)
    assert await _collect(run) == _ids(portal, entity, column, value)


@pytest.mark.parametrize("strategy", ["idwindow", "keyset"])
async def test_user_id_bounds_are_intersected(portal, client, strategy):
    ids = portal.store.ids("crm.deal")
    lo, hi = ids[100], ids[900]
    stage = _most_common(portal, "crm.deal", "STAGE_ID")
    params = {"filter": {">ID": lo, "<=ID": hi, "STAGE_ID": stage}}
    got = await _collect(client.list("crm.deal.list", params, strategy=strategy))
    assert got == _ids(portal, "crm.deal", "STAGE_ID", stage, lo + 1, hi + 1)
    tasks = await _collect(
        client.list("user.get", {"FILTER": {">=ID": 5, "<ID": 40}}, strategy=strategy)
    )
    assert tasks == _ids(portal, "user", lo=5, hi=40)


async def test_id_windows_cover_dense_and_sparse_regions_with_few_round_trips(portal, client):
    ids = portal.store.ids("crm.deal")
    gaps = [b - a for a, b in zip(ids, ids[1:], strict=False)]
    assert min(gaps) == 1 and max(gaps) > 5, "the emulator should mix dense and sparse ids"
    run = client.list("crm.deal.list", {"select": ["ID"]})
    assert await _collect(run) == ids
    assert run.stats.strategy == "idwindow"
    assert run.stats.batches <= 10
    assert run.stats.subcommands <= 3 * len(ids) / 50 + 10


async def test_unordered_windows_still_return_every_row_once(portal, client):
    got = await _collect(client.list("crm.deal.list", {"select": ["ID"]}, order=None))
    assert len(got) == len(set(got)) and sorted(got) == portal.store.ids("crm.deal")


@pytest.mark.parametrize(
    ("method", "params", "entity"),
    [
        ("crm.status.list", {}, "crm.status"),
        ("department.get", {}, "department"),
    ],
)
async def test_dictionaries_page_by_offset(portal, client, method, params, entity):
    events = []
    run = client.list(method, params, progress=events.append)
    got = sorted(await _collect(run))
    assert got == portal.store.ids(entity)
    assert run.stats.strategy == "offset"
    assert events[-1].done and events[-1].rows == len(got)


async def test_offset_total_reaches_the_progress_callback(portal, client):
    events = []
    run = client.list("crm.deal.list", {"order": {"TITLE": "ASC"}}, progress=events.append)
    got = await _collect(run)
    assert run.stats.strategy == "offset"
    assert sorted(got) == portal.store.ids("crm.deal")
    assert events[-1].total == len(got) == events[-1].rows


async def test_offset_paging_dedupes_rows_that_move_between_pages():
    with EmulatedPortal(seed=11, deals=300, plan="unlimited") as portal:
        async with BitrixClient(portal.webhook_url, verbose=False) as client:
            params = {"order": {"DATE_MODIFY": "ASC"}, "select": ["ID", "DATE_MODIFY"]}
            run = client.list("crm.deal.list", params, strategy="offset")
            got, moved = [], False
            async for page in run:
                got += [int(row["ID"]) for row in page.rows]
                if not moved:
                    moved = True
                    for row in page.rows[:10]:  # now the newest: they reappear at the end
                        portal.store.update("crm.deal", int(row["ID"]), {"TITLE": "moved"})
            assert len(got) == len(set(got))
            assert sorted(got) == portal.store.ids("crm.deal")


async def test_live_rows_skipped_mid_run_raise_incomplete_pagination():
    with EmulatedPortal(seed=12, deals=400, plan="unlimited") as portal:
        async with BitrixClient(portal.webhook_url, verbose=False) as client:
            run = paginate(client.batcher, "crm.deal.list", {"select": ["ID"]}, strategy="offset")
            pages = aiter(run)
            await anext(pages)
            for row_id in portal.store.ids("crm.deal")[:25]:  # offsets shift: 25 live rows skipped
                portal.store.delete("crm.deal", row_id)
            with pytest.raises(IncompletePaginationError) as caught:
                async for _page in pages:
                    pass
            assert caught.value.expected == 400
            assert caught.value.received < 400


async def test_rows_deleted_before_they_are_fetched_are_not_a_loss():
    """The portal's count after the walk no longer holds them: a verified read succeeds with
    every row that lived through it (before the counts came from the portal both before and
    after the read, this raised IncompletePaginationError: 375 of 400)."""
    with EmulatedPortal(seed=12, deals=400, plan="unlimited") as portal:
        async with BitrixClient(portal.webhook_url, verbose=False) as client:
            run = paginate(
                client.batcher, "crm.deal.list", {"select": ["ID"]}, strategy="idwindow",
                verify=True,
            )  # fmt: skip
            pages = aiter(run)
            got = [int(row["ID"]) for row in (await anext(pages)).rows]
            for row_id in portal.store.ids("crm.deal")[-25:]:
                portal.store.delete("crm.deal", row_id)
            got += [int(row["ID"]) async for page in pages for row in page.rows]
    assert got == portal.store.ids("crm.deal")


async def test_verify_passes_when_nothing_is_lost(portal, client):
    run = paginate(client.batcher, "crm.deal.list", {"select": ["ID"]}, verify=True)
    assert len(await _collect(run)) == portal.store.count("crm.deal")


async def test_ignored_id_order_falls_back_to_offset(portal, client):
    # user.get-style top-level sort/order strings mean nothing to crm.deal.list: the portal
    # refuses the string `order` ("Parameter 'order' must be array.", b24restdocs
    # api-reference/crm/deals/crm-deal-list.md), and the run falls back instead of failing
    spec = EntitySpec(name="deal", list_method="crm.deal.list", fields_method=None, style="user")
    run = paginate(client.batcher, "crm.deal.list", {}, spec=spec, strategy=IdWindowPaging())
    got = sorted(await _collect(run))
    assert got == portal.store.ids("crm.deal")
    assert run.stats.strategy == "offset"
    assert run.stats.fallbacks == [  # refused twice: not a one-off answer
        "retry idwindow: ",
        "idwindow->offset: BitrixBadRequestError",
    ]


async def test_bad_parameters_send_nothing(portal, client):
    before = portal.counters.total().requests
    for params in ({"filter": {"=>ID": 1}}, {"select": "ID"}, {"order": {"ID": "UP"}}):
        with pytest.raises(BitrixParameterError):
            client.list("crm.deal.list", params)
    with pytest.raises(BitrixParameterError):
        paginate(client.batcher, "crm deal list")
    with pytest.raises(BitrixParameterError):
        await _collect(
            client.list("crm.deal.list", {"filter": {">ID": "abc"}}), ENTITIES["crm.deal"]
        )
    bad_options = (
        {"order": "desc"}, {"strategy": "fastest"}, {"strategy": "converging"},
        {"strategy": "keyset", "filter": {"logic": "OR", "<ID": 5, ">ID": 9}},
    )  # fmt: skip
    for options in bad_options:
        params = {"filter": options.pop("filter")} if "filter" in options else {}
        with pytest.raises(BitrixParameterError) as raised:
            paginate(client.batcher, "crm.deal.list", params, **options)
        assert raised.value.parameter in ("order", "strategy")
    assert portal.counters.total().requests == before


@pytest.mark.parametrize(("method", "params", "key"), [
    ("crm.deal.list", {}, "ID"), ("crm.item.list", {"entityTypeId": 2}, "id"),
])  # fmt: skip
async def test_an_or_filter_with_id_bounds_pages_by_offset(portal, client, method, params, key):
    """The id strategies would AND the bounds of `logic: OR`; the run pages by offset."""
    ids = portal.store.ids("crm.deal")
    low, high = ids[20], ids[-30]
    either = {"logic": "OR", f"<{key}": low, f">{key}": high}
    run = paginate(client.batcher, method, {**params, "filter": either, "select": [key]})
    got = sorted(await _collect(run))
    assert got == [i for i in ids if i < low or i > high] and run.stats.strategy == "offset"


async def test_a_buffer_cap_below_one_window_still_returns_every_row(portal, client):
    strategy = IdWindowPaging(max_buffered_rows=100)
    run = paginate(client.batcher, "crm.deal.list", {"select": ["ID"]}, strategy=strategy)
    assert sorted(await _collect(run)) == portal.store.ids("crm.deal")
