"""The code location `distributed_sync.py` runs on Celery workers: `build_bitrix24_portals`
over the portals named by BENCH_PORTALS, with the Celery executor.

Read from the environment (set by the benchmark for itself and its workers):
BENCH_PORTALS (JSON list of [name, webhook env var]), BENCH_WAREHOUSE_URL,
BENCH_LIMITER_URL (empty: no shared limiter), BENCH_TABLE_PREFIX, BENCH_QUEUE, CELERY_BROKER_URL.
"""

import json
import os

from dagster import Definitions
from dagster_celery import celery_executor

from dagster_bitrix24 import Bitrix24Portal, SQLWarehouseResource, build_bitrix24_portals

_PORTALS = [
    build_bitrix24_portals(
        [
            Bitrix24Portal(name, webhook_url_env=variable, entities=["crm.deal"], plan="standard")
            for name, variable in json.loads(os.environ.get("BENCH_PORTALS", "[]"))
        ]
        or [Bitrix24Portal("p1", webhook_url_env="BENCH_P1_WEBHOOK", entities=["crm.deal"])],
        warehouse=SQLWarehouseResource(url=os.environ.get("BENCH_WAREHOUSE_URL", "sqlite:///x.db")),
        table_prefix=os.environ.get("BENCH_TABLE_PREFIX", "bitrix24_"),
        limiter_url=os.environ.get("BENCH_LIMITER_URL") or None,
        cron_schedule=None,
        checks=False,
    )
]  # in a list: Dagster allows one Definitions at module scope
_broker = {"env": "CELERY_BROKER_URL"}
defs = Definitions.merge(
    _PORTALS[0],
    Definitions(
        executor=celery_executor.configured(
            {
                "broker": _broker,
                "backend": _broker,
                # this benchmark's own queue: no other worker on the broker takes its steps
                "config_source": {"task_default_queue": os.environ.get("BENCH_QUEUE", "dagster")},
            }
        )
    ),
)
