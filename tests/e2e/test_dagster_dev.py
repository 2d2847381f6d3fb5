"""End to end: `dagster dev` on the example in demo mode, driven like the UI drives it.

A partition-range backfill lands the demo portal in the warehouse; the portal changes;
the hourly schedule's run (evaluated by the schedule itself, launched by GraphQL) picks
the change up; the funnel asset reports its chart.
"""

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from bitrix24_example.demo_portal import DemoPortal

from tests.e2e.dagster_dev import DagsterDev, dagster_dev

CRM_TABLES = {
    "crm.deal": "bitrix24_crm_deal",
    "crm.lead": "bitrix24_crm_lead",
    "crm.contact": "bitrix24_crm_contact",
    "crm.company": "bitrix24_crm_company",
    "crm.activity": "bitrix24_crm_activity",
    "crm.item.31": "bitrix24_crm_smart_invoice",
    "crm.item.128": "bitrix24_crm_item_128",
    "crm.item.130": "bitrix24_crm_item_130",
}
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


def warehouse_rows(url: str, table: str, columns: list[str]) -> dict[int, tuple]:
    """{id: (columns...)} of the rows the warehouse holds as live."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            names = ", ".join(columns)
            result = connection.execute(
                sa.text(f"SELECT id, {names} FROM {table} WHERE _deleted_at IS NULL")
            )
            return {int(row[0]): tuple(row[1:]) for row in result}
    finally:
        engine.dispose()


def portal_change_times(store, entity: str) -> dict[int, int]:
    """{id: change time, epoch seconds} of one entity in the demo portal."""
    column = store.entity(entity).modified_field
    return {row["ID"]: row[column] for row in store.raw_rows(entity)}


def change_column(entity: str) -> str:
    """The warehouse column holding an entity's change time."""
    if entity.startswith("crm.item."):
        return "updated_time"
    return {"crm.activity": "last_updated"}.get(entity, "date_modify")


def to_epoch(value) -> int:
    moment = datetime.fromisoformat(str(value)) if not isinstance(value, datetime) else value
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def assert_warehouse_equals_portal(url: str, portal: DemoPortal) -> None:
    """Every CRM table holds exactly the portal's ids, each with its change time; deals' values."""
    store = portal.load()
    for entity, table in CRM_TABLES.items():
        expected = portal_change_times(store, entity)
        landed = warehouse_rows(url, table, [change_column(entity)])
        assert set(landed) == set(expected), f"{table}: ids differ from the portal"
        wrong = [i for i, (moment,) in landed.items() if to_epoch(moment) != expected[i]]
        assert not wrong, f"{table}: change times differ for ids {wrong[:5]}"
    landed = warehouse_rows(url, "bitrix24_crm_deal", ["title", "opportunity"])
    assert {i: rounded(values) for i, values in landed.items()} == deal_values(store)


def rounded(values: tuple | None) -> tuple | None:
    """(title, opportunity rounded to cents), None stays None."""
    return None if values is None else (values[0], round(float(values[1]), 2))


def deal_values(store) -> dict[int, tuple]:
    """{id: (title, opportunity)} of every deal the demo portal holds."""
    return {row["ID"]: rounded((row["TITLE"], row["OPPORTUNITY"])) for row in store.raw_rows("crm.deal")}


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


def wait_for_backfill_run(dev: DagsterDev, backfill: str) -> None:
    """Wait until the backfill's runs have ended; there is one (the range), a success.

    The daemon marks the backfill itself complete at its next tick, up to 30 s later:
    `assert_backfill_completed` checks that after the test's next steps, not before them.
    """

    def ended() -> str:
        runs = dev.query(RUNS_OF_BACKFILL, {"id": backfill})["runsOrError"]["results"]
        return "ended" if runs and all(run["status"] in DONE_RUN for run in runs) else "going"

    dev.wait_for(ended, {"ended"}, timeout=120)
    runs = dev.query(RUNS_OF_BACKFILL, {"id": backfill})["runsOrError"]["results"]
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", (runs, dev.log.read_text()[-3000:])


