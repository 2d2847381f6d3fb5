"""Checking a call's method name and list parameters before anything is sent.

>>> validate_call("crm.deal.list", {"filter": {">=DATE_MODIFY": "2024-01-01"}, "start": -1})
>>> validate_call("crm.deal.list", {"filter": {"=>ID": 5}})
Traceback (most recent call last):
...
bitrix_core.errors.BitrixParameterError: crm.deal.list: parameter 'filter[=>ID]': ...
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bitrix_core.errors import BitrixParameterError

_METHOD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_FILTER_KEY = re.compile(
    r"^(?P<op>>=|<=|!=|!@|=%|%=|!%|>|<|=|!|@|%)?(?P<field>[A-Za-z_][A-Za-z0-9_.]*)$"
)
_DIRECTIONS = ("ASC", "DESC")
_SCALARS = (str, int, float, Decimal, dt.date)
_LOGIC = ("AND", "OR")


def validate_call(method: Any, params: Any = None) -> None:
    """Raise BitrixParameterError naming the first bad parameter; return None if all is well.

    Checks the method name shape, then (case-insensitively, wherever they appear) `select`
    (list of field names), `filter` (mapping with valid operator prefixes, values scalars or
    lists of scalars, OR/AND groups), `order` (mapping of field to ASC/DESC, or the
    user.get-style ASC/DESC string), `sort` (a field name) and `start` (an int >= -1).
    """
    if not isinstance(method, str) or not _METHOD.match(method.strip()):
        raise BitrixParameterError(
            "method", f"{method!r} is not a REST method name like 'crm.deal.list'"
        )
    method = method.strip()
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise BitrixParameterError(
            "params", f"must be a mapping, not {type(params).__name__}", method=method
        )
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise BitrixParameterError(
                str(key), "parameter names must be non-empty strings", method=method
            )
        checker = _CHECKS.get(key.lower())
        if checker is not None:
            checker(key, value, method)


def _check_select(name: str, value: Any, method: str) -> None:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise BitrixParameterError(
            name, f"must be a list of field names, not {type(value).__name__}", method=method
        )
    for index, field in enumerate(value):
        if not isinstance(field, str) or not field.strip():
            raise BitrixParameterError(
                f"{name}[{index}]", f"{field!r} is not a field name", method=method
            )


def _check_filter(name: str, value: Any, method: str) -> None:
    if not isinstance(value, Mapping):
        raise BitrixParameterError(
            name, f"must be a mapping, not {type(value).__name__}", method=method
        )
    for key, condition in value.items():
        where = f"{name}[{key}]"
        text = str(key)
        if text.lower() == "logic":
            if str(condition).upper() not in _LOGIC:
                raise BitrixParameterError(where, "must be 'AND' or 'OR'", method=method)
            continue
        if text.isdigit() and isinstance(condition, Mapping):
            _check_filter(where, condition, method)
            continue
        match = _FILTER_KEY.match(text)
        if match is None:
            raise BitrixParameterError(
                where,
                "not a field with an operator prefix (=, !, !=, >, >=, <, <=, @, !@, %, =%, %=, !%)",
                method=method,
            )
        if match["op"] in ("@", "!@") and not isinstance(condition, list | tuple | set):
            raise BitrixParameterError(
                where, f"{match['op']} needs a list of values", method=method
            )
        _check_value(where, condition, method)


def _check_value(where: str, value: Any, method: str) -> None:
    if isinstance(value, list | tuple | set):
        for item in value:
            _check_value(where, item, method)
        return
    if value is None or isinstance(value, (bool, *_SCALARS)):
        if isinstance(value, dt.datetime) and value.utcoffset() is None:
            raise BitrixParameterError(where, "naive datetime: give it a time zone", method=method)
        return
    raise BitrixParameterError(
        where, f"unsupported value type {type(value).__name__}", method=method
    )


def _check_direction(where: str, value: Any, method: str) -> None:
    if not isinstance(value, str) or value.strip().upper() not in _DIRECTIONS:
        raise BitrixParameterError(where, f"must be ASC or DESC, not {value!r}", method=method)


def _check_order(name: str, value: Any, method: str) -> None:
    if isinstance(value, str):
        _check_direction(name, value, method)
        return
    if not isinstance(value, Mapping):
        raise BitrixParameterError(
            name, f"must map field names to ASC/DESC, not {type(value).__name__}", method=method
        )
    for field, direction in value.items():
        if not isinstance(field, str) or not _FILTER_KEY.match(field) or field[0] in "<>=!@%":
            raise BitrixParameterError(f"{name}[{field}]", "not a field name", method=method)
        _check_direction(f"{name}[{field}]", direction, method)


def _check_sort(name: str, value: Any, method: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise BitrixParameterError(name, "must be a field name", method=method)


def _check_start(name: str, value: Any, method: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BitrixParameterError(
            name, f"must be an int, not {type(value).__name__}", method=method
        )
    if value < -1:
        raise BitrixParameterError(
            name, f"must be -1 or an offset >= 0, not {value}", method=method
        )


_CHECKS = {
    "select": _check_select,
    "filter": _check_filter,
    "order": _check_order,
    "sort": _check_sort,
    "start": _check_start,
}
