"""A `dg` component wrapping the factory, its checks and (optionally) its schedule.

    # defs/bitrix24/defs.yaml  (dg scaffold defs dagster_bitrix24.Bitrix24Component bitrix24)
    type: dagster_bitrix24.Bitrix24Component
    attributes:
      portal: main
      webhook_url_env: BITRIX24_WEBHOOK_URL
      plan: standard
      entities: [crm.deal, crm.contact, crm.company, user]
      warehouse_url_env: WAREHOUSE_URL
      schedule: "0 * * * *"
      partitions: {granularity: daily, start: "2024-01-01"}   # optional

With `partitions`, the entities that have a change time form one partitioned multi-asset
(`name`); the others (`user` above: users, departments, stages, pipelines) a second,
unpartitioned one (`<name>_directory`), so every entity a YAML lists can run.

A second portal in the same code location (another `defs.yaml`, or beside a `bitrix24`
resource bound in Python) sets `key_prefix: acme`: asset keys `acme/bitrix24/<entity>` in
the group `bitrix24_acme`, and unless set explicitly `portal: acme` (pool `bitrix24/acme`,
multi-asset `bitrix24_acme`), `table_prefix: bitrix24_acme_`, `resource_key: bitrix24_acme`
and `warehouse_resource_key: warehouse_acme`, so neither keys, resources nor rows collide.
"""

from typing import Annotated, Literal

from dagster import AssetsDefinition, Definitions, EnvVar, PartitionsDefinition
from dagster.components import (
    Component,
    ComponentLoadContext,
    Model,
    Resolvable,
    Resolver,
    Scaffolder,
    ScaffoldRequest,
    scaffold_component,
    scaffold_with,
)

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24.assets import build_bitrix24_assets, partitionable, resolve_entities
from dagster_bitrix24.checks import build_bitrix24_checks
from dagster_bitrix24.partitions import change_time_partitions
from dagster_bitrix24.portals import PortalModel, component_portals_defs
from dagster_bitrix24.resources import Bitrix24Resource, SQLWarehouseResource
from dagster_bitrix24.schedules import build_bitrix24_schedule
from dagster_bitrix24.sync import lookback_from_minutes
from dagster_bitrix24.translator import (
    DagsterBitrix24Translator,
    PrefixedTranslator,
    entity_slug,
)

#: What `dg scaffold defs dagster_bitrix24.Bitrix24Component <path>` writes: loads as is.
#: No `portal`: it defaults to `default`, or follows a `key_prefix` added for a second portal.
SCAFFOLD_ATTRIBUTES = {
    "webhook_url_env": "BITRIX24_WEBHOOK_URL",
    "plan": "standard",
    "entities": ["crm.deal", "crm.contact", "crm.company", "user"],
    "warehouse_url": "sqlite:///bitrix24.sqlite",
    "schedule": "0 * * * *",
}


def _doc(description: str) -> Resolver:
    """A field's description, shown by `dg utils inspect-component` and YAML editors."""
    return Resolver.default(description=description)


