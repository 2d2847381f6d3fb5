"""The `batch` method: up to 50 `method?query` commands, halt, references, five sections.

References: a parameter value may hold `$result[c0][49][ID]` (also `$next`, `$total`,
`$time`, `$error`). A value that is exactly one reference becomes the referenced value
(array or scalar); references embedded in text substitute scalars only; a reference whose
path does not exist stays literal text and the command runs with it.
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bitrix_core.emulator.params import decode_query

MAX_COMMANDS = 50
#: Methods a batch refuses to run (in lower case).
NOT_IN_BATCH = frozenset({"batch"})

_REFERENCE = re.compile(r"\$(result|next|total|time|error)((?:\[[^\[\]]*\])+)")
_MISSING = object()


@dataclass
class Command:
    """One parsed command: its key in `cmd`, the method name and the raw query."""

    key: str
    method: str
    query: str


@dataclass
class CommandOutcome:
    """What running one command produced: a result (with next/total/time) or an error."""

    result: Any = None
    next: int | None = None
    total: int | None = None
    time: dict[str, Any] | None = None
    error: tuple[str, str] | None = None  # (code, description)


RunCommand = Callable[[str, dict[str, Any]], Awaitable[CommandOutcome]]


def _php_true(value: Any) -> bool:
    return value not in (None, False, 0, "0", "", [], {})


def parse_commands(params: dict[str, Any]) -> tuple[list[Command], bool]:
    """The commands (from a list or map `cmd`) and `halt`; top-level keys case-insensitive."""
    lowered = {str(key).lower(): value for key, value in params.items()}
    cmd = lowered.get("cmd")
    if isinstance(cmd, list):
        items = [(str(index), value) for index, value in enumerate(cmd)]
    elif isinstance(cmd, dict):
        items = [(str(key), value) for key, value in cmd.items()]
    else:
        items = []
    commands = []
    for key, value in items:
        method, _, query = str(value).partition("?")
        commands.append(Command(key, method.strip(), query))
    return commands, _php_true(lowered.get("halt", 0))


def _lookup(sections: dict[str, dict[str, Any]], name: str, path: str) -> Any:
    node: Any = sections[name]
    for segment in re.findall(r"\[([^\[\]]*)\]", path):
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return _MISSING
    return node


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "1" if value else ""
    if value is None:
        return ""
    if isinstance(value, int | float | str):
        return str(value)
    return None


def resolve_references(value: Any, sections: dict[str, dict[str, Any]]) -> Any:
    """Replace `$result[...]`-style references inside decoded parameters."""
    if isinstance(value, dict):
        return {key: resolve_references(item, sections) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_references(item, sections) for item in value]
    if not isinstance(value, str) or "$" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole:
        found = _lookup(sections, whole.group(1), whole.group(2))
        return value if found is _MISSING else found

    def embed(match: re.Match[str]) -> str:
        found = _lookup(sections, match.group(1), match.group(2))
        text = None if found is _MISSING else _scalar_text(found)
        return match.group(0) if text is None else text

    return _REFERENCE.sub(embed, value)


async def run_batch(
    commands: list[Command], *, halt: bool, run_command: RunCommand
) -> dict[str, Any]:
    """Run the commands one after another; return the five-section `result` value."""
    sections: dict[str, dict[str, Any]] = {
        "result": {},
        "error": {},
        "total": {},
        "next": {},
        "time": {},
    }
    for index, command in enumerate(commands):
        if index >= MAX_COMMANDS:
            outcome = CommandOutcome(
                error=("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
            )
        elif command.method.lower() in NOT_IN_BATCH:
            outcome = CommandOutcome(
                error=("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
            )
        else:
            params = resolve_references(decode_query(command.query), sections)
            outcome = await run_command(command.method, params)
        if outcome.error is not None:
            code, description = outcome.error
            sections["error"][command.key] = {"error": code, "error_description": description}
        else:
            sections["result"][command.key] = outcome.result
            if outcome.total is not None:
                sections["total"][command.key] = outcome.total
            if outcome.next is not None:
                sections["next"][command.key] = outcome.next
        if outcome.time is not None:
            sections["time"][command.key] = outcome.time
        if halt and outcome.error is not None:
            break
    return {
        "result": sections["result"],
        "result_error": sections["error"],
        "result_total": sections["total"],
        "result_next": sections["next"],
        "result_time": sections["time"],
    }
