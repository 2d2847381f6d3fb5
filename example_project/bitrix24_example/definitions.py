"""The example's Dagster definitions: CRM, smart processes and users into warehouse tables.

- `bitrix24_crm`: deals, leads, contacts, companies, activities, smart invoices and the two
  smart processes, partitioned by day of their change time (backfill any range in one run).
- `bitrix24_directory`: users, departments, stages and pipelines (no change time: each run
  reads them whole and marks rows the portal no longer lists).
- `sales_funnel`: pipelines and stages with conversion rates and deal velocity, plus a chart.
- asset checks on every synced table: row count vs the portal, unique ids, freshness; they
  run with the assets they check.
- `bitrix24_hourly` schedule: every hour, re-sync the changes of yesterday and today, the
  directory and the funnel.
"""

import os

from dagster import DailyPartitionsDefinition, Definitions

from bitrix24_example.analytics import sales_funnel
from bitrix24_example.demo_portal import DemoPortal
from bitrix24_example.resources import (
    bitrix24_resource,
    data_dir,
    demo_mode,
    warehouse_resource,
)
from dagster_bitrix24 import build_bitrix24_assets, build_bitrix24_checks, build_bitrix24_schedule

CRM_ENTITIES = [
    "crm.deal",
    "crm.lead",
    "crm.contact",
    "crm.company",
    "crm.activity",
    "crm.smart_invoice",
    "crm.item.128",  # smart process "Projects"
    "crm.item.130",  # smart process "Supplier contracts"
]
DIRECTORY_ENTITIES = ["user", "department", "crm.status", "crm.category"]

_folder = data_dir()
_folder.mkdir(parents=True, exist_ok=True)


def first_day() -> str:
    """The first daily partition: `$BITRIX24_FIRST_DAY`, else the demo portal's oldest day."""
    if demo_mode():
        return DemoPortal(data_dir=_folder).first_day().isoformat()
    return os.environ.get("BITRIX24_FIRST_DAY", "2024-01-01")


#: Daily partitions over the change time, today included.
daily = DailyPartitionsDefinition(start_date=first_day(), end_offset=1)

warehouse = warehouse_resource(_folder)
crm = build_bitrix24_assets(
    name="bitrix24_crm",
    entities=CRM_ENTITIES,
    partitions_def=daily,
    warehouse=warehouse,  # its dialect becomes an asset kind
)
directory = build_bitrix24_assets(
    name="bitrix24_directory", entities=DIRECTORY_ENTITIES, warehouse=warehouse
)

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

defs = Definitions(
    assets=[crm, directory, sales_funnel],
    asset_checks=[build_bitrix24_checks(crm), build_bitrix24_checks(directory)],
    schedules=[bitrix24_hourly],
    resources={"bitrix24": bitrix24_resource(_folder), "warehouse": warehouse},
)
