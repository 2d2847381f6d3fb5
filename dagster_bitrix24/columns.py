"""From Bitrix24 field metadata to typed columns, and from API values to database values.

`plan_columns(fields, id_field=..., change_field=...)` reads `crm.*.fields` /
`crm.item.fields` metadata and returns one `ColumnSpec` per SQL column (a money user field
gives two: the amount and `<name>_currency`) plus the multi-fields (PHONE, EMAIL, ...) that
go to child tables. `converter(kind, dialect)` returns the one function that turns an API
value (classic strings, or crm.item JSON numbers) into what the database driver takes;
it is looked up once per column, never per value.

Column names are the portal's names in snake case (`UF_CRM_123` -> `uf_crm_123`,
`updatedTime` -> `updated_time`); a name with anything but letters, digits and `_` is
reduced to those and suffixed with a hash of the original, so it can never become SQL. Two
fields that meet in one column name (`UF_CRM_SCORE` and `ufCrmScore`) keep it for the first
in sorted order; the others get a suffix hashed from their own name (stable across runs).

The converters are the one statement of what a column can hold, for every dialect and
write path (the inline fast paths in `row_converter`, `pg_copy` and `pg_staging` take only
shapes they provably convert alike): empty (`None`, `""`, `[]`, `{}`) and the Bitrix24
empty date `0000-00-00...` are NULL; integers must fit 64 bits, floats be finite, decimals
fit NUMERIC(18,2), keys 255 characters, dates and times be in year 1000 or later (MySQL's
range); text never holds a NUL byte. A value that breaks a
rule raises (`Unstorable` says why and what may be stored instead); `screening.py` turns
that into a NULL (or the cleaned value) and a reject, never into a failed chunk.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from dagster_bitrix24.warehouse_errors import FieldMetadataError

Kind = Literal["integer", "float", "decimal", "boolean", "date", "datetime", "text", "key", "json"]
Dialect = Literal["sqlite", "postgresql", "mysql"]
Converter = Callable[[Any], Any]

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
_ZERO_DATE = "0000-00-00"  # what Bitrix24 sends for an empty date (MySQL's zero date)
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
DECIMAL_BOUND = Decimal("9999999999999999.995")  # NUMERIC(18,2) after rounding to cents
KEY_LENGTH = 255
_FIRST_YEAR = 1000  # MySQL's DATE/DATETIME range starts here (PostgreSQL's much earlier)
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


# -- converters: API value -> driver value; each rejects what does not fit ----------------


class Unstorable(ValueError):
    """A value its column cannot hold: `reason` (never the value itself) and the raw value
    to store instead (`replacement`, None for NULL)."""

    def __init__(self, reason: str, replacement: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.replacement = replacement


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _zero_date(value: Any) -> bool:
    return value.__class__ is str and value.startswith(_ZERO_DATE)


def to_int(value: Any) -> int | None:
    if value.__class__ is str or value.__class__ is int:
        if value == "":
            return None
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif _empty(value):
        return None
    else:
        raise ValueError("not an integer")
    if not _INT_MIN <= number <= _INT_MAX:
        raise Unstorable("integer out of the 64-bit range")
    return number


BOOLEANS: dict[Any, bool | None] = {
    "Y": True, "N": False, "y": True, "n": False, "1": True, "0": False,
    "true": True, "false": False, "True": True, "False": False, True: True, False: False,
    "": None, None: None,
}  # fmt: skip


def to_bool(value: Any) -> bool | None:
    return BOOLEANS[value]  # KeyError or TypeError: not a boolean


def to_decimal(value: Any) -> Decimal | None:
    if value.__class__ is str:
        amount = value.partition("|")[0]
        if not amount:
            return None
        number = Decimal(amount)
    elif _empty(value):
        return None
    elif isinstance(value, bool):
        raise ValueError("not a decimal")
    else:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or not -DECIMAL_BOUND < number < DECIMAL_BOUND:
        raise Unstorable("not a finite decimal below 10^16")
    return number


def currency(value: Any) -> str | None:
    if value.__class__ is str and "|" in value:
        return to_key(value.partition("|")[2])
    return None


def to_float(value: Any) -> float | None:
    if _empty(value):
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    number = float(value)
    if number - number != 0:  # NaN or infinite: MySQL cannot store them, so no one does
        raise Unstorable("not a finite number")
    return number


def _in_range(moment: Any) -> Any:
    if moment.year < _FIRST_YEAR:
        raise Unstorable(f"year before {_FIRST_YEAR}")
    return moment


def to_date(value: Any) -> date | None:
    if _empty(value) or _zero_date(value):
        return None
    if isinstance(value, date):
        return _in_range(value.date() if isinstance(value, datetime) else value)
    return _in_range(date.fromisoformat(value[:10]))


def _to_utc(value: Any) -> datetime | None:
    if _empty(value) or _zero_date(value):
        return None
    moment = _in_range(value if isinstance(value, datetime) else datetime.fromisoformat(value))
    if moment.tzinfo is None:  # the portal always sends an offset; a bare time is UTC
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_aware(value: Any) -> datetime | None:
    """PostgreSQL stores the instant: the portal's offset can stay, no conversion needed."""
    if value.__class__ is str and len(value) == 25 and value[19] in "+-" and value[0] != "0":
        return datetime.fromisoformat(value)  # ...18+03:00
    return _to_utc(value)


OFFSETS: dict[str, timedelta] = {}


def _offset(value: str) -> timedelta:
    return datetime.fromisoformat(value).utcoffset() or timedelta(0)


def to_naive_utc(value: Any) -> datetime | None:
    if value.__class__ is str and len(value) == 25 and value[19] in "+-" and value[0] != "0":
        offset = OFFSETS.get(value[19:])  # ...18+03:00
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
    if value.__class__ is str and value and value[0] != "0":
        date.fromisoformat(value[:10])
        return value[:10]
    result = to_date(value)
    return None if result is None else result.isoformat()


def to_text(value: Any) -> str | None:
    if value.__class__ is str:
        if "\x00" in value:  # PostgreSQL text cannot hold NUL, so no column does
            raise Unstorable("NUL bytes removed", value.replace("\x00", ""))
        return value or None
    if _empty(value) or value is False:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def to_key(value: Any) -> str | None:
    """Text of at most `KEY_LENGTH` characters (a VARCHAR(255) column)."""
    text = to_text(value)
    if text is not None and len(text) > KEY_LENGTH:
        raise Unstorable(f"longer than {KEY_LENGTH} characters")
    return text


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
        "date": to_date, "text": to_text, "key": to_key, "json": _to_json,
    }  # fmt: skip
    if dialect == "sqlite" and kind in ("decimal", "date"):
        return sqlite_decimal if kind == "decimal" else sqlite_date
    return plain[kind]
