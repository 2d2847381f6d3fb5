"""`python -m bitrix24_example.demo`: sync everything once and print what landed.

Materialises every asset of the example in-process (all daily partitions of the CRM
entities in one run, the directory, the funnel) against the configured portal, or the demo
portal when `BITRIX24_WEBHOOK_URL` is not set, then prints the row count of every table.
"""

import logging
import os
import sys
import time

import pandas as pd
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterInstance, EnvVar, ExecuteInProcessResult, materialize
from dagster._utils.error import SerializableErrorInfo

from bitrix24_example.analytics import SUMMARY_TABLE, sales_funnel
from bitrix24_example.definitions import crm, daily, defs, directory
from bitrix24_example.resources import data_dir, demo_mode
from dagster_bitrix24.failures import CAUSES_KEY, FailureGroup, group_message

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
    """What failed, each cause once: a Bitrix24 sync failure's causes merged over its steps
    (a wrong webhook code fails the CRM step and the directory step alike), any other error
    by its own class and text, not Dagster's wrapper around it."""
    groups: dict[str, FailureGroup] = {}
    others: list[str] = []
    for event in result.all_events:
        if event.event_type == DagsterEventType.RUN_FAILURE:
            continue
        data = event.event_specific_data
        user_failure = getattr(data, "user_failure_data", None)
        causes = user_failure.metadata.get(CAUSES_KEY) if user_failure else None
        if causes is not None:
            for found in map(lambda group: FailureGroup(**group), causes.value):
                groups.setdefault(found.cause, FailureGroup(found.cause, [], found.error,
                                                            found.advice))  # fmt: skip
                groups[found.cause].assets.extend(found.assets)
            continue
        error = getattr(data, "error", None)
        if error is not None and (message := _own_message(error)) not in others:
            others.append(message)
    return [group_message(group) for group in groups.values()] + others


def _own_message(error: SerializableErrorInfo) -> str:
    """The first error of the chain raised by user code, as `Class: text` (a `Failure` as
    its text)."""
    while error.cause is not None and error.message.startswith("dagster._core.errors."):
        error = error.cause
    head, _, text = error.message.strip().partition(": ")
    if head.endswith(".Failure") and text:
        return text
    return f"{head.rsplit('.', 1)[-1]}: {text}" if text else head


def warnings(instance: DagsterInstance, run_id: str) -> list[str]:
    """The run's warnings (`context.log.warning`: a field that changed type, ...), in order."""
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if not entry.is_dagster_event and entry.level == logging.WARNING
    ]


def main() -> int:
    """Run the sync, print the tables; exit status 0 when every asset materialised."""
    keys = daily.get_partition_keys()
    portal = "the demo portal (emulated)" if demo_mode() else "your portal"
    print(f"Syncing {portal}: {len(keys)} daily partitions {keys[0]}..{keys[-1]}", flush=True)
    started = time.monotonic()
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    result = materialize(
        [crm, directory, sales_funnel],
        resources=defs.resources,
        instance=instance,
        tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        # quiet: the failures and warnings are printed below, each once, without stacks
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        raise_on_error=False,
    )
    elapsed = time.monotonic() - started
    warehouse = defs.resources["warehouse"]
    url = resolved_url(warehouse.url)
    for warning in warnings(instance, result.run_id):
        print(f"warning: {warning}")
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
