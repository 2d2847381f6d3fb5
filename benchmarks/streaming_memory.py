"""Peak memory of our client while streaming crm.deal.list: 100,000 rows against 1,000,000.

    python benchmarks/streaming_memory.py --small 100000 --large 1000000

For each size an emulator subprocess (unlimited plan, tiny time scale) serves the deals, and
a fresh client process streams every page (select ID, TITLE, STAGE_ID, OPPORTUNITY), keeping
only a row count; the client reports its own peak RSS. The engine streams, so the peak must
not grow with the table: the last line is

rows_small=<n> rows_large=<m> peak_small_mb=<a> peak_large_mb=<b> ratio=<b/a>
"""

import argparse
import asyncio
import resource
import signal
import subprocess
import sys
import time

SELECT = ["ID", "TITLE", "STAGE_ID", "OPPORTUNITY"]


async def stream(url: str, *, ordered: bool) -> int:
    """Stream every deal page; the number of rows seen."""
    from bitrix_core import BitrixClient, Limits

    rows = 0
    async with BitrixClient(url, limits=Limits.for_plan("unlimited"), verbose=False) as client:
        run = client.list("crm.deal.list", {"select": SELECT}, order="id" if ordered else None)
        async for page in run:
            rows += len(page.rows)
    return rows


def measure(deals: int, *, time_scale: float, ordered: bool) -> tuple[int, float, float]:
    """(rows, seconds, client peak RSS in MB) for one emulator of `deals` deals."""
    emulator = subprocess.Popen(
        [sys.executable, "-m", "bitrix_core.emulator", "--host", "127.0.0.1", "--port", "0",
         "--deals", str(deals), "--plan", "unlimited", "--time-scale", str(time_scale)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert emulator.stdout is not None
        line = emulator.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        url = line[line.index("http://"):].split()[0]
        child = subprocess.run(
            [sys.executable, __file__, "--child", url, "--ordered" if ordered else "--unordered"],
            capture_output=True, text=True, check=True,
        )
        rows, seconds, peak = child.stdout.split()
        return int(rows), float(seconds), float(peak)
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(timeout=60)


def child(url: str, *, ordered: bool) -> None:
    """Runs in the client process: stream, then print rows, seconds and peak RSS (MB)."""
    started = time.perf_counter()
    rows = asyncio.run(stream(url, ordered=ordered))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(rows, round(time.perf_counter() - started, 2), round(peak_mb, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--time-scale", type=float, default=0.001)
    parser.add_argument("--unordered", action="store_true", help="order=None instead of id")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--ordered", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, ordered=not args.unordered)
        return 0
    results = []
    for deals in (args.small, args.large):
        rows, seconds, peak = measure(
            deals, time_scale=args.time_scale, ordered=not args.unordered
        )
        print(f"{rows} rows streamed in {seconds:.1f} s, client peak RSS {peak:.1f} MB",
              flush=True)
        results.append((rows, peak))
    (small_rows, small_peak), (large_rows, large_peak) = results
    print(f"rows_small={small_rows} rows_large={large_rows} peak_small_mb={small_peak:.1f} "
          f"peak_large_mb={large_peak:.1f} ratio={large_peak / small_peak:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
