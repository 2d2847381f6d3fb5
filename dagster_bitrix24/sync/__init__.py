"""The sync (no Dagster in here): one entity's read from the portal into the warehouse
(`entity.py`), deal-contact links, smart processes, and one run's jobs on one client;
through the engine's public API (`BitrixClient.list`, `call`, `call_many`, `get_all`) and a
`WarehouseWriter`."""

from dagster_bitrix24.sync.cursor import partitions_state_key
from dagster_bitrix24.sync.entity import EntitySync
from dagster_bitrix24.sync.options import SyncOptions, SyncResult, lookback_from_minutes
from dagster_bitrix24.sync.protocol import ClientSource, WarehouseWriter

__all__ = [
    "ClientSource", "EntitySync", "SyncOptions", "SyncResult", "WarehouseWriter",
    "lookback_from_minutes", "partitions_state_key",
]  # fmt: skip
