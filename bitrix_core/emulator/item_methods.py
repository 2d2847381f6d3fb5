"""crm.item.* (universal CRM API), crm.type.list and crm.category.list."""

from __future__ import annotations

from bitrix_core.emulator.method_kit import Handler
from bitrix_core.emulator.store import PortalStore


def handlers(store: PortalStore) -> dict[str, Handler]:
    """Every crm.item / type / category method name (lower case) -> its handler."""
    return {}
