"""Export every deal with our engine and with fast_bitrix24, against the same emulated portal.

    python benchmarks/export_vs_fast_bitrix24.py --deals 200000 --time-scale 1.0 \
        --cost-profile calibrated
    python benchmarks/export_vs_fast_bitrix24.py --entity tasks --rows 200000 \
        --time-scale 0.01 --skip-fast-bitrix24

`--entity` picks what is exported: deals (crm.deal.list), tasks (tasks.task.list) or smart
(crm.item.list of the smart process 128); `--rows` sizes it (`--deals` is its old name).
`--cost-profile` is the emulator's (calibrated, optimistic, pessimistic: see
bitrix_core/emulator/costs.py). Each client gets a fresh emulator process (the same profile,
standard plan, seed and time scale) so neither inherits the other's spent budget, and each is configured with the
plan's limits scaled by the same factor. fast_bitrix24 (install it for the benchmark only:
`pip install fast-bitrix24`) runs in a child process that is stopped after
`--fast-bitrix24-seconds`; its throughput is the rows the portal served it divided by the time
it ran, so a run that fails or is stopped still counts what it got.

The last line is the contract:
rows=<n> ours_rows_per_s=<x> limit_rows_per_s=<m> ratio_vs_limit=<x/m>
ratio_vs_fast_bitrix24=<x/y> limit_errors=<503+429 our engine received>

Our engine exports the way a user exporting a whole table would: `client.list(...,
order=None)`, rows streamed as pages complete (the Dagster sync does the same; every row comes
once, ascending order is not needed to store them). The contract line measures that mode.
`--order both` (the default) also exports with `order="id"` (rows in ascending id order, for
a caller who needs them so) on a fresh emulator and prints that run on its own line.

`limit_rows_per_s` is computed from the cost profile, not measured: the fastest any client could
export n rows given the request bucket (burst, then drain), the per-method operating budget
and the cost model (a page of 50 rows with start=-1; the last batch's 50 pages run one after
another on the server).
"""

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from bitrix_core import BitrixClient, Limits
from bitrix_core.emulator.costs import CostProfile
from bitrix_core.emulator.limits import Plan

PAGE = 50
BATCH = 50
ADMIN_TOKEN = "benchmark-admin-token"
#: entity -> (list method, parameters, emulator size option)
EXPORTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "deals": ("crm.deal.list", {"select": ["*", "UF_*"]}, "--deals"),
    "tasks": ("tasks.task.list", {}, "--tasks"),
    "smart": ("crm.item.list", {"entityTypeId": 128}, "--smart-items"),
}
FAST_BITRIX24_CHILD = r"""
import json, sys, fast_bitrix24, fast_bitrix24.srh as srh
url, scale, method, params = sys.argv[1], float(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
srh.BITRIX_MEASUREMENT_PERIOD = 600 * scale
b = fast_bitrix24.Bitrix(url, verbose=False, request_pool_size=50,
                         requests_per_second=2.0 / scale,
                         operating_time_limit=max(1, round(480 * scale)))
rows = b.get_all(method, params=params)
print(len(rows), flush=True)
"""


def ideal_export_seconds(
    rows: int, *, plan: Plan, cost: CostProfile, method: str, time_scale: float
) -> float:
    """The least time the profile allows for exporting `rows` rows, in real seconds."""
    pages = math.ceil(rows / PAGE)
    requests = math.ceil(pages / BATCH)
    page_s = cost.processing(method, rows=PAGE, counted=0, offset=0)
    bucket_s = 0.0
    if plan.bucket_size is not None and requests > plan.bucket_size:
        bucket_s = (requests - plan.bucket_size) / plan.drain_per_s
    operating_s = 0.0
    total_operating = pages * page_s
    if plan.operating_limit_s is not None and total_operating > plan.operating_limit_s:
        # A window holds at most the budget; what is spent in one minute frees up all at
        # once a window after that minute's first call (b24restdocs
        # settings/performance/limits.md): so budget-bound work ends no sooner than
        # (budgets needed - 1) windows after it starts.
        window = plan.basket_s * plan.baskets
        operating_s = (math.ceil(total_operating / plan.operating_limit_s) - 1) * window
    last_batch_s = min(pages, BATCH) * page_s
    return (max(bucket_s, operating_s) + last_batch_s) * time_scale


