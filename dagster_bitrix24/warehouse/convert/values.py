"""The Python converters: an API value (classic strings, or crm.item JSON numbers) into
what the database driver takes, each rejecting what its column cannot hold.

They are the one statement of what a column can hold, for every dialect and write path
(the fast paths in `rules.py` take only shapes they provably convert alike): empty (`None`,
`""`, `[]`, `{}`) and the Bitrix24 empty date `0000-00-00...` are NULL; integers must fit
64 bits, floats be finite, decimals fit NUMERIC(18,2), keys 255 characters, dates and times
be in year 1000 or later (MySQL's range); text never holds a NUL byte. A value that breaks a
rule raises (`Unstorable` says why and what may be stored instead); `screening.py` turns
that into a NULL (or the cleaned value) and a reject, never into a failed chunk.

Two converters remember what they parsed (`Caches`, one object per `Conversions`, never a
module global): the UTC offsets seen, and for SQLite the hours seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from dagster_bitrix24.warehouse.schema.columns import KEY_LENGTH

Converter = Callable[[Any], Any]

_ZERO_DATE = "0000-00-00"  # what Bitrix24 sends for an empty date (MySQL's zero date)
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
DECIMAL_BOUND = Decimal("9999999999999999.995")  # NUMERIC(18,2) after rounding to cents
_FIRST_YEAR = 1000  # MySQL's DATE/DATETIME range starts here (PostgreSQL's much earlier)
CACHE_LIMIT = 200_000  # entries a cache holds before it starts again
MINUTES_SECONDS = frozenset(f":{m:02d}:{s:02d}" for m in range(60) for s in range(60))


@dataclass
class Caches:
    """What converters and COPY text builders learnt from values they parsed, so the fast
    paths can take later values of the same shape as string lookups."""

    offsets: dict[str, timedelta] = field(default_factory=dict)  # "+03:00" -> its offset
    # SQLite: "2024-09-02T18+03:00" -> "2024-09-02 15": with a whole-hour offset, minutes
    # and seconds pass through, so a time seen once makes every later time in that hour a
    # string lookup
    hours: dict[str, str] = field(default_factory=dict)
    copy_dates: dict[str, str] = field(default_factory=dict)  # "2024-09-02" -> itself
    copy_hours: set[str] = field(default_factory=set)  # "2024-09-02T18" parsed once
    copy_tails: set[str] = field(default_factory=set)  # ":MM:SS+03:00" for every MM:SS


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


def _offset(value: str) -> timedelta:
    return datetime.fromisoformat(value).utcoffset() or timedelta(0)


def naive_utc(caches: Caches) -> Converter:
    """MySQL's DATETIME: the UTC time without an offset; offsets parsed once."""
    offsets = caches.offsets

    def to_naive_utc(value: Any) -> datetime | None:
        if value.__class__ is str and len(value) == 25 and value[19] in "+-" and value[0] != "0":
            offset = offsets.get(value[19:])  # ...18+03:00
            if offset is None:
                offset = offsets.setdefault(value[19:], _offset(value))
            return datetime.fromisoformat(value[:19]) - offset
        moment = _to_utc(value)
        return None if moment is None else moment.replace(tzinfo=None)

    return to_naive_utc


def sqlite_datetime(caches: Caches) -> Converter:
    """SQLAlchemy's SQLite text format (UTC); lexical order is time order. Remembers the
    hour of a whole-hour-offset time for the fast path (`Caches.hours`)."""
    to_naive_utc = naive_utc(caches)
    hours = caches.hours

    def to_sqlite_datetime(value: Any) -> str | None:
        moment = to_naive_utc(value)
        if moment is None:
            return None
        text = str(moment)
        shaped = value.__class__ is str and len(value) == 25 and value[19] in "+-"
        if (
            shaped and value.endswith(":00") and value[13:19] in MINUTES_SECONDS
            and len(text) == 19
        ):  # fmt: skip
            if len(hours) >= CACHE_LIMIT:
                hours.clear()
            hours[value[:13] + value[19:]] = text[:13]
        return text

    return to_sqlite_datetime


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


def to_json(value: Any) -> str | None:
    if _empty(value) or value is False:
        return None
    return json.dumps(value if isinstance(value, list | dict) else [value], ensure_ascii=False)


def sqlite_decimal(value: Any) -> str | None:
    result = to_decimal(value)
    return None if result is None else str(result)
