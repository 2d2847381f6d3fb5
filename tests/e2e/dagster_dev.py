"""Drive a real `dg dev` (webserver and daemon) through the GraphQL API the UI uses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "example_project"
DG = Path(sys.executable).with_name("dg")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DagsterDev:
    """A `dagster dev` process group and a GraphQL client for it."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.log = log

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a GraphQL query or mutation; raise with the server's errors."""
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            payload = json.loads(answer.read())
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_until_loaded(self, *, timeout: float) -> tuple[str, str]:
        """Wait until the code location is loaded; return (location, repository) names."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited:\n{self.log.read_text()[-4000:]}")
            try:
                data = self.query(
                    "{ repositoriesOrError { __typename ... on RepositoryConnection"
                    " { nodes { name location { name } } } } }"
                )
                nodes = data["repositoriesOrError"].get("nodes") or []
                if nodes:
                    return nodes[0]["location"]["name"], nodes[0]["name"]
                last = data
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                last = error
            time.sleep(0.5)
        raise AssertionError(f"dagster dev did not load the example: {last}\n{self.log.read_text()[-4000:]}")

    def wait_for(self, read_status: Any, done: set[str], *, timeout: float) -> str:
        """Poll `read_status()` until it is in `done`; return it."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = read_status()
            if status in done:
                return status
            time.sleep(1.0)
        raise AssertionError(f"still {status} after {timeout} s\n{self.log.read_text()[-4000:]}")


@contextmanager
def dagster_dev(
    *, home: Path, data_dir: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[DagsterDev]:
    """Start `dg dev` in the example folder (demo mode unless `env` names a portal) with
    the example's instance settings (`dagster.yaml`); kill its whole tree after."""
    port = free_port()
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in ("BITRIX24_WEBHOOK_URL", "WAREHOUSE_URL", "BITRIX24_FIRST_DAY")
    }
    env = {**clean, **(env or {})}
    env.update(
        DAGSTER_HOME=str(home),
        BITRIX24_EXAMPLE_DATA_DIR=str(data_dir),
        DAGSTER_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    home.mkdir(parents=True, exist_ok=True)
    settings = (EXAMPLE_DIR / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(settings + "telemetry:\n  enabled: false\n")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(DG), "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=EXAMPLE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield DagsterDev(process, port, log)
    finally:
        _stop_tree(process)


def _descendants(root: int) -> list[int]:
    """Every live descendant of `root` (from /proc), children before grandchildren."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def _stop_tree(process: subprocess.Popen, *, grace: float = 8.0) -> None:
    """SIGTERM the process group and every descendant; SIGKILL what is left after `grace` s.

    `dagster dev` can take long to exit on SIGTERM (it ignores further signals while its
    children wind down), so the grace period is short: the test's data is temporary.
    """
    family = _descendants(process.pid)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    _signal_all(family, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in [process.pid, *family]):
        time.sleep(0.2)
    leftovers = [pid for pid in [*family, *_descendants(process.pid)] if _alive(pid)]
    _signal_all(leftovers, signal.SIGKILL)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
