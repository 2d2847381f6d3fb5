"""Resources keep secrets out of reprs and UI config; the shared limiter spans processes."""

import asyncio
import json
import multiprocessing
import time

import pytest
from dagster import Definitions, EnvVar

from bitrix_core.errors import BitrixParameterError
from bitrix_core.throttle import Limits, MethodBudget
from dagster_bitrix24 import Bitrix24Resource, SqliteLimiterBackend, SQLWarehouseResource
from dagster_bitrix24.warehouse.errors import WarehouseUnavailableError

SECRET_URL = "https://acme.bitrix24.com/rest/1/s3cr3tc0de4567/"


def test_literal_webhook_url_is_refused_before_anything_is_sent():
    with pytest.raises(BitrixParameterError, match="EnvVar"):
        Bitrix24Resource(webhook_url="https://acme.bitrix24.com/rest/1/another1code/")


def test_secret_never_in_repr_nor_in_ui_config(monkeypatch):
    monkeypatch.setenv("TEST_B24_URL", SECRET_URL)
    resource = Bitrix24Resource(webhook_url=EnvVar("TEST_B24_URL"))
    assert "s3cr3t" not in repr(resource) and "s3cr3t" not in str(resource)
    assert resource.redacted_portal == "https://acme.bitrix24.com"
    definition = resource.get_resource_definition()
    assert "s3cr3t" not in definition.config_schema.default_value_as_json_str
    field = definition.config_schema.config_type.fields["webhook_url"]
    assert field.is_secret
    Definitions(resources={"bitrix24": resource})  # loads with the variable unresolved


def test_oauth_secret_must_come_from_the_environment():
    with pytest.raises(BitrixParameterError, match="client_secret"):
        Bitrix24Resource(
            portal_url="https://acme.bitrix24.com/rest/",
            client_id="app",
            client_secret="literal-secret",
            token_file="/tmp/t.json",
        )


def test_warehouse_password_is_masked_and_must_be_an_env_var(monkeypatch):
    with pytest.raises(BitrixParameterError, match="password"):
        SQLWarehouseResource(url="postgresql+psycopg://u:pw@db.example/x")
    monkeypatch.setenv("TEST_WH_URL", "postgresql+psycopg://u:hunter2@db.example/x")
    resource = SQLWarehouseResource(url=EnvVar("TEST_WH_URL"))
    assert "hunter2" not in repr(resource)
    assert resource.kind == "postgres"
    assert SQLWarehouseResource(url="mysql+pymysql://root@h/db").kind == "mysql"


def test_plan_limits_are_scaled_and_overridden():
    resource = Bitrix24Resource(
        webhook_url="http://127.0.0.1:1/rest/1/x/", plan="standard", time_scale=0.01, bucket_size=20
    )
    limits = resource.limits()
    assert limits.bucket_size == 20
    assert limits.drain_per_s == pytest.approx(200.0)
    assert limits.query_limit_patience_s == pytest.approx(3.0)  # 300 s, scaled
    patient = Bitrix24Resource(
        webhook_url="http://127.0.0.1:1/rest/1/x/", query_limit_patience_s=900
    )
    assert patient.limits().query_limit_patience_s == 900


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("plan", "platinum"),
        ("time_scale", 0.0),
        ("bucket_size", 0),
        ("drain_per_s", -1.0),
        ("query_limit_patience_s", -1.0),
    ],
)
def test_bad_limit_options_are_named_before_any_request(option, value):
    resource = Bitrix24Resource(webhook_url="http://127.0.0.1:1/rest/1/x/", **{option: value})
    with pytest.raises(BitrixParameterError) as raised:
        resource.get_client()
    assert raised.value.parameter == option


def _take_slots(path: str, count: int, barrier, queue) -> None:
    backend = SqliteLimiterBackend(path, portal="acme")
    limits = Limits(bucket_size=5, drain_per_s=10.0, bucket_headroom=0.0)

    async def take() -> list[float]:
        send_at = []
        for _ in range(count):
            now = time.monotonic()
            wait = await backend.take_slot(
                now=now, interval_s=1 / limits.drain_per_s, burst=limits.burst
            )
            send_at.append(now + wait)
        return send_at

    barrier.wait(timeout=60)
    queue.put(asyncio.run(take()))


