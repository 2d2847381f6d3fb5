"""One batch's commands and answers: the queued command, its result, the five sections.

A `batch` answer holds five sections (`result`, `result_error`, `result_total`,
`result_next`, `result_time`), each keyed by command key; an empty section may come as
`[]` and a section of numeric keys as a list. `BatchSections` reads them into dicts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bitrix_core.errors import BitrixError, error_from_response
from bitrix_core.stats import CallStats


@dataclass
class CommandResult:
    """One command's answer: its `result` value, `next` offset, `total`, and `time` block."""

    result: Any
    next: int | None = None
    total: int | None = None
    time: dict[str, Any] | None = None

    @classmethod
    def of_envelope(cls, envelope: Mapping[str, Any]) -> CommandResult:
        """The answer of a command sent on its own (a whole response envelope)."""
        return cls(
            envelope.get("result"),
            int_or_none(envelope.get("next")),
            int_or_none(envelope.get("total")),
            envelope.get("time") or None,
        )


@dataclass(eq=False)
class QueuedCommand:
    """A command waiting for (or travelling in) a batch, with its caller's future."""

    method: str
    params: dict[str, Any]
    idempotent: bool
    stats: CallStats | None
    future: asyncio.Future[CommandResult]
    failures: int = 0
    limit_resends: int = 0
    single: bool = False
    key: str | None = None  # the caller's key inside the batch (linked groups)
    group: int | None = None  # commands of one linked group travel together
    final: bool = False  # its group need not wait for others to fill the batch
    encoded: str = ""  # the batch command string, encoded once when queued


new_group_id = itertools.count().__next__
"""A fresh id for one linked group."""


@dataclass
class Outcome:
    """Where each command of one dispatch went."""

    requeue: list[QueuedCommand] = field(default_factory=list)
    single: list[QueuedCommand] = field(default_factory=list)


@dataclass
class BatchSections:
    """The five sections of a batch answer, each a dict keyed by command key."""

    results: dict[str, Any]
    errors: dict[str, Any]
    totals: dict[str, Any]
    nexts: dict[str, Any]
    times: dict[str, Any]

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> BatchSections:
        """The sections of a batch answer's `result` object."""
        return cls(
            *(
                _section(body.get(name))
                for name in ("result", "result_error", "result_total", "result_next", "result_time")
            )
        )

    def result_of(self, key: str) -> CommandResult:
        """The command `key`'s answer (it must be in `results`)."""
        timing = self.times.get(key)
        return CommandResult(
            self.results[key],
            int_or_none(self.nexts.get(key)),
            int_or_none(self.totals.get(key)),
            dict(timing) if isinstance(timing, Mapping) else None,
        )


def _section(value: Any) -> dict[str, Any]:
    """A batch section as a dict: `[]` and missing mean empty; a list is keyed by position."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def command_error(method: str, raw: Any) -> BitrixError:
    """The exception for one command's entry in `result_error`."""
    body = raw if isinstance(raw, Mapping) else {"error": "", "error_description": str(raw)}
    raw_status = body.get("status")
    status = raw_status if isinstance(raw_status, int) else None
    return error_from_response(dict(body), method=method, status=status)


def int_or_none(value: Any) -> int | None:
    """`value` as an int; None when missing, empty or not a number."""
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def resolve(command: QueuedCommand, result: CommandResult) -> None:
    """Hand `result` to the command's caller (once)."""
    if not command.future.done():
        command.future.set_result(result)


def fail(command: QueuedCommand, error: BaseException) -> None:
    """Hand `error` to the command's caller (once)."""
    if not command.future.done():
        command.future.set_exception(error)
