"""Dagster assets that sync Bitrix24 CRM entities into SQL warehouse tables."""

from bitrix_core.entities import ENTITIES, EntitySpec, crm_item
from bitrix_core.limiter_backends import SqliteLimiterBackend
from dagster_bitrix24.assets import (
    Bitrix24SyncConfig,
    bitrix24_assets,
    build_bitrix24_assets,
    get_bitrix24_asset_specs,
)
from dagster_bitrix24.checks import build_bitrix24_checks
from dagster_bitrix24.component import Bitrix24Component
from dagster_bitrix24.partitions import change_time_partitions
from dagster_bitrix24.portals import Bitrix24Portal, build_bitrix24_portals
from dagster_bitrix24.resources import Bitrix24Resource, SQLWarehouseResource
from dagster_bitrix24.schedules import build_bitrix24_schedule
from dagster_bitrix24.sync import EntitySync, SyncOptions, SyncResult
from dagster_bitrix24.sync.smart_processes import discover_smart_processes
from dagster_bitrix24.translator import Bitrix24EntityProps, DagsterBitrix24Translator

__all__ = [
    "ENTITIES",
    "Bitrix24Component",
    "Bitrix24EntityProps",
    "Bitrix24Portal",
    "Bitrix24Resource",
    "Bitrix24SyncConfig",
    "DagsterBitrix24Translator",
    "EntitySpec",
    "EntitySync",
    "SQLWarehouseResource",
    "SqliteLimiterBackend",
    "SyncOptions",
    "SyncResult",
    "bitrix24_assets",
    "build_bitrix24_assets",
    "build_bitrix24_checks",
    "build_bitrix24_portals",
    "build_bitrix24_schedule",
    "change_time_partitions",
    "crm_item",
    "discover_smart_processes",
    "get_bitrix24_asset_specs",
]
