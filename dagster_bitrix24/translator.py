"""How a Bitrix24 entity becomes a Dagster asset: one overridable hook, `get_asset_spec`."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, AssetSpec

#: Metadata key holding the warehouse table an asset lands in (Dagster's standard key).
TABLE_NAME_KEY = "dagster/table_name"
#: Metadata key holding the Bitrix24 entity name ("crm.deal") on every asset spec.
ENTITY_KEY = "bitrix24/entity"


def entity_slug(entity: str) -> str:
    """`crm.deal` -> `crm_deal`: a name that is safe as an asset key part and a table name."""
    return re.sub(r"[^a-z0-9]+", "_", entity.lower()).strip("_")


@dataclass(frozen=True)
class Bitrix24EntityProps:
    """What the translator knows about one entity when it builds the asset spec.

    `table_name` is None for the all-smart-processes asset (`crm.item`): it writes one table
    per type found at run time, named in each materialisation's metadata.
    """

    entity: str
    table_name: str | None
    portal: str
    warehouse_kind: str | None = None
    description: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class DagsterBitrix24Translator:
    """Maps a Bitrix24 entity to an `AssetSpec`; subclass and override `get_asset_spec`.

    Keys, groups, kinds, owners, tags and automation conditions all come from this one hook.
    Example::

        class MyTranslator(DagsterBitrix24Translator):
            def get_asset_spec(self, props):
                spec = super().get_asset_spec(props)
                return spec.replace_attributes(
                    key=AssetKey(["raw", entity_slug(props.entity)]),
                    owners=["team:data"],
                    automation_condition=AutomationCondition.on_cron("0 * * * *"),
                )
    """

    def get_asset_spec(self, props: Bitrix24EntityProps) -> AssetSpec:
        """The spec for one entity: key `bitrix24/<entity_slug>`, group `bitrix24`, kinds
        `bitrix24` and the warehouse dialect, its table as `dagster/table_name`."""
        kinds = {"bitrix24"}
        if props.warehouse_kind:
            kinds.add(props.warehouse_kind)
        metadata = {ENTITY_KEY: props.entity}
        if props.table_name is not None:
            metadata[TABLE_NAME_KEY] = props.table_name
        return AssetSpec(
            key=AssetKey(["bitrix24", entity_slug(props.entity)]),
            group_name="bitrix24",
            description=props.description or f"Bitrix24 `{props.entity}` rows from {props.portal}",
            kinds=kinds,
            metadata=metadata,
            tags={"bitrix24/entity": entity_slug(props.entity)},
        )


class PrefixedTranslator(DagsterBitrix24Translator):
    """Puts another translator's keys under `key_prefix` and its assets in `group_name`:
    one portal's assets beside another's in one code location."""

    def __init__(
        self, key_prefix: str | Sequence[str], group_name: str, inner: DagsterBitrix24Translator
    ) -> None:
        self.key_prefix = [key_prefix] if isinstance(key_prefix, str) else list(key_prefix)
        self.group_name = group_name
        self.inner = inner

    def get_asset_spec(self, props: Bitrix24EntityProps) -> AssetSpec:
        spec = self.inner.get_asset_spec(props)
        return spec.replace_attributes(
            key=spec.key.with_prefix(self.key_prefix), group_name=self.group_name
        )
