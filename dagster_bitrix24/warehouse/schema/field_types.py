"""Field metadata for entities whose `*.fields` gives no types.

`typed_metadata` types titles-only metadata (user.fields, department.fields) from the
built-in map `bitrix_core.entities.BUILT_IN_FIELD_TYPES`; `sampled_type` types a field
known only from the values of a sampled page (an entity without a fields method).
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bitrix_core.entities import BUILT_IN_FIELD_TYPES


def typed_metadata(list_method: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata without types typed from the built-in map of the entity's list method;
    other fields stay as sent."""
    types = BUILT_IN_FIELD_TYPES.get(list_method, {})
    typed: dict[str, Any] = {}
    for name, meta in fields.items():
        if isinstance(meta, str):  # {"NAME": "First name"}
            meta = {"title": meta}
        if isinstance(meta, Mapping) and not meta.get("type") and name in types:
            meta = {**meta, **types[name]}
        typed[name] = meta
    return typed


def sampled_metadata(
    list_method: str, keys: list[str], rows: list[dict[str, Any]],
    *, known: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """Metadata of `keys` seen in sampled `rows`: `known` types first (id, change time),
    then the built-in map, then the values' own JSON types (`sampled_type`)."""
    built_in = BUILT_IN_FIELD_TYPES.get(list_method, {})
    return {
        key: {"title": key,
              **(known.get(key) or built_in.get(key) or sampled_type([r.get(key) for r in rows]))}
        for key in keys
    }  # fmt: skip


def sampled_type(values: list[Any]) -> dict[str, Any]:
    """`*.fields`-style metadata of a field known only from sampled values: JSON booleans,
    integers, numbers, lists and objects, and ISO times with an offset keep their type;
    anything else (or nothing but empty values) is a string. A later value of another
    shape is a reject (NULL), never a failed run."""
    present = [v for v in values if v not in (None, "")]
    if not present:
        return {"type": "string"}
    if all(isinstance(v, bool) for v in present):
        return {"type": "boolean"}
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return {"type": "integer"}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return {"type": "double"}
    if all(isinstance(v, list | dict) for v in present):
        return {"type": "string", "isMultiple": True}
    if all(isinstance(v, str) and _is_iso_time(v) for v in present):
        return {"type": "datetime"}
    return {"type": "string"}


def _is_iso_time(value: str) -> bool:
    return len(value) >= 20 and value[10] == "T" and _aware(value)


def _aware(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False
