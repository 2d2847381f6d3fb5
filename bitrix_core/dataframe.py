"""Typed pandas DataFrames from list rows, using the entity's field metadata.

fields = await client.call("crm.deal.fields")
frame = to_dataframe(rows, fields)   # ID Int64, OPPORTUNITY Float64, CLOSED boolean,
                                     # DATE_MODIFY datetime64[ns, UTC], TITLE string
frame = await dataframe(client, "crm.deal.list", {"select": ["*"]})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from bitrix_core.entities import EntitySpec, spec_for_method
from bitrix_core.errors import BitrixParameterError

_INTEGER_TYPES = frozenset(
    {"integer", "user", "employee", "crm_company", "crm_contact", "crm_lead", "crm_category"}
)
_FLOAT_TYPES = frozenset({"double", "money", "float"})
_BOOLEAN_TYPES = frozenset({"char", "boolean"})
_TRUE = frozenset({"y", "1", "true"})
_FALSE = frozenset({"n", "0", "false"})


def _field_types(fields: Mapping[str, Any], spec: EntitySpec | None) -> dict[str, tuple[str, bool]]:
    """Column key (lowercased, in row spelling) -> (Bitrix type, isMultiple)."""
    if "fields" in fields and isinstance(fields["fields"], Mapping):
        fields = fields["fields"]
    types: dict[str, tuple[str, bool]] = {}
    for name, meta in fields.items():
        if not isinstance(meta, Mapping):
            continue
        key = spec.row_key(name) if spec is not None else name
        types[key.lower()] = (str(meta.get("type", "string")), bool(meta.get("isMultiple")))
    return types


def _blank_to_na(series: pd.Series) -> pd.Series:
    return series.map(lambda value: None if value is None or value == "" else value)


def _as_boolean(series: pd.Series) -> pd.Series:
    def convert(value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(value)

    return series.map(convert).astype("boolean")


def _convert(series: pd.Series, kind: str) -> pd.Series:
    """One column to the dtype of its Bitrix type; strings if the values do not fit."""
    try:
        if kind in _INTEGER_TYPES:
            return pd.to_numeric(_blank_to_na(series)).astype("Int64")
        if kind in _FLOAT_TYPES:
            cleaned = _blank_to_na(series).map(
                lambda v: str(v).split("|", 1)[0] if isinstance(v, str) else v
            )
            return pd.to_numeric(cleaned).astype("Float64")
        if kind == "datetime":
            return pd.to_datetime(_blank_to_na(series), utc=True, format="ISO8601").astype(
                "datetime64[ns, UTC]"
            )
        if kind == "date":
            cleaned = _blank_to_na(series).map(lambda v: str(v)[:10] if v is not None else None)
            return pd.to_datetime(cleaned, format="%Y-%m-%d").astype("datetime64[ns]")
        if kind in _BOOLEAN_TYPES:
            return _as_boolean(series)
    except (ValueError, TypeError):
        pass
    if series.map(lambda v: isinstance(v, list | dict)).any():
        return series
    return series.map(lambda v: None if v is None else str(v)).astype("string")


def to_dataframe(
    rows: Iterable[Mapping[str, Any]],
    fields: Mapping[str, Any] | None = None,
    *,
    spec: EntitySpec | None = None,
) -> pd.DataFrame:
    """A DataFrame with one typed column per row key.

    `fields` is the `*.fields` answer (with or without the `{"fields": ...}` wrapper).
    integer and id references -> Int64, double/money -> Float64, datetime ->
    datetime64[ns, UTC], date -> datetime64[ns], char Y/N and boolean -> boolean,
    multiple fields stay lists, the rest -> string. The id column is always Int64.
    """
    frame = pd.DataFrame.from_records(list(rows))
    types = _field_types(fields or {}, spec)
    id_keys = {"id"} | ({spec.id_field.lower()} if spec is not None else set())
    for column in frame.columns:
        kind, multiple = types.get(str(column).lower(), ("string", False))
        if str(column).lower() in id_keys:
            kind = "integer"
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        frame[column] = frame[column] if multiple else _convert(frame[column], kind)
    return frame


async def dataframe(
    client: Any,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    spec: EntitySpec | None = None,
    fields: Mapping[str, Any] | None = None,
    **list_options: Any,
) -> pd.DataFrame:
    """Fetch every row of `method` through `client.list` and type it with `*.fields` metadata."""
    spec = spec or spec_for_method(method, params)
    if spec is None and fields is None:
        raise BitrixParameterError(
            "method", f"{method} is not a known list method: pass spec= or fields="
        )
    if fields is None and spec is not None and spec.fields_method:
        fields = await client.call(spec.fields_method, dict(spec.extra_params) or None)
    rows = [row async for page in client.list(method, params, **list_options) for row in page.rows]
    return to_dataframe(rows, fields, spec=spec)
