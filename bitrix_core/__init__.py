"""bitrix_core: an async engine for the Bitrix24 REST API, and an offline portal to test it.

    from bitrix_core import BitrixClient, Limits

    async with BitrixClient(webhook_url, limits=Limits.for_plan("standard")) as client:
        async for page in client.list("crm.deal.list", {"select": ["*", "UF_*"]}):
            ...
"""

from bitrix_core.client import BitrixClient
from bitrix_core.entities import ENTITIES, EntitySpec
from bitrix_core.errors import (
    BitrixError,
    BitrixParameterError,
    IncompletePaginationError,
)
from bitrix_core.facade import Bitrix
from bitrix_core.throttle import Limits

__all__ = [
    "ENTITIES",
    "Bitrix",
    "BitrixClient",
    "BitrixError",
    "BitrixParameterError",
    "EntitySpec",
    "IncompletePaginationError",
    "Limits",
]
