"""PHP-style request parameters: `filter[>ID]=5`, `select[]=ID` into nested dicts and lists.

PHP builds an ordered map from each `name[a][b][]` key; a map whose keys are exactly
0..n-1 is what PHP code treats as a list, so it is returned as a Python list here.
"""

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

_INT_KEY = re.compile(r"^(0|-?[1-9][0-9]*)$")
_SEGMENT = re.compile(r"\[([^\]]*)\]")


def _key_parts(name: str) -> tuple[str, list[str]]:
    """Split `a[b][]` into ("a", ["b", ""]); text after an unclosed bracket is ignored by PHP."""
    first = name.find("[")
    if first <= 0:
        return name, []
    base, rest = name[:first], name[first:]
    segments: list[str] = []
    pos = 0
    while pos < len(rest):
        match = _SEGMENT.match(rest, pos)
        if match is None:
            break
        segments.append(match.group(1))
        pos = match.end()
    return base, segments


def _php_key(segment: str) -> str | int:
    return int(segment) if _INT_KEY.match(segment) else segment


def _next_index(node: dict[Any, Any]) -> int:
    ints = [key for key in node if isinstance(key, int)]
    return max(ints) + 1 if ints else 0


def set_php_value(target: dict[Any, Any], name: str, value: Any) -> None:
    """Store `value` under a PHP-style key such as `fields[PHONE][0][VALUE]`."""
    base, segments = _key_parts(name)
    if not base:
        return
    keys: list[str | int] = [_php_key(base)]
    node = target
    for segment in segments:
        key = keys[-1]
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
        keys.append(_next_index(node) if segment == "" else _php_key(segment))
    node[keys[-1]] = value


def listify(value: Any) -> Any:
    """Turn maps keyed exactly 0..n-1 (in order) into lists, recursively; keys become str."""
    if isinstance(value, dict):
        items = {key: listify(item) for key, item in value.items()}
        if items and list(items) == list(range(len(items))):
            return list(items.values())
        return {str(key): item for key, item in items.items()}
    if isinstance(value, list):
        return [listify(item) for item in value]
    return value


def decode_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Nest (name, value) pairs PHP style; later duplicates win, like PHP."""
    target: dict[Any, Any] = {}
    for name, value in pairs:
        set_php_value(target, name, value)
    result = listify(target)
    return result if isinstance(result, dict) else {}


def decode_query(text: str) -> dict[str, Any]:
    """Decode a URL-encoded PHP-style query string (`filter%5B%3EID%5D=5`) into nested dicts."""
    return decode_pairs(parse_qsl(text.lstrip("?"), keep_blank_values=True))


def _decode_json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return listify(value) if isinstance(value, dict) else {}


async def decode_request(request: web.Request) -> dict[str, Any]:
    """Query string merged with the body (body wins), as the real server sees them.

    JSON bodies count only with `Content-Type: application/json`; any other body that is
    not form data, and invalid JSON, silently becomes an empty parameter set.
    """
    params = decode_query(request.query_string)
    body: dict[str, Any] = {}
    if request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            body = _decode_json(await request.read())
        elif content_type == "application/x-www-form-urlencoded":
            body = decode_query((await request.read()).decode("utf-8", errors="replace"))
        elif content_type == "multipart/form-data":
            form = await request.post()
            body = decode_pairs([(name, value) for name, value in form.items()])
    params.update(body)
    return params
