"""Many portals synced by Celery workers at once: does each portal keep its own limits?

    python benchmarks/distributed_sync.py --portals 3 --workers 2 --deals 50000 --limiter redis
    python benchmarks/distributed_sync.py --portals 1 --workers 2 --deals 50000 --limiter none

Starts `--portals` emulated portals (`python -m bitrix_core.emulator`, standard plan, real
time, `--deals` deals each, seeds 1..n), `--workers` Celery workers (`dagster-celery worker
start`, `--concurrency` steps each) and one run of `bitrix24_portals_job` from
`benchmarks/distributed_defs.py` (`build_bitrix24_portals`, the Celery executor, Redis as
broker and result backend) into a fresh SQLite file (or `--warehouse-url`). Each portal is
one step; with fewer portals than workers each portal is synced by workers/portals steps
(copies into tables of their own), so every worker has a step on it. `--limiter redis`
gives every step the shared Redis limiter (`limiter_url`); `--limiter none` lets each
step pace only itself.

The last line is the contract:
portals=<n> rows=<rows written> limit_errors=<503+429 the portals sent> equal=<portals whose
every table holds exactly the portal's deals (id, title, amount)> wall_s=<first step start
to last step end> limit_s=<the plan's limit time for the busiest portal>

`limit_s` is computed, not measured: the fastest any client could read the busiest portal's
rows (all its steps') under the standard plan and the calibrated cost profile (the bucket's
burst then its drain, the operating budget, the last batch's pages), as in
export_vs_fast_bitrix24.py. The line before it gives the run's whole wall time (launch,
Celery dispatch and code loading included).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from export_vs_fast_bitrix24 import ideal_export_seconds

from bitrix_core.emulator.costs import CostProfile
from bitrix_core.emulator.limits import Plan
from bitrix_core.emulator.sizes import PortalSizes
from bitrix_core.emulator.store import PortalStore

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ADMIN_TOKEN = "distributed-benchmark-admin-token"
JOB = "bitrix24_portals_job"


def start_portal(seed: int, deals: int) -> tuple[subprocess.Popen[str], str]:
    """An emulator subprocess (standard plan, real time) and its webhook URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bitrix_core.emulator", "--plan", "standard", "--time-scale",
         "1", "--deals", str(deals), "--seed", str(seed), "--port", "0",
         "--admin-token", ADMIN_TOKEN],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if "http://" not in line:
        process.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return process, line[line.index("http://") :].split()[0]


