"""How many full deal rows per second the emulator serves over HTTP.

    .venv/bin/python benchmarks/emulator_throughput.py                  # 100,000 deals
    .venv/bin/python benchmarks/emulator_throughput.py --deals 200000 --pages 400 --batches 20

Starts `python -m bitrix_core.emulator` in a child process (unlimited plan, tiny time scale,
so only the emulator's own CPU limits it), then pulls from this process with a plain aiohttp
client: `--pages` single keyset pages (`crm.deal.list`, select `*` + `UF_*`, `>ID` filter,
`start=-1`) and `--batches` batches of 50 such pages. Requests run `--concurrency` at a
time. Prints rows/s for each and the emulator's CPU seconds per 1,000 rows.
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlencode

import aiohttp

try:  # the client's own JSON parsing should not be what limits the measurement
    from orjson import loads
except ImportError:
    from json import loads

PAGE = 50
BATCH = 50
SELECT = {"select[0]": "*", "select[1]": "UF_*"}


def page_query(after_id: int) -> dict[str, str]:
    """The query of one keyset page of full deal rows after `after_id`."""
    return {**SELECT, "filter[>ID]": str(after_id), "order[ID]": "ASC", "start": "-1"}


def child_cpu_s(pid: int) -> float:
    """User + system CPU seconds the child process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def pull(url: str, bodies: list[dict[str, str]], *, path: str, concurrency: int,
               rows_of) -> int:
    """POST every form body to `path`, `concurrency` at a time; the rows received."""
    queue = list(reversed(bodies))
    total = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal total
        while queue:
            body = queue.pop()
            async with session.post(url + path, data=body) as response:
                payload = loads(await response.read())
            if "result" not in payload:
                raise RuntimeError(f"error answer: {payload}")
            total += rows_of(payload["result"])

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return total


def batch_rows(result: dict) -> int:
    """Rows in a batch answer (sections may be `[]` when empty)."""
    pages = result["result"]
    return sum(len(rows) for rows in (pages.values() if isinstance(pages, dict) else pages))


async def measure(url: str, pid: int, *, deals: int, pages: int, batches: int,
                  concurrency: int) -> None:
    step = max(1, deals // max(pages, 1))
    singles = [page_query((i * step) % deals) for i in range(pages)]
    await pull(url, singles[:concurrency], path="crm.deal.list", concurrency=concurrency,
               rows_of=len)  # warm-up
    for label, bodies, path, rows_of in (
        ("single pages", singles, "crm.deal.list", len),
        ("50-page batches", [
            {f"cmd[c{c}]": "crm.deal.list?" + urlencode(
                page_query(((b * BATCH + c) * PAGE * 3) % deals)) for c in range(BATCH)}
            for b in range(batches)], "batch", batch_rows),
    ):
        cpu, started = child_cpu_s(pid), time.perf_counter()
        rows = await pull(url, bodies, path=path, concurrency=concurrency, rows_of=rows_of)
        wall, cpu = time.perf_counter() - started, child_cpu_s(pid) - cpu
        print(f"{label:>16}: {rows:,} rows in {wall:.2f} s = {rows / wall:,.0f} rows/s;"
              f" emulator CPU {cpu:.2f} s ({rows / max(cpu, 1e-9):,.0f} rows per CPU s)",
              flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bitrix_core.emulator", "--port", "0", "--deals", str(args.deals),
         "--plan", "unlimited", "--time-scale", "0.00001"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        url = line[line.index("http://"):].split()[0]
        url = url if url.endswith("/") else url + "/"
        print(f"emulator: {args.deals:,} deals ready in {time.perf_counter() - started:.1f} s",
              flush=True)
        asyncio.run(measure(url, proc.pid, deals=args.deals, pages=args.pages,
                            batches=args.batches, concurrency=args.concurrency))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
