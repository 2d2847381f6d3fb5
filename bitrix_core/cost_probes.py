"""Probes of unknown costs: a method never answered yet has an unknown cost, so its first
request (the probe) learns it from the answer's time block while its other commands wait,
and are then grouped at the size the learnt cost allows. A probe is owned by the request
that claimed it: only that request's end (or the answer it brought) settles it, and every
request ends (answered, failed, or cut by the portal's cap or the client's timeout). A probe
that taught nothing (a failed or timed-out request) lets the next request of the method
probe again."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Probe:
    """The first request of a method whose cost is unknown."""

    name: str
    settled: asyncio.Event = field(default_factory=asyncio.Event)


class CostProbes:
    """Which methods have answered, and the probe each unanswered one waits on."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: set[str] = set()
        self._probes: dict[str, Probe] = {}

    async def wait(self, counts: Counter[str], claimed: list[Probe], *, patience_s: float) -> float:
        """Claim the probe of each method of `counts` not answered yet and not probed now
        (into `claimed`); wait (at most `patience_s`: the portal's cap on a request, so a
        probe that never settles cannot wedge a request holding a concurrency slot) for
        another request's probe of each method of which this request holds more than one
        command. Return the seconds waited."""
        waited = 0.0
        for name in sorted(counts):
            if name in self._seen:
                continue
            probe = self._probes.get(name)
            if probe is None:
                self._probes[name] = Probe(name)
                claimed.append(self._probes[name])
                continue
            if counts[name] == 1 or probe in claimed:  # (its own probe, on a resend)
                continue
            started = self._clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probe.settled.wait(), timeout=patience_s)
            waited += max(0.0, self._clock() - started)
        return waited

    def probing(self, name: str) -> bool:
        """True while a probe of `name` (lower case) is out."""
        return name in self._probes

    async def settled(self, names: Iterable[str]) -> None:
        """Return once the probe of any of `names` settles (at once when none is out)."""
        probes = [self._probes[name] for name in set(names) if name in self._probes]
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
