"""Throttle arithmetic with an injected clock: bucket reservations, operating budgets, AIMD."""

import asyncio

import pytest

from bitrix_core.concurrency import AdaptiveConcurrency
from bitrix_core.throttle import InProcessLimiterBackend, Limits, Throttle


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(limits: Limits) -> tuple[Throttle, FakeTime]:
    fake = FakeTime()
    return Throttle(limits, clock=fake.clock, sleep=fake.sleep), fake


def test_plans_and_scaling():
    standard = Limits.for_plan("standard")
    assert (standard.bucket_size, standard.drain_per_s) == (50, 2.0)
    assert (
        Limits.for_plan("Enterprise").bucket_size,
        Limits.for_plan("enterprise").drain_per_s,
    ) == (250, 5.0)
    fast = standard.scaled(0.01)
    assert fast.drain_per_s == pytest.approx(200.0)
    assert fast.operating_budget_s == pytest.approx(4.8)
    assert fast.operating_window_s == pytest.approx(6.0)
    assert fast.basket_s == pytest.approx(0.6)
    assert fast.bucket_size == 50
    assert fast.burst == 30  # 100 ms of jitter at 200 per second is 20 slots of margin
    assert standard.burst == 48  # two slots (1 s of drain) of margin
    assert Limits(bucket_size=10, drain_per_s=1, margin_slots=0, jitter_s=0).burst == 10
    with pytest.raises(ValueError, match="unknown plan"):
        Limits.for_plan("gold")
    with pytest.raises(ValueError):
        standard.scaled(0)


async def test_burst_then_drain_rate():
    throttle, fake = make(Limits(bucket_size=10, drain_per_s=2.0, margin_slots=0, jitter_s=0))
    waits = [await throttle.reserve(["crm.deal.get"]) for _ in range(14)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.5] * 4)
    assert fake.now == pytest.approx(1002.0)


async def test_concurrent_reservations_never_exceed_the_bucket():
    """Slots are taken before sending: the level seen by the portal never passes the burst."""
    limits = Limits(bucket_size=20, drain_per_s=5.0)
    fake = FakeTime()
    backend = InProcessLimiterBackend()
    throttle = Throttle(limits, backend=backend, clock=fake.clock, sleep=fake.sleep)
    send_times = []
    for _ in range(100):
        delay = await backend.take_slot(now=fake.now, interval_s=0.2, burst=limits.burst)
        send_times.append(fake.now + delay)
    level, last = 0.0, send_times[0]
    for t in sorted(send_times):
        level = max(0.0, level - (t - last) * limits.drain_per_s) + 1
        last = t
        assert level <= limits.burst + 1e-9
    assert throttle.limits.burst == 18


async def test_query_limit_fills_the_bucket():
    throttle, fake = make(Limits(bucket_size=10, drain_per_s=2.0, margin_slots=0, jitter_s=0))
    assert await throttle.reserve(["a.get"]) == 0.0
    await throttle.on_query_limit()
    assert await throttle.reserve(["a.get"]) == pytest.approx(0.5)


async def test_operating_budget_uses_server_clock_and_slows_before_limit():
    limits = Limits(bucket_size=1000, drain_per_s=1000.0, operating_budget_s=100.0)
    throttle, fake = make(limits)
    # Server clock is 5000 s ahead of ours; the reset is 30 s away on ITS clock.
    server_now = fake.now + 5000
    await throttle.record_time("crm.deal.list", 10.0, server_now + 30, server_now, processing=1.0)
    assert await throttle.reserve(["crm.deal.list"]) == 0.0  # well within budget: no wait
    # Past the soft mark (70 of 100): calls are paced so the rest lasts until the reset.
    await throttle.record_time(
        "crm.deal.list", 80.0, server_now + 30, server_now + 0.01, processing=1.0
    )
    first = fake.now
    await throttle.reserve(["crm.deal.list"])
    await throttle.reserve(["crm.deal.list"])
    paced = fake.now - first
    assert 1.5 < paced < 30
    # Other methods are not slowed.
    before = fake.now
    await throttle.reserve(["crm.lead.list"])
    assert fake.now - before < 0.01


async def test_operating_budget_nearly_spent_waits_for_reset():
    limits = Limits(bucket_size=1000, drain_per_s=1000.0, operating_budget_s=100.0)
    throttle, fake = make(limits)
    server_now = 1.0e9  # any server clock: only differences matter
    await throttle.record_time("CRM.DEAL.LIST", 98.0, server_now + 12, server_now)
    waited = await throttle.reserve(["crm.deal.list"])
    assert waited == pytest.approx(12.0, abs=0.01)
    # After the reset the stale record no longer holds calls back.
    assert await throttle.reserve(["crm.deal.list"]) < 0.01


