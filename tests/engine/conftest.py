"""Helpers shared by the engine tests: a fast retry policy, deal ids, a client fixture."""

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.requester import RetryPolicy
from bitrix_core.throttle import Limits

FAST_RETRY = RetryPolicy(max_retries=3, backoff_s=0.001, backoff_max_s=0.01)


async def deal_ids(client: BitrixClient, count: int) -> list[int]:
    """The first `count` deal ids of the portal (ids have gaps), read with plain calls."""
    ids: list[int] = []
    while len(ids) < count:
        page = await client.call(
            "crm.deal.list",
            {
                "select": ["ID"],
                "order": {"ID": "ASC"},
                "filter": {">ID": ids[-1] if ids else 0},
                "start": -1,
            },
        )
        if not page:
            break
        ids += [int(row["ID"]) for row in page]
    return ids[:count]


@pytest.fixture
async def client(portal):
    """An unlimited-plan client of the module's `portal` fixture."""
    async with BitrixClient(
        portal.webhook_url, limits=Limits.for_plan("unlimited"), verbose=False
    ) as client:
        yield client
