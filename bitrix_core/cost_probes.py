"""Probes of unknown costs: a method never answered yet has an unknown cost, so its first
request learns it (the answer's time block) while the other batches of it wait, at most one
basket, and a first wave of batches cannot overspend a budget it knows nothing of."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable


class CostProbes:
    """Which methods have answered, and the probe each unanswered one waits on."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: set[str] = set()
        self._probes: dict[str, asyncio.Event] = {}

    async def wait(self, counts: Counter[str], *, timeout_s: float) -> float:
        """Start a probe for each method not answered yet, or wait (at most `timeout_s`)
        for its running probe when the request holds more than one command of it; return
        the seconds waited."""
        waited = 0.0
        for name in sorted(counts):
            if name in self._seen:
                continue
            probe = self._probes.get(name)
            if probe is None:
                self._probes[name] = asyncio.Event()
                continue
            if counts[name] == 1:
                continue
            started = self._clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probe.wait(), timeout=timeout_s)
            waited += max(0.0, self._clock() - started)
        return waited

    def probing(self, name: str) -> bool:
        """True while the first request of `name` (lower case) is out and its cost unknown."""
        return name in self._probes and name not in self._seen

    def learnt(self, name: str) -> None:
        """The portal answered for `name`: its batches need not wait for a probe."""
        self._seen.add(name)
        probe = self._probes.pop(name, None)
        if probe is not None:
            probe.set()

    def end(self) -> None:
        """A request ended: batches waiting for a probe go (if it taught nothing, the next
        request of that method probes again)."""
        for probe in self._probes.values():
            probe.set()
        self._probes.clear()
