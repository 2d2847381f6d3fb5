"""The same hostile rows through every write path store the same values and name the same
rejects: the converters (executemany) on SQLite and MariaDB, and on PostgreSQL the COPY text
path (one large chunk), the Python path (small chunks) and the SQL staging path."""

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.dialects import PostgresWriter
from tests.dagster.test_warehouse_support import DEAL_FIELDS, cleaned_warehouse, deal, select_all

FIELDS = {
    **{k: v for k, v in DEAL_FIELDS.items() if k != "PHONE"},
    "UF_CRM_SCORE": {"type": "integer", "title": "Score"},
    "ufCrmScore": {"type": "string", "title": "Score (text)"},  # the same column name
}
LONG = "long " * 14_000  # 70,000 characters: over MySQL's plain TEXT
HOSTILE: dict[str, list[Any]] = {
    "BEGINDATE": ["0000-00-00", "0000-00-00T00:00:00+03:00", "2024-02-30", "02.09.2024", {},
                  "0999-01-01", "2024-09-02"],
    "DATE_MODIFY": ["0000-00-00T00:00:00+03:00", "yesterday", "0001-01-01T00:00:00+03:00",
                    {}, "2024-09-02T18:37:18Z"],
    "OPPORTUNITY": ["1 234.50", "100|USD", "NaN", "Infinity", "99999999999999999999",
                    "abc|USD", "-5.25", "1e3", "999999999999.99", "10000000000000000", 12.5, True],
    "PROBABILITY": ["12abc", "99999999999999999999", "-5", " 7 ", "1.5", True, 3.0,
                    "9223372036854775807", "-9223372036854775809"],
    "CLOSED": ["maybe", "Y", [], 1, "true"],
    "UF_CRM_RATE": ["NaN", "Infinity", "-inf", "1e999", "2.5", "abc", float("nan")],
    "TITLE": ["a\x00b", "\x00", LONG, "tab\there", "back\\slash", "line\nbreak", 42],
    "UF_CRM_VIP": ["maybe", "true", False],
    "UF_CRM_BUDGET": ["1e30|EUR", "10.50|RUB\x00", "abc|USD", "5|" + "C" * 300, "|GBP", "7"],
    "ASSIGNED_BY_ID": ["1.5", "-1", "x"],
    "STAGE_ID": ["s" * 300, "NEW\x00"],
    "UF_CRM_TAGS": [["a\x00"], "single", {"k": float("inf")}],
    "UF_CRM_SCORE": ["5", "five"],
    "ufCrmScore": ["five", "\x00"],
}  # fmt: skip


def _rows() -> list[dict[str, Any]]:
    """2,500 deals (enough for PostgreSQL's COPY path), one hostile value on each of the
    first ones, and two rows whose id no column can hold."""
    rows = [deal(i, UF_CRM_SCORE="1", ufCrmScore="one") for i in range(1, 2_501)]
    position = 0
    for field, values in HOSTILE.items():
        for value in values:
            rows[position][field] = value
            position += 1
    rows += [{**deal(9_001), "ID": ""}, {**deal(9_002), "ID": "abc"}]
    return rows


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    if isinstance(value, date):
        return value.isoformat()
    return repr(value) if isinstance(value, float) else value


def _outcome(writer: Warehouse, chunk: int) -> tuple[dict, list, Any]:
    layout = writer.prepare_table("crm.deal", FIELDS, id_field="ID", change_field="DATE_MODIFY")
    rows = _rows()
    counts = [writer.write_chunk(layout, rows[i : i + chunk], run_id="parity")
              for i in range(0, len(rows), chunk)]  # fmt: skip
    written = sum(c.written for c in counts), sum(c.skipped for c in counts)
    names = [c.name for c in layout.table.columns if c.name != "_synced_at"]
    stored = {
        row.id: {n: _normal(getattr(row, n)) for n in names}
        for row in select_all(writer, layout.table)
    }
    table = writer._rejects
    with writer.engine.connect() as connection:
        found = connection.execute(table.select().where(table.c.run_id == "parity")).all()
    rejects = sorted((r.row_id, r.field, r.raw_value, r.reason) for r in found)
    return stored, rejects, written


@pytest.fixture
def writers(tmp_path) -> Iterator[dict[str, Any]]:
    """A fresh warehouse per path: (writer, chunk size); PostgreSQL and MariaDB when set."""
    found: dict[str, Any] = {}
    cleanups = []

    def add(name: str, url: str, chunk: int, **options: Any) -> None:
        generator = cleaned_warehouse(url)
        writer = next(generator)
        if writer.dialect_name == "postgresql":
            writer.writer = PostgresWriter(convert_in_database=options.get("in_sql", False))
        found[name] = (writer, chunk)
        cleanups.append(generator)

    add("sqlite", f"sqlite:///{tmp_path / 'w.sqlite'}", 3_000)
    postgres = os.environ.get("BITRIX24_TEST_POSTGRES_URL")
    if postgres:
        add("postgres_copy", postgres, 3_000)
        add("postgres_small", postgres, 100)
        add("postgres_sql", postgres, 3_000, in_sql=True)
    mysql = os.environ.get("BITRIX24_TEST_MYSQL_URL")
    if mysql:
        add("mariadb", mysql, 3_000)
    yield found
    for generator in cleanups:
        next(generator, None)


def test_every_path_stores_the_same_values_and_the_same_rejects(writers) -> None:
    outcomes = {name: _outcome(writer, chunk) for name, (writer, chunk) in writers.items()}
    stored, rejects, written = outcomes["sqlite"]
    assert written == (2_500, 2)  # every row landed but the two without a storable id
    by_title = {v["title"]: v for v in stored.values() if v["title"] in ("ab", LONG)}
    assert set(by_title) == {"ab", LONG}
    money = next(v for v in stored.values() if v["opportunity_currency"] == "USD"
                 and v["opportunity"] is None)  # "abc|USD": the currency stays  # fmt: skip
    assert money["opportunity_currency"] == "USD"
    reasons = {(field, raw): reason for _, field, raw, reason in rejects}
    assert reasons[("PROBABILITY", "99999999999999999999")] == "integer out of the 64-bit range"
    assert reasons[("OPPORTUNITY", "NaN")] == "not a finite decimal below 10^16"
    assert reasons[("UF_CRM_RATE", "Infinity")] == "not a finite number"
    assert reasons[("TITLE", "a\\0b")] == "NUL bytes removed"
    assert reasons[("CLOSED", "maybe")] == "not a valid boolean"
    assert ("BEGINDATE", "0000-00-00") not in reasons  # Bitrix24's empty date is NULL
    assert reasons[("ID", "abc")] == reasons[("ID", "")]
    assert not any(field == "TITLE" and raw.startswith("long") for _, field, raw, _ in rejects)
    for name, (other_stored, other_rejects, other_written) in outcomes.items():
        assert other_written == written, name
        assert other_rejects == rejects, name
        differing = {
            (i, n): (x, other_stored.get(i, {}).get(n))
            for i, v in stored.items() for n, x in v.items()
            if other_stored.get(i, {}).get(n) != x
        }  # fmt: skip
        assert not differing, (name, list(differing.items())[:3])