class Bitrix24Scaffolder(Scaffolder):
    """Writes a `defs.yaml` that loads and runs once `BITRIX24_WEBHOOK_URL` is set."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        scaffold_component(request, SCAFFOLD_ATTRIBUTES)


class PartitionsModel(Model, Resolvable):
    """Optional time partitions over the change time."""

    granularity: Literal["hourly", "daily", "monthly"] = "daily"
    start: str
    timezone: str = "UTC"


@scaffold_with(Bitrix24Scaffolder)
class Bitrix24Component(Component, Model, Resolvable):
    """Syncs Bitrix24 entities of one portal into a SQL warehouse (assets, checks, schedule).

    Secrets are named by environment variable (`webhook_url_env`, `warehouse_url_env`), so
    they never appear in YAML, the UI or logs. The assets' kinds name the warehouse dialect
    (`warehouse_kind`, else read from `warehouse_url_env` when the code location loads).
    `provide_resources: false` leaves the `bitrix24` and `warehouse` resources to the
    project's Python definitions (the example binds its demo portal that way).
    `key_prefix` sets a second portal apart in one code location: see the module docstring.
    """

    portal: Annotated[
        str,
        _doc("Portal name: its assets run in the pool bitrix24/<portal> (default: the "
             "key_prefix joined by '_', else 'default')."),
    ] = "default"
    key_prefix: Annotated[
        str | list[str] | None,
        _doc("Asset key prefix for a second portal in one code location: acme gives "
             "acme/bitrix24/crm_deal in the group bitrix24_acme; portal, table_prefix, "
             "resource_key and warehouse_resource_key follow it unless set."),
    ] = None
    resource_key: Annotated[
        str | None,
        _doc("Key of the Bitrix24 resource (default bitrix24, with key_prefix "
             "bitrix24_<key_prefix>)."),
    ] = None
    warehouse_resource_key: Annotated[
        str | None,
        _doc("Key of the warehouse resource (default warehouse, with key_prefix "
             "warehouse_<key_prefix>)."),
    ] = None
    name: Annotated[str | None, _doc("Multi-asset name (default bitrix24_<portal>).")] = None
    entities: Annotated[
        list[str], _doc("Entities to sync: crm.deal, user, crm.item.128... (one portal).")
    ] = []
    portals: Annotated[
        list[PortalModel] | None,
        _doc("Many portals instead of one: name, webhook_url_env, plan, entities each."),
    ] = None
    separate_by: Annotated[
        Literal["table_prefix", "schema"],
        _doc("With portals: tables <prefix><portal>_<entity>, or a schema per portal."),
    ] = "table_prefix"
    webhook_url_env: Annotated[str, _doc("Variable holding the webhook URL.")] = (
        "BITRIX24_WEBHOOK_URL"
    )
    plan: Annotated[
        Literal["standard", "enterprise", "unlimited"], _doc("The plan: its request limits.")
    ] = "standard"
    warehouse_url: Annotated[str | None, _doc("Warehouse URL without a password.")] = None
    warehouse_url_env: Annotated[
        str | None, _doc("Variable holding the warehouse URL (one with a password).")
    ] = None
    warehouse_schema: Annotated[str | None, _doc("Schema of the tables (PostgreSQL).")] = None
    warehouse_kind: Annotated[
        str | None, _doc("Asset kind naming the warehouse: sqlite, postgres, mysql.")
    ] = None
    warehouse_mysql_bulk_load: Annotated[
        bool, _doc("MySQL/MariaDB: LOAD DATA LOCAL INFILE for large chunks (false: off).")
    ] = True
    table_prefix: Annotated[
        str, _doc("Prefix of the table names (with key_prefix: bitrix24_<key_prefix>_).")
    ] = "bitrix24_"
    lookback_minutes: Annotated[
        float, _doc("Re-read this far behind the cursor (late commits, clock skew).")
    ] = 15.0
    partitions: Annotated[
        PartitionsModel | None,
        _doc("Partition by change time; entities without one go to <name>_directory."),
    ] = None
    schedule: Annotated[str | None, _doc("Cron schedule of the sync.")] = None
    checks: Annotated[bool, _doc("Add the row count, unique id and freshness checks.")] = True
    limiter_path: Annotated[
        str | None, _doc("Deprecated: use limiter_url (a SQLite file path is one).")
    ] = None
    limiter_url: Annotated[
        str | None,
        _doc("Where runs share the portal's limits: redis://, postgresql://, sqlite:///<file>."),
    ] = None
    limiter_url_env: Annotated[
        str | None, _doc("Variable holding the limiter URL (one with a password).")
    ] = None
    provide_resources: Annotated[
        bool, _doc("False: bind the bitrix24 and warehouse resources in your Python code.")
    ] = True

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        """The multi-asset(s), their checks, the resources and (optionally) a schedule."""
        if self.portals:
            return component_portals_defs(self)
        warehouse = self.warehouse_resource()
        assets = self.build_assets(warehouse)
        bitrix24_key, warehouse_key = self.resource_keys()
        schedules = []
        if self.schedule:
            schedules.append(
                build_bitrix24_schedule(
                    assets,
                    cron_schedule=self.schedule,
                    name=f"{assets[0].node_def.name}_schedule",
                    job_name=f"{assets[0].node_def.name}_job",
                )
            )
        resources = {}
        if self.provide_resources:
            resources = {
                bitrix24_key: Bitrix24Resource(
                    webhook_url=EnvVar(self.webhook_url_env),
                    plan=self.plan,
                    limiter_path=self.limiter_path,
                    limiter_url=EnvVar(self.limiter_url_env)
                    if self.limiter_url_env
                    else self.limiter_url,
                ),
                warehouse_key: warehouse,
            }
        checks = [
            build_bitrix24_checks(
                a, bitrix24_resource_key=bitrix24_key, warehouse_resource_key=warehouse_key
            )
            for a in assets
        ]
        return Definitions(
            assets=assets,
            asset_checks=checks if self.checks else [],
            schedules=schedules,
            resources=resources,
        )

    def _separation(self) -> str | None:
        """The key prefix as one name part (`acme`, `eu_acme`), None without one."""
        if self.key_prefix is None:
            return None
        parts = [self.key_prefix] if isinstance(self.key_prefix, str) else self.key_prefix
        joined = entity_slug("_".join(parts))
        if not joined:
            raise BitrixParameterError("key_prefix", "give a name: letters, digits or '_'")
        return joined

    def effective_portal(self) -> str:
        """`portal` if set, else the key prefix's name, else `default`."""
        separation = self._separation()
        if "portal" in self.model_fields_set or separation is None:
            return self.portal
        return separation

    def effective_table_prefix(self) -> str:
        """`table_prefix` if set, else `bitrix24_<key prefix>_`, else `bitrix24_`."""
        separation = self._separation()
        if "table_prefix" in self.model_fields_set or separation is None:
            return self.table_prefix
        return f"bitrix24_{separation}_"

    def resource_keys(self) -> tuple[str, str]:
        """The Bitrix24 and warehouse resource keys the assets and checks require."""
        separation = self._separation()
        suffix = f"_{separation}" if separation else ""
        return (
            self.resource_key or f"bitrix24{suffix}",
            self.warehouse_resource_key or f"warehouse{suffix}",
        )

    def build_assets(self, warehouse: SQLWarehouseResource) -> list[AssetsDefinition]:
        """One multi-asset, or with `partitions` a partitioned and an unpartitioned one."""
        specs = resolve_entities(self.entities)
        portal = self.effective_portal()
        base = self.name or f"bitrix24_{entity_slug(portal)}"
        separation = self._separation()
        translator = None
        if separation is not None and self.key_prefix is not None:
            translator = PrefixedTranslator(
                self.key_prefix, f"bitrix24_{separation}", DagsterBitrix24Translator()
            )
        bitrix24_key, warehouse_key = self.resource_keys()
        groups: list[tuple[str, list[EntitySpec], PartitionsDefinition | None]]
        groups = [(base, specs, None)]
        if self.partitions is not None:
            partitions_def = change_time_partitions(
                self.partitions.granularity,
                start=self.partitions.start,
                timezone=self.partitions.timezone,
            )
            timed = [spec for spec in specs if partitionable(spec)]
            plain = [spec for spec in specs if not partitionable(spec)]
            if not timed:
                raise BitrixParameterError(
                    "partitions", "none of the entities has a change time to partition by"
                )
            groups = [(base, timed, partitions_def)]
            if plain:
                groups.append((f"{base}_directory", plain, None))
        return [
            build_bitrix24_assets(
                entities=group,
                portal=portal,
                name=name,
                translator=translator,
                table_prefix=self.effective_table_prefix(),
                warehouse_kind=self.warehouse_kind,
                warehouse=warehouse,
                partitions_def=partitions_def,
                lookback=lookback_from_minutes(self.lookback_minutes),
                bitrix24_resource_key=bitrix24_key,
                warehouse_resource_key=warehouse_key,
            )
            for name, group, partitions_def in groups
        ]

    def warehouse_resource(self) -> SQLWarehouseResource:
        """The warehouse resource: a literal URL (no password) or one from the environment."""
        if self.warehouse_url and self.warehouse_url_env:
            raise BitrixParameterError(
                "warehouse_url", "give warehouse_url or warehouse_url_env, not both"
            )
        return SQLWarehouseResource(
            url=EnvVar(self.warehouse_url_env)
            if self.warehouse_url_env
            else self.warehouse_url or "sqlite:///bitrix24.sqlite",
            schema_name=self.warehouse_schema,
            mysql_bulk_load=self.warehouse_mysql_bulk_load,
        )
