"""End to end, issue 13's "Done when": `dg check defs`, then ONE `dg dev`-served demo instance
driven over GraphQL as the UI drives it, then one for a "real" portal.

On the demo (the module's `demo` fixture: `dg check defs`, `dg dev`, a partition-range
backfill of the CRM assets): the backfill is one run landing the portal exactly; the asset
checks are green right after it and leave the demo portal alone; the portal changes and
the hourly schedule's run picks the change up, the directory and the funnel riding along.
Then the switch: `dg dev` again with BITRIX24_WEBHOOK_URL naming an emulated portal on
loopback; its runs leave no demo row in any table, and a wrong webhook code in the hourly
job is exactly one error naming the cause: its CRM and directory steps both fail, the
second with a reference to the first, and the funnel step it stops is not an error about
it (Dagster reports it as not executed). The tests share the demo instance (each `dg dev` start costs half a
minute on a small host), so they run in file order, the switch last.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from bitrix24_example.demo_portal import DemoPortal

from tests.e2e.dagster_dev import (
    ASSET_PAGE,
    CHECKS_OF_RUN,
    ERRORS_OF_RUN,
    EXAMPLE_DIR,
    LATEST_METADATA,
    LAUNCH_RUN,
    RUN_STATUS,
    DagsterDev,
    backfill_runs,
    backfill_status,
    dagster_dev,
    launch,
    launch_backfill,
    launch_scheduled_run,
    wait_for_run,
)
from tests.e2e.test_dg import dg

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
CRM_ASSETS = [["bitrix24", table.removeprefix("bitrix24_")] for table in CRM_TABLES.values()]

pytestmark = pytest.mark.slow


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


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


@dataclass
class Demo:
    """The demo instance under test: `dg dev`, its selector, the demo portal, its warehouse."""

    dev: DagsterDev
    selector: dict
    portal: DemoPortal
    url: str
    data_dir: Path
    backfill: str
    backfill_runs: list[dict]
    landed_right_after: AssertionError | None  # the warehouse vs the portal, right after
    stop: Callable[[], None]  # ends `dg dev` (the switch to a real portal starts another)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`dg check defs`, then `dg dev` in demo mode and a range backfill of every CRM asset
    from the portal's first day to today (what "Materialize all" over a range launches)."""
    tmp = tmp_path_factory.mktemp("dg_dev")
    data_dir = tmp / "data"
    checked = dg("check", "defs", cwd=EXAMPLE_DIR, BITRIX24_EXAMPLE_DATA_DIR=str(data_dir))
    assert "All definitions loaded successfully" in checked
    portal = DemoPortal(data_dir=data_dir / "demo")
    with ExitStack() as stack:
        dev = stack.enter_context(
            dagster_dev(home=tmp / "home_demo", data_dir=data_dir, log=tmp / "demo.log")
        )
        location, repository = dev.wait_until_loaded(timeout=120)
        backfill = launch_backfill(dev, portal.first_day().isoformat(), today(), CRM_ASSETS)
        runs = backfill_runs(dev, backfill)
        url = f"sqlite:///{data_dir / 'demo' / 'warehouse.sqlite'}"
        try:
            assert_warehouse_equals_portal(url, portal)
            landed: AssertionError | None = None
        except AssertionError as error:
            landed = error
        yield Demo(
            dev=dev,
            selector={"repositoryLocationName": location, "repositoryName": repository},
            portal=portal,
            url=url,
            data_dir=data_dir,
            backfill=backfill,
            backfill_runs=runs,
            landed_right_after=landed,
            stop=stack.close,
        )


def test_a_range_backfill_is_one_run_landing_the_portal(demo: Demo) -> None:
    runs = demo.backfill_runs
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", runs  # one run for the range
    if demo.landed_right_after is not None:
        raise demo.landed_right_after

    # What the deal asset's page shows: the newest partition's event carries the table's
    # rows beside the partition's, the run's figures and the window it read; no link to the
    # demo's random port; every check says what it checks.
    page = demo.dev.query(ASSET_PAGE, {"key": {"path": ["bitrix24", "crm_deal"]}})
    node = page["assetNodeOrError"]
    (event,) = node["assetMaterializations"]
    values = {e["label"]: e.get("intValue", e.get("text")) for e in event["metadataEntries"]}
    assert event["partition"] == today()
    assert values["bitrix24/table_rows"] == demo.portal.load().count("crm.deal")
    assert 0 <= values["dagster/row_count"] < values["bitrix24/table_rows"]
    assert values["bitrix24/run_requests"] > 0 and values["rows_fetched"] > 0
    assert values["bitrix24/window_start"].startswith(demo.portal.first_day().isoformat())
    assert values["bitrix24/partition_range"].endswith(f"..{today()}")
    assert "dagster/uri" not in values
    checks = node["assetChecksOrError"]["checks"]
    assert len(checks) >= 3 and all(check["description"] for check in checks), checks


