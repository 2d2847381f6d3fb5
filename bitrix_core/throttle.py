"""The throttle: waits before each request so the portal's limits are never the ones that
say no. It combines the request bucket (a slot reserved before sending, state in a
`LimiterBackend`), per-method operating budgets (what this process has committed, priced at
a method's dearest recent call: `MethodCosts`), probes of unknown costs and adaptive (AIMD)
concurrency.

`Limits` (bitrix_core.limits) and the backend types (bitrix_core.limiter_state) are imported
from here too: `from bitrix_core.throttle import Limits, Throttle`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager

from bitrix_core.backoff import QueryLimitBackoff
from bitrix_core.concurrency import AdaptiveConcurrency
from bitrix_core.cost_probes import CostProbes, Probe
from bitrix_core.limiter_state import InProcessLimiterBackend, LimiterBackend, MethodBudget
from bitrix_core.limits import Limits
from bitrix_core.method_costs import MethodCosts

__all__ = [
    "InProcessLimiterBackend",
    "LimiterBackend",
    "Limits",
    "MethodBudget",
    "Throttle",
]

logger = logging.getLogger("bitrix_core")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def _roll_forward(budget: MethodBudget, now: float, limits: Limits) -> None:
    """Past `reset_at` only the OLDEST basket has left the window, holding an unknown share:
    assume the time was spread evenly, so each basket passed frees one basket's share and
    the next one leaves a basket later (the next answer replaces the guess)."""
    baskets = max(1, round(limits.operating_window_s / limits.basket_s))
    passed = 1 + int((now - budget.reset_at) // limits.basket_s)
    budget.operating *= max(0.0, 1 - passed / baskets)
    budget.reset_at += passed * limits.basket_s


class Throttle:
    """Waits before each request so the portal's limits are never the ones that say no."""

    def __init__(
        self,
        limits: Limits,
        *,
        backend: LimiterBackend | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limits = limits
        self.backend: LimiterBackend = backend or InProcessLimiterBackend()
        self._clock = clock
        self._sleep = sleep
        self._skew: float | None = None  # local clock minus server clock
        self._concurrency = AdaptiveConcurrency(limits.max_concurrency)
        self._request_s = 0.0  # the dearest recent request's time (see observe_request)
        self._budget_bound_until = 0.0  # a window after the last wait for a budget
        self._tat_hint = 0.0  # this process's view of the bucket (GCRA), for slot_wait()
        self._backoff = QueryLimitBackoff(limits)
        # Operating time this process has committed per method: (moment it stops counting
        # on the portal, seconds).
        # [expires, seconds, 1.0 if counted by the portal beyond our commitments else 0.0,
        #  commands]; seconds stay 0 until the method's cost is known
        self._spent: dict[str, list[list[float]]] = {}
        # methods whose cost is still being learnt; what one command of each costs
        self._probes = CostProbes(clock)
        self.costs = MethodCosts(limits, self._price_commitments)
        self._blocked: dict[str, float] = {}  # a method's 429 block as this process saw it

    @property
    def burst(self) -> int:
        """Requests this client lets into the bucket at once, right now (see backoff.py)."""
        return self._backoff.burst

    @property
    def limit_streak_s(self) -> float:
        """Seconds since the first 503 QUERY_LIMIT_EXCEEDED of the current streak (0: none)."""
        return self._backoff.streak_s(self._clock())

    @property
    def concurrency_limit(self) -> int:
        """How many requests may be in flight right now."""
        return int(self._concurrency.limit)

    @property
    def concurrency_ceiling(self) -> int:
        """The most requests that may be in flight (see `observe_request`)."""
        return self._concurrency.maximum

    def concurrency(self) -> AbstractAsyncContextManager[None]:
        """`async with throttle.concurrency():` holds one in-flight request slot."""
        return self._concurrency.slot()

    def _price_commitments(self, name: str, price: float) -> None:
        """`name` is priced at `price` now: so are its commitments made before its cost was
        known."""
        for entry in self._spent.get(name, []):
            if entry[1] == 0 and not entry[2]:  # sent before the cost was known
                entry[1] = price * entry[3]

    def slot_wait(self) -> float:
        """Seconds until the next bucket slot is free, as far as this process knows (a hint:
        `reserve` is what enforces the bucket)."""
        interval = 1.0 / self.limits.drain_per_s
        return max(0.0, self._tat_hint - (self.burst - 1) * interval - self._clock())

    def room(self) -> int:
        """Requests the bucket would take right now without waiting, as far as this process
        knows (a hint, like `slot_wait`)."""
        interval = 1.0 / self.limits.drain_per_s
        used = max(0.0, self._tat_hint - self._clock()) / interval
        return max(0, math.floor(self.burst - used))

    async def reserve(
        self,
        method_names: Iterable[str],
        *,
        on_slot: Callable[[], None] | None = None,
        held: list[list[float]] | None = None,
        probes: list[Probe] | None = None,
    ) -> float:
        """Wait for the methods' operating budgets, then reserve a bucket slot (`on_slot` is
        called once it is reserved, before waiting for it); return the seconds waited.
        `held` receives the operating time committed for the request (see `answered`),
        `probes` the cost probes it claimed (see `probes_ended`)."""
        waited = 0.0
        counts = Counter(name.lower() for name in method_names)
        waited += await self._probes.wait(
            counts, probes if probes is not None else [], patience_s=self.limits.request_timeout_s
        )
        delay, committed = await self._operating_delay(counts)
        if held is not None:
            held.extend(committed)
        if delay > 0:
            self._budget_bound_until = self._clock() + delay + self.limits.operating_window_s
            await self._sleep(delay)
            waited += delay
        now, interval = self._clock(), 1.0 / self.limits.drain_per_s
        slot_delay = await self.backend.take_slot(now=now, interval_s=interval, burst=self.burst)
        self._tat_hint = max(self._tat_hint, now) + interval
        if slot_delay > 0:  # the backend knows better (another process may share it)
            self._tat_hint = max(self._tat_hint, now + slot_delay + self.burst * interval)
        if on_slot is not None:
            on_slot()
        for entry in committed:  # the commands run from when the request goes out
            entry[0] = max(entry[0], now + slot_delay + entry[1] + self._hold_s)
        if slot_delay > 0:
            await self._sleep(slot_delay)
            waited += slot_delay
        return waited

    def answered(self, held: Iterable[list[float]]) -> None:
        """The request that committed `held` was answered now: its commands ended by now, so
        the portal keeps their time no longer than a window from now (an answer later than
        its commands' cost, e.g. a loaded portal, pushes their release back)."""
        until = self._clock() + self._hold_s
        for entry in held:
            entry[0] = max(entry[0], until)

    def probes_ended(self, probes: list[Probe]) -> None:
        """The request that claimed `probes` ended, its answer recorded (or it failed, or was
        refused): the commands waiting for those probes may go."""
        self._probes.release(probes)

    def holds_back(self, method: str) -> float:
        """Seconds the commands of `method` had better stay queued (0: they may go now):
        while the first request of it is out and its cost unknown (until it ends: see
        `probes_settled`), or after a 429 until its operating budget resets (as far as this
        process knows)."""
        name = method.lower()
        if self._probes.probing(name):
            return math.inf
        return max(0.0, self._blocked.get(name, 0.0) - self._clock())

    async def probes_settled(self, methods: Iterable[str]) -> None:
        """Return once the probe of any of `methods` settles (at once when none is out)."""
        await self._probes.settled(name.lower() for name in methods)

    @property
    def _hold_s(self) -> float:
        """How long the portal keeps a command's time after the command ends: the window,
        plus the lateness a request may meet on the way (`jitter_s`)."""
        return self.limits.operating_window_s + self.limits.jitter_s

    async def _operating_delay(self, counts: Counter[str]) -> tuple[float, list[list[float]]]:
        delay, committed = 0.0, []
        for name in sorted(counts):
            budget = await self.backend.get_budget(name)
            if budget is not None:
                wait, entries = await self._method_delay(name, budget, counts[name])
                delay = max(delay, wait)
                committed += entries
            else:  # priced once the cost is known (record_time)
                unpriced = [self._clock() + self._hold_s, 0.0, 0.0, float(counts[name])]
                self._spent.setdefault(name, []).append(unpriced)
                committed.append(unpriced)
        return delay, committed

    async def _method_delay(
        self, name: str, budget: MethodBudget, count: int
    ) -> tuple[float, list[list[float]]]:
        """The wait before `count` commands of one method: until this process's own
        committed time leaves room for them, and, while the portal's last report holds
        (before its `operating_reset_at`, a moment), held at the hard mark, and paced from
        the soft one when the report shows more time than this process committed."""
        now = self._clock()
        if budget.blocked_until > now:
            return budget.blocked_until - now, []
        if now >= budget.reset_at:
            _roll_forward(budget, now, self.limits)
        limits = self.limits
        cost = self.costs.of(name, budget.cost_s) * count
        delay, own = self._own_delay(name, cost, now)
        if now < budget.reset_at:
            soft = limits.operating_budget_s * limits.operating_soft
            hard = limits.operating_budget_s * limits.operating_hard
            shared = budget.operating > own  # others spend this budget too: pace from soft
            budget.operating += cost  # count these calls before the server reports them
            if budget.operating >= hard:
                delay = max(delay, budget.reset_at - now)
            elif budget.operating >= soft and shared:
                calls_left = max(1.0, (hard - budget.operating) / max(cost, 1e-6))
                interval = (budget.reset_at - now) / calls_left
                start = max(budget.next_at, now)
                budget.next_at = start + interval
                delay = max(delay, start - now)
            await self.backend.put_budget(name, budget)
        # the portal charges each command when it ends (a batch runs its commands one after
        # another) and keeps the time for a window after that minute's first call
        if cost > 0:  # every process sharing the backend: one atomic reservation
            delay = await self.backend.reserve_operating(
                name,
                seconds=cost,
                after_s=delay,
                hold_s=cost + self._hold_s,
                limit_s=limits.operating_budget_s * limits.operating_hard,
            )
        entry = [now + delay + cost + self._hold_s, cost, 0.0, float(count)]
        self._spent.setdefault(name, []).append(entry)
        return delay, [entry]

    def _own_delay(self, name: str, cost: float, now: float) -> tuple[float, float]:
        """Seconds until this process's committed time for `name` leaves room for `cost`
        under the hard mark (its oldest commitments dropping out first), and the time this
        process committed itself."""
        hard = self.limits.operating_budget_s * self.limits.operating_hard
        spent = sorted(
            (entry for entry in self._spent.get(name, []) if entry[0] > now),
            key=lambda entry: entry[0],
        )
        self._spent[name] = spent
        used = sum(entry[1] for entry in spent)
        committed = sum(entry[1] for entry in spent if not entry[2])
        wait_until = now
        for expires, seconds, _, _ in spent:
            if used + cost <= hard:
                break
            used -= seconds
            wait_until = expires
        return wait_until - now, committed

    async def record_time(
        self,
        method: str,
        operating: float | None,
        reset_at: float | None,
        server_now: float | None,
        *,
        processing: float | None = None,
    ) -> None:
        """Feed a `time` block: operating seconds used and reset time, on the server's clock."""
        name = method.lower()
        self._probes.learnt(name)
        if processing is not None:
            self.costs.learn(name, processing)  # what its commitments are priced at
        if server_now is None:
            return
        now = self._clock()
        self._skew = now - server_now
        budget = await self.backend.get_budget(name)
        if budget is not None and server_now < budget.server_now:
            return  # an older answer arriving late
        if operating is None or reset_at is None:
            return
        cost = budget.cost_s if budget else 0.0
        if processing is not None:
            cost = processing if cost == 0 else 0.8 * cost + 0.2 * processing
        fresh = MethodBudget(
            operating=float(operating),
            reset_at=now + (float(reset_at) - server_now),
            server_now=server_now,
            cost_s=cost,
            blocked_until=budget.blocked_until if budget else 0.0,
            next_at=budget.next_at if budget else 0.0,
        )
        await self.backend.put_budget(name, fresh)
        # time the portal counts beyond all this process committed (calls sent before the
        # cost was known, or other clients' calls): held until the reported reset moment
        spent = [entry for entry in self._spent.get(name, []) if entry[0] > now and not entry[2]]
        unaccounted = float(operating) - sum(entry[1] for entry in spent)
        if unaccounted > 0:
            spent.append([fresh.reset_at, unaccounted, 1.0, 0.0])
        self._spent[name] = spent

    async def on_query_limit(self) -> float | None:
        """The portal answered 503 QUERY_LIMIT_EXCEEDED: back off (see backoff.py) by holding
        the bucket full; the seconds until sending resumes, or None once out of patience."""
        now, interval = self._clock(), 1.0 / self.limits.drain_per_s
        backoff = self._backoff.refused(now)
        if backoff is None:
            return None
        delay, slots = backoff
        if slots:
            level = self.burst - 1 + slots  # the next slot opens `slots` intervals from now
            await self.backend.fill_bucket(now=now, interval_s=interval, burst=level)
            self._tat_hint = max(self._tat_hint, now + level * interval)
        return delay

    async def on_operation_limit(
        self, method: str, reset_at: float | None = None, *, retry_after_s: float | None = None
    ) -> float:
        """The portal answered 429 for `method`: block it until `reset_at` (server clock) or
        for `retry_after_s` (relative: no clock skew applies); return the wait in s."""
        now = self._clock()
        name = method.lower()
        budget = await self.backend.get_budget(name)
        if retry_after_s is not None and reset_at is None:
            until = now + retry_after_s
        elif reset_at is not None:
            skew = self._skew if self._skew is not None else now - time.time()
            until = reset_at + skew
        elif budget is not None and budget.reset_at > now:
            until = budget.reset_at
        else:
            until = now + self.limits.basket_s
        until = max(until, now)
        if budget is None:
            budget = MethodBudget(
                operating=self.limits.operating_budget_s, reset_at=until, server_now=0.0
            )
        already_blocked = budget.blocked_until > now
        budget.blocked_until = max(budget.blocked_until, until)
        self._blocked[name] = budget.blocked_until
        await self.backend.put_budget(name, budget)
        if not already_blocked:
            logger.warning(
                "OPERATION_TIME_LIMIT for %s: waiting %.1f s for the operating budget to reset",
                method,
                until - now,
            )
        return until - now

    def observe_request(self, seconds: float) -> None:
        """A request took `seconds` from sending to its answer. The in-flight ceiling follows
        the dearest recent request (down by a tenth per request): enough in flight to keep
        the bucket busy, what it takes at once plus what it drains meanwhile (burst + drain x
        seconds), from `max_concurrency` up to 4x it; `max_concurrency` for a window after
        waiting for an operating budget. (Batches of 50 pages of 68 ms take 3.4 s: 16 in
        flight sent a standard plan's burst in three waves.)"""
        self._request_s = max(seconds, 0.9 * self._request_s + 0.1 * seconds)
        floor = self.limits.max_concurrency
        if self._clock() < self._budget_bound_until:
            # an operating budget, not the bucket, limits now: pacing sets what is in
            # flight, and more at once only blurs when the portal charges their time
            self._concurrency.set_maximum(floor)
            return
        wanted = self.burst + math.ceil(self.limits.drain_per_s * self._request_s)
        self._concurrency.set_maximum(max(floor, min(4 * floor, wanted)))

    def on_success(self) -> None:
        """A request completed: let concurrency and the burst grow back."""
        self._concurrency.on_success()
        self._backoff.succeeded(self._clock())

    def on_overload(self) -> None:
        """A timeout or 5xx: halve concurrency."""
        self._concurrency.on_overload()
