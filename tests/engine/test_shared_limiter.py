"""The Redis and PostgreSQL limiter backends across real processes: three spawned clients
pace one portal's bucket without a single 503, and a process killed right after reserving
slots holds nothing past them."""

import asyncio
import multiprocessing
import os
import signal
import time
import uuid

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.emulator import EmulatedPortal
from bitrix_core.limiter_backends import limiter_backend_from_url
from bitrix_core.throttle import Limits

#: The standard plan (50 requests, 2 per s) 20x faster: 40 per s.
_SCALE = 0.05
_PROCESSES, _CALLS_EACH = 3, 100


def _call_many(webhook: str, url: str | None, portal: str, ready, results) -> None:  # noqa: ANN001
    """One spawned client: `_CALLS_EACH` single-request calls at once, once all are ready."""
    limits = Limits.for_plan("standard").scaled(_SCALE)
    backend = limiter_backend_from_url(url, portal=portal) if url else None

    async def run() -> int:
        async with BitrixClient(webhook, limits=limits, backend=backend, verbose=False) as client:
            answers = await asyncio.gather(
                *(client.call("crm.deal.get", {"id": 1 + i % 20}) for i in range(_CALLS_EACH))
            )
            return len(answers)

    ready.wait(timeout=60)
    results.put(asyncio.run(run()))


def _reserve_and_hang(url: str, portal: str, slots: int, interval_s: float, ready) -> None:  # noqa: ANN001
    """Reserve `slots` slots back to back (none sent), say so, then hang until killed."""

    async def reserve() -> None:
        backend = limiter_backend_from_url(url, portal=portal)
        for _ in range(slots):
            await backend.take_slot(now=time.monotonic(), interval_s=interval_s, burst=1)

    asyncio.run(reserve())
    ready.set()
    time.sleep(600)


@pytest.mark.slow  # spawns three interpreters: ~6 s of pacing plus their start
def test_three_processes_pace_one_bucket_without_a_503(shared_state_url):
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(_PROCESSES + 1), context.Queue()
    portal_key = f"pace-{uuid.uuid4().hex[:8]}"
    with EmulatedPortal(deals=40, plan="standard", time_scale=_SCALE) as portal:
        workers = [
            context.Process(
                target=_call_many,
                args=(portal.webhook_url, shared_state_url, portal_key, ready, results),
            )
            for _ in range(_PROCESSES)
        ]
        for worker in workers:
            worker.start()
        ready.wait(timeout=60)
        started = time.monotonic()
        answered = [results.get(timeout=60) for _ in workers]
        elapsed = time.monotonic() - started
        for worker in workers:
            worker.join(timeout=10)
        totals = portal.counters.total()
    assert answered == [_CALLS_EACH] * _PROCESSES
    assert totals.status_503 == 0  # one bucket for all three: the portal never refused
    # paced, not serialised: the plan's drain time for what did not fit in the bucket
    limit_s = (_PROCESSES * _CALLS_EACH - 50) * _SCALE / 2.0
    assert limit_s * 0.8 <= elapsed <= limit_s * 2 + 3


def test_a_killed_process_holds_no_reservation_past_its_slots(shared_state_url):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    portal_key = f"kill-{uuid.uuid4().hex[:8]}"
    slots, interval_s = 20, 0.1  # the killed process holds the next 2 s
    holder = context.Process(
        target=_reserve_and_hang, args=(shared_state_url, portal_key, slots, interval_s, ready)
    )
    holder.start()
    assert ready.wait(timeout=60)
    reserved_at = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=10)

    async def take() -> float:
        backend = limiter_backend_from_url(shared_state_url, portal=portal_key)
        try:
            return await backend.take_slot(now=time.monotonic(), interval_s=interval_s, burst=1)
        finally:
            await backend.aclose()

    first = asyncio.run(take())
    held_s = slots * interval_s - (time.monotonic() - reserved_at)
    assert held_s - 0.3 <= first <= held_s + 0.3  # the dead process's slots still count...
    time.sleep(max(0.0, first + interval_s))
    assert asyncio.run(take()) <= 0.05  # ...and nothing past them: the next one goes at once
    if shared_state_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(shared_state_url)
        key = f"bitrix24:limiter:{portal_key}:bucket"
        assert 0 < client.pttl(key) <= 1000 + 2 * interval_s * 1000  # expires when drained
        time.sleep(1.3)
        assert not client.exists(key)  # nothing left behind
        client.close()


def test_postgres_backend_replaces_a_dropped_connection():
    import psycopg

    from tests.conftest import _database_url

    url = _database_url("BITRIX24_TEST_POSTGRES_URL")
    portal_key = f"drop-{uuid.uuid4().hex[:8]}"

    async def run() -> list[float]:
        backend = limiter_backend_from_url(url, portal=portal_key)
        waits = [await backend.take_slot(now=time.monotonic(), interval_s=0.05, burst=5)]
        pid = backend._connection.info.backend_pid
        from bitrix_core.store_urls import psycopg_conninfo

        with psycopg.connect(psycopg_conninfo(url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # a database restart
        waits.append(await backend.take_slot(now=time.monotonic(), interval_s=0.05, burst=5))
        await backend.aclose()
        return waits

    assert asyncio.run(run()) == [0.0, 0.0]
