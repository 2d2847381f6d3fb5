"""How long an emulated portal takes to start, and its peak memory, by portal size.

    .venv/bin/python benchmarks/emulator_startup.py              # 1,000,000 deals
    .venv/bin/python benchmarks/emulator_startup.py 10000 100000

Each size runs in a fresh subprocess so peak RSS belongs to that portal alone. Start-up
generates users, departments and deals; the other entities are generated on first use, and
the time of that is reported too (`first use of the rest`).
"""

import json
import resource
import subprocess
import sys
import time

from bitrix_core.emulator.methods import PortalMethods
from bitrix_core.emulator.store import PortalSizes, PortalStore


def measure(deals: int) -> dict:
    """Start a portal of `deals` deals; time it, one page with COUNT, one keyset page."""
    started, cpu = time.perf_counter(), time.process_time()
    store = PortalStore(seed=1, sizes=PortalSizes(deals=deals))
    start_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    methods = PortalMethods(store)
    t = time.perf_counter()
    counted = methods.call("crm.deal.list", {"filter": {">=DATE_MODIFY": "2020-01-01"}})
    count_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    methods.call("crm.deal.list", {"filter": {">ID": deals // 2}, "order": {"ID": "ASC"},
                                   "start": -1})
    keyset_ms = (time.perf_counter() - t) * 1000
    peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    t = time.perf_counter()
    rows = sum(store.count(e) for e in store.entities)
    rest_s = time.perf_counter() - t
    return {"deals": deals, "rows_total": rows, "start_s": round(start_s, 2),
            "start_cpu_s": round(cpu_s, 2), "peak_rss_mb": peak_mb,
            "peak_rss_all_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rest_s": round(rest_s, 2),
            "page_with_count_ms": round(count_ms, 1), "keyset_page_ms": round(keyset_ms, 1),
            "total": counted.total}


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(int(sys.argv[2]))))
        return
    for deals in [int(a) for a in sys.argv[1:]] or [1_000_000]:
        out = subprocess.run([sys.executable, __file__, "--one", str(deals)], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out)
        print(f"{r['deals']:>9,} deals: start {r['start_s']} s ({r['start_cpu_s']} s CPU),"
              f" peak RSS {r['peak_rss_mb']} MB, list page with COUNT"
              f" {r['page_with_count_ms']} ms, keyset page (start=-1) {r['keyset_page_ms']} ms;"
              f" first use of the rest {r['rest_s']} s ({r['rows_total']:,} rows in all"
              f" entities, peak RSS then {r['peak_rss_all_mb']} MB)")


if __name__ == "__main__":
    main()
