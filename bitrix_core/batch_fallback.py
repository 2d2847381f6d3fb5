"""The fallback ladder of the batch queue (see `batching`): what becomes of each command of
a batch that failed, whole or in part, never losing or repeating one::

    retry_failed  only the failed commands are queued again (limit answers, 5xx reads)
    shrink        the whole batch failed (timeout, 5xx): smaller batches from now on
    single        a command that failed twice, or a refused batch: sent on its own

A write (idempotent=False) whose outcome is unknown (timeout, 5xx) is never resent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bitrix_core.batch_results import (
    BatchSections,
    Outcome,
    QueuedCommand,
    command_error,
    fail,
    resolve,
)
from bitrix_core.errors import (
    BatchError,
    BitrixError,
    BitrixLimitError,
    BitrixProtocolError,
    BitrixRetryableError,
    OperationTimeLimitError,
)
from bitrix_core.requester import Requester, wait_for_limit
from bitrix_core.stats import CallStats

logger = logging.getLogger("bitrix_core")


class FallbackLadder:
    """The batch size (shrunk when a batch fails whole, grown back after one that went
    through) and the steps each failed command takes; `sinks` are the stats it counts into."""

    def __init__(
        self,
        requester: Requester,
        *,
        max_batch: int,
        max_command_failures: int,
        stats: CallStats | None,
    ) -> None:
        self._requester = requester
        self.max_batch = max_batch
        self.batch_size = max_batch
        self.max_command_failures = max_command_failures
        self.stats = stats

    def succeeded(self) -> None:
        """A batch went through: the batch size grows back by a quarter."""
        self.batch_size = min(self.max_batch, self.batch_size + max(1, self.batch_size // 4))

    def sinks(self, commands: list[QueuedCommand]) -> list[CallStats]:
        """The stats a command counts into: the client's and its caller's."""
        sinks: dict[int, CallStats] = {}
        for stats in (self.stats, *(c.stats for c in commands)):
            if stats is not None:
                sinks[id(stats)] = stats
        return list(sinks.values())

    def whole_batch_failed(
        self, commands: list[QueuedCommand], error: BitrixError, outcome: Outcome
    ) -> None:
        """The whole batch failed (timeout, 5xx, limits): shrink, resend what may be resent."""
        self.batch_size = max(1, self.batch_size // 2)
        logger.info(
            "batch of %d failed (%s); batch size now %d",
            len(commands),
            type(error).__name__,
            self.batch_size,
        )
        did_not_run = isinstance(error, BitrixLimitError)
        for command in commands:
            if command.group is not None or not (command.idempotent or did_not_run):
                fail(command, error)  # a write whose outcome is unknown: never resent
                continue
            self.note_fallback(command, "shrink")
            self._retry_or_fail(command, error, outcome)

    async def unpack(
        self, keyed: dict[str, QueuedCommand], envelope: Mapping[str, Any], outcome: Outcome
    ) -> None:
        """Resolve each command of an answered batch, or send it down the ladder."""
        body = envelope.get("result")
        if not isinstance(body, Mapping):
            malformed = BitrixProtocolError(
                "batch answer 'result' is not an object", method="batch"
            )
            for command in keyed.values():
                fail(command, malformed)
            return
        sections = BatchSections.read(body)  # (their time blocks: the requester's _record)
        for key, command in keyed.items():
            if key in sections.errors:
                error = command_error(command.method, sections.errors[key])
                await self._command_failed(command, error, outcome)
            elif key in sections.results:
                resolve(command, sections.result_of(key))
            elif command.idempotent and command.group is None:
                missing = BitrixProtocolError(
                    "the batch returned nothing for this command", method=command.method
                )
                self._retry_or_fail(command, missing, outcome)
            else:
                what = (  # a linked read's successors refer to it: its caller resumes
                    "read; its caller resumes" if command.idempotent else "write; not resent"
                )
                fail(
                    command,
                    BitrixProtocolError(
                        f"the batch returned nothing for this {what}", method=command.method
                    ),
                )

    async def _command_failed(
        self, command: QueuedCommand, error: BitrixError, outcome: Outcome
    ) -> None:
        throttle = self._requester.throttle
        if isinstance(error, BitrixLimitError):  # it did not run
            refused = await wait_for_limit(error, command.method, throttle, self.sinks([command]))
            if command.group is not None:  # its successors refer to it: the caller resumes
                fail(command, error)
                return
            if isinstance(error, OperationTimeLimitError):
                command.limit_resends += 1
                if command.limit_resends > self._requester.retry.max_limit_resends:
                    refused = error
            if refused is not None:
                fail(command, refused)
                return
            self.note_fallback(command, "retry_failed")
            self._count_retry(command)
            outcome.requeue.append(command)
        elif command.group is not None:  # its successors refer to it: the caller resumes
            fail(command, error)
        elif isinstance(error, BatchError):  # not allowed inside a batch: it did not run
            self.note_fallback(command, "single")
            self._retry_or_fail(command, error, outcome, alone=True)
        elif isinstance(error, BitrixRetryableError) and command.idempotent:
            throttle.on_overload()
            self.note_fallback(command, "retry_failed")
            self._retry_or_fail(command, error, outcome)
        else:
            fail(command, error)

    def _retry_or_fail(
        self, command: QueuedCommand, error: BitrixError, outcome: Outcome, *, alone: bool = False
    ) -> None:
        command.failures += 1
        if command.failures > self.max_command_failures:
            fail(command, error)
            return
        self._count_retry(command)
        if alone or command.failures >= 2 or self.batch_size == 1:
            self.note_fallback(command, "single")
            outcome.single.append(command)
        else:
            outcome.requeue.append(command)

    def _count_retry(self, command: QueuedCommand) -> None:
        for sink in self.sinks([command]):
            sink.retries += 1

    def note_fallback(self, command: QueuedCommand, name: str) -> None:
        """Count a step of the ladder into the command's stats."""
        for sink in self.sinks([command]):
            sink.add_fallback(name)
