"""Which executor runs the example's steps, chosen by `BITRIX24_EXECUTOR`.

Unset: Dagster's default (a process per step, one machine). `celery`: each step goes to a
Celery worker on any machine (`pip install 'bitrix24-example[celery]'`, README "Running on
Celery or Kubernetes"); the broker and result backend are `CELERY_BROKER_URL` (e.g.
`redis://cache:6379/0`), read at run time, never written into the definitions.
"""

import os

from dagster import ExecutorDefinition

from bitrix_core.errors import BitrixParameterError

EXECUTORS = ("celery",)


def executor_from_env() -> ExecutorDefinition | None:
    """The executor `BITRIX24_EXECUTOR` names (None: Dagster's default)."""
    kind = os.environ.get("BITRIX24_EXECUTOR", "").strip().lower()
    if not kind:
        return None
    if kind == "celery":
        try:
            from dagster_celery import celery_executor
        except ModuleNotFoundError:
            raise BitrixParameterError(
                "BITRIX24_EXECUTOR", "celery needs pip install 'bitrix24-example[celery]'"
            ) from None

        broker = {"env": "CELERY_BROKER_URL"}
        return celery_executor.configured({"broker": broker, "backend": broker})
    raise BitrixParameterError("BITRIX24_EXECUTOR", f"use one of {EXECUTORS} or leave it unset")
