"""PHP-style query encoding: the one encoder for plain calls and batch commands.

Bitrix24 parses request bodies and batch command strings with PHP's ``parse_str``, so
parameters are flattened the way PHP's ``http_build_query`` writes them::

    >>> encode_params({"filter": {">ID": 5}, "select": ["ID", "TITLE"], "start": -1})
    'filter%5B%3EID%5D=5&select%5B0%5D=ID&select%5B1%5D=TITLE&start=-1'

Values: ``True``/``False`` become ``1``/``0`` (what PHP writes), ``None`` an explicit empty
value, aware datetimes ISO 8601 with their offset, dates ``YYYY-MM-DD``, numbers their
decimal text. Empty lists and maps are left out, as PHP leaves them out.
"""

import datetime as dt
import enum
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from bitrix_core.errors import BitrixParameterError

__all__ = ["encode_params", "encode_command", "encode_value"]

_SAFE = "-_.~"
_METHOD_NAME = re.compile(r"^[A-Za-z0-9_.]+$")


def encode_params(params: Mapping[str, Any]) -> str:
    """Encode a parameter mapping as a PHP-style, percent-encoded query string."""
    if not isinstance(params, Mapping):
        raise BitrixParameterError("params", f"expected a mapping, got {type(params).__name__}")
    pairs: list[str] = []
    for key, value in params.items():
        name = _key_text(key, path="")
        _flatten(name, value, pairs, path=name)
    return "&".join(pairs)


def encode_command(method: str, params: Mapping[str, Any] | None = None) -> str:
    """One batch command: ``"method?query"`` (just ``"method"`` when there are no params)."""
    if not isinstance(method, str) or not _METHOD_NAME.match(method):
        raise BitrixParameterError("method", f"not a REST method name: {method!r}")
    query = encode_params(params or {})
    return f"{method}?{query}" if query else method


def encode_value(value: Any, *, path: str = "value") -> str:
    """The text PHP would receive for one scalar value (before percent-encoding)."""
    if value is None:
        return ""
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, enum.Enum):
        return encode_value(value.value, path=path)
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BitrixParameterError(path, f"{value!r} cannot be sent to Bitrix24")
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text or "E" in text else text
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise BitrixParameterError(path, f"{value!r} cannot be sent to Bitrix24")
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise BitrixParameterError(
                path, "naive datetime: give it a time zone (e.g. tzinfo=timezone.utc)"
            )
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise BitrixParameterError(path, f"cannot encode a value of type {type(value).__name__}")


def _flatten(name: str, value: Any, pairs: list[str], *, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            text = _key_text(key, path=path)
            _flatten(f"{name}[{text}]", item, pairs, path=f"{path}[{text}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _flatten(f"{name}[{index}]", item, pairs, path=f"{path}[{index}]")
    elif isinstance(value, set | frozenset):
        raise BitrixParameterError(path, "sets have no order; pass a list")
    else:
        pairs.append(
            f"{quote(name, safe=_SAFE)}={quote(encode_value(value, path=path), safe=_SAFE)}"
        )


def _key_text(key: Any, *, path: str) -> str:
    if isinstance(key, bool) or not isinstance(key, str | int):
        where = path or "params"
        raise BitrixParameterError(where, f"keys must be str or int, got {type(key).__name__}")
    text = str(key)
    if not text:
        raise BitrixParameterError(path or "params", "empty key")
    if "[" in text or "]" in text:
        raise BitrixParameterError(
            f"{path}[{text}]" if path else text, "brackets in a key: nest dicts instead"
        )
    return text