class EmulatorProcess:
    """`bitrix24-emulator` in a child process, so it does not share our interpreter."""

    def __init__(
        self, *, size_option: str, rows: int, time_scale: float, seed: int, profile: str
    ) -> None:
        self.args = [
            sys.executable, "-m", "bitrix_core.emulator", "--host", "127.0.0.1", "--port", "0",
            "--seed", str(seed), "--plan", "standard", "--time-scale", str(time_scale),
            "--cost-profile", profile, "--admin-token", ADMIN_TOKEN, size_option, str(rows),
        ]
        if size_option != "--deals":
            self.args += ["--deals", "1000"]
        self.proc: subprocess.Popen[str] | None = None
        self.webhook_url = ""
        self.start_s = 0.0

    def __enter__(self) -> "EmulatorProcess":
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.webhook_url = line[line.index("http://"):].split()[0]
        self.start_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)

    def counters(self) -> dict[str, Any]:
        """The portal's per-method counters from its admin API."""
        base = self.webhook_url.split("/rest/")[0]
        request = urllib.request.Request(
            f"{base}/_emulator/counters", headers={"X-Emulator-Admin-Token": ADMIN_TOKEN}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


async def export_with_ours(
    url: str, time_scale: float, entity: str, *, ordered: bool
) -> tuple[int, float, int]:
    """Rows, seconds, and the limit errors (503 + 429) our engine received."""
    limits = Limits.for_plan("standard").scaled(time_scale)
    method, params, _ = EXPORTS[entity]
    async with BitrixClient(url, limits=limits, verbose=False) as client:
        started = time.perf_counter()
        run = client.list(method, params, order="id" if ordered else None)
        rows = 0
        async for page in run:
            rows += len(page.rows)
        elapsed = time.perf_counter() - started
    return rows, elapsed, run.stats.limit_errors


def export_with_fast_bitrix24(
    url: str, time_scale: float, entity: str, cap_s: float
) -> tuple[str, float]:
    """Run fast_bitrix24 in a child process for at most `cap_s`; (outcome, seconds)."""
    started = time.perf_counter()
    method, params, _ = EXPORTS[entity]
    child = subprocess.Popen(
        [sys.executable, "-c", FAST_BITRIX24_CHILD, url, str(time_scale), method,
         json.dumps(params)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = child.communicate(timeout=cap_s)
        outcome = f"finished ({out.strip()} rows)" if child.returncode == 0 else (
            "failed: " + (err.strip().splitlines() or ["?"])[-1][:160]
        )
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        outcome = f"stopped after {cap_s:.0f} s"
    return outcome, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entity", choices=sorted(EXPORTS), default="deals")
    parser.add_argument("--rows", "--deals", dest="rows", type=int, default=200_000)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--cost-profile", default="calibrated",
                        choices=["calibrated", "optimistic", "pessimistic"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fast-bitrix24-seconds", type=float, default=120.0)
    parser.add_argument("--skip-fast-bitrix24", action="store_true")
    parser.add_argument(
        "--order", choices=["none", "id", "both"], default="both",
        help="our export's row order; the last line reports the last run (order=None if run)",
    )
    args = parser.parse_args()
    scale = args.time_scale
    method, _, size_option = EXPORTS[args.entity]
    emulator = {"size_option": size_option, "rows": args.rows, "time_scale": scale,
                "seed": args.seed, "profile": args.cost_profile}
    print(f"profile: {args.cost_profile}; {args.entity} ({method}), {args.rows} rows, "
          f"time scale {scale}", flush=True)

    runs = {"none": [False], "id": [True], "both": [True, False]}[args.order]
    for ordered in runs:  # the unordered run (the contract line's) last
        with EmulatorProcess(**emulator) as portal:
            print(f"emulator: {args.rows} rows ready in {portal.start_s:.1f} s", flush=True)
            rows, ours_s, limit_errors = asyncio.run(
                export_with_ours(portal.webhook_url, scale, args.entity, ordered=ordered)
            )
            served = portal.counters()["total"]
        ours = rows / ours_s
        print(f"ours ({'order=id' if ordered else 'order=None'}): {rows} rows in {ours_s:.2f} s "
              f"({ours:,.0f} rows/s); portal saw {served['requests']} requests, "
              f"{served['status_503']} x 503, {served['status_429']} x 429, "
              f"{served.get('status_500', 0)} x 500", flush=True)

    limit_s = ideal_export_seconds(
        args.rows, plan=Plan.for_name("standard"), cost=CostProfile.for_name(args.cost_profile),
        method=method, time_scale=scale,
    )
    limit = args.rows / limit_s
    print(f"limit: {limit_s:.2f} s for {args.rows} rows ({limit:,.0f} rows/s)", flush=True)

    fast = float("nan")
    if not args.skip_fast_bitrix24:
        with EmulatorProcess(**emulator) as portal:
            outcome, fast_s = export_with_fast_bitrix24(
                portal.webhook_url, scale, args.entity, args.fast_bitrix24_seconds
            )
            methods = portal.counters()["methods"] or {}  # PHP-style: an empty map is []
            served_fast = methods.get(method, {})
        fast = served_fast.get("rows", 0) / fast_s
        print(f"fast_bitrix24: {outcome}; portal served it {served_fast.get('rows', 0)} rows "
              f"in {fast_s:.1f} s ({fast:,.0f} rows/s), {served_fast.get('status_429', 0)} x 429",
              flush=True)

    ratio_fast = ours / fast if fast > 0 else float("inf")
    print(
        f"rows={rows} ours_rows_per_s={ours:.0f} limit_rows_per_s={limit:.0f} "
        f"ratio_vs_limit={ours / limit:.3f} ratio_vs_fast_bitrix24={ratio_fast:.1f} "
        f"limit_errors={limit_errors}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
