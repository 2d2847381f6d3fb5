"""Attacks on the paging fields of a list answer rather than its rows, over real HTTP.

`total_low` (every `total` one lower, the COUNTing pages included) with one row dropped:
the portal's counts then agree with the short read; the ids the count's page listed do not
(`bitrix_core/pagination/listed.py`). A liar that drops the same row from that page too is
out of any client's reach: the list answers are the only source of counts. `next_skip` (page one's `next` one page
ahead): only offset paging reads `next` (`bitrix_core/pagination/offset.py`), and it proves
itself against the pages' `total`. Both faults are assumptions (see `emulator/faults.py`).
"""

from datetime import UTC, datetime, timedelta

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.emulator.sizes import PortalSizes
from bitrix_core.errors import IncompletePaginationError
from bitrix_core.throttle import Limits
from tests.dagster.test_integrity_attacks import KINDS, METHOD, cursor, stored, sync
from tests.dagster.test_integrity_attacks import warehouse as warehouse  # noqa: F401 (fixture)

SCALE = 0.02
SIZES = PortalSizes(deals=300, smart_items=300)


async def test_a_skipped_next_on_offset_paging_fails_the_read() -> None:
    """Offset paging fans out from page one's `next` up to its `total`: a `next` one page
    ahead skips 50 rows, and the pages' `total` (checked on every offset read, verify or
    not) turns that into IncompletePaginationError."""
    with EmulatedPortal(seed=3, sizes=SIZES, plan="standard", time_scale=SCALE) as portal:
        fault = portal.faults.add("next_skip", method="crm.deal.list", times=1)
        limits = Limits.for_plan("standard").scaled(SCALE)
        async with BitrixClient(portal.webhook_url, limits=limits, verbose=False) as client:
            with pytest.raises(IncompletePaginationError) as raised:
                await client.get_all("crm.deal.list", {"select": ["ID"]}, strategy="offset")
        assert fault.fired == 1
        assert raised.value.received == portal.store.count("crm.deal") - 50
        assert raised.value.expected == portal.store.count("crm.deal")


@pytest.mark.parametrize("mode", ["incremental", "window", "full"])
async def test_a_lowered_total_with_a_dropped_row_fails_the_read(warehouse, mode: str) -> None:  # noqa: F811
    """Every `total` one low (the COUNTing pages the read is proven with included) and a
    row dropped from the count's page and another from a walk page: the counts agree with
    the short read. Before the listed ids were checked, an incremental or window run
    succeeded one row short; a full refresh was (and is) also caught by the confirmation
    by id before stamping deletes (`sync/deletes.py`): it fails only with both removed."""
    entity = "crm.item.128"
    spec = KINDS[entity]
    with EmulatedPortal(seed=8, sizes=SIZES, plan="standard", time_scale=SCALE) as portal:
        await sync(portal, warehouse, spec)
        before = cursor(warehouse, entity)
        portal.store.mutate(3, updates=21, entities=[entity])
        portal.faults.add("total_low", method=METHOD[entity])
        dropped = portal.faults.add("drop_row_high", method=METHOD[entity], times=2)
        now = datetime.now(UTC)
        options = {
            "incremental": {"lookback": timedelta(0)},
            "window": {"window": (now - timedelta(days=3650), now + timedelta(days=1))},
            "full": {"full_refresh": True},
        }[mode]
        with pytest.raises(IncompletePaginationError):
            await sync(portal, warehouse, spec, **options)
        assert dropped.fired == 2 and cursor(warehouse, entity) == before

        portal.faults.clear()
        portal.faults.add("total_low", method=METHOD[entity])  # a low count alone is no loss
        await sync(portal, warehouse, spec, **options)
        assert set(stored(warehouse, entity)) == set(portal.store.ids(entity))
