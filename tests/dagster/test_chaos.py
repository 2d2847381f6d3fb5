"""Chaos: a first sync and a full refresh under every fault kind in turn, 1 to 3 times.

Each run either succeeds with the warehouse equal to the portal (every id and change time,
the deals deleted on the portal stamped, nothing else) or fails with an error that names the
fault, with no row stamped deleted and the cursor where it was. Add a fault kind to
`FAULTS` (with the errors that name it) and it is tried too.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.faults import ERROR_FAULTS
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.entities import ENTITIES
from bitrix_core.errors import (
    BitrixBadRequestError,
    BitrixError,
    BitrixPermissionError,
    BitrixRedirectError,
    BitrixRetryableError,
    IncompletePaginationError,
    InvalidCredentialsError,
    OverloadLimitError,
    QueryLimitExceededError,
)
from bitrix_core.requester import RetryPolicy
from bitrix_core.throttle import Limits
from dagster_bitrix24.sync import EntitySync, SyncOptions
from dagster_bitrix24.warehouse import Warehouse

DEALS = 2_000
GONE = 7
"""Deals deleted on the portal before the full refresh: the stamps it must make."""


@dataclass(frozen=True)
class Chaos:
    """A fault kind and the errors that name it when a run fails under it."""

    kind: str
    names: tuple[type[BitrixError], ...]
    delay_s: float = 0.0


FAULTS: list[Chaos] = [
    Chaos("drop_row_low", (IncompletePaginationError,)),
    Chaos("drop_row_high", (IncompletePaginationError,)),
    Chaos("drop_row_middle", (IncompletePaginationError,)),
    Chaos("internal_error", (BitrixRetryableError,)),
    Chaos("unexpected_answer", (BitrixRetryableError,)),
    Chaos("html_502", (BitrixRetryableError,)),
    Chaos("html_503", (BitrixRetryableError,)),
    Chaos("reset", (BitrixRetryableError,)),
    Chaos("truncated", (BitrixRetryableError,)),
    Chaos("slow", (), delay_s=0.2),
    Chaos("query_limit", (QueryLimitExceededError,)),
    Chaos("overload", (OverloadLimitError,)),
    Chaos("invalid_credentials", (InvalidCredentialsError,)),
    Chaos("access_denied", (BitrixPermissionError,)),
    Chaos("invalid_arg_value", (BitrixBadRequestError,)),
    Chaos("php_warning_200", (BitrixRetryableError,)),
    Chaos("empty_200", (BitrixRetryableError,)),
    Chaos("null_200", (BitrixRetryableError,)),
    Chaos("redirect_off_host", (BitrixRedirectError,)),
    Chaos("foreign_client", (QueryLimitExceededError,), delay_s=1.0),  # 50 portal seconds
]
"""Every fault kind tried; `names` empty: the run must succeed."""


async def _sync(portal: EmulatedPortal, warehouse: Warehouse, **options) -> BaseException | None:
    """One crm.deal sync; the error it raised, or None."""
    limits = Limits.for_plan("standard").scaled(0.02)
    retry = RetryPolicy(backoff_s=0.01)
    async with BitrixClient(
        portal.webhook_url, limits=limits, retry=retry, verbose=False
    ) as client:
        sync = EntitySync(
            client=client, warehouse=warehouse, spec=ENTITIES["crm.deal"],
            options=SyncOptions(**options),
        )  # fmt: skip
        try:
            await sync.run()
        except BitrixError as error:
            return error
    return None


def _stored(warehouse: Warehouse) -> dict[int, tuple[datetime | None, bool]]:
    """id -> (change time in UTC, marked deleted) of every stored deal."""
    table = warehouse.table_name("crm.deal")
    with warehouse.engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT id, date_modify, _deleted_at FROM {table}")
        return {int(i): (_utc(changed), deleted is not None) for i, changed, deleted in rows}


def _utc(value: object) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _portal(portal: EmulatedPortal) -> dict[int, datetime]:
    return {
        int(row["ID"]): datetime.fromtimestamp(row["DATE_MODIFY"], UTC)
        for row in portal.store.raw_rows("crm.deal")
    }


def _names_the_fault(error: BaseException, chaos: Chaos) -> bool:
    if not isinstance(error, chaos.names):
        return False
    code = ERROR_FAULTS.get(chaos.kind, (0, None, ""))[1]
    return code is None or code.lower() in str(error).lower()


@pytest.mark.parametrize("times", [1, 3])
@pytest.mark.parametrize("chaos", FAULTS, ids=[c.kind for c in FAULTS])
async def test_a_sync_under_a_fault_is_exact_or_fails_naming_it(chaos, times, tmp_path):
    url = f"sqlite:///{tmp_path / 'chaos.sqlite'}"
    with EmulatedPortal(seed=17, deals=DEALS, plan="standard", time_scale=0.02) as portal:
        # a first sync under the fault
        first = Warehouse(url, table_prefix="first_")
        portal.faults.add(chaos.kind, method="crm.deal.list", times=times, delay_s=chaos.delay_s)
        error = await _sync(portal, first)
        portal.faults.clear()
        key = first.table_name("crm.deal")
        if error is None:
            assert _stored(first) == {i: (t, False) for i, t in _portal(portal).items()}
            assert first.read_cursor(key) is not None
        else:
            assert _names_the_fault(error, chaos), repr(error)
            assert first.read_cursor(key) is None
            assert not any(deleted for _, deleted in _stored(first).values())

        # a full refresh under the fault, after a clean sync and deals deleted on the portal
        refreshed = Warehouse(url, table_prefix="refresh_")
        assert await _sync(portal, refreshed) is None
        cursor = refreshed.read_cursor(key := refreshed.table_name("crm.deal"))
        gone = portal.store.ids("crm.deal")[:: DEALS // GONE][:GONE]
        for deal_id in gone:
            portal.store.delete("crm.deal", deal_id)
        portal.faults.add(chaos.kind, method="crm.deal.list", times=times, delay_s=chaos.delay_s)
        error = await _sync(portal, refreshed, full_refresh=True)
        stored = _stored(refreshed)
        stamped = {i for i, (_, deleted) in stored.items() if deleted}
        if error is None:
            assert stamped == set(gone)
            live = {i: t for i, (t, deleted) in stored.items() if not deleted}
            assert live == _portal(portal)
        else:
            assert _names_the_fault(error, chaos), repr(error)
            assert stamped == set()
            assert refreshed.read_cursor(key) == cursor
        for warehouse in (first, refreshed):
            warehouse.engine.dispose()


