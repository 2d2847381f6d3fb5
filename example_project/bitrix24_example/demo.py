"""`python -m bitrix24_example.demo`: sync everything once and print what landed.

Materialises every asset of the example in-process (all daily partitions of the CRM
entities in one run, the directory, the funnel) against the configured portal, or the demo
portal when `BITRIX24_WEBHOOK_URL` is not set, then prints the row count of every table.
"""

import os
import sys
import time

import pandas as pd
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterInstance, EnvVar, ExecuteInProcessResult, materialize

from bitrix24_example.analytics import SUMMARY_TABLE, sales_funnel
from bitrix24_example.definitions import crm, daily, defs, directory
from bitrix24_example.resources import data_dir, demo_mode

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def table_counts(url: str) -> list[tuple[str, int]]:
    """(table, rows) for every table in the warehouse, by name."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            names = sorted(sa.inspect(connection).get_table_names())
            return [
                (name, connection.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one())
                for name in names
            ]
    finally:
        engine.dispose()


def pipeline_table(url: str) -> str:
    """The funnel's pipeline summary as text."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:  # a plain SELECT: no reflection (DuckDB)
            summary = pd.read_sql_query(sa.select(sa.text("*")).select_from(sa.table(SUMMARY_TABLE)), connection)
    finally:
        engine.dispose()
    return summary.drop(columns=["pipeline"]).to_string(index=False)


def resolved_url(url: str) -> str:
    """A resource's URL, read from the environment when it is an `EnvVar` (outside a run)."""
    return (url.get_value() or "") if isinstance(url, EnvVar) else url


def failures(result: ExecuteInProcessResult) -> list[str]:
    """What failed (a step, a resource), each distinct message once, without class names."""
    messages = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is None or event.event_type == DagsterEventType.RUN_FAILURE:
            continue
        message = error.message.strip()
        head, _, rest = message.partition(": ")
        if head.endswith(".Failure") and rest:  # a Failure's text is its description
            message = rest
        if message not in messages:
            messages.append(message)
    return messages


def main() -> int:
    """Run the sync, print the tables; exit status 0 when every asset materialised."""
    keys = daily.get_partition_keys()
    portal = "the demo portal (emulated)" if demo_mode() else "your portal"
    print(f"Syncing {portal}: {len(keys)} daily partitions {keys[0]}..{keys[-1]}", flush=True)
    started = time.monotonic()
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    result = materialize(
        [crm, directory, sales_funnel],
        resources=defs.resources,
        instance=instance,
        tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    elapsed = time.monotonic() - started
    warehouse = defs.resources["warehouse"]
    url = resolved_url(warehouse.url)
    if not result.success:  # the tables may hold an earlier run's rows: do not show them
        print(f"\nFAILED in {elapsed:.1f} s; warehouse {warehouse.redacted_url}")
        for message in failures(result):
            print(f"  {message}")
        return 1
    print(f"\n{'table':<34} {'rows':>7}")
    for name, rows in table_counts(url):
        print(f"{name:<34} {rows:>7}")
    print(f"\nsynced in {elapsed:.1f} s; warehouse {warehouse.redacted_url}")
    print(f"\n{pipeline_table(url)}")
    print(f"funnel chart: {data_dir() / 'charts' / 'sales_funnel.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
