"""Adaptive concurrency: how many requests may be in flight at once (AIMD under a ceiling)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class AdaptiveConcurrency:
    """A semaphore whose size adapts: +1/limit per success, halved on overload (AIMD), under a
    ceiling (`maximum`) that may move (`set_maximum`)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()

    def on_success(self) -> None:
        self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)

    def on_overload(self) -> None:
        self.limit = max(1.0, self.limit / 2)

    def set_maximum(self, maximum: int) -> None:
        """Move the ceiling. A raised one lifts the limit by as much (growing by 1/limit per
        success, it would take a thousand requests to follow a ceiling that rose from 16 to
        48); a lowered one caps it. Waiters see a raised limit when a slot is released."""
        maximum = max(1, maximum)
        raised = self.limit + max(0, maximum - self.maximum)
        self.limit = max(1.0, min(float(maximum), raised))
        self.maximum = maximum
