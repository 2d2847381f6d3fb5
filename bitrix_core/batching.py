"""The shared batch queue: commands from any callers packed into `batch` requests.

Callers `await batcher.run(method, params)`; queued commands are packed, up to 50 at a
time, into one `batch` request as soon as an in-flight slot is free (after a short
linger), and each caller gets its own `CommandResult` or its own exception. When things
fail, the fallback ladder (`batch_fallback`: retry_failed, shrink, single) runs per command,
never losing or repeating one.

A batch is packed when its bucket slot is due, not before: commands queued meanwhile still
join it, and `backlog` (commands waiting) tells producers such as an export's id windows
whether more work would only wait in the queue.

The commands of a method the throttle holds back (its first request is out to learn its cost,
or a 429 blocked it) stay queued while other methods' commands go; once its cost is known
they are grouped at the size it allows (`Throttle.holds_back`).

`run_linked` sends a group of commands in one batch under the caller's keys, so later ones
can refer to earlier results (`$result[key][49][ID]`); a group is never split or retried
piecemeal: a failed member fails, and the caller resumes from what it got.

A write (idempotent=False) whose outcome is unknown (timeout, 5xx) is never resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bitrix_core.batch_fallback import FallbackLadder
from bitrix_core.batch_results import (
    CommandResult,
    Outcome,
    QueuedCommand,
    fail,
    new_group_id,
    resolve,
)
from bitrix_core.encoding import encode_command
from bitrix_core.errors import (
    BatchError,
    BitrixError,
    BitrixResendableError,
    QueryLimitExceededError,
)
from bitrix_core.requester import Requester
from bitrix_core.stats import CallStats

logger = logging.getLogger("bitrix_core")

MAX_BATCH = 50
"""Commands in one `batch` request (the portal refuses more: ERROR_BATCH_LENGTH_EXCEEDED)."""
_SLOT_LEAD_S = 0.02
"""A batch is packed this long before its bucket slot is due."""


class Batcher:
    """Packs queued commands into batches and resolves each caller's future."""

    def __init__(
        self,
        requester: Requester,
        *,
        max_batch: int = MAX_BATCH,
        linger_s: float = 0.002,
        max_command_failures: int = 3,
        stats: CallStats | None = None,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
        self._requester = requester
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.stats = stats
        self._ladder = FallbackLadder(
            requester, max_batch=max_batch, max_command_failures=max_command_failures, stats=stats
        )
        self._queue: list[QueuedCommand] = []
        self._flusher: asyncio.Task[None] | None = None
        self._dispatches: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._taken = asyncio.Event()

    @property
    def batch_size(self) -> int:
        """Commands a batch holds now (shrunk while batches fail whole, see batch_fallback)."""
        return self._ladder.batch_size

    @property
    def backlog(self) -> int:
        """Commands queued and not yet packed into a batch."""
        return len(self._queue)

    def commands_per_request(self, method: str) -> int:
        """How many commands of `method` one batch holds now (fewer for expensive methods,
        and while batches that failed whole have shrunk the batch size)."""
        return self._requester.throttle.costs.commands_per_request(method, self.batch_size)

    def slots_per_batch(self, method: str, commands: int) -> float:
        """Bucket slots that drain while a full batch of `method` runs, when the bucket is
        what limits `commands` of it (0: cost unknown, or the operating budget limits)."""
        return self._requester.throttle.costs.slots_per_batch(method, self.max_batch, commands)

    def room(self) -> int:
        """Requests that could go now without waiting for the bucket, after those queued."""
        queued = -(-len(self._queue) // self.max_batch)
        return max(0, self._requester.throttle.room() - queued)

    async def wait_backlog_below(self, limit: int) -> None:
        """Return once fewer than `limit` commands are queued."""
        while len(self._queue) >= limit:
            self._taken.clear()
            await self._taken.wait()

    async def run(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        stats: CallStats | None = None,
        idempotent: bool = True,
    ) -> CommandResult:
        """Queue one command and wait for its own result (or its own exception)."""
        encoded = encode_command(method, params)  # bad input fails here, before anything is sent
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._queue.append(
            QueuedCommand(method, dict(params), idempotent, stats, future, encoded=encoded)
        )
        self._wakeup.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        return await future

    async def run_alone(
        self, method: str, params: Mapping[str, Any], *, stats: CallStats | None = None
    ) -> CommandResult:
        """One read sent as a request of its own, beside the batches (a slow COUNT that
        would hold up the 49 pages of a batch while the portal runs them one by one)."""
        encoded = encode_command(method, params)
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._queue.append(
            QueuedCommand(method, dict(params), True, stats, future, single=True, encoded=encoded)
        )
        self._wakeup.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        return await future

    async def run_linked(
        self,
        commands: Sequence[tuple[str, str, Mapping[str, Any]]],
        *,
        stats: CallStats | None = None,
        final: bool = False,
    ) -> list[CommandResult | BaseException]:
        """Send (key, method, params) commands together in one batch, in order; each result
        or its exception. Keys must be unique and non-numeric (prefix them per caller).

        A group normally waits, while earlier batches are out, for more groups to fill its
        batch; `final=True` says none will come from its caller, so it does not hold the
        batch back itself (other callers' groups still may)."""
        if not 1 <= len(commands) <= self.max_batch:
            raise ValueError(f"a linked group holds 1 to {self.max_batch} commands")
        group = new_group_id()
        loop = asyncio.get_running_loop()
        queued = []
        for key, method, params in commands:
            queued.append(
                QueuedCommand(
                    method, dict(params), True, stats, loop.create_future(),
                    key=key, group=group, final=final, encoded=encode_command(method, params),
                )  # fmt: skip
            )
        self._queue.extend(queued)
        self._wakeup.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        return list(await asyncio.gather(*(c.future for c in queued), return_exceptions=True))

    async def aclose(self) -> None:
        """Stop sending; commands still queued or in flight fail with CancelledError."""
        tasks = [t for t in (self._flusher, *self._dispatches) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for command in self._queue:
            if not command.future.done():
                command.future.cancel()
        self._queue.clear()

    async def _flush_loop(self) -> None:
        throttle = self._requester.throttle
        while self._queue:
            if len(self._ready()) < self._fill_size():
                await asyncio.sleep(self.linger_s)
            while (wait := throttle.slot_wait()) > _SLOT_LEAD_S:
                await asyncio.sleep(wait - _SLOT_LEAD_S)
            # Linked pages (an export keeps sending more) wait to fill a batch while earlier
            # batches are out: a request is a bucket slot, half-empty ones cost time.
            while (
                len(ready := self._ready()) < self._fill_size()
                and self._dispatches
                and any(c.group is not None and not c.final for c in ready)
            ):
                self._wakeup.clear()
                await self._wakeup.wait()
            while len(self._dispatches) >= self._requester.throttle.concurrency_limit:
                self._wakeup.clear()
                await self._wakeup.wait()
            if not self._ready():
                await self._until_ready()
                continue
            taken = [c for c in self._take() if not c.future.done()]
            if taken:
                reserved = asyncio.Event()
                task = asyncio.create_task(self._dispatch(taken, reserved.set))
                self._dispatches.add(task)
                task.add_done_callback(self._dispatch_done)
                await _first_of(reserved, task)  # so slot_wait() counts this batch's slot

    def _held_back(self) -> set[str]:
        """The queued methods (lower case) whose commands the throttle holds back now."""
        throttle = self._requester.throttle
        methods = {c.method.lower() for c in self._queue}
        return {name for name in methods if throttle.holds_back(name) > 0}

    def _ready(self) -> list[QueuedCommand]:
        """The queued commands that may go now (a linked group goes whole or waits whole)."""
        held = self._held_back()
        if not held:
            return self._queue
        waiting = {c.group for c in self._queue if c.group is not None and c.method.lower() in held}
        return [c for c in self._queue if c.method.lower() not in held and c.group not in waiting]

    async def _until_ready(self) -> None:
        """Every queued command is held back: wait until more are queued, a batch ends, the
        probe of one of their methods settles or the first 429 block runs out."""
        throttle = self._requester.throttle
        methods = {c.method.lower() for c in self._queue}
        holds = [hold for name in methods if (hold := throttle.holds_back(name)) > 0]
        self._wakeup.clear()
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wakeup.wait())]
        probed = {name for name in methods if math.isinf(throttle.holds_back(name))}
        if probed:  # (a wait on no probe returns at once: a 429 hold alone would spin)
            waiters.append(asyncio.ensure_future(throttle.probes_settled(probed)))
        try:
            hold = min(holds, default=0.0)
            await asyncio.wait(
                waiters,
                timeout=None if math.isinf(hold) else hold,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _fill_size(self) -> int:
        """Commands that make a full batch of what may go (fewer for expensive methods)."""
        costs = self._requester.throttle.costs
        caps = {costs.commands_per_request(c.method, self.batch_size) for c in self._ready()}
        return min(caps, default=self.batch_size)

    def _take(self) -> list[QueuedCommand]:
        """Up to batch_size queued commands that may go, never splitting a linked group:
        largest groups first (first fit decreasing), otherwise in queue order."""
        units: list[list[QueuedCommand]] = []
        for command in self._ready():
            if units and command.group is not None and units[-1][0].group == command.group:
                units[-1].append(command)
            else:
                units.append([command])
        taken: list[QueuedCommand] = []
        chosen: set[int] = set()
        costs = self._requester.throttle.costs
        size = self.batch_size
        for index in sorted(range(len(units)), key=lambda i: -len(units[i])):
            unit_size = min(costs.commands_per_request(c.method, size) for c in units[index])
            if len(taken) + len(units[index]) <= min(size, unit_size) or not taken:
                size = min(size, unit_size)
                taken += units[index]
                chosen.add(index)
        taken = [c for i, unit in enumerate(units) if i in chosen for c in unit]
        gone = set(map(id, taken))
        self._queue[:] = [c for c in self._queue if id(c) not in gone]
        self._taken.set()
        return taken

    def _dispatch_done(self, task: asyncio.Task[None]) -> None:
        self._dispatches.discard(task)
        self._wakeup.set()

    async def _dispatch(self, commands: list[QueuedCommand], on_slot: Callable[[], None]) -> None:
        singles = [c for c in commands if c.single]
        batched = [c for c in commands if not c.single]
        outcome = Outcome()
        jobs = [self._send_single(c, on_slot) for c in singles]
        if batched:
            jobs.append(self._send_batch(batched, outcome, on_slot))
        await asyncio.gather(*jobs)
        for command in outcome.single:
            command.single = True
        requeue = outcome.requeue + outcome.single
        if requeue:
            self._queue[:0] = requeue
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_loop())
            self._wakeup.set()

    async def _send_single(self, command: QueuedCommand, on_slot: Callable[[], None]) -> None:
        try:
            envelope = await self._requester.send(
                command.method,
                command.params,
                idempotent=command.idempotent,
                stats=self._ladder.sinks([command]),
                on_slot=on_slot,
            )
        except BitrixError as error:
            fail(command, error)
            return
        resolve(command, CommandResult.of_envelope(envelope))

    async def _send_batch(
        self, commands: list[QueuedCommand], outcome: Outcome, on_slot: Callable[[], None]
    ) -> None:
        keyed = {c.key or f"cmd{i}": c for i, c in enumerate(commands)}
        sinks = self._ladder.sinks(commands)
        for command in commands:
            for sink in self._ladder.sinks([command]):
                sink.subcommands += 1
        try:
            envelope = await self._requester.send(
                "batch",
                {
                    "halt": 0,
                    "cmd": {k: c.encoded for k, c in keyed.items()},
                },
                idempotent=all(c.idempotent for c in commands),
                stats=sinks,
                budget_methods=[c.method for c in commands],
                max_retries=1,
                on_slot=on_slot,
            )
        except BatchError as error:
            logger.info(
                "batch refused (%s); sending its %d commands one by one", error.code, len(commands)
            )
            for command in commands:
                if command.group is not None:
                    fail(command, error)
                    continue
                self._ladder.note_fallback(command, "single")
                outcome.single.append(command)
            return
        except QueryLimitExceededError as error:  # the requester's patience ran out
            for command in commands:
                fail(command, error)
            return
        except BitrixResendableError as error:
            self._ladder.whole_batch_failed(commands, error, outcome)
            return
        except BitrixError as error:
            for command in commands:
                fail(command, error)
            return
        self._ladder.succeeded()
        await self._ladder.unpack(keyed, envelope, outcome)


async def _first_of(event: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Wait until `event` is set or `task` ends."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
