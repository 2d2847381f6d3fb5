"""Drive a real `dg dev` (webserver and daemon) through the GraphQL API the UI uses:
start and stop it, and the queries and mutations the tests send."""

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "example_project"
DG = Path(sys.executable).with_name("dg")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DagsterDev:
    """A `dg dev` process group and a GraphQL client for it."""

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


DONE_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
DONE_RUN = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename ... on PartitionBackfill { status }
  }
}"""
RUNS_OF_BACKFILL = """
query($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status } }
  }
}"""
SCHEDULE_DRY_RUN = """
mutation($selector: ScheduleSelector!, $at: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $at) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult { runRequests { tags { key value } runConfigYaml } error { message } }
    }
    ... on PythonError { message }
  }
}"""
SCHEDULE_JOB = """
query($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) { ... on Schedule { pipelineName } }
}"""
LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN_STATUS = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
CHECKS_OF_RUN = """
query($id: ID!) {
  logsForRun(runId: $id, limit: 100000) {
    ... on EventConnection {
      events {
        ... on AssetCheckEvaluationEvent {
          evaluation { checkName success description assetKey { path } }
        }
      }
    }
  }
}"""
LATEST_METADATA = """
query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetMaterializations(limit: 1) {
        metadataEntries { label ... on MarkdownMetadataEntry { mdStr } }
      }
    }
  }
}"""

ASSET_PAGE = """
query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetMaterializations(limit: 1) {
        partition
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
        }
      }
      assetChecksOrError { ... on AssetChecks { checks { name description } } }
    }
  }
}"""
ERRORS_OF_RUN = """
query($id: ID!) {
  logsForRun(runId: $id, limit: 100000) {
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on EngineEvent { error { message } }
      }
    }
  }
}"""


def launch_backfill(dev: DagsterDev, first: str, last: str, assets: list[list[str]]) -> str:
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": path}, "partitions": {"range": {"start": first, "end": last}}}
            for path in assets
        ],
        "title": "e2e backfill",
    }
    answer = dev.query(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    return answer["backfillId"]


def launch_scheduled_run(
    dev: DagsterDev, location: str, repository: str, *, run_config: dict | None = None
) -> str:
    """Evaluate the hourly schedule now and launch its run request on the schedule's job
    (with `run_config` merged into the request's run config)."""
    selector = {
        "repositoryLocationName": location,
        "repositoryName": repository,
        "scheduleName": "bitrix24_hourly",
    }
    job = dev.query(SCHEDULE_JOB, {"selector": selector})["scheduleOrError"]["pipelineName"]
    tick = dev.query(SCHEDULE_DRY_RUN, {"selector": selector, "at": datetime.now(UTC).timestamp()})
    evaluation = tick["scheduleDryRun"]["evaluationResult"]
    assert evaluation["error"] is None, evaluation["error"]
    (request,) = evaluation["runRequests"]
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": repository,
            "jobName": job,
        },
        "runConfigData": {**(yaml.safe_load(request["runConfigYaml"]) or {}), **(run_config or {})},
        "executionMetadata": {"tags": request["tags"]},
    }
    answer = dev.query(LAUNCH_RUN, {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def backfill_runs(dev: DagsterDev, backfill: str, *, timeout: float = 180) -> list[dict]:
    """Wait until the backfill has launched its runs and they have ended; return them.

    The backfill daemon marks the backfill complete only on its next pass, up to 30 s later:
    `backfill_status` waits for that."""

    def status() -> str:
        runs = dev.query(RUNS_OF_BACKFILL, {"id": backfill})["runsOrError"]["results"]
        return "ended" if runs and all(run["status"] in DONE_RUN for run in runs) else "running"

    dev.wait_for(status, {"ended"}, timeout=timeout)
    return dev.query(RUNS_OF_BACKFILL, {"id": backfill})["runsOrError"]["results"]


def backfill_status(dev: DagsterDev, backfill: str, *, timeout: float = 90) -> str:
    """Wait until the backfill has ended; return its status."""
    return dev.wait_for(
        lambda: dev.query(BACKFILL_STATUS, {"id": backfill})["partitionBackfillOrError"]["status"],
        DONE_BACKFILL,
        timeout=timeout,
    )


def wait_for_run(dev: DagsterDev, run_id: str, *, timeout: float = 120) -> str:
    """Wait until the run ends; return its status."""
    return dev.wait_for(
        lambda: dev.query(RUN_STATUS, {"id": run_id})["runOrError"]["status"], DONE_RUN,
        timeout=timeout,
    )  # fmt: skip


def launch(dev: DagsterDev, selector: dict, **params: Any) -> str:
    """Launch a run of the implicit asset job (what the UI's Materialize and Execute checks
    buttons do); wait for it to end; return its id."""
    body = {"selector": {**selector, "pipelineName": "__ASSET_JOB"}, **params}
    answer = dev.query(LAUNCH_RUN, {"params": body})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]
    wait_for_run(dev, run_id)
    return run_id
