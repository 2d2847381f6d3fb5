"""From Bitrix24 field metadata to typed columns, and from API values to database values.

`plan_columns(fields, id_field=..., change_field=...)` reads `crm.*.fields` /
`crm.item.fields` metadata and returns one `ColumnSpec` per SQL column (a money user field
gives two: the amount and `<name>_currency`) plus the multi-fields (PHONE, EMAIL, ...) that
go to child tables; `sql_type(kind, dialect)` is the column type a kind gets. How a value is
converted into a column is `warehouse.convert`'s business.

Column names are the portal's names in snake case (`UF_CRM_123` -> `uf_crm_123`,
`updatedTime` -> `updated_time`); a name with anything but letters, digits and `_` is
reduced to those and suffixed with a hash of the original, so it can never become SQL. Two
fields that meet in one column name (`UF_CRM_SCORE` and `ufCrmScore`) keep it for the first
in sorted order; the others get a suffix hashed from their own name (stable across runs).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from dagster_bitrix24.warehouse.errors import FieldMetadataError

Kind = Literal["integer", "float", "decimal", "boolean", "date", "datetime", "text", "key", "json"]
Dialect = Literal["sqlite", "postgresql", "mysql", "duckdb"]

MAX_IDENTIFIER = 63  # PostgreSQL's limit; MySQL allows 64

_INTEGER_TYPES = {
    "integer", "user", "employee", "crm_company", "crm_contact", "crm_lead", "crm_deal",
    "crm_quote", "crm_category", "iblock_element", "iblock_section", "crm_invoice",
    # crm.item's parentId<N> (crm-item-fields.md) and crm.activity's OWNER_TYPE_ID
    # (crm-activity-fields.md): ids sent as integers / digit strings
    "crm_entity", "crm_enum_ownertype",
}  # fmt: skip
_MONEY_FIELDS = {
    "OPPORTUNITY", "TAX_VALUE", "OPPORTUNITY_ACCOUNT", "TAX_VALUE_ACCOUNT",
    "opportunity", "taxValue", "opportunityAccount", "taxValueAccount",
}  # fmt: skip
_MULTIFIELD = "crm_multifield"
KEY_LENGTH = 255  # a "key" column is VARCHAR(255)
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class ColumnSpec:
    """One SQL column: its name, the portal field it reads, its kind and its description."""

    name: str
    field: str
    kind: Kind
    description: str
    part: Literal["value", "currency"] = "value"


@dataclass(frozen=True)
class MultiFieldSpec:
    """A multi-field (PHONE, EMAIL, WEB, IM, LINK) stored in a child table."""

    field: str
    name: str
    description: str


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def identifier(name: str) -> str:
    """A safe SQL identifier for a portal name: snake case, hashed when it had to change."""
    if not isinstance(name, str) or not name:
        raise FieldMetadataError(f"a field name must be a non-empty string, not {name!r}")
    snake = _CAMEL_BOUNDARY.sub("_", name).lower()
    if _PLAIN.match(name) and len(snake) <= MAX_IDENTIFIER:
        return snake
    cleaned = re.sub(r"[^a-z0-9]+", "_", snake).strip("_") or "field"
    if not cleaned[0].isalpha():
        cleaned = "f_" + cleaned
    return f"{cleaned[: MAX_IDENTIFIER - 9]}_{_short_hash(name)}"


def fit_identifier(name: str) -> str:
    """`name` shortened to the identifier limit with a hash suffix when it is too long."""
    if len(name) <= MAX_IDENTIFIER:
        return name
    return f"{name[: MAX_IDENTIFIER - 9]}_{_short_hash(name)}"


def _label(value: Any) -> str:
    if isinstance(value, Mapping):  # userfield.list gives labels per language
        value = value.get("en") or next((v for v in value.values() if v), "")
    return value if isinstance(value, str) else ""


def describe(field: str, meta: Mapping[str, Any]) -> str:
    """The human description of a field: its label, then the portal name in brackets."""
    for key in ("listLabel", "formLabel", "filterLabel", "title"):
        label = _label(meta.get(key)).strip()
        if label and label != field:
            return f"{label} ({field})"
    return field


def field_kind(field: str, meta: Mapping[str, Any], *, is_id: bool = False) -> Kind:
    """The column kind for one field's metadata."""
    kind = str(meta.get("type", "")).lower()
    if is_id:
        return "integer" if kind in _INTEGER_TYPES or not kind else "key"
    if meta.get("isMultiple"):
        return "json"
    if kind in _INTEGER_TYPES:
        return "integer"
    if kind == "double":
        return "decimal" if field in _MONEY_FIELDS else "float"
    if kind == "money":
        return "decimal"
    if kind in ("char", "boolean"):
        # crm.status SEMANTICS is a documented "char" holding S / F / null, not Y / N
        return "text" if field == "SEMANTICS" else "boolean"
    if kind == "date":
        return "date"
    if kind == "datetime":
        return "datetime"
    if kind in ("file", "address", "crm", "location", "object") or isinstance(
        meta.get("items"), dict
    ):  # "object": crm.activity SETTINGS / PROVIDER_PARAMS
        return "json" if kind != "location" else "text"
    return "text"


