"""The example's executor switch: Dagster's default, or Celery with BITRIX24_EXECUTOR=celery
(the broker read from CELERY_BROKER_URL at run time, not written into the definitions)."""

import pytest
from bitrix24_example.executor import executor_from_env

from bitrix_core.errors import BitrixParameterError


def test_unset_keeps_dagsters_default(monkeypatch):
    monkeypatch.delenv("BITRIX24_EXECUTOR", raising=False)
    assert executor_from_env() is None


def test_celery_reads_its_broker_from_the_environment(monkeypatch):
    monkeypatch.setenv("BITRIX24_EXECUTOR", "celery")
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # needed by the run, not here
    executor = executor_from_env()
    assert executor is not None and executor.name == "celery"


def test_an_unknown_executor_is_named(monkeypatch):
    monkeypatch.setenv("BITRIX24_EXECUTOR", "k8s")
    with pytest.raises(BitrixParameterError, match="BITRIX24_EXECUTOR"):
        executor_from_env()
