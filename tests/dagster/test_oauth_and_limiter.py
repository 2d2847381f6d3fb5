"""OAuth through a real materialisation (expiry mid-run, refresh persisted), the shared
limiter file paced by two concurrent runs, and many threads and processes opening a fresh
limiter file at the same moment."""

import asyncio
import json
import multiprocessing
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from dagster import EnvVar, materialize

from bitrix_core.emulator.limits import Plan
from bitrix_core.emulator.portal import EmulatedPortal
from dagster_bitrix24 import (
    Bitrix24Resource,
    SqliteLimiterBackend,
    SQLWarehouseResource,
    build_bitrix24_assets,
)
from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.conftest import materializations, stored_rows


class _ExpiringWarehouse(Warehouse):
    """Expires every access token (admin API) when it prepares its first table: after the
    run's first calls succeeded and before its list requests are sent."""

    def __init__(self, *args, admin_url: str, admin_token: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._admin = (admin_url, admin_token)

    def prepare_table(self, *args, **kwargs):
        if self._admin:
            url, token = self._admin
            self._admin = ()
            request = urllib.request.Request(
                url, method="POST", headers={"X-Emulator-Admin-Token": token}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert json.load(answer) == {"expired": True}
        return super().prepare_table(*args, **kwargs)


class ExpiringWarehouseResource(SQLWarehouseResource):
    admin_url: str
    admin_token: str

    def get_warehouse(self, *, table_prefix: str = "bitrix24_") -> Warehouse:
        return _ExpiringWarehouse(
            self.url, schema=self.schema_name, table_prefix=table_prefix,
            admin_url=self.admin_url, admin_token=self.admin_token,
        )  # fmt: skip


def _oauth_resource(portal, token_file=None, **options) -> Bitrix24Resource:
    app = portal.oauth_client()
    return Bitrix24Resource(
        portal_url=f"{app.portal_url}/rest/",
        oauth_server=app.portal_url,
        client_id=app.client_id,
        client_secret=EnvVar("TEST_B24_CLIENT_SECRET"),
        token_file=str(token_file) if token_file else None,
        plan="unlimited",
        **options,
    )


def test_oauth_token_expiring_mid_run_is_refreshed_and_persisted(portal, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_B24_CLIENT_SECRET", portal.oauth_client().client_secret)
    token_file = tmp_path / "tokens.json"
    _oauth_resource(portal, token_file).authorize(code=portal.issue_auth_code())
    issued = json.loads(token_file.read_text())
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    assets = build_bitrix24_assets(entities=["crm.deal", "crm.contact"])
    warehouse = ExpiringWarehouseResource(
        url=url, admin_url=f"{portal.base_url}/_emulator/oauth/expire",
        admin_token=portal.admin_token,
    )  # fmt: skip

    result = materialize(
        [assets],
        resources={"bitrix24": _oauth_resource(portal, token_file), "warehouse": warehouse},
    )
    refreshed = json.loads(token_file.read_text())
    assert refreshed["refresh_token"] != issued["refresh_token"]
    assert refreshed["access_token"] != issued["access_token"]
    deals = {row["ID"]: row["TITLE"] for row in portal.store.raw_rows("crm.deal")}
    assert {i: t for i, (t,) in stored_rows(url, "bitrix24_crm_deal", "title").items()} == deals
    assert len(stored_rows(url, "bitrix24_crm_contact")) == portal.store.count("crm.contact")
    logged = " ".join(str(event) for event in result.all_events)
    for secret in (*issued.values(), *refreshed.values(), portal.oauth_client().client_secret):
        if isinstance(secret, str) and len(secret) > 20:
            assert secret not in logged

    # The next run starts from the file alone: the rotated refresh token must be the live one.
    portal.oauth.expire_access_tokens()
    portal.store.mutate(2, adds=3, entities=("crm.deal",))
    again = materialize(
        [assets],
        resources={"bitrix24": _oauth_resource(portal, token_file),
                   "warehouse": SQLWarehouseResource(url=url)},
    )  # fmt: skip
    assert materializations(again)["bitrix24/crm_deal"]["rows_inserted"] == 3
    assert json.loads(token_file.read_text())["refresh_token"] != refreshed["refresh_token"]


def test_oauth_tokens_in_a_shared_store_are_refreshed_and_persisted(
    portal, shared_state_url, tmp_path, monkeypatch
):
    from bitrix_core.token_store_urls import token_store_from_url

    monkeypatch.setenv("TEST_B24_CLIENT_SECRET", portal.oauth_client().client_secret)
    monkeypatch.setenv("TEST_B24_TOKEN_STORE", shared_state_url)
    resource = _oauth_resource(portal, token_store_url=EnvVar("TEST_B24_TOKEN_STORE"))
    resource.authorize(code=portal.issue_auth_code())
    store = token_store_from_url(shared_state_url, key=resource.portal_host)
    issued = store.load()
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    warehouse = ExpiringWarehouseResource(
        url=url, admin_url=f"{portal.base_url}/_emulator/oauth/expire",
        admin_token=portal.admin_token,
    )  # fmt: skip
    assets = build_bitrix24_assets(entities=["crm.deal"])
    result = materialize([assets], resources={"bitrix24": resource, "warehouse": warehouse})
    refreshed = store.load()
    assert refreshed.refresh_token != issued.refresh_token  # rotated and stored
    assert materializations(result)["bitrix24/crm_deal"]["rows_fetched"] == portal.store.count(
        "crm.deal"
    )
    logged = " ".join(str(event) for event in result.all_events)
    assert refreshed.refresh_token not in logged and refreshed.access_token not in logged
    if shared_state_url.startswith("redis"):  # tokens never expire: leave none behind
        import redis

        with redis.Redis.from_url(shared_state_url) as client:
            client.delete(f"bitrix24:oauth:{resource.portal_host}")


def test_two_concurrent_runs_share_a_limiter_url(shared_state_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_B24_LIMITER_URL", shared_state_url)
    plan = Plan("tiny", bucket_size=3, drain_per_s=10.0, operating_limit_s=None)
    with EmulatedPortal(seed=4, deals=60, plan=plan) as portal:
        bitrix24 = Bitrix24Resource(
            webhook_url=portal.webhook_url, bucket_size=3, drain_per_s=10.0,
            limiter_url=EnvVar("TEST_B24_LIMITER_URL"),
        )  # fmt: skip
        started = time.time()
        with _newest_stored_tat(shared_state_url, bitrix24.portal_host) as seen:
            runs = _sync_deals_and_contacts_at_once(bitrix24, tmp_path)
        refused = portal.counters.total().status_503
        tat = max(seen)

    assert set(runs) == {"crm.deal", "crm.contact"}
    assert refused == 0  # two clients, one bucket in Redis / PostgreSQL
    # Every request of BOTH runs advanced the one shared bucket by 0.1 s.
    requests = sum(m["bitrix24/run_requests"] for m in runs.values())
    assert tat >= started + requests * 0.1 - 0.05
    assert requests > 3  # more than one burst: pacing did happen


def _sync_deals_and_contacts_at_once(bitrix24: Bitrix24Resource, tmp_path) -> dict[str, dict]:
    """Materialise deals and contacts in two threads sharing `bitrix24`; their metadata."""
    runs: dict[str, dict] = {}

    def run(entity: str) -> None:
        assets = build_bitrix24_assets(entities=[entity], name=entity.replace(".", "_"))
        warehouse = SQLWarehouseResource(url=f"sqlite:///{tmp_path / entity}.sqlite")
        result = materialize([assets], resources={"bitrix24": bitrix24, "warehouse": warehouse})
        runs[entity] = materializations(result)[f"bitrix24/{entity.replace('.', '_')}"]

    threads = [threading.Thread(target=run, args=(e,)) for e in ("crm.deal", "crm.contact")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return runs


@contextmanager
def _newest_stored_tat(url: str, portal: str) -> Iterator[list[float]]:
    """The stored bucket times seen while the block runs and once after it. Redis expires
    the key a second after the bucket drains, which a loaded host can take to read it."""
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            seen.append(_stored_tat(url, portal))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()
        seen.append(_stored_tat(url, portal))
        seen[:] = [tat for tat in seen if tat is not None]


def _stored_tat(url: str, portal: str) -> float | None:
    """The shared bucket's theoretical arrival time (wall clock) as the backend stored it;
    None when there is none."""
    if url.startswith("redis"):
        import redis

        with redis.Redis.from_url(url) as client:
            stored = client.get(f"bitrix24:limiter:{portal}:bucket")
            return None if stored is None else float(stored)
    import psycopg

    from bitrix_core.store_urls import psycopg_conninfo

    with psycopg.connect(psycopg_conninfo(url)) as connection:
        query = "SELECT tat FROM bitrix24_limiter_bucket WHERE portal = %s"
        try:
            row = connection.execute(query, (portal,)).fetchone()
        except psycopg.errors.UndefinedTable:  # the first client has not created it yet
            return None
        return None if row is None else row[0]


def test_two_concurrent_runs_share_the_limiter_file(tmp_path):
    # A portal whose bucket holds 3 requests and drains 10 per second.
    plan = Plan("tiny", bucket_size=3, drain_per_s=10.0, operating_limit_s=None)
    limiter = tmp_path / "limiter.sqlite"
    with EmulatedPortal(seed=3, deals=60, plan=plan) as portal:
        bitrix24 = Bitrix24Resource(
            webhook_url=portal.webhook_url, bucket_size=3, drain_per_s=10.0,
            limiter_path=str(limiter),
        )  # fmt: skip
        started = time.time()
        runs = _sync_deals_and_contacts_at_once(bitrix24, tmp_path)
        refused = portal.counters.total().status_503

    assert set(runs) == {"crm.deal", "crm.contact"}
    assert refused == 0  # two clients, one bucket: the portal never had to refuse
    with sqlite3.connect(limiter) as connection:
        rows = connection.execute("SELECT portal, tat FROM limiter_bucket").fetchall()
    assert [portal_name for portal_name, _ in rows] == [bitrix24.portal_host]  # one shared row
    # Every request of BOTH runs advanced the one bucket by 0.1 s.
    requests = sum(m["bitrix24/run_requests"] for m in runs.values())
    assert rows[0][1] >= started + requests * 0.1 - 0.05
    assert requests > 3  # more than one burst: pacing did happen


#: The bucket the racing participants share: 3 requests, one more every 0.2 s.
_BURST, _INTERVAL_S, _SLOTS_EACH = 3, 0.2, 3
#: Threads, and as many spawned processes, that open each fresh file together.
_PARTICIPANTS = 3


def _wait_for(ready) -> None:  # noqa: ANN001 - a multiprocessing barrier
    ready.wait(timeout=60)


def _open_and_take_slots(path: str, start_at: float) -> list[float] | str:
    """At `start_at` (wall clock) open the limiter file and take slots back to back.

    Returns when each slot may be sent (monotonic clock, one clock for every process on
    the machine), or the SQLite error met.
    """
    time.sleep(max(0.0, start_at - time.time()))

    async def take(backend: SqliteLimiterBackend) -> list[float]:
        send_at = []
        for _ in range(_SLOTS_EACH):
            now = time.monotonic()
            wait = await backend.take_slot(now=now, interval_s=_INTERVAL_S, burst=_BURST)
            send_at.append(now + wait)
        return send_at

    try:
        return asyncio.run(take(SqliteLimiterBackend(path, portal="acme")))
    except sqlite3.Error as error:
        return repr(error)


def _peak_level(send_at: list[float]) -> float:
    """The most requests a bucket draining one per `_INTERVAL_S` held at once (the portal's
    view of these sends): over every run of consecutive sends, count minus what drained."""
    ordered = sorted(send_at)
    return max(
        (j - i + 1) - (ordered[j] - ordered[i]) / _INTERVAL_S
        for i in range(len(ordered))
        for j in range(i, len(ordered))
    )


@pytest.mark.slow  # spawns interpreters that import Dagster
def test_threads_and_processes_opening_a_fresh_file_together_share_one_bucket(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(_PARTICIPANTS + 1)
    failures: list[str] = []
    peaks: list[float] = []
    with (
        ProcessPoolExecutor(
            _PARTICIPANTS, mp_context=context, initializer=_wait_for, initargs=(ready,)
        ) as processes,
        ThreadPoolExecutor(_PARTICIPANTS) as threads,
    ):
        for _ in range(_PARTICIPANTS):
            processes.submit(int)  # workers start on demand: one per task
        ready.wait(timeout=60)  # every worker has started and imported this module
        for trial in range(30):
            path = str(tmp_path / f"limiter-{trial}.sqlite")
            start_at = time.time() + 0.05  # time to hand the task to every worker
            futures = [
                pool.submit(_open_and_take_slots, path, start_at)
                for pool in (processes, threads)
                for _ in range(_PARTICIPANTS)
            ]
            answers = [future.result(timeout=60) for future in futures]
            failures += [answer for answer in answers if isinstance(answer, str)]
            send_at = [t for answer in answers if isinstance(answer, list) for t in answer]
            if len(send_at) == 2 * _PARTICIPANTS * _SLOTS_EACH:
                peaks.append(_peak_level(send_at))

    assert failures == []
    # Every slot went through the one bucket: it never held more than its size. A lost
    # update (two takers reading the same state) puts two sends on one instant, one over.
    # The half-slot margin covers the moment between reading the clock and taking the slot.
    assert len(peaks) == 30
    assert max(peaks) <= _BURST + 0.5


def test_limit_answers_are_counted_on_the_entity_whose_request_met_them(portal, tmp_path):
    # 503 QUERY_LIMIT_EXCEEDED to the deal's field request and to two of its list commands
    # (inside linked batches); the contact's requests all go through.
    portal.faults.add("query_limit", method="crm.deal.fields", times=1)
    portal.faults.add("query_limit", method="crm.deal.list", times=2)
    assets = build_bitrix24_assets(entities=["crm.deal", "crm.contact"])
    warehouse = SQLWarehouseResource(url=f"sqlite:///{tmp_path / 'w.sqlite'}")
    bitrix24 = Bitrix24Resource(webhook_url=portal.webhook_url, plan="unlimited")
    reported = materializations(
        materialize([assets], resources={"bitrix24": bitrix24, "warehouse": warehouse})
    )
    deal, contact = reported["bitrix24/crm_deal"], reported["bitrix24/crm_contact"]
    assert deal["bitrix24/run_limit_errors"] == 3
    assert (deal["limit_errors"], contact["limit_errors"]) == (3, 0)
    assert deal["rows_fetched"] == portal.store.count("crm.deal")