def assert_backfill_completed(dev: DagsterDev, backfill: str) -> None:
    """The backfill ends completed, still with its one successful run."""
    status = dev.wait_for(
        lambda: dev.query(BACKFILL_STATUS, {"id": backfill})["partitionBackfillOrError"]["status"],
        DONE_BACKFILL,
        timeout=120,
    )
    runs = dev.query(RUNS_OF_BACKFILL, {"id": backfill})["runsOrError"]["results"]
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), (status, runs)
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", runs  # one run for the range


def launch_scheduled_run(dev: DagsterDev, location: str, repository: str) -> str:
    """Evaluate the hourly schedule now and launch its run request on the schedule's job."""
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
        "runConfigData": request["runConfigYaml"],
        "executionMetadata": {"tags": request["tags"]},
    }
    answer = dev.query(LAUNCH_RUN, {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


@pytest.mark.slow
def test_backfill_then_scheduled_incremental_run(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    portal = DemoPortal(data_dir=data_dir / "demo")
    first = portal.first_day().isoformat()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    url = f"sqlite:///{data_dir / 'demo' / 'warehouse.sqlite'}"
    log = tmp_path / "dagster_dev.log"
    with dagster_dev(home=tmp_path / "dagster_home", data_dir=data_dir, log=log) as dev:
        location, repository = dev.wait_until_loaded(timeout=90)

        crm_assets = [["bitrix24", table.removeprefix("bitrix24_")] for table in CRM_TABLES.values()]
        backfill = launch_backfill(dev, first, today, crm_assets)
        wait_for_backfill_run(dev, backfill)
        assert_warehouse_equals_portal(url, portal)

        deals_before = deal_values(portal.load())
        portal.advance(key="e2e-change", adds=2, updates=10)
        deals_after = deal_values(portal.load())
        touched = {i: v for i, v in deals_after.items() if deals_before.get(i) != v}
        assert len(touched) == 12, touched  # 2 new deals, 10 changed ones
        landed = warehouse_rows(url, "bitrix24_crm_deal", ["title", "opportunity"])
        assert all(rounded(landed.get(i)) != v for i, v in touched.items())

        run_id = launch_scheduled_run(dev, location, repository)
        status = dev.wait_for(
            lambda: dev.query(RUN_STATUS, {"id": run_id})["runOrError"]["status"],
            DONE_RUN,
            timeout=120,
        )
        assert status == "SUCCESS", log.read_text()[-4000:]
        # the run changed the portal once more itself: compare with the portal as it is now
        now = deal_values(portal.load())
        landed = warehouse_rows(url, "bitrix24_crm_deal", ["title", "opportunity"])
        assert {i: rounded(landed.get(i)) for i in touched} == {i: now[i] for i in touched}
        assert_warehouse_equals_portal(url, portal)
        pipelines = portal.load().tuples("SELECT ID, NAME FROM category WHERE ENTITY_TYPE_ID = 2")
        assert warehouse_rows(url, "bitrix24_crm_category", ["name"]) == {
            i: (name,) for i, name in pipelines
        }  # the directory rode along in the scheduled run
        events = dev.query(CHECKS_OF_RUN, {"id": run_id})["logsForRun"]["events"]
        checks = {
            ("/".join(e["evaluation"]["assetKey"]["path"]), e["evaluation"]["checkName"]):
                (e["evaluation"]["success"], e["evaluation"]["description"])
            for e in events if e
        }  # fmt: skip
        assert {("bitrix24/crm_deal", "freshness"), ("bitrix24/crm_category", "unique_ids"),
                ("bitrix24/crm_item_128", "row_count_matches_portal")} <= set(checks), checks
        assert all(passed for passed, _ in checks.values()), checks

        funnel = dev.query(LATEST_METADATA, {"key": {"path": ["sales_funnel"]}})
        (event,) = funnel["assetNodeOrError"]["assetMaterializations"]
        entries = {entry["label"]: entry for entry in event["metadataEntries"]}
        assert entries["chart"]["mdStr"].startswith("![Sales funnel](data:image/png;base64,")
        assert Path(data_dir / "demo" / "charts" / "sales_funnel.png").stat().st_size > 10_000
        assert_backfill_completed(dev, backfill)
