"""From Bitrix24 field metadata to typed columns, and from API values to database values.

`plan_columns(fields, id_field=..., change_field=...)` reads `crm.*.fields` /
`crm.item.fields` metadata and returns one `ColumnSpec` per SQL column (a money user field
gives two: the amount and `<name>_currency`) plus the multi-fields (PHONE, EMAIL, ...) that
go to child tables. `converter(kind, dialect)` returns the one function that turns an API
value (classic strings, or crm.item JSON numbers) into what the database driver takes;
it is looked up once per column, never per value.

Column names are the portal's names in snake case (`UF_CRM_123` -> `uf_crm_123`,
`updatedTime` -> `updated_time`); a name with anything but letters, digits and `_` is
reduced to those and suffixed with a hash of the original, so it can never become SQL.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa

from dagster_bitrix24.warehouse_errors import FieldMetadataError

Kind = Literal["integer", "float", "decimal", "boolean", "date", "datetime", "text", "key", "json"]
Dialect = Literal["sqlite", "postgresql", "mysql"]
Converter = Callable[[Any], Any]

MAX_IDENTIFIER = 63  # PostgreSQL's limit; MySQL allows 64

_INTEGER_TYPES = {
    "integer", "user", "employee", "crm_company", "crm_contact", "crm_lead", "crm_deal",
    "crm_quote", "crm_category", "iblock_element", "iblock_section", "crm_invoice",
}  # fmt: skip
_MONEY_FIELDS = {
    "OPPORTUNITY", "TAX_VALUE", "OPPORTUNITY_ACCOUNT", "TAX_VALUE_ACCOUNT",
    "opportunity", "taxValue", "opportunityAccount", "taxValueAccount",
}  # fmt: skip
_MULTIFIELD = "crm_multifield"
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
    if kind in ("file", "address", "crm", "location") or isinstance(meta.get("items"), dict):
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
        if str(meta.get("type", "")).lower() == "money" and not meta.get("isMultiple"):
            currency = fit_identifier(identifier(name) + "_currency")
            columns.append(ColumnSpec(currency, name, "key", f"{text}: currency", "currency"))
    _reject_collisions([c.name for c in columns] + [m.name for m in multifields])
    return columns, multifields


def _reject_collisions(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen or name.startswith("_"):
            raise FieldMetadataError(f"two fields map to the same column {name!r}")
        seen.add(name)


def sql_type(kind: Kind, dialect: Dialect) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type a column of `kind` gets on `dialect`."""
    if kind == "datetime":
        return sa.DateTime(timezone=dialect == "postgresql")
    types: dict[Kind, sa.types.TypeEngine[Any]] = {
        "integer": sa.BigInteger(),
        "float": sa.Double(),
        "decimal": sa.Numeric(18, 2),
        "boolean": sa.Boolean(),
        "date": sa.Date(),
        "text": sa.Text(),
        "key": sa.String(255),
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


# -- converters: API value -> driver value; each rejects what does not fit ----------------


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def to_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if value.__class__ is str or value.__class__ is int:
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(value)


BOOLEANS: dict[Any, bool | None] = {
    "Y": True, "N": False, "y": True, "n": False, "1": True, "0": False,
    "true": True, "false": False, "True": True, "False": False, True: True, False: False,
    "": None, None: None,
}  # fmt: skip


def to_bool(value: Any) -> bool | None:
    return BOOLEANS[value]


def to_decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if value.__class__ is str:
        amount = value.partition("|")[0]
        return Decimal(amount) if amount else None
    if isinstance(value, bool):
        raise ValueError(value)
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def currency(value: Any) -> str | None:
    if value.__class__ is str and "|" in value:
        return value.partition("|")[2] or None
    return None


def to_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def to_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    return date.fromisoformat(value[:10])


def _to_utc(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:  # the portal always sends an offset; a bare time is UTC
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_aware(value: Any) -> datetime | None:
    """PostgreSQL stores the instant: the portal's offset can stay, no conversion needed."""
    if value.__class__ is str and len(value) == 25 and value[19] in "+-":  # ...18+03:00
        return datetime.fromisoformat(value)
    return _to_utc(value)


OFFSETS: dict[str, timedelta] = {}


def _offset(value: str) -> timedelta:
    return datetime.fromisoformat(value).utcoffset() or timedelta(0)


def to_naive_utc(value: Any) -> datetime | None:
    if value.__class__ is str and len(value) == 25 and value[19] in "+-":  # ...18+03:00
        offset = OFFSETS.get(value[19:])
        if offset is None:
            offset = OFFSETS.setdefault(value[19:], _offset(value))
        return datetime.fromisoformat(value[:19]) - offset
    moment = _to_utc(value)
    return None if moment is None else moment.replace(tzinfo=None)


# "2024-09-02T18+03:00" -> "2024-09-02 15": with a whole-hour offset, minutes and seconds
# pass through, so a time seen once makes every later time in that hour a string lookup.
HOURS: dict[str, str] = {}
MINUTES_SECONDS = frozenset(f":{m:02d}:{s:02d}" for m in range(60) for s in range(60))
_MAX_HOURS = 200_000


def to_sqlite_datetime(value: Any) -> str | None:
    """SQLAlchemy's SQLite text format (UTC); lexical order is time order."""
    moment = to_naive_utc(value)
    if moment is None:
        return None
    text = str(moment)
    _remember_hour(value, text)
    return text


def _remember_hour(value: Any, text: str) -> None:
    shaped = value.__class__ is str and len(value) == 25 and value[19] in "+-"
    if shaped and value.endswith(":00") and value[13:19] in MINUTES_SECONDS and len(text) == 19:
        if len(HOURS) >= _MAX_HOURS:
            HOURS.clear()
        HOURS[value[:13] + value[19:]] = text[:13]


def sqlite_date(value: Any) -> str | None:
    if value.__class__ is str and value:
        date.fromisoformat(value[:10])
        return value[:10]
    result = to_date(value)
    return None if result is None else result.isoformat()


def to_text(value: Any) -> str | None:
    if value.__class__ is str:
        return value or None
    if _empty(value) or value is False:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _to_json(value: Any) -> str | None:
    if _empty(value) or value is False:
        return None
    return json.dumps(value if isinstance(value, list | dict) else [value], ensure_ascii=False)


def sqlite_decimal(value: Any) -> str | None:
    result = to_decimal(value)
    return None if result is None else str(result)


def converter(kind: Kind, dialect: Dialect, *, part: str = "value") -> Converter:
    """The function turning an API value of `kind` into a driver value for `dialect`."""
    if part == "currency":
        return currency
    if kind == "datetime":
        return {"postgresql": to_aware, "mysql": to_naive_utc, "sqlite": to_sqlite_datetime}[
            dialect
        ]
    plain: dict[Kind, Converter] = {
        "integer": to_int, "float": to_float, "decimal": to_decimal, "boolean": to_bool,
        "date": to_date, "text": to_text, "key": to_text, "json": _to_json,
    }  # fmt: skip
    if dialect == "sqlite" and kind in ("decimal", "date"):
        return sqlite_decimal if kind == "decimal" else sqlite_date
    return plain[kind]