def admin(webhook_url: str, path: str) -> Any:
    base = "/".join(webhook_url.split("/")[:3])
    request = urllib.request.Request(
        f"{base}/_emulator/{path}", headers={"X-Emulator-Admin-Token": ADMIN_TOKEN}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def warm_up(webhook_url: str) -> None:
    """Generate the portal's deals before the clock starts (one small request)."""
    url = f"{webhook_url}crm.deal.list.json?select[]=ID&start=-1"
    with urllib.request.urlopen(url, timeout=120) as answer:
        answer.read()


def start_workers(
    workers: list, count: int, concurrency: int, env: dict[str, str], folder: Path
) -> None:
    """Start `count` Celery workers (each its own session, added to `workers` at once so
    they are stopped whatever happens) on this run's queue; return once each is ready."""
    config = folder / "celery.yaml"
    config.write_text(
        "execution:\n  config:\n    broker: {env: CELERY_BROKER_URL}\n"
        "    backend: {env: CELERY_BROKER_URL}\n"
    )
    for n in range(count):
        log = open(folder / f"worker{n}.log", "w")  # noqa: SIM115 - closed with the worker
        process = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(config), "-q", env["BENCH_QUEUE"], "-n", f"bench{n}-{uuid.uuid4().hex[:6]}",
             "--",
             "--concurrency", str(concurrency)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        workers.append((process, log, folder / f"worker{n}.log"))
    deadline = time.monotonic() + 120
    while not all(" ready." in path.read_text() for _, _, path in workers):
        if time.monotonic() > deadline or any(p.poll() is not None for p, _, _ in workers):
            tails = "\n".join(path.read_text()[-2000:] for _, _, path in workers)
            raise RuntimeError(f"Celery workers did not start:\n{tails}")
        time.sleep(0.5)
    return workers


def stop_workers(workers: list) -> None:
    for process, _, _ in workers:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process, log, _ in workers:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def init_instance(home: Path) -> None:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        instance.get_runs(limit=1)


def step_span(home: Path) -> float:
    """Seconds from the run's first step start to its last step end (the instance's log)."""
    from dagster import DagsterEventType, DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        [run] = instance.get_runs(limit=1)
        if not run.is_success:
            raise RuntimeError(f"the run ended {run.status}: see the worker logs in {home.parent}")
        events = [e for e in instance.all_logs(run.run_id) if e.is_dagster_event]
        starts = [e.timestamp for e in events
                  if e.dagster_event_type == DagsterEventType.STEP_START]  # fmt: skip
        ends = [e.timestamp for e in events
                if e.dagster_event_type == DagsterEventType.STEP_SUCCESS]  # fmt: skip
    return max(ends) - min(starts)


def portal_deals(seed: int, deals: int) -> dict[int, tuple]:
    """What the emulator started with `seed` and `deals` serves: {id: (title, amount)}."""
    store = PortalStore(seed=seed, sizes=PortalSizes(deals=deals))
    return {
        row["ID"]: (row["TITLE"], round(float(row["OPPORTUNITY"] or 0), 2))
        for row in store.raw_rows("crm.deal")
    }


def stored_deals(engine: sa.Engine, table: str) -> dict[int, tuple]:
    reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
    query = sa.select(reflected.c.id, reflected.c.title, reflected.c.opportunity).where(
        reflected.c._deleted_at.is_(None)
    )
    with engine.connect() as connection:
        return {
            int(key): (title, round(float(amount or 0), 2))
            for key, title, amount in connection.execute(query)
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portals", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="steps per worker at once")
    parser.add_argument("--deals", type=int, default=50_000)
    parser.add_argument("--limiter", choices=["redis", "none"], default="redis")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BITRIX24_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Celery broker and result backend, and the shared limiter",
    )
    parser.add_argument("--warehouse-url", help="a SQLAlchemy URL (default: a fresh SQLite file)")
    options = parser.parse_args()
    copies = max(1, options.workers // options.portals)

    with tempfile.TemporaryDirectory(prefix="distributed_sync_") as directory:
        folder = Path(directory)
        home = folder / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        init_instance(home)  # the workers would race to create its storage
        warehouse_url = options.warehouse_url or f"sqlite:///{folder / 'warehouse.sqlite'}"
        prefix = f"dist{uuid.uuid4().hex[:6]}_"
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the workers' `celery`
            "DAGSTER_HOME": str(home),
            "CELERY_BROKER_URL": options.redis_url,
            "BENCH_WAREHOUSE_URL": warehouse_url,
            "BENCH_LIMITER_URL": options.redis_url if options.limiter == "redis" else "",
            "BENCH_TABLE_PREFIX": prefix,
            "BENCH_QUEUE": f"bitrix24-bench-{uuid.uuid4().hex[:8]}",
        }
        portals: list[tuple[subprocess.Popen[str], str]] = []
        workers: list = []
        try:
            began = time.perf_counter()
            portals = [start_portal(seed, options.deals) for seed in range(1, options.portals + 1)]
            for _, url in portals:
                warm_up(url)
            names = []
            for seed, (_, url) in enumerate(portals, start=1):
                env[f"BENCH_P{seed}_WEBHOOK"] = url
                for copy in range(1, copies + 1):
                    name = f"p{seed}" if copies == 1 else f"p{seed}_{copy}"
                    names.append((name, f"BENCH_P{seed}_WEBHOOK"))
            env["BENCH_PORTALS"] = json.dumps(names)
            print(f"{options.portals} portal(s) of {options.deals:,} deals ready in "
                  f"{time.perf_counter() - began:.1f} s; {len(names)} step(s)", flush=True)  # fmt: skip
            start_workers(workers, options.workers, options.concurrency, env, folder)
            before = [admin(url, "counters")["total"] for _, url in portals]
            began = time.perf_counter()
            run = subprocess.run(
                [str(BIN / "dagster"), "job", "execute", "-f", str(HERE / "distributed_defs.py"),
                 "-j", JOB],
                env=env, capture_output=True, text=True, timeout=1800,
            )  # fmt: skip
            if run.returncode:
                raise RuntimeError(f"the run failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
            run_s = time.perf_counter() - began
            after = [admin(url, "counters")["total"] for _, url in portals]
            wall_s = step_span(home)
        finally:
            stop_workers(workers)
            for process, _ in portals:
                process.terminate()
                process.wait(timeout=30)
        limit_errors = sum(
            (a["status_503"] - b["status_503"]) + (a["status_429"] - b["status_429"])
            for a, b in zip(after, before, strict=True)
        )
        engine = sa.create_engine(warehouse_url)
        rows = equal = 0
        try:
            for seed in range(1, options.portals + 1):
                expected = portal_deals(seed, options.deals)
                tables = [f"{prefix}{name}_crm_deal" for name, variable in names
                          if variable == f"BENCH_P{seed}_WEBHOOK"]  # fmt: skip
                stored = [stored_deals(engine, table) for table in tables]
                rows += sum(len(table) for table in stored)
                equal += all(table == expected for table in stored)
            if options.warehouse_url:
                metadata = sa.MetaData()
                metadata.reflect(engine, only=lambda name, _: prefix in name)
                metadata.drop_all(engine)
        finally:
            engine.dispose()
    limit_s = ideal_export_seconds(
        options.deals * copies,
        plan=Plan.for_name("standard"),
        cost=CostProfile.for_name("calibrated"),
        method="crm.deal.list",
        time_scale=1.0,
    )
    print(f"run (launch to end, Celery dispatch and code loading included): {run_s:.1f} s")
    print(
        f"portals={options.portals} rows={rows} limit_errors={limit_errors} equal={equal} "
        f"wall_s={wall_s:.2f} limit_s={limit_s:.2f}"
    )


if __name__ == "__main__":
    main()
