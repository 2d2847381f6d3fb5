"""Response bodies as the real portal writes them: key order, `time` block, PHP JSON quirks."""

import json
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from bitrix_core.emulator.method_kit import JsonReady, PhpObject

#: HTTP status per error code (compared case-insensitively), from the API digest table.
STATUS_BY_CODE: dict[str, int] = {
    "query_limit_exceeded": 503,
    "operation_time_limit": 429,
    "overload_limit": 503,
    "internal_server_error": 500,
    "error_unexpected_answer": 500,
    "expired_token": 401,
    "invalid_token": 401,
    "no_auth_found": 401,
    "invalid_credentials": 403,
    "insufficient_scope": 403,
    "access_denied": 403,
    "user_access_error": 403,
    "wrong_auth_type": 403,
    "error_method_not_found": 404,
    "error_batch_length_exceeded": 400,
    "error_batch_method_not_allowed": 405,
    "invalid_arg_value": 400,
    "error_argument": 400,
    "error_core": 400,
    "invalid_request": 400,
}


def status_for(code: str, default: int = 400) -> int:
    """The HTTP status the portal answers an error code with."""
    return STATUS_BY_CODE.get(code.lower(), default)


_SCALARS = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})


def php_value(value: Any) -> Any:
    """What PHP's json_encode would see: empty maps and maps keyed 0..n-1 become lists.

    Containers that need no change (string keys not starting at "0", scalar values) are
    returned as they are, checked at C speed, so a page of rows costs one pass per row.
    """
    if type(value) is JsonReady or type(value) is PhpObject:
        return value
    if isinstance(value, dict):
        if not value:
            return []
        if str(next(iter(value))) == "0" and all(
            str(key) == str(index) for index, key in enumerate(value)
        ):
            return [php_value(item) for item in value.values()]
        if _SCALARS.issuperset(map(type, value.values())) and _STR.issuperset(map(type, value)):
            return value
        return {str(key): php_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if _SCALARS.issuperset(map(type, value)):
            return value
        return [php_value(item) for item in value]
    return value


def php_json(value: Any) -> str:
    """Serialise like PHP json_encode: compact, ASCII with \\u escapes, `/` written `\\/`.

    orjson writes the common all-ASCII body; anything else (non-ASCII text, values orjson
    refuses) goes through the standard library encoder.
    """
    shaped = php_value(value)
    try:
        data: bytes | None = orjson.dumps(shaped)
    except TypeError:  # orjson.JSONEncodeError: e.g. integers beyond 64 bits
        data = None
    if data is not None and data.isascii():
        return data.decode("ascii").replace("/", "\\/")
    text = json.dumps(shaped, separators=(",", ":"), ensure_ascii=True)
    return text.replace("/", "\\/")  # "/" can only occur inside strings in JSON text


def _iso(moment: float, tz: timezone) -> str:
    return datetime.fromtimestamp(moment, tz).isoformat(timespec="seconds")


def time_block(
    *,
    start: float,
    finish: float,
    processing: float,
    operating: float | None,
    operating_reset_at: float | None,
    tz: timezone,
) -> dict[str, Any]:
    """The `time` block; operating fields are omitted when the plan has no operating limit."""
    block: dict[str, Any] = {
        "start": round(start, 6),
        "finish": round(finish, 6),
        "duration": round(finish - start, 6),
        "processing": round(processing, 6),
        "date_start": _iso(start, tz),
        "date_finish": _iso(finish, tz),
    }
    if operating is not None and operating_reset_at is not None:
        # an integer unix time on real portals (b24restdocs settings/performance/limits.md);
        # on a faster time scale a whole portal second is a fraction of a real one
        reset = round(operating_reset_at, 6)
        block["operating_reset_at"] = int(reset) if reset.is_integer() else reset
        block["operating"] = round(operating, 6)
    return block


def success_body(
    result: Any, *, next: int | None = None, total: int | None = None, time: dict[str, Any]
) -> dict[str, Any]:
    """`{"result", "next", "total", "time"}` in that order; next/total only when present."""
    body: dict[str, Any] = {"result": result}
    if next is not None:
        body["next"] = int(next)
    if total is not None:
        body["total"] = int(total)
    body["time"] = time
    return body


def error_body(code: str, description: str) -> dict[str, str]:
    """`{"error", "error_description"}`: errors carry no `time` block."""
    return {"error": code, "error_description": description}


def json_response(body: Any, *, status: int = 200) -> web.Response:
    """A JSON response serialised with the PHP quirks."""
    return web.Response(
        text=php_json(body), status=status, content_type="application/json", charset="utf-8"
    )


def error_response(code: str, description: str, *, status: int | None = None) -> web.Response:
    """An error body with the status the portal uses for that code."""
    return json_response(error_body(code, description), status=status or status_for(code))

