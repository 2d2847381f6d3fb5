"""What every method handler shares: its result, its error, and parameter readers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bitrix_core.emulator.filters import php_int


@dataclass
class MethodResult:
    """A method's `result` value plus paging facts and cost-model figures."""

    result: Any
    next: int | None = None
    total: int | None = None
    rows: int = 0  # rows returned (cost model)
    counted: int = 0  # rows COUNTed; 0 when start=-1 or nothing counted (cost model)
    offset: int = 0  # the start offset used (cost model)


class MethodError(Exception):
    """A method-level error body: `{"error": code, "error_description": description}`."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        self.code = code
        self.description = description
        self.status = status
        super().__init__(f"{code or '(empty code)'}: {description} (HTTP {status})")


class JsonReady(list):
    """A list whose items are already in their PHP JSON shape (string keys, scalar values):
    the envelope writes it without walking it."""


class PhpObject(dict[str, Any]):
    """A PHP object: json_encode writes `{}` for it even when empty (a plain empty map is
    PHP's empty array, `[]`)."""


Handler = Callable[[dict[str, Any]], MethodResult]


def normalise(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Top-level parameter names folded to lower case, as the real server matches them."""
    return {str(k).lower(): v for k, v in (params or {}).items()}


def as_list(value: Any) -> list[Any]:
    """`["ID"]`, `{"0": "ID"}` (PHP-style index keys) or `"ID"` -> a list."""
    if value is None or value == "":
        return []
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def as_mapping(value: Any) -> dict[str, Any]:
    """A mapping parameter; `[]` (PHP's empty map) and other non-maps become `{}`."""
    return dict(value) if isinstance(value, Mapping) else {}


def array_param(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A `filter`/`order` map of a classic list; anything else but absent, empty or a map
    is the documented 400 (b24restdocs api-reference/crm/deals/crm-deal-list.md, "Error
    Handling": `{"error": "", "error_description": "Parameter 'filter' must be array."}`).
    A non-empty JSON list counts as not an array here, as issue 12 reports."""
    value = params.get(name)
    if value is None or value == "" or value == [] or isinstance(value, Mapping):
        return as_mapping(value)
    raise MethodError("", f"Parameter '{name}' must be array.", 400)


def row_id(params: Mapping[str, Any], *, code: str = "",
           message: str = "ID is not defined or invalid.") -> int:
    """The positive `id` parameter, or the real server's 400 for a missing/invalid one."""
    value = params.get("id")
    number = php_int(value) if value not in (None, "") else 0
    if number <= 0:
        raise MethodError(code, message, 400)
    return number