@pytest.mark.slow  # spawns two interpreters that import Dagster
def test_two_processes_share_one_bucket(tmp_path):
    path = str(tmp_path / "limiter.sqlite")
    SqliteLimiterBackend(path, portal="acme")
    context = multiprocessing.get_context("spawn")
    queue, barrier = context.Queue(), context.Barrier(2)
    workers = [
        context.Process(target=_take_slots, args=(path, 10, barrier, queue)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    send_at = sorted(queue.get(timeout=60) + queue.get(timeout=60))
    for worker in workers:
        worker.join(timeout=30)
    # One bucket (burst 5, 10 per second) for 20 slots: the last goes 1.5 s after the first.
    # Two separate buckets would let both processes finish within about 0.5 s.
    assert send_at[-1] - send_at[0] >= 1.4
    for k in range(5, 20):
        assert send_at[k] - send_at[0] >= (k - 4) * 0.1 - 0.02


def test_operating_budget_round_trips_between_backends(tmp_path):
    path = tmp_path / "limiter.sqlite"
    now = time.monotonic()
    budget = MethodBudget(operating=12.5, reset_at=now + 30, server_now=now, cost_s=0.2)
    asyncio.run(SqliteLimiterBackend(path, portal="acme").put_budget("crm.deal.list", budget))
    other = SqliteLimiterBackend(path, portal="acme")
    loaded = asyncio.run(other.get_budget("crm.deal.list"))
    assert loaded.operating == 12.5
    assert loaded.reset_at == pytest.approx(budget.reset_at, abs=0.05)
    assert (
        asyncio.run(SqliteLimiterBackend(path, portal="other").get_budget("crm.deal.list")) is None
    )
    assert json.dumps(loaded.cost_s) == "0.2"


def test_operating_budget_round_trips_through_a_shared_backend(shared_state_url):
    from bitrix_core.limiter_backends import limiter_backend_from_url

    portal = f"budget-{time.time_ns()}"
    now = time.monotonic()
    first = MethodBudget(operating=12.5, reset_at=now + 30, server_now=now, blocked_until=now + 9)
    later = MethodBudget(operating=14.0, reset_at=now + 30, server_now=now, cost_s=0.2)

    async def round_trip() -> tuple:
        writer = limiter_backend_from_url(shared_state_url, portal=portal)
        reader = limiter_backend_from_url(shared_state_url, portal=portal)
        other = limiter_backend_from_url(shared_state_url, portal=portal + "-other")
        await writer.put_budget("crm.deal.list", first)
        await reader.put_budget("crm.deal.list", later)  # knows nothing of the block
        answers = (
            await writer.get_budget("crm.deal.list"),
            await other.get_budget("crm.deal.list"),
        )
        for backend in (writer, reader, other):
            await backend.aclose()
        return answers

    loaded, elsewhere = asyncio.run(round_trip())
    assert elsewhere is None  # keyed by portal
    assert (loaded.operating, loaded.cost_s) == (14.0, 0.2)  # the newer record...
    assert loaded.blocked_until == pytest.approx(now + 9, abs=0.05)  # ...keeps the block
    assert loaded.reset_at == pytest.approx(now + 30, abs=0.05)


def test_limiter_url_chooses_the_backend_and_limiter_path_still_works(tmp_path, monkeypatch):
    from bitrix_core.limiter_backends import PostgresLimiterBackend, RedisLimiterBackend

    def backend(**options):
        resource = Bitrix24Resource(webhook_url="http://127.0.0.1:1/rest/1/code1234/", **options)
        return resource.get_client().throttle.backend

    path = tmp_path / "limiter.sqlite"
    assert isinstance(backend(limiter_path=str(path)), SqliteLimiterBackend)
    assert isinstance(backend(limiter_url=str(path)), SqliteLimiterBackend)
    assert backend(limiter_url=f"sqlite:///{path}").path == path
    assert isinstance(backend(limiter_url="redis://127.0.0.1:6379/13"), RedisLimiterBackend)
    monkeypatch.setenv("TEST_B24_LIMITER", "postgresql://user:pg-s3cr3t-pw@db.internal/w")
    shared = backend(limiter_url=EnvVar("TEST_B24_LIMITER"))
    assert isinstance(shared, PostgresLimiterBackend)
    assert "pg-s3cr3t-pw" not in repr(shared)
    with pytest.raises(BitrixParameterError, match="not both"):
        backend(limiter_url=str(path), limiter_path=str(path))
    with pytest.raises(BitrixParameterError, match="unknown scheme"):
        backend(limiter_url="memcached://cache:11211")


@pytest.mark.parametrize("option", ["limiter_url", "token_store_url"])
def test_store_url_passwords_must_be_env_vars_and_are_masked(option, monkeypatch):
    from bitrix_core.redaction import redact

    url = "redis://:r3d1s-s3cr3t@cache.internal:6379/0"
    with pytest.raises(BitrixParameterError, match="EnvVar"):
        Bitrix24Resource(webhook_url="http://127.0.0.1:1/rest/1/code1234/", **{option: url})
    monkeypatch.setenv("TEST_B24_STORE", url)
    resource = Bitrix24Resource(
        webhook_url="http://127.0.0.1:1/rest/1/code1234/", **{option: EnvVar("TEST_B24_STORE")}
    )
    assert "r3d1s" not in repr(resource)
    field = resource.get_resource_definition().config_schema.config_type.fields[option]
    assert field.is_secret
    from bitrix_core.store_urls import redact_store_url

    assert redact_store_url(url) == "redis://:***@cache.internal:6379/0"
    assert "r3d1s" not in redact(f"could not connect to {url}")  # registered as a secret


def test_a_missing_database_driver_says_what_to_install():
    warehouse = SQLWarehouseResource(url="postgresql+pg8000://reader@127.0.0.1:5432/crm")
    with pytest.raises(WarehouseUnavailableError) as raised:
        warehouse.get_warehouse()  # pg8000 is not installed here
    message = str(raised.value)
    assert "postgresql+pg8000://reader@127.0.0.1:5432/crm" in message and "'pg8000'" in message
    assert "pip install 'dagster-bitrix24[postgres]'" in message
