"""A 200,000-deal sync of crm.deal from the emulator into a warehouse: is the writer the limit?

Starts the emulator as a subprocess (standard plan, real time), runs the real sync path
(`EntitySync` with a `BitrixClient` and a `Warehouse`) into a fresh SQLite file (or, with
`--warehouse-url`, fresh tables under a unique prefix in that database, dropped after), and times
every `write_chunk` call. Prints the wall time, rows/s of the whole sync, the writer's busy
fraction (seconds inside write_chunk / wall seconds) and the writer's own rows/s: a busy
fraction well under 1 means the portal, not the writer, sets the pace.

    .venv/bin/python benchmarks/sync_throughput.py --deals 200000
    .venv/bin/python benchmarks/sync_throughput.py --deals 200000 \
        --warehouse-url postgresql+psycopg://postgres@127.0.0.1:5432/bitrix24_test
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from bitrix_core import ENTITIES, BitrixClient, Limits
from dagster_bitrix24.sync import EntitySync, SyncOptions
from dagster_bitrix24.warehouse import TableLayout, Warehouse, WriteCounts


class TimedWarehouse(Warehouse):
    """A Warehouse that adds up the wall and CPU seconds spent in write_chunk."""

    busy_s = 0.0
    cpu_s = 0.0
    rows = 0

    def write_chunk(
        self, layout: TableLayout, rows: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> WriteCounts:
        began, cpu = time.perf_counter(), time.thread_time()
        try:
            return super().write_chunk(layout, rows, **kwargs)
        finally:
            self.busy_s += time.perf_counter() - began
            self.cpu_s += time.thread_time() - cpu
            self.rows += len(rows)


def start_emulator(deals: int, plan: str, time_scale: float) -> tuple[subprocess.Popen[str], str]:
    """The emulator subprocess and its webhook URL (read from its ready line)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bitrix_core.emulator", "--plan", plan, "--time-scale",
         str(time_scale), "--deals", str(deals), "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if "http" in line:
            return process, line.split()[-1]
    process.kill()
    raise RuntimeError("the emulator exited before printing its webhook URL")


async def sync(url: str, warehouse: Warehouse, *, plan: str, chunk_rows: int) -> Any:
    async with BitrixClient(url, limits=Limits.for_plan(plan)) as client:
        job = EntitySync(
            client=client, warehouse=warehouse, spec=ENTITIES["crm.deal"],
            options=SyncOptions(chunk_rows=chunk_rows),
        )  # fmt: skip
        return await job.run()


def drop_tables(warehouse: Warehouse, prefix: str) -> None:
    """Drop the tables this run made (a shared database keeps no benchmark leftovers)."""
    quote = warehouse.engine.dialect.identifier_preparer.quote
    names = sa.inspect(warehouse.engine).get_table_names(schema=warehouse.schema)
    with warehouse.engine.begin() as connection:
        for name in names:
            if name.startswith((prefix, f"_{prefix}")):
                connection.execute(sa.text(f"DROP TABLE {quote(name)}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=200_000)
    parser.add_argument("--plan", default="standard")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--chunk-rows", type=int, default=SyncOptions().chunk_rows)
    parser.add_argument("--warehouse-url", help="a SQLAlchemy URL (default: a fresh SQLite file)")
    options = parser.parse_args()
    began = time.perf_counter()
    process, url = start_emulator(options.deals, options.plan, options.time_scale)
    print(f"emulator with {options.deals:,} deals ready in {time.perf_counter() - began:.1f} s")
    try:
        with tempfile.TemporaryDirectory() as directory:
            prefix = f"bench_{uuid.uuid4().hex[:8]}_"
            warehouse = TimedWarehouse(
                options.warehouse_url or f"sqlite:///{directory}/sync.sqlite", table_prefix=prefix
            )
            try:
                began = time.perf_counter()
                result = asyncio.run(
                    sync(url, warehouse, plan=options.plan, chunk_rows=options.chunk_rows)
                )
                wall = time.perf_counter() - began
            finally:
                drop_tables(warehouse, prefix)
                warehouse.engine.dispose()
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"synced {result.rows:,} deals ({result.inserted:,} inserted) in {wall:.1f} s: "
          f"{result.rows / wall:,.0f} rows/s; {result.stats.requests} requests")  # fmt: skip
    print(f"writer busy {warehouse.busy_s:.1f} s of {wall:.1f} s = "
          f"{warehouse.busy_s / wall:.1%} of the wall time; writer "
          f"{warehouse.rows / warehouse.busy_s:,.0f} rows/s while busy, "
          f"{warehouse.rows / warehouse.cpu_s:,.0f} rows per CPU second")  # fmt: skip


if __name__ == "__main__":
    main()
