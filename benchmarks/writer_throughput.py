"""Warehouse writer throughput: realistic crm.deal rows through the public API, per dialect.

Generates deal rows the way crm.deal.list returns them (every value a string, ~30 columns
with user fields and a PHONE multi-field on one row in ten), writes them through
`Warehouse.prepare_table` + `write_chunk` (normalisation included) into a fresh table, then
writes them again unchanged (`resend`: what a full refresh of a quiet portal sends), then
with a later DATE_MODIFY (`update`: every row changed), and prints rows/s with the ratio to
the target, plus rows per
CPU second of this process (the machine may be shared; the database server's time is not in
the CPU figure).

It also prints two bounds measured on the same host in the same run, so that a figure can be
read against what the host allows: the writer's Python work alone (rows made ready for the
driver: PostgreSQL's COPY text, other dialects' converted tuples; no database) and the
database alone (those ready rows loaded into an empty table in the same chunks: COPY on
PostgreSQL, LOAD DATA LOCAL INFILE on MySQL/MariaDB, one INSERT ... SELECT from an Arrow
table on DuckDB, an executemany INSERT on SQLite). A writer can reach neither bound; the lower one is its ceiling here.

    .venv/bin/python benchmarks/writer_throughput.py --rows 200000 \\
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/bitrix24_test

PostgreSQL and MariaDB run when their URL is given or BITRIX24_TEST_POSTGRES_URL /
BITRIX24_TEST_MYSQL_URL is set; SQLite and DuckDB always run (files in a temporary
directory; DuckDB needs the `duckdb` extra).
On a shared host, `--repeat 5` runs each dialect five times and prints the median and range.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.convert import copy_value
from dagster_bitrix24.warehouse.convert.copy_blocks import copy_blocks
from dagster_bitrix24.warehouse.dialects.duckdb import arrow_table
from dagster_bitrix24.warehouse.dialects.mysql_load import load_into, tsv_builder
from dagster_bitrix24.warehouse.schema.layout import TableLayout, convert_rows, synced_at_value

TARGETS = {"sqlite": 50_000, "postgresql": 100_000, "mysql": 15_000, "duckdb": None}
_PORTAL_TZ = timezone(timedelta(hours=3))

FIELDS: dict[str, dict[str, Any]] = {
    "ID": {"type": "integer", "title": "ID"},
    "TITLE": {"type": "string", "title": "Name"},
    "TYPE_ID": {"type": "crm_status", "statusType": "DEAL_TYPE", "title": "Type"},
    "CATEGORY_ID": {"type": "crm_category", "title": "Pipeline"},
    "STAGE_ID": {"type": "crm_status", "statusType": "DEAL_STAGE", "title": "Deal Stage"},
    "STAGE_SEMANTIC_ID": {"type": "string", "title": "Stage group"},
    "IS_NEW": {"type": "char", "title": "New deal"},
    "PROBABILITY": {"type": "integer", "title": "Probability"},
    "CURRENCY_ID": {"type": "crm_currency", "title": "Currency"},
    "OPPORTUNITY": {"type": "double", "title": "Amount"},
    "TAX_VALUE": {"type": "double", "title": "Tax"},
    "COMPANY_ID": {"type": "crm_company", "title": "Company"},
    "CONTACT_ID": {"type": "crm_contact", "title": "Contact"},
    "BEGINDATE": {"type": "date", "title": "Start date"},
    "CLOSEDATE": {"type": "date", "title": "End date"},
    "OPENED": {"type": "char", "title": "Available to everyone"},
    "CLOSED": {"type": "char", "title": "Closed"},
    "COMMENTS": {"type": "string", "title": "Comment"},
    "ASSIGNED_BY_ID": {"type": "user", "title": "Responsible"},
    "CREATED_BY_ID": {"type": "user", "title": "Created by"},
    "MODIFY_BY_ID": {"type": "user", "title": "Modified by"},
    "DATE_CREATE": {"type": "datetime", "title": "Created on"},
    "DATE_MODIFY": {"type": "datetime", "title": "Modified on"},
    "SOURCE_ID": {"type": "crm_status", "statusType": "SOURCE", "title": "Source"},
    "LEAD_ID": {"type": "crm_lead", "title": "Lead"},
    "ORIGINATOR_ID": {"type": "string", "title": "External source"},
    "UF_CRM_1700000001": {"type": "enumeration", "listLabel": "Region", "title": "UF"},
    "UF_CRM_1700000002": {"type": "boolean", "listLabel": "VIP", "title": "UF"},
    "UF_CRM_1700000003": {"type": "money", "listLabel": "Budget", "title": "UF"},
    "UF_CRM_1700000004": {"type": "string", "listLabel": "Contract no.", "title": "UF"},
    "UF_CRM_1700000005": {"type": "datetime", "listLabel": "Signed at", "title": "UF"},
    "PHONE": {"type": "crm_multifield", "isMultiple": True, "title": "Phone"},
}


def deal_rows(count: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """`count` deals as crm.deal.list returns them: strings, "" or None for empty."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=_PORTAL_TZ)
    stages = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "WON", "LOSE", "C1:NEW"]
    rows = []
    for index in range(1, count + 1):
        created = start + timedelta(seconds=rng.randrange(50_000_000))
        modified = created + timedelta(seconds=rng.randrange(5_000_000))
        closed = rng.random() < 0.3
        row = {
            "ID": str(index),
            "TITLE": f"Deal #{index} for {rng.choice(['Acme', 'Globex', 'Initech', 'Umbrella'])}",
            "TYPE_ID": rng.choice(["SALE", "COMPLEX", "GOODS", "SERVICES"]),
            "CATEGORY_ID": str(rng.randrange(3)),
            "STAGE_ID": rng.choice(stages),
            "STAGE_SEMANTIC_ID": rng.choice(["P", "S", "F"]),
            "IS_NEW": rng.choice("YN"),
            "PROBABILITY": rng.choice(["", "10", "50", "90"]),
            "CURRENCY_ID": rng.choice(["RUB", "USD", "EUR"]),
            "OPPORTUNITY": f"{rng.randrange(100, 10_000_000) / 100:.2f}",
            "TAX_VALUE": "0.00",
            "COMPANY_ID": str(rng.randrange(0, 20_000)),
            "CONTACT_ID": rng.choice([None, str(rng.randrange(1, 50_000))]),
            "BEGINDATE": created.replace(hour=3, minute=0, second=0).isoformat(),
            "CLOSEDATE": (created + timedelta(days=7))
            .replace(hour=3, minute=0, second=0)
            .isoformat(),
            "OPENED": "Y",
            "CLOSED": "Y" if closed else "N",
            "COMMENTS": rng.choice(["", None, "Call back on Monday", "Sent the offer"]),
            "ASSIGNED_BY_ID": str(rng.randrange(1, 300)),
            "CREATED_BY_ID": str(rng.randrange(1, 300)),
            "MODIFY_BY_ID": str(rng.randrange(1, 300)),
            "DATE_CREATE": created.isoformat(),
            "DATE_MODIFY": modified.isoformat(),
            "SOURCE_ID": rng.choice(["CALL", "EMAIL", "WEB", "ADVERTISING", ""]),
            "LEAD_ID": rng.choice([None, str(rng.randrange(1, 100_000))]),
            "ORIGINATOR_ID": None,
            "UF_CRM_1700000001": rng.choice(["", "45", "46", "47"]),
            "UF_CRM_1700000002": rng.choice(["1", "0", False]),
            "UF_CRM_1700000003": rng.choice(["", f"{rng.randrange(1, 99999)}.00|RUB"]),
            "UF_CRM_1700000004": f"C-{rng.randrange(10**6):06d}",
            "UF_CRM_1700000005": rng.choice(["", modified.isoformat()]),
        }
        if index % 10 == 0:
            row["PHONE"] = [
                {"ID": str(index), "VALUE_TYPE": "WORK", "VALUE": f"+7 900 {index:07d}",
                 "TYPE_ID": "PHONE"}
            ]  # fmt: skip
        rows.append(row)
    return rows


