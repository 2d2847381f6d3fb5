"""Operating-time reservations across real processes (Redis, PostgreSQL; SQLite for one
machine): reservations made at once by several processes never add up to more than the
limit at any moment, and a process SIGKILLed while holding reservations holds them only
until they expire."""

import asyncio
import multiprocessing
import os
import signal
import time
import uuid

import pytest

from bitrix_core.limiter_backends import limiter_backend_from_url
from bitrix_core.throttle import Limits, Throttle

_METHOD = "crm.deal.list"
#: Each reservation: 1 s of operating time held for 0.4 s, at most 3 s live at once.
_SECONDS, _HOLD_S, _LIMIT_S = 1.0, 0.4, 3.0
_PROCESSES, _EACH = 3, 8
#: Measured moments come from several processes' clocks: an end and a start this close
#: are taken as one after the other, not overlapping.
_TOLERANCE_S = 0.03


@pytest.fixture(params=["redis", "postgres", "sqlite"])
def limiter_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'limiter.sqlite'}"
    return request.getfixturevalue("shared_state_url_" + request.param)


@pytest.fixture
def shared_state_url_redis() -> str:
    from tests.conftest import _database_url

    return _database_url("BITRIX24_TEST_REDIS_URL")


@pytest.fixture
def shared_state_url_postgres() -> str:
    from tests.conftest import _database_url

    return _database_url("BITRIX24_TEST_POSTGRES_URL")


def _reserve_many(url: str, portal: str, ready, results) -> None:  # noqa: ANN001
    """One spawned process: `_EACH` reservations back to back, each waited out; the
    (start, end) wall-clock span of each."""

    async def run() -> list[tuple[float, float]]:
        backend = limiter_backend_from_url(url, portal=portal)
        spans = []
        for _ in range(_EACH):
            wait = await backend.reserve_operating(
                _METHOD, seconds=_SECONDS, after_s=0.0, hold_s=_HOLD_S, limit_s=_LIMIT_S
            )
            start = time.time() + wait
            spans.append((start, start + _HOLD_S))
            await asyncio.sleep(wait)
        if hasattr(backend, "aclose"):
            await backend.aclose()
        return spans

    ready.wait(timeout=60)
    results.put(asyncio.run(run()))


def _most_live(spans: list[tuple[float, float]]) -> float:
    """The most operating time live at any one moment (ends first at a near tie)."""
    events = sorted(
        [(start, 1) for start, _ in spans] + [(end - _TOLERANCE_S, -1) for _, end in spans]
    )
    live = most = 0
    for _, step in events:
        live += step
        most = max(most, live)
    return most * _SECONDS


@pytest.mark.slow  # spawns three interpreters: ~1.5 s of reservations plus their start
def test_processes_reserving_at_once_never_exceed_the_limit(limiter_url):
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(_PROCESSES + 1), context.Queue()
    portal = f"operating-{uuid.uuid4().hex[:8]}"
    workers = [
        context.Process(target=_reserve_many, args=(limiter_url, portal, ready, results))
        for _ in range(_PROCESSES)
    ]
    for worker in workers:
        worker.start()
    ready.wait(timeout=60)
    spans = [span for _ in workers for span in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=10)
    assert len(spans) == _PROCESSES * _EACH
    assert _most_live(spans) == _LIMIT_S  # full use of the budget, never more
    # 24 reservations, 3 at a time, 0.4 s each: the schedule took ~8 holds, not fewer
    first, last = min(start for start, _ in spans), max(end for _, end in spans)
    assert last - first >= (_PROCESSES * _EACH / 3) * _HOLD_S - _TOLERANCE_S


def _reserve_and_hang(url: str, portal: str, ready) -> None:  # noqa: ANN001
    """Reserve the whole budget (3 x 1 s, each held 2 s), say so, then hang until killed."""

    async def reserve() -> None:
        backend = limiter_backend_from_url(url, portal=portal)
        for _ in range(3):
            await backend.reserve_operating(
                _METHOD, seconds=_SECONDS, after_s=0.0, hold_s=2.0, limit_s=_LIMIT_S
            )

    asyncio.run(reserve())
    ready.set()
    time.sleep(600)


def test_a_killed_process_holds_operating_time_only_until_it_expires(limiter_url):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    portal = f"operating-kill-{uuid.uuid4().hex[:8]}"
    holder = context.Process(target=_reserve_and_hang, args=(limiter_url, portal, ready))
    holder.start()
    assert ready.wait(timeout=60)
    reserved_at = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=10)

    async def reserve() -> float:
        backend = limiter_backend_from_url(limiter_url, portal=portal)
        try:
            return await backend.reserve_operating(
                _METHOD, seconds=_SECONDS, after_s=0.0, hold_s=0.1, limit_s=_LIMIT_S
            )
        finally:
            if hasattr(backend, "aclose"):
                await backend.aclose()

    first = asyncio.run(reserve())
    held_s = 2.0 - (time.monotonic() - reserved_at)
    assert held_s - 0.3 <= first <= held_s + 0.3  # the dead process's time still counts...
    time.sleep(max(0.0, first + 0.2))
    assert asyncio.run(reserve()) <= 0.01  # ...until it expires, and nothing past it
    if limiter_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(limiter_url)
        key = f"bitrix24:limiter:{portal}:operating:{_METHOD}"
        assert 0 < client.pttl(key) <= 1000 + 100 + 50  # expires with its last reservation
        time.sleep(1.3)
        assert not client.exists(key)  # nothing left behind
        client.close()


async def test_two_throttles_sharing_a_backend_reserve_operating_time_in_one_ledger(tmp_path):
    """Two throttles (two processes' worth of state) asking at once for a method whose two
    calls overrun the budget: through the backend's one ledger the second waits for the
    first call's time to leave the window, although neither had committed it locally."""
    limits = Limits(
        bucket_size=1000,
        drain_per_s=1000.0,
        operating_budget_s=2.0,  # hard mark 1.94 s: one 1 s call at a time
        operating_window_s=0.5,
        basket_s=0.1,
        jitter_s=0.0,
        margin_slots=0,
    )
    url = f"sqlite:///{tmp_path / 'limiter.sqlite'}"
    first, second = (
        Throttle(limits, backend=limiter_backend_from_url(url, portal="acme")) for _ in range(2)
    )
    for throttle in (first, second):  # each learns the method's price: 1 s a call
        now = time.time()
        await throttle.record_time(_METHOD, 0.0, now + 0.5, now, processing=1.0)
    waits = sorted(await asyncio.gather(first.reserve([_METHOD]), second.reserve([_METHOD])))
    assert waits[0] < 0.05
    assert 1.4 <= waits[1] <= 1.7  # the first call's 1 s plus the 0.5 s window
