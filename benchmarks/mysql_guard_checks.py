"""What the MySQL/MariaDB writer's post-write guard checks cost, in one run, on both paths.

MySQL's affected rows count 1 or 2 per row, so a row the guard refused can hide behind an
older version another writer inserted meanwhile. The writer therefore checks after every
write that may hide one: the bulk path (LOAD DATA) reads the refused ids under lock with
one join on the server, and row batches (`mysql_bulk_load=False`, or a server refusing
LOCAL INFILE) compare the count and sum of the stored change values with theirs under lock
whenever the chunk held a new id. This writes realistic deal rows (`writer_throughput`'s)
by each path, insert then update, and prints the share of the write time the check took,
timed around the check itself in the same run (a shared host slows both alike).

    .venv/bin/python benchmarks/mysql_guard_checks.py --rows 100000 \\
        --mysql-url mysql+pymysql://root@127.0.0.1:3306/bitrix24_test
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from writer_throughput import FIELDS, _drop, changed_rows, deal_rows

from dagster_bitrix24.warehouse import Warehouse
from dagster_bitrix24.warehouse.dialects import MysqlWriter, mysql_load


def _timed(owner: Any, name: str, spent: list[float], only: Callable[..., bool]) -> None:
    """Wrap `owner.name` so its calls for which `only(kwargs)` holds add to `spent[0]`."""
    original = getattr(owner, name)

    def timing(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if only(kwargs):
                spent[0] += time.perf_counter() - began

    setattr(owner, name, timing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=20_000)
    parser.add_argument("--mysql-url", default=os.environ.get("BITRIX24_TEST_MYSQL_URL"))
    options = parser.parse_args()
    if not options.mysql_url:
        parser.error("give --mysql-url or set BITRIX24_TEST_MYSQL_URL")
    spent = [0.0]
    _timed(mysql_load, "refused_ids", spent, lambda kwargs: kwargs.get("latest", False))
    _timed(MysqlWriter, "_none_refused", spent, lambda kwargs: True)
    rows = deal_rows(options.rows)
    phases = {"insert": rows, "update": changed_rows(rows)}
    for bulk in (True, False):
        prefix = f"gc{uuid.uuid4().hex[:6]}_"
        warehouse = Warehouse(options.mysql_url, table_prefix=prefix, mysql_bulk_load=bulk)
        try:
            layout = warehouse.prepare_table("crm.deal", FIELDS, id_field="ID",
                                             change_field="DATE_MODIFY")  # fmt: skip
            for phase, chunks in phases.items():
                spent[0] = 0.0
                began = time.perf_counter()
                for start in range(0, len(chunks), options.chunk):
                    warehouse.write_chunk(layout, chunks[start : start + options.chunk])
                total = time.perf_counter() - began
                path = "LOAD DATA  " if bulk else "row batches"
                print(f"{path} {phase}: {len(chunks) / total:,.0f} rows/s; the guard check "
                      f"{spent[0]:.2f} s of {total:.1f} s = {spent[0] / total:.1%}")  # fmt: skip
        finally:
            _drop(warehouse, prefix)


if __name__ == "__main__":
    main()