def test_checks_are_green_right_after_and_leave_the_demo_portal_alone(demo: Demo) -> None:
    checks = [
        {"assetKey": {"path": path}, "name": name}
        for path in CRM_ASSETS
        for name in ("row_count_matches_portal", "unique_ids", "freshness")
    ]
    run_id = launch(
        demo.dev, {**demo.selector, "assetSelection": [], "assetCheckSelection": checks}
    )  # what "Execute checks" in the UI launches
    events = demo.dev.query(CHECKS_OF_RUN, {"id": run_id})["logsForRun"]["events"]
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
    assert run_id not in {change.key for change in demo.portal.changes()}


RUN_TIMES = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime } } }"""


def test_a_second_run_on_the_portal_waits_for_the_first(demo: Demo) -> None:
    """The example's dagster.yaml: one run per portal's pool at a time ("Materialize all"
    clicked twice queues the second run instead of sharing the portal's limits)."""
    directory = [{"path": ["bitrix24", name]} for name in ("user", "department")]
    body = {"selector": {**demo.selector, "pipelineName": "__ASSET_JOB",
                         "assetSelection": directory}}  # fmt: skip
    run_ids = []
    for _ in range(2):
        answer = demo.dev.query(LAUNCH_RUN, {"params": body})["launchRun"]
        assert answer["__typename"] == "LaunchRunSuccess", answer
        run_ids.append(answer["run"]["runId"])
    assert [wait_for_run(demo.dev, run_id) for run_id in run_ids] == ["SUCCESS", "SUCCESS"]
    first, second = (demo.dev.query(RUN_TIMES, {"id": i})["runOrError"] for i in run_ids)
    overlap = min(first["endTime"], second["endTime"]) - max(first["startTime"], second["startTime"])
    assert overlap <= 0, (first, second)  # one after the other


def test_the_hourly_schedules_run_picks_up_a_change(demo: Demo) -> None:
    portal, url = demo.portal, demo.url
    deals_before = deal_values(portal.load())
    portal.advance(key="e2e-change", adds=2, updates=10)
    deals_after = deal_values(portal.load())
    touched = {i: v for i, v in deals_after.items() if deals_before.get(i) != v}
    assert len(touched) == 12, touched  # 2 new deals, 10 changed ones
    landed = warehouse_rows(url, "bitrix24_crm_deal", ["title", "opportunity"])
    assert all(rounded(landed.get(i)) != v for i, v in touched.items())

    selector = demo.selector
    run_id = launch_scheduled_run(
        demo.dev, selector["repositoryLocationName"], selector["repositoryName"]
    )
    assert wait_for_run(demo.dev, run_id) == "SUCCESS", demo.dev.log.read_text()[-4000:]
    # the run changed the portal once more itself: compare with the portal as it is now
    now = deal_values(portal.load())
    landed = warehouse_rows(url, "bitrix24_crm_deal", ["title", "opportunity"])
    assert {i: rounded(landed.get(i)) for i in touched} == {i: now[i] for i in touched}
    assert_warehouse_equals_portal(url, portal)
    pipelines = portal.load().tuples("SELECT ID, NAME FROM category WHERE ENTITY_TYPE_ID = 2")
    assert warehouse_rows(url, "bitrix24_crm_category", ["name"]) == {
        i: (name,) for i, name in pipelines
    }  # the directory rode along in the scheduled run
    events = demo.dev.query(CHECKS_OF_RUN, {"id": run_id})["logsForRun"]["events"]
    checks = {
        ("/".join(e["evaluation"]["assetKey"]["path"]), e["evaluation"]["checkName"]):
            (e["evaluation"]["success"], e["evaluation"]["description"])
        for e in events if e
    }  # fmt: skip
    assert {("bitrix24/crm_deal", "freshness"), ("bitrix24/crm_category", "unique_ids"),
            ("bitrix24/crm_item_128", "row_count_matches_portal")} <= set(checks), checks
    assert all(passed for passed, _ in checks.values()), checks

    funnel = demo.dev.query(LATEST_METADATA, {"key": {"path": ["sales_funnel"]}})
    (event,) = funnel["assetNodeOrError"]["assetMaterializations"]
    entries = {entry["label"]: entry for entry in event["metadataEntries"]}
    inline = entries["funnel"]["mdStr"]  # the UI shows Markdown under 1,000 characters inline
    assert len(inline) < 1000 and "█" in inline and "win rate" in inline
    assert entries["chart"]["mdStr"].startswith("![Sales funnel](data:image/png;base64,")
    assert (demo.data_dir / "demo" / "charts" / "sales_funnel.png").stat().st_size > 10_000
    # by now the backfill daemon has had its next pass: the backfill itself is complete
    assert backfill_status(demo.dev, demo.backfill) in ("COMPLETED", "COMPLETED_SUCCESS")


def test_a_real_portal_gets_none_of_the_demo_and_a_wrong_code_is_one_error(
    demo: Demo, tmp_path: Path
) -> None:
    demo.stop()  # the user stops `dg dev`, sets BITRIX24_WEBHOOK_URL, starts it again
    real = DemoPortal(data_dir=tmp_path / "real_portal", seed=77)  # another portal's data
    real_url = f"sqlite:///{demo.data_dir / 'portal' / 'warehouse.sqlite'}"
    with real.serve(plan="unlimited", time_scale=0.05) as served:
        env = {"BITRIX24_WEBHOOK_URL": served.webhook_url,
               "BITRIX24_FIRST_DAY": real.first_day().isoformat()}  # fmt: skip
        with dagster_dev(
            home=tmp_path / "home_real", data_dir=demo.data_dir, log=tmp_path / "real.log",
            env=env,
        ) as dev:  # fmt: skip
            location, repository = dev.wait_until_loaded(timeout=120)
            selector = {"repositoryLocationName": location, "repositoryName": repository}
            tags = [{"key": "dagster/asset_partition_range_start", "value": real.first_day().isoformat()},
                    {"key": "dagster/asset_partition_range_end", "value": today()}]  # fmt: skip
            run_id = launch(
                dev, {**selector, "assetSelection": [{"path": p} for p in CRM_ASSETS]},
                executionMetadata={"tags": tags},
            )  # fmt: skip
            assert dev.query(RUN_STATUS, {"id": run_id})["runOrError"]["status"] == "SUCCESS"
            scheduled = launch_scheduled_run(dev, location, repository)  # directory, funnel
            assert wait_for_run(dev, scheduled) == "SUCCESS", dev.log.read_text()[-4000:]

            code = served.webhook_url.rstrip("/").rsplit("/", 1)[1]
            wrong = served.webhook_url.replace(f"/{code}/", "/wr0ngc0de/")
            # the hourly job: its CRM and directory steps both fail of the wrong code
            run_id = launch_scheduled_run(
                dev, location, repository,
                run_config={"resources": {"bitrix24": {"config": {"webhook_url": wrong}}}},
            )  # fmt: skip
            assert wait_for_run(dev, run_id) == "FAILURE"
            events = dev.query(ERRORS_OF_RUN, {"id": run_id})["logsForRun"]["events"]

    assert_warehouse_equals_portal(real_url, real)  # exactly its rows: none of the demo
    landed = warehouse_rows(real_url, "bitrix24_crm_deal", ["title", "opportunity"])
    assert {i: rounded(v) for i, v in landed.items()} != deal_values(demo.portal.load())
    store = real.load()
    users = {row["ID"]: (row["NAME"], row["LAST_NAME"]) for row in store.raw_rows("user")}
    assert warehouse_rows(real_url, "bitrix24_user", ["name", "last_name"]) == users
    assert users != {row["ID"]: (row["NAME"], row["LAST_NAME"])
                     for row in demo.portal.load().raw_rows("user")}  # fmt: skip
    engine = sa.create_engine(real_url)
    try:
        with engine.connect() as connection:
            deals = connection.execute(sa.text("SELECT SUM(deals) FROM sales_pipeline_summary"))
            assert deals.scalar_one() == store.count("crm.deal")  # the funnel of its deals
    finally:
        engine.dispose()

    errors = [
        e.get("error", {}).get("message") or e.get("message", "")
        for e in events
        if e and e.get("level") == "ERROR" and e["__typename"] != "RunFailureEvent"
    ]
    # once: not per entity, not per step (the steps run in parallel: either may report it)
    [error] = [e for e in errors if "401" in e]
    assert "assets (bitrix24/" in error and "check BITRIX24_WEBHOOK_URL" in error
    failed_steps = [e for e in events if e and e["__typename"] == "ExecutionStepFailureEvent"]
    assert len(failed_steps) == 2  # both steps fail loudly: the other refers to the first
    assert len([e for e in errors if "the same failure as step bitrix24" in e]) == 1
    assert not [e for e in events if e and "wr0ngc0de" in str(e)]
    engine = sa.create_engine(demo.url)
    try:
        with engine.connect() as connection:
            held = connection.execute(sa.text("SELECT portal FROM _bitrix24_example_portal"))
            assert [row[0] for row in held] == ["demo"]  # the demo's warehouse kept to itself
    finally:
        engine.dispose()