def changed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same deals modified an hour later: a new DATE_MODIFY on every row."""
    later = timedelta(hours=1)
    return [
        {**row, "DATE_MODIFY": (datetime.fromisoformat(row["DATE_MODIFY"]) + later).isoformat()}
        for row in rows
    ]


def _run(
    url: str, rows: list[dict[str, Any]], chunk: int, *, convert_in_database: bool = False
) -> dict[str, tuple[float, float, float | None]]:
    """rows/s of wall time, rows per CPU second of this process and the table's size in MB
    (PostgreSQL: table, indexes and child tables), per phase."""
    prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    warehouse = Warehouse(url, table_prefix=prefix, convert_in_database=convert_in_database)
    try:
        layout = warehouse.prepare_table(
            "crm.deal", FIELDS, id_field="ID", change_field="DATE_MODIFY"
        )
        figures = {}
        for phase, sent in (("insert", rows), ("resend", rows), ("update", changed_rows(rows))):
            began, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(sent), chunk):
                warehouse.write_chunk(layout, sent[start : start + chunk])
            figures[phase] = (
                len(rows) / (time.perf_counter() - began),
                len(rows) / (time.process_time() - cpu),
                _size_mb(warehouse, prefix),
            )
        assert warehouse.row_count(layout) == len(rows)
        return figures
    finally:
        _drop(warehouse, prefix)


def _bounds(url: str, rows: list[dict[str, Any]], chunk: int) -> tuple[float, float]:
    """(rows/s of the writer's Python work alone, rows/s of the database alone loading the
    ready rows into an empty table): see the module docstring."""
    prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    warehouse = Warehouse(url, table_prefix=prefix)
    try:
        layout = warehouse.prepare_table(
            "crm.deal", FIELDS, id_field="ID", change_field="DATE_MODIFY"
        )
        synced_at = synced_at_value(layout.dialect)
        began = time.perf_counter()
        ready = [_ready(layout, rows[start : start + chunk], synced_at)
                 for start in range(0, len(rows), chunk)]  # fmt: skip
        python_alone = len(rows) / (time.perf_counter() - began)
        began = time.perf_counter()
        for part in ready:
            with warehouse.transaction() as connection:
                _load(connection, layout, part)
        return python_alone, len(rows) / (time.perf_counter() - began)
    finally:
        _drop(warehouse, prefix)


def _ready(layout: TableLayout, rows: list[dict[str, Any]], synced_at: Any) -> Any:
    if layout.dialect == "mysql":  # LOAD DATA text (`mysql_load`)
        kinds = tuple(spec.kind for spec in layout.columns) + ("datetime", "datetime")
        return _LoadText(tsv_builder(kinds)(convert_rows(layout, rows, synced_at=synced_at)))
    if layout.line_builder is None:
        return convert_rows(layout, rows, synced_at=synced_at)
    lines, values = layout.line_builder
    tail = f"\t{copy_value(synced_at)}\t"
    width = len(layout.columns) + 2
    return "".join(copy_blocks(lines, values, rows, tail, width=width))


def _load(connection: sa.Connection, layout: TableLayout, ready: Any) -> None:
    quote = connection.dialect.identifier_preparer
    table = quote.format_table(layout.table)
    names = ", ".join(quote.quote(name) for name in layout.written_names)
    if layout.dialect == "duckdb":
        types = [layout.table.c[name].type for name in layout.written_names]
        raw = connection.connection.driver_connection
        raw.register("_bench_ready", arrow_table(ready, types))
        raw.execute(f"INSERT INTO {table} ({names}) SELECT * FROM _bench_ready").fetchall()
        raw.unregister("_bench_ready")
        return
    if isinstance(ready, _LoadText):
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        load_into(cursor, table, names, ready)
        assert cursor.rowcount == ready.count("\n")
        return
    if isinstance(ready, str):
        raw = connection.connection.driver_connection
        copy_sql = f"COPY {table} ({names}) FROM STDIN (NULL '')"
        with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:  # type: ignore[union-attr]
            copy.write(ready)
        return
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    markers = ", ".join([marker] * len(layout.written_names))
    connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({markers})", ready)


class _LoadText(str):
    """MySQL's ready rows: LOAD DATA text."""


