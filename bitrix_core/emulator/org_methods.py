"""user.*, department.*, tasks.task.* and crm.status.* methods."""

from __future__ import annotations

from bitrix_core.emulator.method_kit import Handler
from bitrix_core.emulator.store import PortalStore


def handlers(store: PortalStore) -> dict[str, Handler]:
    """Every user / department / task / status method name (lower case) -> its handler."""
    return {}
