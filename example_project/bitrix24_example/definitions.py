"""The example's Dagster definitions: CRM, smart processes and users into warehouse tables.

- `defs/bitrix24/defs.yaml`: the `Bitrix24Component` (see `dg list defs`). It builds
  `bitrix24`: deals, leads, contacts, companies, activities, smart invoices and the two
  smart processes, partitioned by day of their change time (backfill any range in one
  run); and `bitrix24_directory`: users, departments, stages and pipelines (no change
  time: each run reads them whole and marks rows the portal no longer lists); plus asset
  checks on every synced table: row count vs the portal, unique ids, freshness.
- `sales_funnel`: pipelines and stages with conversion rates and deal velocity, plus a chart.
- `bitrix24_hourly` schedule: every hour, re-sync the changes of yesterday and today, the
  directory and the funnel.
- resources: your portal (`BITRIX24_WEBHOOK_URL`) or the demo portal, and the warehouse.
- executor: Dagster's default, or Celery workers with `BITRIX24_EXECUTOR=celery` (executor.py).
"""

from pathlib import Path

from dagster import (
    AssetKey,
    AssetsDefinition,
    Definitions,
    TimeWindowPartitionsDefinition,
    load_from_defs_folder,
)

from bitrix24_example.analytics import sales_funnel
from bitrix24_example.executor import executor_from_env
from bitrix24_example.resources import bitrix24_resource, data_dir, warehouse_resource
from dagster_bitrix24 import build_bitrix24_schedule

_folder = data_dir()
_folder.mkdir(parents=True, exist_ok=True)


def _multi_asset(defs: Definitions, key: str) -> AssetsDefinition:
    """The multi-asset of `defs` holding `key`."""
    asset_key = AssetKey.from_user_string(key)
    return next(
        a for a in defs.assets or [] if isinstance(a, AssetsDefinition) and asset_key in a.keys
    )


#: What `defs/` holds (the component); in a list, as Dagster allows one Definitions at
#: module scope: `defs` below, which adds the funnel, the schedule and the resources.
_LOADED = [load_from_defs_folder(path_within_project=Path(__file__).parent)]
#: The two multi-assets the component built: partitioned by change time, and the rest.
crm = _multi_asset(_LOADED[0], "bitrix24/crm_deal")
directory = _multi_asset(_LOADED[0], "bitrix24/user")
#: Daily partitions over the change time, today included.
daily = crm.partitions_def
assert isinstance(daily, TimeWindowPartitionsDefinition)

#: Hourly: one run over the partitions of yesterday and today (a changed row moves to
#: today's), the directory, then the funnel.
bitrix24_hourly = build_bitrix24_schedule(
    [crm, directory, sales_funnel],
    name="bitrix24_hourly",
    job_name="bitrix24_sync",
    cron_schedule="0 * * * *",
    recent_partitions=2,
    description="Hourly: the last two days of changes, the directory, then the funnel.",
    running=True,
)

warehouse = warehouse_resource(_folder)
defs = Definitions.merge(
    _LOADED[0],
    Definitions(
        assets=[sales_funnel],
        schedules=[bitrix24_hourly],
        resources={"bitrix24": bitrix24_resource(_folder), "warehouse": warehouse},
        executor=executor_from_env(),  # BITRIX24_EXECUTOR=celery: steps on Celery workers
    ),
)
