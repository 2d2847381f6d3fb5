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