def _drop(warehouse: Warehouse, prefix: str) -> None:
    quote = warehouse.engine.dialect.identifier_preparer.quote
    with warehouse.engine.begin() as connection:
        for name in sa.inspect(connection).get_table_names():
            if name.startswith((prefix, "_" + prefix)):
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")
    warehouse.engine.dispose()


def _size_mb(warehouse: Warehouse, prefix: str) -> float | None:
    if warehouse.engine.dialect.name != "postgresql":
        return None
    with warehouse.engine.connect() as connection:
        size = connection.exec_driver_sql(
            "SELECT sum(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relkind = 'r' AND relname LIKE %s",
            (prefix + "%",),
        ).scalar()
    return float(size or 0) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=20_000)
    parser.add_argument("--postgres-url", default=os.environ.get("BITRIX24_TEST_POSTGRES_URL"))
    parser.add_argument("--mysql-url", default=os.environ.get("BITRIX24_TEST_MYSQL_URL"))
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per dialect, each on fresh tables; prints the median and range")  # fmt: skip
    parser.add_argument(
        "--pg-convert-in-sql",
        action="store_true",
        help="PostgreSQL: stage raw text and convert in SQL (convert_in_database)",
    )
    parser.add_argument("--only", help="comma-separated dialects to run, e.g. mysql,duckdb")
    options = parser.parse_args()
    began = time.perf_counter()
    rows = deal_rows(options.rows)
    print(f"generated {len(rows):,} deal rows ({len(FIELDS)} fields) in "
          f"{time.perf_counter() - began:.1f} s; chunks of {options.chunk:,}")  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        urls = {"sqlite": f"sqlite:///{directory}/bench.sqlite",
                "duckdb": f"duckdb:///{directory}/bench.duckdb",
                "postgresql": options.postgres_url, "mysql": options.mysql_url}  # fmt: skip
        for dialect, url in urls.items():
            if options.only and dialect not in options.only.split(","):
                continue
            if not url:
                print(f"{dialect:>10}: skipped (no URL)")
                continue
            in_database = options.pg_convert_in_sql and dialect == "postgresql"
            rates: dict[str, list[float]] = {}
            for _ in range(options.repeat):
                figures = _run(url, rows, options.chunk, convert_in_database=in_database)
                for phase, (rate, cpu_rate, size) in figures.items():
                    rates.setdefault(phase, []).append(rate)
                    on_disk = "" if size is None else f"; tables {size:.0f} MB after it"
                    print(
                        f"{dialect:>10} {phase}: {rate:>9,.0f} rows/s ({_ratio(rate, dialect)}); "
                        f"{cpu_rate:,.0f} rows per CPU second of the writer process{on_disk}"
                    )
            if options.repeat > 1:
                for phase, values in rates.items():
                    median = statistics.median(values)
                    print(
                        f"{dialect:>10} {phase} median of {len(values)}: {median:>9,.0f} rows/s "
                        f"({_ratio(median, dialect)}); range {min(values):,.0f}-{max(values):,.0f}"
                    )
            if in_database:
                continue
            python_alone, database_alone = _bounds(url, rows, options.chunk)
            insert = statistics.median(rates["insert"])
            print(
                f"{dialect:>10} bounds on this host: the writer's Python work alone "
                f"{python_alone:,.0f} rows/s, the database alone loading ready rows "
                f"{database_alone:,.0f} rows/s; the insert reaches "
                f"{insert / min(python_alone, database_alone):.2f} of the lower bound"
            )


def _ratio(rate: float, dialect: str) -> str:
    target = TARGETS[dialect]
    return f"{rate / target:.2f}x the {target:,} rows/s target" if target else "no target"


if __name__ == "__main__":
    main()
