"""A `dg` component wrapping the factory, its checks and (optionally) its schedule.

# defs/bitrix24/defs.yaml
type: dagster_bitrix24.Bitrix24Component
attributes:
  portal: main
  webhook_url_env: BITRIX24_WEBHOOK_URL
  plan: standard
  entities: [crm.deal, crm.contact, crm.company, user]
  warehouse_url_env: WAREHOUSE_URL
  schedule: "0 * * * *"
  partitions: {granularity: daily, start: "2024-01-01"}   # optional
"""

from typing import Literal

from dagster import Definitions, EnvVar
from dagster.components import Component, ComponentLoadContext, Model, Resolvable

from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24.assets import build_bitrix24_assets
from dagster_bitrix24.checks import build_bitrix24_checks
from dagster_bitrix24.partitions import change_time_partitions
from dagster_bitrix24.resources import Bitrix24Resource, SQLWarehouseResource
from dagster_bitrix24.schedules import build_bitrix24_schedule
from dagster_bitrix24.sync import lookback_from_minutes


class PartitionsModel(Model):
    """Optional time partitions over the change time."""

    granularity: Literal["hourly", "daily", "monthly"] = "daily"
    start: str
    timezone: str = "UTC"


class Bitrix24Component(Component, Model, Resolvable):
    """Syncs Bitrix24 entities of one portal into a SQL warehouse (assets, checks, schedule).

    Secrets are named by environment variable (`webhook_url_env`, `warehouse_url_env`), so
    they never appear in YAML, the UI or logs. The assets' kinds name the warehouse dialect
    (read from `warehouse_url_env` when the code location loads, if it is set then).
    """

    portal: str = "default"
    entities: list[str]
    webhook_url_env: str = "BITRIX24_WEBHOOK_URL"
    plan: Literal["standard", "enterprise", "unlimited"] = "standard"
    warehouse_url: str | None = None
    warehouse_url_env: str | None = None
    warehouse_schema: str | None = None
    table_prefix: str = "bitrix24_"
    lookback_minutes: float = 15.0
    partitions: PartitionsModel | None = None
    schedule: str | None = None
    checks: bool = True
    limiter_path: str | None = None

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        """The multi-asset, its checks, the resources and (optionally) an hourly schedule."""
        warehouse = self.warehouse_resource()
        partitions_def = None
        if self.partitions is not None:
            partitions_def = change_time_partitions(
                self.partitions.granularity,
                start=self.partitions.start,
                timezone=self.partitions.timezone,
            )
        assets = build_bitrix24_assets(
            entities=self.entities,
            portal=self.portal,
            table_prefix=self.table_prefix,
            warehouse=warehouse,
            partitions_def=partitions_def,
            lookback=lookback_from_minutes(self.lookback_minutes),
        )
        schedules = []
        if self.schedule:
            schedules.append(build_bitrix24_schedule(assets, cron_schedule=self.schedule))
        return Definitions(
            assets=[assets],
            asset_checks=[build_bitrix24_checks(assets)] if self.checks else [],
            schedules=schedules,
            resources={
                "bitrix24": Bitrix24Resource(
                    webhook_url=EnvVar(self.webhook_url_env),
                    plan=self.plan,
                    limiter_path=self.limiter_path,
                ),
                "warehouse": warehouse,
            },
        )

    def warehouse_resource(self) -> SQLWarehouseResource:
        """The warehouse resource: a literal URL (no password) or one from the environment."""
        if self.warehouse_url and self.warehouse_url_env:
            raise BitrixParameterError(
                "warehouse_url", "give warehouse_url or warehouse_url_env, not both"
            )
        if self.warehouse_url_env:
            return SQLWarehouseResource(
                url=EnvVar(self.warehouse_url_env), schema_name=self.warehouse_schema
            )
        return SQLWarehouseResource(
            url=self.warehouse_url or "sqlite:///bitrix24.sqlite",
            schema_name=self.warehouse_schema,
        )
