"""Done when (issue 13): `dg check defs` (test_dg.py::test_the_example_is_a_dg_project runs
exactly that check on the example), then a `dg dev`-served instance driven over GraphQL:
a range backfill of the demo, its checks green right after it (and the demo portal left
alone by them), a switch to a "real" portal (an emulated one on loopback, named by
BITRIX24_WEBHOOK_URL) whose range run leaves no demo row in its tables, and a wrong webhook
code reported as exactly one error naming the cause (the steps it stops are not errors
about the cause: Dagster reports them as not executed).
"""

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from bitrix24_example.demo_portal import DemoPortal

from tests.e2e.dagster_dev import DagsterDev, dagster_dev
from tests.e2e.test_dagster_dev import (
    CHECKS_OF_RUN,
    CRM_TABLES,
    DONE_RUN,
    LAUNCH_RUN,
    RUN_STATUS,
    assert_backfill_completed,
    assert_warehouse_equals_portal,
    deal_values,
    launch_backfill,
    rounded,
    wait_for_backfill_run,
    warehouse_rows,
)

CRM_ASSETS = [["bitrix24", table.removeprefix("bitrix24_")] for table in CRM_TABLES.values()]
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


def launch(dev: DagsterDev, selector: dict, **params) -> str:
    """Launch a run of the implicit asset job; wait for it; return its id."""
    body = {"selector": {**selector, "pipelineName": "__ASSET_JOB"}, **params}
    answer = dev.query(LAUNCH_RUN, {"params": body})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]
    dev.wait_for(
        lambda: dev.query(RUN_STATUS, {"id": run_id})["runOrError"]["status"], DONE_RUN, timeout=90
    )
    return run_id


@pytest.mark.slow
def test_demo_backfill_checks_then_a_real_portal_then_a_wrong_code(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    demo = DemoPortal(data_dir=data_dir / "demo")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    demo_url = f"sqlite:///{data_dir / 'demo' / 'warehouse.sqlite'}"
    with dagster_dev(
        home=tmp_path / "home_demo", data_dir=data_dir, log=tmp_path / "demo.log"
    ) as dev:
        location, repository = dev.wait_until_loaded(timeout=90)
        selector = {"repositoryLocationName": location, "repositoryName": repository}
        backfill = launch_backfill(dev, demo.first_day().isoformat(), today, CRM_ASSETS)
        wait_for_backfill_run(dev, backfill)  # one run, and it succeeded
        assert_warehouse_equals_portal(demo_url, demo)

        checks = [
            {"assetKey": {"path": path}, "name": name}
            for path in CRM_ASSETS
            for name in ("row_count_matches_portal", "unique_ids", "freshness")
        ]
        run_id = launch(
            dev, {**selector, "assetSelection": [], "assetCheckSelection": checks}
        )  # what "Execute checks" in the UI launches
        events = dev.query(CHECKS_OF_RUN, {"id": run_id})["logsForRun"]["events"]
        results = {
            ("/".join(e["evaluation"]["assetKey"]["path"]), e["evaluation"]["checkName"]):
                (e["evaluation"]["success"], e["evaluation"]["description"])
            for e in events if e
        }  # fmt: skip
        assert len(results) == len(checks) and all(ok for ok, _ in results.values()), results
        fresh = [text for (_, name), (_, text) in results.items() if name == "freshness"]
        assert fresh and all(" s ago" in text for text in fresh), fresh  # seconds, not minutes
        # A checks-only run leaves the demo portal alone (the hourly schedule may still tick
        # during the test and advance it for its own run: that change carries its run id).
        assert run_id not in {change.key for change in demo.changes()}
        assert_backfill_completed(dev, backfill)

    real = DemoPortal(data_dir=tmp_path / "real_portal", seed=77)  # another portal's data
    real_url = f"sqlite:///{data_dir / 'portal' / 'warehouse.sqlite'}"
    with real.serve(plan="unlimited", time_scale=0.05) as served:
        env = {"BITRIX24_WEBHOOK_URL": served.webhook_url,
               "BITRIX24_FIRST_DAY": real.first_day().isoformat()}  # fmt: skip
        with dagster_dev(
            home=tmp_path / "home_real", data_dir=data_dir, log=tmp_path / "real.log", env=env
        ) as dev:
            location, repository = dev.wait_until_loaded(timeout=90)
            selector = {"repositoryLocationName": location, "repositoryName": repository}
            tags = [{"key": "dagster/asset_partition_range_start", "value": real.first_day().isoformat()},
                    {"key": "dagster/asset_partition_range_end", "value": today}]  # fmt: skip
            run_id = launch(
                dev, {**selector, "assetSelection": [{"path": p} for p in CRM_ASSETS]},
                executionMetadata={"tags": tags},
            )  # fmt: skip
            assert dev.query(RUN_STATUS, {"id": run_id})["runOrError"]["status"] == "SUCCESS"
            assert_warehouse_equals_portal(real_url, real)  # exactly its rows: none of the demo
            landed = warehouse_rows(real_url, "bitrix24_crm_deal", ["title", "opportunity"])
            assert {i: rounded(v) for i, v in landed.items()} != deal_values(demo.load())

            code = served.webhook_url.rstrip("/").rsplit("/", 1)[1]
            wrong = served.webhook_url.replace(f"/{code}/", "/wr0ngc0de/")
            directory = [{"path": ["bitrix24", name]} for name in ("user", "department")]
            run_id = launch(
                dev, {**selector, "assetSelection": directory},
                runConfigData={"resources": {"bitrix24": {"config": {"webhook_url": wrong}}}},
            )  # fmt: skip
            events = dev.query(ERRORS_OF_RUN, {"id": run_id})["logsForRun"]["events"]
    errors = [
        e.get("error", {}).get("message") or e.get("message", "")
        for e in events
        if e and e.get("level") == "ERROR" and e["__typename"] != "RunFailureEvent"
    ]
    [error] = [e for e in errors if "401" in e]  # once: not per entity, not again in a log
    assert "2 assets (bitrix24/user, bitrix24/department)" in error
    assert "check BITRIX24_WEBHOOK_URL" in error
    assert not [e for e in events if e and "wr0ngc0de" in str(e)]
    engine = sa.create_engine(demo_url)
    try:
        with engine.connect() as connection:
            held = connection.execute(sa.text("SELECT portal FROM _bitrix24_example_portal"))
            assert [row[0] for row in held] == ["demo"]  # the demo's warehouse kept to itself
    finally:
        engine.dispose()
