"""Probes of unknown costs: a method never answered yet has an unknown cost, so its first
request (the probe) learns it from the answer's time block while its other commands wait,
at most `patience_s`, and are then grouped at the size the learnt cost allows. A probe is
owned by the request that claimed it: only that request's end (or the answer it brought)
settles it, and a probe that taught nothing (a refused, failed or timed-out request) lets
the next request of the method probe again."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Probe:
    """The first request of a method whose cost is unknown, out since `started`."""

    name: str
    started: float
    settled: asyncio.Event = field(default_factory=asyncio.Event)


class CostProbes:
    """Which methods have answered, and the probe each unanswered one waits on."""

    def __init__(self, clock: Callable[[], float], *, patience_s: float) -> None:
        self._clock = clock
        self.patience_s = patience_s
        self._seen: set[str] = set()
        self._probes: dict[str, Probe] = {}

    async def wait(self, counts: Counter[str], claimed: list[Probe]) -> float:
        """Claim the probe of each method of `counts` not answered yet and not probed now
        (into `claimed`); wait for the running probe of each method of which the request
        holds more than one command. Return the seconds waited."""
        waited = 0.0
        for name in sorted(counts):
            if name in self._seen:
                continue
            probe = self._running(name)
            if probe is None:
                self._probes[name] = Probe(name, self._clock())
                claimed.append(self._probes[name])
                continue
            if counts[name] == 1 or probe in claimed:  # (its own probe, on a resend)
                continue
            started = self._clock()
            left = probe.started + self.patience_s - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probe.settled.wait(), timeout=max(0.0, left))
            waited += max(0.0, self._clock() - started)
        return waited

    def time_left(self, name: str) -> float:
        """While a probe of `name` (lower case) is out: the seconds left of its patience
        (0: none is out, or it ran out of patience)."""
        probe = self._running(name)
        return 0.0 if probe is None else probe.started + self.patience_s - self._clock()

    async def settled(self, names: Iterable[str]) -> None:
        """Return once the probe of any of `names` settles (at once when none is out)."""
        probes = [probe for name in set(names) if (probe := self._running(name)) is not None]
        if not probes:
            return
        waiters = [asyncio.ensure_future(probe.settled.wait()) for probe in probes]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def learnt(self, name: str) -> None:
        """The portal answered for `name`: its commands need not wait for a probe."""
        self._seen.add(name)
        probe = self._probes.pop(name, None)
        if probe is not None:
            probe.settled.set()

    def release(self, claimed: Iterable[Probe]) -> None:
        """The request that claimed these probes ended: they settle (one that taught
        nothing lets the next request of its method probe again)."""
        for probe in claimed:
            if self._probes.get(probe.name) is probe:
                del self._probes[probe.name]
            probe.settled.set()

    def _running(self, name: str) -> Probe | None:
        probe = self._probes.get(name)
        if probe is None or self._clock() - probe.started >= self.patience_s:
            return None
        return probe
