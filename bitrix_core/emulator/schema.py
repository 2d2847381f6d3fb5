"""Field and entity definitions of the emulated portal, and their `*.fields` metadata.

A `Field` names one value: its UPPER_CASE name (also the SQLite column), its camelCase
name (crm.item, tasks), its Bitrix type and flags, and `gen`, the SQL expression that
generates it (see `generate.py` for the names a generator may use).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

INTEGER_TYPES = frozenset(
    {"integer", "user", "employee", "crm_company", "crm_contact", "crm_lead", "crm_category",
     "crm_entity", "enumeration", "group", "iblock_element", "crm_quote"}
)
DOUBLE_TYPES = frozenset({"double"})
# "datetime_opaque": stored and filtered as a time, sent as `{}` (user-get.md's example:
# "TIMESTAMP_X": {}, "LAST_ACTIVITY_DATE": {}, though its filter takes ISO times)
OPAQUE_TIME_TYPES = frozenset({"datetime_opaque"})
DATETIME_TYPES = frozenset({"datetime"}) | OPAQUE_TIME_TYPES
DATE_TYPES = frozenset({"date"})
BOOLEAN_TYPES = frozenset({"boolean"})
# kept as JSON text, sent as JSON (crm-activity-get.md: "SETTINGS": [], "PROVIDER_PARAMS": [])
OBJECT_TYPES = frozenset({"object"})
MULTI_TYPE = "crm_multifield"

_CAMEL_EXCEPTIONS = {
    "DATE_CREATE": "createdTime",
    "DATE_MODIFY": "updatedTime",
    "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy",
    "UPDATED_BY_ID": "updatedBy",
}


def camel_name(name: str) -> str:
    """The crm.item spelling of an UPPER_CASE field name (`ASSIGNED_BY_ID` -> `assignedById`)."""
    if name in _CAMEL_EXCEPTIONS:
        return _CAMEL_EXCEPTIONS[name]
    smart = re.match(r"^UF_CRM_(\d+)_(.+)$", name)
    if smart:  # UF_CRM_128_PROJECT -> ufCrm128_Project, as the real portal spells it
        tail = camel_name(smart.group(2))
        return f"ufCrm{smart.group(1)}_{tail[:1].upper()}{tail[1:]}"
    head, *rest = name.lower().split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class Field:
    """One field of an entity; `gen` is the SQL expression that generates its value."""

    name: str
    type: str
    title: str
    gen: str = "NULL"
    required: bool = False
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    status_type: str | None = None
    items: tuple[tuple[int, str], ...] = ()
    user_field: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    camel: str = ""
    deprecated: bool = False
    ids_of: str = ""
    ids_sql: str = ""
    # False: `*.fields` describes it, but `select *` / `*.get` rows never carry it (the
    # documented rows of crm.activity lack IS_INCOMING_CHANNEL, crm.item's lack `contacts`)
    listed: bool = True
    # the type `*.fields` names when it differs from the stored one (crm.item's `opened` is
    # described "boolean" yet sent "Y"/"N": crm-item-fields.md vs crm-item-get.md)
    described_type: str = ""

    @property
    def camel_key(self) -> str:
        """The camelCase name (crm.item, tasks.task)."""
        return self.camel or camel_name(self.name)

    @property
    def is_multifield(self) -> bool:
        """PHONE, EMAIL, WEB, IM: kept in the multifield table, returned only when selected."""
        return self.type == MULTI_TYPE

    @property
    def is_id_list(self) -> bool:
        """A standard multiple field (CONTACT_IDS): stored as a JSON array, absent from
        classic list/get rows (b24restdocs api-reference/crm/deals/crm-deal-list.md: "The
        method does not support the field `CONTACT_IDS`"), an array in crm.item rows. With
        `ids_of` (CONTACT_ID), a row that never had its list written (stored NULL) reads as
        `[CONTACT_ID]`: nothing to generate, and the two always agree. With `ids_sql` (a SQL
        expression over the row `t`), the list is read from a link table instead."""
        return self.multiple and not self.user_field and not self.is_multifield

    @property
    def sql_type(self) -> str:
        """The SQLite column type that stores this field."""
        if self.is_id_list:
            return "TEXT"
        if self.type in INTEGER_TYPES or self.type in DATETIME_TYPES or self.type in BOOLEAN_TYPES:
            return "INTEGER"
        if self.type in DOUBLE_TYPES:
            return "REAL"
        return "TEXT"


@dataclass(frozen=True)
class Entity:
    """An entity kept in one SQLite table; `fields` in the order `*.fields` lists them."""

    name: str
    table: str
    fields: tuple[Field, ...]
    size_key: str
    created_field: str | None = "DATE_CREATE"
    modified_field: str | None = "DATE_MODIFY"
    entity_type_id: int | None = None
    uf_entity_id: str | None = None
    multi_owner: str | None = None
    dense_ids: bool = False
    salt: int = 0

    def by_name(self) -> dict[str, Field]:
        """Fields keyed by UPPER_CASE name."""
        return {f.name: f for f in self.fields}


def pick(salt: int, values: Sequence[str | int | None], weights: Sequence[int] | None = None) -> str:
    """A SQL CASE expression choosing one of `values` from the row's random number `R(salt)`."""
    weights = list(weights or [1] * len(values))
    total = sum(weights)
    parts, upper = [], 0
    for value, weight in zip(values, weights, strict=True):
        upper += weight
        parts.append(f"WHEN R({salt}) % {total} < {upper} THEN {sql_literal(value)}")
    return "(CASE " + " ".join(parts) + " END)"


def sql_literal(value: str | int | float | None) -> str:
    """A SQL literal for a Python scalar."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def describe(f: Field) -> dict[str, Any]:
    """The documented `crm.*.fields` description of one field."""
    out: dict[str, Any] = {
        "type": f.described_type or f.type,
        "isRequired": f.required,
        "isReadOnly": f.read_only,
        "isImmutable": f.immutable,
        "isMultiple": f.multiple or f.is_multifield,
        "isDynamic": f.user_field,
        "title": f.name if f.user_field else f.title,
    }
    if f.deprecated:
        out["isDeprecated"] = True
    if f.status_type:
        out["statusType"] = f.status_type
    if f.items:
        out["items"] = [{"ID": str(i), "VALUE": v} for i, v in f.items]
    if f.user_field:
        out["listLabel"] = out["formLabel"] = out["filterLabel"] = f.title
    if f.user_field or f.settings:
        out["settings"] = dict(f.settings)
    return out


def describe_camel(f: Field) -> dict[str, Any]:
    """The `crm.item.fields` description of one field (adds `upperName`)."""
    out = describe(f)
    out["title"] = f.title
    out["upperName"] = f.name
    return out


_UF_NAME = re.compile(r"^UF_[A-Z0-9_]+$")

# The settings a custom field of each type has when created without any, as the documented
# crm.item.fields example shows them (b24restdocs api-reference/crm/_include/
# user-fields-for-examples-cut.md); types it does not show keep `{}` (an assumption).
DEFAULT_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    "string": {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 0,
               "DEFAULT_VALUE": ""},
    "enumeration": {"DISPLAY": "LIST", "LIST_HEIGHT": 1, "CAPTION_NO_VALUE": "",
                    "SHOW_NO_VALUE": "Y"},
    "date": {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}},
    "url": {"POPUP": "Y", "SIZE": 20, "MIN_LENGTH": 0, "MAX_LENGTH": 0, "DEFAULT_VALUE": "",
            "ROWS": 1},
    "file": {"SIZE": 20, "LIST_WIDTH": 0, "LIST_HEIGHT": 0, "MAX_SHOW_SIZE": 0,
             "MAX_ALLOWED_SIZE": 0, "EXTENSIONS": [], "TARGET_BLANK": "Y"},
    "money": {"DEFAULT_VALUE": ""},
    "boolean": {"DEFAULT_VALUE": 0, "DISPLAY": "CHECKBOX", "LABEL": ["", ""]},
    "double": {"PRECISION": 2, "SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0,
               "DEFAULT_VALUE": None},
}

USER_TYPES = ("string", "integer", "double", "boolean", "date", "datetime", "enumeration",
              "money", "url", "employee", "crm", "file", "address", "iblock_element")


def user_field(
    name: str,
    user_type: str,
    label: str,
    *,
    gen: str = "NULL",
    items: tuple[tuple[int, str], ...] = (),
    multiple: bool = False,
    camel: str = "",
    settings: Mapping[str, Any] | None = None,
) -> Field:
    """A custom `UF_*` field of `user_type` (string, enumeration, boolean, money, ...)."""
    if not _UF_NAME.match(name):
        raise ValueError(f"user field name must look like UF_CRM_..., got {name!r}")
    if user_type not in USER_TYPES:
        raise ValueError(f"unknown user field type {user_type!r}; one of {', '.join(USER_TYPES)}")
    return Field(
        name=name, type=user_type, title=label, gen=gen, items=items, multiple=multiple,
        user_field=True, camel=camel,
        settings={**DEFAULT_SETTINGS.get(user_type, {}),
                  **({"LABEL_CHECKBOX": {"en": label}} if user_type == "boolean" else {}),
                  **(settings or {})},
    )
