"""Stored values turned into what each REST method family returns.

Classic `crm.*` methods: strings everywhere (IDs too), `null` for empty, datetimes as ISO
with the portal's offset, money `"1500.00"`. `crm.item.*`: real JSON numbers and booleans.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from bitrix_core.emulator.schema import (
    BOOLEAN_TYPES,
    DATETIME_TYPES,
    DOUBLE_TYPES,
    INTEGER_TYPES,
    Entity,
    Field,
)


def iso(epoch: int, tz: timezone) -> str:
    """`2024-09-02T18:37:18+03:00`: epoch seconds in the portal's zone."""
    return datetime.fromtimestamp(int(epoch), tz).isoformat()


def classic_value(f: Field, value: Any, tz: timezone) -> Any:
    """A value as classic methods return it: a string, or None."""
    if value is None:
        return None
    if f.type in DATETIME_TYPES:
        return iso(value, tz)
    if f.type in BOOLEAN_TYPES:
        return "1" if value else "0"
    if f.type in DOUBLE_TYPES:
        return str(float(value)) if f.user_field else f"{float(value):.2f}"
    return str(value)


def camel_value(f: Field, value: Any, tz: timezone) -> Any:
    """A value as crm.item methods return it: numbers as numbers, booleans as booleans."""
    if value is None:
        return None
    if f.type in DATETIME_TYPES:
        return iso(value, tz)
    if f.type in BOOLEAN_TYPES:
        return bool(value)
    if f.type in INTEGER_TYPES:
        return int(value)
    if f.type in DOUBLE_TYPES:
        return float(value)
    return value


def select_fields(entity: Entity, select: Iterable[str] | None, *, camel: bool = False) -> list[Field]:
    """The fields a `select` names: `*` standard non-multi, `UF_*` custom, default both;
    explicit names (multi-fields only this way); unknown names are ignored."""
    names = [str(s) for s in (select or []) if str(s).strip()]
    if not names:
        names = ["*", "UF_*"]
    wanted: set[str] = set()
    lookup = {(f.camel_key if camel else f.name): f for f in entity.fields}
    lower = {k.lower(): f for k, f in lookup.items()}
    for name in names:
        if name == "*":
            wanted |= {f.name for f in entity.fields if not f.user_field and not f.is_multifield}
        elif name.upper() in ("UF_*", "UFCRM*", "UF_CRM_*"):
            wanted |= {f.name for f in entity.fields if f.user_field}
        else:
            f = lookup.get(name) or lower.get(name.lower())
            if f is not None:
                wanted.add(f.name)
    return [f for f in entity.fields if f.name in wanted]