async def test_late_answer_does_not_overwrite_newer_budget():
    limits = Limits(bucket_size=1000, drain_per_s=1000.0, operating_budget_s=100.0)
    throttle, fake = make(limits)
    await throttle.record_time("m.list", 99.0, 2030.0, 2000.0)
    await throttle.record_time("m.list", 1.0, 2030.0, 1999.0)  # older answer
    budget = await throttle.backend.get_budget("m.list")
    assert budget.operating == 99.0


async def test_operation_limit_blocks_method_until_reset(caplog):
    limits = Limits(bucket_size=1000, drain_per_s=1000.0, basket_s=60.0)
    throttle, fake = make(limits)
    await throttle.record_time("m.list", 1.0, 3020.0, 3000.0)  # skew: local - server = -2000
    with caplog.at_level("WARNING", logger="bitrix_core"):
        wait = await throttle.on_operation_limit("m.list", reset_at=3010.0)
        await throttle.on_operation_limit("m.list", reset_at=3010.0)
    assert wait == pytest.approx(10.0)
    assert len([r for r in caplog.records if "OPERATION_TIME_LIMIT" in r.message]) == 1
    assert await throttle.reserve(["m.list", "other.list"]) == pytest.approx(10.0, abs=0.01)
    # Unknown reset time: one basket.
    assert await throttle.on_operation_limit("x.list") == pytest.approx(60.0)


async def test_adaptive_concurrency_aimd():
    gate = AdaptiveConcurrency(8)
    gate.on_overload()
    gate.on_overload()
    assert int(gate.limit) == 2
    for _ in range(10):
        gate.on_success()
    assert 2 < gate.limit <= 8
    gate = AdaptiveConcurrency(2)
    peak = 0

    async def worker():
        nonlocal peak
        async with gate.slot():
            peak = max(peak, gate.in_flight)
            await asyncio.sleep(0.001)

    await asyncio.gather(*(worker() for _ in range(10)))
    assert peak == 2
    assert gate.in_flight == 0


def test_slow_requests_raise_the_concurrency_ceiling_to_keep_the_bucket_busy():
    # standard plan: 48 requests at once, 2 per s. Batches of 50 pages of 68 ms take 3.4 s:
    # 16 in flight would send the burst in three waves; 48 + 2 x 3.4 keep the bucket busy
    throttle = Throttle(Limits.for_plan("standard"))
    throttle.observe_request(0.3)
    assert throttle.concurrency_ceiling == 49  # quick requests: the burst at once
    throttle.observe_request(3.4)
    assert throttle.concurrency_ceiling == throttle.concurrency_limit == 48 + 7
    throttle.on_overload()
    assert throttle.concurrency_limit == 27  # still halved on overload
    for _ in range(40):
        throttle.observe_request(0.01)  # back down, a tenth per request
    assert throttle.concurrency_ceiling == 49
    slow = Throttle(Limits.for_plan("standard"))
    slow.observe_request(600.0)
    assert slow.concurrency_ceiling == 4 * 16  # bounded
    assert Throttle(Limits.for_plan("standard")).concurrency_ceiling == 16  # before any answer


def test_a_lowered_concurrency_ceiling_caps_the_limit_without_cutting_it_further():
    gate = AdaptiveConcurrency(64)
    gate.on_overload()  # 32
    gate.set_maximum(16)
    assert (gate.maximum, gate.limit) == (16, 16.0)
    gate.set_maximum(48)  # raised: the limit follows by as much
    assert gate.limit == 48.0


async def test_slots_per_batch_tell_a_slow_batch_while_the_bucket_limits():
    throttle = Throttle(Limits.for_plan("standard"))
    assert throttle.costs.slots_per_batch("crm.item.list", 50, 4000) == 0.0  # cost unknown
    await throttle.record_time("crm.item.list", 1.0, None, None, processing=0.068)
    # a batch of 50 pages of 68 ms: 3.4 s, 6.8 slots of a bucket draining 2 per s
    assert throttle.costs.slots_per_batch("crm.item.list", 50, 4000) == pytest.approx(6.8)
    await throttle.record_time("tasks.task.list", 1.0, None, None, processing=1.25)
    # 4000 task pages need ten operating budgets: the budget, not the bucket, limits
    assert throttle.costs.slots_per_batch("tasks.task.list", 50, 4000) == 0.0
    # (8 pages a batch: 10 s, 20 slots)
    assert throttle.costs.slots_per_batch("tasks.task.list", 50, 100) == pytest.approx(20.0)
