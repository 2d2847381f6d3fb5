"""Many portals from one definition: per portal one multi-asset, one pool and one resource,
one schedule over them all, and the warehouse keeping the portals apart.

    defs = build_bitrix24_portals(
        [
            Bitrix24Portal("acme", webhook_url_env="ACME_WEBHOOK_URL",
                           entities=["crm.deal", "crm.contact", "user"]),
            Bitrix24Portal("globex", webhook_url_env="GLOBEX_WEBHOOK_URL", plan="enterprise",
                           entities=["crm.deal"]),
        ],
        warehouse=SQLWarehouseResource(url=EnvVar("WAREHOUSE_URL")),
        separate_by="table_prefix",  # bitrix24_acme_crm_deal; "schema": acme.bitrix24_crm_deal
        limiter_url=EnvVar("BITRIX24_LIMITER_URL"),
    )

Asset keys are `<portal>/bitrix24/<entity>` in the group `bitrix24_<portal>`; each portal's
multi-asset `bitrix24_<portal>` runs in the pool `bitrix24/<portal>` on the resource
`bitrix24_<portal>`. The schedule `bitrix24_portals_schedule` runs every portal in one run,
one step per portal, so a multiprocess, Celery or Kubernetes executor syncs them side by
side while each portal's limits stay its own (the limiter is keyed by the portal's host).
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dagster import (
    AssetsDefinition,
    AssetSelection,
    Definitions,
    EnvVar,
    define_asset_job,
)
from dagster.components import Model, Resolvable
from pydantic import Field

from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixParameterError
from dagster_bitrix24.assets import build_bitrix24_assets, dialect_kind
from dagster_bitrix24.checks import build_bitrix24_checks
from dagster_bitrix24.resources import Bitrix24Resource, SQLWarehouseResource
from dagster_bitrix24.schedules import build_bitrix24_schedule
from dagster_bitrix24.translator import DagsterBitrix24Translator, PrefixedTranslator

#: A portal's name is an asset key part, a resource key, a table prefix and a schema name.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The job running every portal (the schedule's, or on its own without a schedule).
_JOB = "bitrix24_portals_job"


@dataclass(frozen=True)
class Bitrix24Portal:
    """One portal of a `build_bitrix24_portals` definition.

    `webhook_url_env` names the environment variable holding its webhook URL (a secret);
    `options` are further `Bitrix24Resource` fields (e.g. `time_scale`, `timeout`).
    """

    name: str
    webhook_url_env: str
    entities: Sequence[str | EntitySpec]
    plan: str = "standard"
    options: Mapping[str, Any] = field(default_factory=dict)


def build_bitrix24_portals(
    portals: Sequence[Bitrix24Portal],
    *,
    warehouse: SQLWarehouseResource,
    separate_by: Literal["table_prefix", "schema"] = "table_prefix",
    table_prefix: str = "bitrix24_",
    limiter_url: str | None = None,
    cron_schedule: str | None = "0 * * * *",
    checks: bool = True,
    translator: DagsterBitrix24Translator | None = None,
) -> Definitions:
    """Assets, checks, resources, the job `bitrix24_portals_job` syncing every portal and
    its schedule (`cron_schedule=None`: none).

    `separate_by="table_prefix"`: one schema, tables `<table_prefix><portal>_<entity>`;
    `"schema"`: tables `<table_prefix><entity>` in the schema named like the portal
    (PostgreSQL, DuckDB or MySQL/MariaDB, where it is a database), created if missing
    (`warehouse.schema_creation`). `limiter_url`
    (Redis or PostgreSQL, README "Sharing limits across machines") lets steps on any
    machine share each portal's limits.
    """
    _check_portals(portals)
    if separate_by not in ("table_prefix", "schema"):
        raise BitrixParameterError("separate_by", "use 'table_prefix' or 'schema'")
    if separate_by == "schema" and dialect_kind(warehouse) == "sqlite":
        raise BitrixParameterError("separate_by", "SQLite has no schemas: use 'table_prefix'")
    assets: list[AssetsDefinition] = []
    asset_checks = []
    resources: dict[str, Any] = {}
    for portal in portals:
        bitrix24_key, warehouse_key = f"bitrix24_{portal.name}", "warehouse"
        prefix = f"{table_prefix}{portal.name}_"
        if separate_by == "schema":
            warehouse_key, prefix = f"warehouse_{portal.name}", table_prefix
            resources[warehouse_key] = SQLWarehouseResource(
                url=warehouse.url, schema_name=portal.name,
                convert_in_database=warehouse.convert_in_database,
                mysql_bulk_load=warehouse.mysql_bulk_load,
            )  # fmt: skip
        multi_asset = build_bitrix24_assets(
            entities=portal.entities,
            portal=portal.name,
            translator=PrefixedTranslator(
                portal.name, f"bitrix24_{portal.name}", translator or DagsterBitrix24Translator()
            ),
            table_prefix=prefix,
            warehouse=warehouse,
            bitrix24_resource_key=bitrix24_key,
            warehouse_resource_key=warehouse_key,
        )
        assets.append(multi_asset)
        if checks:
            asset_checks.append(
                build_bitrix24_checks(
                    multi_asset,
                    bitrix24_resource_key=bitrix24_key,
                    warehouse_resource_key=warehouse_key,
                )
            )
        resources[bitrix24_key] = Bitrix24Resource(
            webhook_url=EnvVar(portal.webhook_url_env),
            plan=portal.plan,
            limiter_url=limiter_url,
            **dict(portal.options),
        )
    if separate_by == "table_prefix":
        resources["warehouse"] = warehouse
    schedules, jobs = [], []
    if cron_schedule:
        schedules.append(
            build_bitrix24_schedule(
                assets,
                cron_schedule=cron_schedule,
                name="bitrix24_portals_schedule",
                job_name=_JOB,
            )
        )
    else:
        jobs.append(define_asset_job(_JOB, selection=AssetSelection.assets(*assets)))
    return Definitions(
        assets=assets,
        asset_checks=asset_checks,
        schedules=schedules,
        jobs=jobs,
        resources=resources,
    )


def _check_portals(portals: Sequence[Bitrix24Portal]) -> None:
    """Clear errors before anything is built: names, their uniqueness, the variables."""
    if not portals or not all(isinstance(p, Bitrix24Portal) for p in portals):
        raise BitrixParameterError("portals", "give one or more Bitrix24Portal objects")
    names = [portal.name for portal in portals]
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BitrixParameterError(
                "portals",
                f"portal name {name!r}: use lower-case letters, digits and '_', starting "
                "with a letter, at most 40 characters",
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BitrixParameterError("portals", f"portal names listed more than once: {duplicates}")
    for portal in portals:
        if not _ENV_NAME.fullmatch(portal.webhook_url_env or ""):
            raise BitrixParameterError(
                "webhook_url_env",
                f"portal {portal.name!r}: name the environment variable holding the webhook "
                "URL (letters, digits, '_')",
            )


class PortalModel(Model, Resolvable):
    """One portal of the `dg` component's `portals` list."""

    name: str = Field(description="Portal name: key prefix, pool, table prefix or schema.")
    webhook_url_env: str = Field(description="Variable holding the portal's webhook URL.")
    entities: list[str] = Field(description="Entities to sync: crm.deal, user, crm.item.128...")
    plan: Literal["standard", "enterprise", "unlimited"] = Field(
        default="standard", description="The portal's plan: its request limits."
    )


def component_portals_defs(component: Any) -> Definitions:
    """What a `Bitrix24Component` with `portals` builds: `build_bitrix24_portals` over them,
    with the component's warehouse, separation, table prefix, limiter, schedule and checks."""
    if component.entities:
        raise BitrixParameterError(
            "entities", "with portals, list the entities of each portal in its entry"
        )
    for option in ("key_prefix", "resource_key", "warehouse_resource_key"):
        if getattr(component, option) is not None:
            raise BitrixParameterError(
                option, "applies to one portal; with portals each is keyed by its name"
            )
    limiter_url = component.limiter_url
    if component.limiter_url_env:
        limiter_url = EnvVar(component.limiter_url_env)
    return build_bitrix24_portals(
        [
            Bitrix24Portal(
                portal.name,
                webhook_url_env=portal.webhook_url_env,
                entities=portal.entities,
                plan=portal.plan,
            )
            for portal in component.portals
        ],
        warehouse=component.warehouse_resource(),
        separate_by=component.separate_by,
        table_prefix=component.table_prefix,
        limiter_url=limiter_url,
        cron_schedule=component.schedule,
        checks=component.checks,
    )
