"""The asset-spec metadata keys the factory writes and the run reads, in one place, and the
`EntitySpec` stored under `ENTITY_SPEC_KEY`."""

from dataclasses import asdict
from typing import Any

from bitrix_core.entities import EntitySpec

#: Asset-spec metadata key holding the entity's `EntitySpec` as a JSON-ready dict.
ENTITY_SPEC_KEY = "bitrix24/entity_spec"
#: Asset-spec metadata key holding the default lookback in minutes.
LOOKBACK_KEY = "bitrix24/lookback_minutes"
#: Asset-spec metadata key holding the warehouse table prefix.
TABLE_PREFIX_KEY = "bitrix24/table_prefix"
#: Asset-spec metadata key of the `crm.item` asset: types synced by their own assets.
EXCLUDE_KEY = "bitrix24/exclude_entities"


def spec_to_metadata(spec: EntitySpec) -> dict[str, Any]:
    """An `EntitySpec` as a JSON-ready dict (stored on the asset spec)."""
    data = asdict(spec)
    data["extra_params"] = dict(spec.extra_params)
    return data


def spec_from_metadata(data: Any) -> EntitySpec:
    """The `EntitySpec` stored on an asset spec by `spec_to_metadata`."""
    return EntitySpec(**dict(plain(data)))


def plain(value: Any) -> Any:
    """A metadata entry's raw value (Dagster may wrap it in a MetadataValue)."""
    return getattr(value, "value", value)