def normalise_metadata(fields: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Field metadata as {name: {...}}: unwraps crm.item's {"fields": ...}, accepts bare titles."""
    if not isinstance(fields, Mapping) or not fields:
        raise FieldMetadataError("fields must be a non-empty mapping of field name to metadata")
    inner = fields.get("fields")
    if (
        len(fields) == 1
        and isinstance(inner, Mapping)
        and all(isinstance(v, Mapping) for v in inner.values())
    ):
        fields = inner
    result: dict[str, Mapping[str, Any]] = {}
    for name, meta in fields.items():
        if isinstance(meta, str):  # user.fields: {"NAME": "First name"}
            meta = {"title": meta}
        if not isinstance(meta, Mapping):
            raise FieldMetadataError(f"metadata of field {name!r} must be a mapping, not {meta!r}")
        result[name] = meta
    return result


def plan_columns(
    fields: Mapping[str, Any], *, id_field: str, change_field: str | None
) -> tuple[list[ColumnSpec], list[MultiFieldSpec]]:
    """The columns and child-table multi-fields for a field set; the id column comes first."""
    metadata = normalise_metadata(fields)
    if id_field not in metadata:
        raise FieldMetadataError(f"id_field {id_field!r} is not among the fields")
    if change_field is not None and change_field not in metadata:
        raise FieldMetadataError(f"change_field {change_field!r} is not among the fields")
    if change_field is not None and field_kind(change_field, metadata[change_field]) not in (
        "datetime", "integer", "date",
    ):  # fmt: skip
        raise FieldMetadataError(f"change_field {change_field!r} must be a datetime or integer")
    columns: list[ColumnSpec] = []
    multifields: list[MultiFieldSpec] = []
    ordered = [id_field] + sorted(n for n in metadata if n != id_field)
    for name in ordered:
        meta = metadata[name]
        text = describe(name, meta)
        if str(meta.get("type", "")).lower() == _MULTIFIELD and name != id_field:
            multifields.append(MultiFieldSpec(name, identifier(name), text))
            continue
        kind = field_kind(name, meta, is_id=name == id_field)
        columns.append(ColumnSpec(identifier(name), name, kind, text))
        if kind == "decimal" and name != id_field:  # money: "1500.00|RUB" keeps its currency
            currency = fit_identifier(identifier(name) + "_currency")
            columns.append(ColumnSpec(currency, name, "key", f"{text}: currency", "currency"))
    return _disambiguate(columns, multifields)


def _disambiguate(
    columns: list[ColumnSpec], multifields: list[MultiFieldSpec]
) -> tuple[list[ColumnSpec], list[MultiFieldSpec]]:
    """Column names made unique: a name met again gets a suffix hashed from its field (and
    part), so it does not depend on which other fields the portal has."""
    seen: set[str] = set()

    def unique(name: str, source: str) -> str:
        while name in seen:
            name = f"{name[: MAX_IDENTIFIER - 9]}_{_short_hash(source)}"
            source += "'"
        seen.add(name)
        return name

    columns = [replace(c, name=unique(c.name, f"{c.field}|{c.part}")) for c in columns]
    multifields = [replace(m, name=unique(m.name, m.field)) for m in multifields]
    return columns, multifields


def sql_type(kind: Kind, dialect: Dialect) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type a column of `kind` gets on `dialect`."""
    if kind == "datetime":
        return sa.DateTime(timezone=dialect == "postgresql")
    if kind in ("text", "json") and dialect == "mysql":  # TEXT holds 64 KB only
        return mysql.LONGTEXT()
    types: dict[Kind, sa.types.TypeEngine[Any]] = {
        "integer": sa.BigInteger(),
        "float": sa.Double(),
        "decimal": sa.Numeric(18, 2),
        "boolean": sa.Boolean(),
        "date": sa.Date(),
        "text": sa.Text(),
        "key": sa.String(KEY_LENGTH),
        "json": sa.Text(),
    }
    return types[kind]


def type_family(column_type: sa.types.TypeEngine[Any]) -> Kind | None:
    """The kind a reflected column type stores, to compare with what the metadata asks for."""
    if isinstance(column_type, sa.Boolean) or (
        type(column_type).__name__ == "TINYINT" and getattr(column_type, "display_width", 0) == 1
    ):
        return "boolean"
    checks: list[tuple[type[Any], Kind]] = [
        (sa.Integer, "integer"), (sa.Float, "float"), (sa.Numeric, "decimal"),
        (sa.DateTime, "datetime"), (sa.Date, "date"), (sa.String, "text"),
    ]  # fmt: skip
    return next((kind for cls, kind in checks if isinstance(column_type, cls)), None)


def same_family(stored: Kind | None, wanted: Kind) -> bool:
    """Whether a stored column can take values of `wanted` kind without coercion."""
    wanted_family = "text" if wanted in ("key", "json") else wanted
    return stored == wanted_family
