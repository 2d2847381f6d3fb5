"""A verified read is proven against the portal's own counts, not against the walk's totals.

The row faults (`drop_row_low/_high/_middle`) make one list page come back a row short.
Before the portal counted the filter before and after a read, a converging read of 20,000
deals with one row dropped from the first page ended successfully with 49 rows (low end),
649 (top end) or 99 (round 0's middle): the walk took the short page for the end.
"""

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import IncompletePaginationError
from bitrix_core.throttle import Limits

DEALS = 3_000


async def _read(portal: EmulatedPortal, order, *, during=None) -> tuple[list[int], object]:
    """Every id of a verified read (an error is returned, not raised); `during(got)` runs
    once after the first page."""
    limits = Limits.for_plan("standard").scaled(0.02)
    async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
        run = client.list("crm.deal.list", {"select": ["ID"]}, order=order, verify=True)
        got: list[int] = []
        try:
            async for page in run:
                got += [int(row["ID"]) for row in page.rows]
                if during is not None:
                    during(got)
                    during = None
        except IncompletePaginationError as error:
            return got, error
    return got, None


@pytest.mark.parametrize("order", [None, "id"])
@pytest.mark.parametrize("place", ["low", "high", "middle"])
@pytest.mark.parametrize("times", [1, 2, 3])
async def test_a_row_dropped_from_a_page_fails_the_read_with_the_numbers(place, order, times):
    """Dropped from the first page (low), the last (high), or one between: the read either
    got every row (the drop hit the count's own page) or fails with expected and received."""
    with EmulatedPortal(seed=3, deals=DEALS, plan="standard", time_scale=0.02) as portal:
        fault = portal.faults.add(f"drop_row_{place}", method="crm.deal.list", times=times)
        got, error = await _read(portal, order)
        assert 1 <= fault.fired <= times
        assert len(got) == len(set(got))
        if error is None:
            assert sorted(got) == portal.store.ids("crm.deal")
        else:
            assert (error.expected, error.received) == (DEALS, len(got))
            assert DEALS - fault.fired <= len(got) < DEALS


async def test_a_short_first_page_does_not_end_a_keyset_walk():
    """Before, the documented export loop stopped at the first short page: 49 of 3,000."""
    with EmulatedPortal(seed=3, deals=DEALS, plan="unlimited") as portal:
        portal.faults.add("drop_row_low", method="crm.deal.list", times=1)
        async with BitrixClient(portal.webhook_url, verbose=False) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, strategy="keyset")
            got = [int(row["ID"]) for row in await run.all()]
    assert len(got) == DEALS - 1 and set(got) < set(portal.store.ids("crm.deal"))


@pytest.mark.parametrize("order", [None, "id"])
async def test_rows_deleted_and_added_during_a_read_are_no_loss(order):
    """Rows deleted before their page came and rows added meanwhile (ids above the walk):
    the read succeeds with every row that lived through it, no false alarm."""
    with EmulatedPortal(seed=5, deals=DEALS, plan="standard", time_scale=0.02) as portal:

        def mutate(got: list[int]) -> None:
            portal.store.mutate(11, adds=40, deletes=60, entities=["crm.deal"])

        before = set(portal.store.ids("crm.deal"))
        got, error = await _read(portal, order, during=mutate)
        assert error is None
        lived = before & set(portal.store.ids("crm.deal"))
        assert lived <= set(got) and len(got) == len(set(got))


async def test_a_short_page_from_a_row_deleted_after_the_count_does_not_end_the_walk():
    """A gap counted, then a row in it deleted: its page is short, yet the rest is read."""
    with EmulatedPortal(seed=9, deals=DEALS, plan="standard", time_scale=0.02) as portal:
        ids = portal.store.ids("crm.deal")

        def delete_one_per_stretch(got: list[int]) -> None:
            for row_id in ids[700::500]:
                portal.store.delete("crm.deal", row_id)

        got, error = await _read(portal, None, during=delete_one_per_stretch)
        assert error is None
        assert set(portal.store.ids("crm.deal")) <= set(got)


def test_drop_row_fault_is_refused_with_a_bad_kind():
    portal = EmulatedPortal(seed=1, deals=10)
    with pytest.raises(ValueError, match="unknown fault kind"):
        portal.faults.add("drop_row_somewhere", method="crm.deal.list")


async def test_drop_row_fault_drops_the_middle_row_of_the_first_page_once():
    with EmulatedPortal(seed=1, deals=200, plan="unlimited") as portal:
        portal.faults.add("drop_row_low", method="crm.deal.list", times=1)
        async with BitrixClient(portal.webhook_url, verbose=False) as client:
            query = {"select": ["ID"], "order": {"ID": "ASC"}}
            first = await client.call("crm.deal.list", query)
            again = await client.call("crm.deal.list", query)
    assert len(again) == 50 and len(first) == 49
    assert [row["ID"] for row in first] == [row["ID"] for row in again[:25] + again[26:]]




@pytest.mark.parametrize("order", [None, "id"])
async def test_three_one_off_400s_cost_their_pages_a_retry_not_the_run_a_fallback(order):
    """Before, three INVALID_ARG_VALUE answers at the start sent 20,000 deals (standard
    plan, real time) to offset paging: 194.9 s instead of 2.3 s (order=None), or failed the
    read (order="id"). Now the pages are asked again and the id strategy goes on."""
    with EmulatedPortal(seed=3, deals=DEALS, plan="standard", time_scale=0.02) as portal:
        portal.faults.add("invalid_arg_value", method="crm.deal.list", times=3)
        limits = Limits.for_plan("standard").scaled(0.02)
        async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order=order, verify=True)
            got = sorted(int(row["ID"]) for row in await run.all())
    assert got == portal.store.ids("crm.deal")
    assert run.stats.strategy == ("converging" if order is None else "idwindow")
    assert not any("->offset" in fallback for fallback in run.stats.fallbacks)
    assert run.stats.subcommands <= DEALS / 50 + 20


async def test_a_filter_refused_twice_still_falls_back_to_offset():
    """Both probes refused, alone again, and the strategy's second try too (8 answers)."""
    with EmulatedPortal(seed=3, deals=300, plan="unlimited") as portal:
        portal.faults.add("invalid_arg_value", method="crm.deal.list", times=8)
        async with BitrixClient(portal.webhook_url, verbose=False) as client:
            run = client.list("crm.deal.list", {"select": ["ID"]}, order="id")
            got = [int(row["ID"]) for row in await run.all()]
    assert got == portal.store.ids("crm.deal")
    assert run.stats.strategy == "offset"


async def test_a_drop_row_fault_without_a_method_hits_the_next_entity_list_page():
    with EmulatedPortal(seed=1, deals=200, plan="unlimited") as portal:
        fault = portal.faults.add("drop_row_low", times=1)
        async with BitrixClient(portal.webhook_url, verbose=False) as client:
            stages = await client.call("crm.status.list", {"filter": {"ENTITY_ID": "SOURCE"}})
            assert stages and fault.fired == 0  # a dictionary, not an entity table
            leads = await client.call("crm.lead.list", {"select": ["ID"], "order": {"ID": "ASC"}})
    assert len(leads) == 49 and fault.fired == 1
