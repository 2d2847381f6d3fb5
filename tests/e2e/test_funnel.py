"""The example's sales funnel: the pandas maths on hand-made tables, the chart, the asset."""

import json
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from bitrix24_example.analytics import sales_funnel
from bitrix24_example.chart import funnel_markdown, render_funnel_png
from bitrix24_example.funnel import pipeline_summary, stage_funnel
from dagster import materialize

from dagster_bitrix24 import SQLWarehouseResource

STAGES = pd.DataFrame(
    [
        ("DEAL_STAGE", "NEW", "New", 10, "P", None),
        ("DEAL_STAGE", "WORK", "Working", 20, "P", None),
        ("DEAL_STAGE", "WON", "Deal won", 30, "S", None),
        ("DEAL_STAGE", "LOSE", "Deal lost", 40, "F", None),
        ("DEAL_STAGE_1", "C1:NEW", "New", 10, "P", 1.0),
        ("DEAL_STAGE_1", "C1:WON", "Deal won", 20, "S", 1.0),
        ("DEAL_STAGE_1", "C1:LOSE", "Deal lost", 30, "F", 1.0),
        ("SOURCE", "CALL", "Call", 10, None, None),
    ],
    columns=["entity_id", "status_id", "name", "sort", "semantics", "category_id"],
)

PIPELINES = pd.DataFrame(
    [(0, "Sales", 2, True, None), (1, "Wholesale", 2, False, None), (2, "Gone", 2, False, "2026-01-02")],
    columns=["id", "name", "entity_type_id", "is_default", "_deleted_at"],
)


def deal(id_, stage, category=0, value=100.0, created="2026-01-01", closed="2026-01-11", deleted=None):
    return {
        "id": id_, "stage_id": stage, "category_id": category, "opportunity": value,
        "date_create": datetime.fromisoformat(created), "closedate": datetime.fromisoformat(closed),
        "_deleted_at": deleted,
    }


DEALS = pd.DataFrame(
    [
        deal(1, "NEW"), deal(2, "NEW"), deal(3, "WORK"), deal(4, "WORK"),
        deal(5, "WON", value=1000.0), deal(6, "WON", value=3000.0, closed="2026-01-31"),
        deal(7, "LOSE"), deal(8, "LOSE"),
        deal(9, "WON", deleted=datetime(2026, 2, 1)),  # gone from the portal: not counted
        deal(10, "C1:NEW", category=1), deal(11, "C1:WON", category=1, value=50.0),
    ]
)


def test_stage_funnel_counts_deals_at_or_past_each_stage():
    funnel = stage_funnel(DEALS, STAGES)
    general = funnel[funnel["pipeline"] == 0].set_index("stage_id")
    assert list(general.index) == ["NEW", "WORK", "WON"]  # lost stages are not funnel steps
    # New: 2 at New + 2 Working + 2 Won + 2 lost (counted at the first stage only)
    assert general["deals_reached"].tolist() == [8, 4, 2]
    assert general["deals_now"].tolist() == [2, 2, 2]
    assert general["conversion_from_previous"].tolist()[1:] == [0.5, 0.5]
    assert general.loc["WON", "conversion_from_start"] == 0.25
    assert general.loc["WON", "value_reached"] == 4000.0
    assert funnel[funnel["pipeline"] == 1]["deals_reached"].tolist() == [2, 1]


def test_pipeline_summary_win_rate_cycle_and_velocity():
    summary = pipeline_summary(DEALS, STAGES).set_index("pipeline")
    general = summary.loc[0]
    assert (general["deals"], general["open_deals"], general["won_deals"], general["lost_deals"]) == (
        8, 4, 2, 2
    )
    assert general["win_rate"] == 0.5
    assert general["avg_won_value"] == 2000.0
    assert general["avg_cycle_days"] == 20.0  # 10 and 30 days from creation to close
    assert general["velocity_per_day"] == pytest.approx(4 * 0.5 * 2000.0 / 20.0)
    assert summary.loc[1, "win_rate"] == 1.0


def test_chart_is_a_png_written_to_the_path(tmp_path):
    path = tmp_path / "charts" / "funnel.png"
    png = render_funnel_png(stage_funnel(DEALS, STAGES), pipeline_summary(DEALS, STAGES), path=path)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and path.read_bytes() == png


def test_asset_writes_tables_and_reports_the_chart(tmp_path, monkeypatch):
    monkeypatch.setenv("BITRIX24_EXAMPLE_DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    engine = sa.create_engine(url)
    DEALS.to_sql("bitrix24_crm_deal", engine, index=False)
    STAGES.to_sql("bitrix24_crm_status", engine, index=False)
    PIPELINES.to_sql("bitrix24_crm_category", engine, index=False)
    result = materialize([sales_funnel], resources={"warehouse": SQLWarehouseResource(url=url)})
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["chart"].value.startswith("![Sales funnel](data:image/png;base64,")
    assert metadata["chart_path"].value == str(tmp_path / "demo" / "charts" / "sales_funnel.png")
    assert metadata["dagster/row_count"].value == 5
    inline = metadata["funnel"].value  # under the UI's inline limit: shown without a click
    assert len(inline) < 1000 and inline.startswith("```\n") and inline.endswith("\n```")
    lines = inline.splitlines()
    assert lines[1].startswith("Sales: win rate 50%") and "Wholesale: win rate 100%" in lines
    sales = lines[2 : lines.index("Wholesale: win rate 100%")]
    bars = {line.split()[0]: line for line in sales}
    assert bars["New"].count("█") == 16 and bars["New"].rstrip().endswith(" 8")  # the widest
    assert bars["Working"].count("█") == 8 and bars["Working"].rstrip().endswith(" 4")
    assert bars["Working"].index("█") > bars["New"].index("█")  # centred: a funnel's shape
    assert metadata["win_rate"].value == pytest.approx(3 / 5)
    stored = pd.read_sql_table("sales_pipeline_summary", engine)
    assert stored["won_deals"].tolist() == [2, 1]
    assert stored["pipeline_name"].tolist() == ["Sales", "Wholesale"]  # from crm.category
    engine.dispose()


#: The rows as real portals send them (b24restdocs api-reference/crm/status/crm-status-list.md:
#: `"SEMANTICS": null` and `"EXTRA": {"SEMANTICS": "process", ...}` for in-progress stages,
#: `"CATEGORY_ID": null` in the default pipeline), as the sync stores them (EXTRA as JSON text).
REAL_STAGES = pd.DataFrame(
    [
        (e, s, n, o, {"P": None}.get(m, m), c,
         None if e == "SOURCE" else json.dumps(
             {"SEMANTICS": {"P": "process", "S": "success", "F": "failure"}[m],
              "COLOR": "#39A8EF"}))
        for e, s, n, o, m, c in STAGES.itertuples(index=False)
    ],
    columns=[*STAGES.columns, "extra"],
)


def test_the_inline_funnel_stays_under_the_uis_limit_with_many_pipelines():
    stages = pd.DataFrame(
        [(f"DEAL_STAGE_{p}", f"C{p}:S{i}", f"A long stage name {i}", i * 10, "P", float(p))
         for p in range(1, 31) for i in range(8)],
        columns=STAGES.columns,
    )  # fmt: skip
    deals = pd.DataFrame([deal(p * 100 + i, f"C{p}:S{i % 8}", category=p)
                          for p in range(1, 31) for i in range(20)])  # fmt: skip
    text = funnel_markdown(stage_funnel(deals, stages), pipeline_summary(deals, stages))
    assert len(text) < 1000 and text.endswith("\n```")
    assert "more pipelines: see the chart" in text


def test_real_shaped_stages_give_the_same_funnel():
    assert REAL_STAGES["semantics"].isna().sum() == 4  # NEW, WORK, C1:NEW and the source
    expected = stage_funnel(DEALS, STAGES)
    got = stage_funnel(DEALS, REAL_STAGES)
    pd.testing.assert_frame_equal(got, expected)
    assert "WORK" in set(got["stage_id"])  # in-progress stages are funnel steps
    pd.testing.assert_frame_equal(pipeline_summary(DEALS, REAL_STAGES),
                                  pipeline_summary(DEALS, STAGES))


def _drop_example_tables(url: str) -> None:
    """Drop what a sync and the funnel leave in a (shared) database."""
    from tests.dagster.conftest import drop_tables

    drop_tables(url, "bitrix24_")
    drop_tables(url, "sales_")


def test_funnel_from_a_sync_of_the_emulator_shows_in_progress_stages(
    tmp_path, monkeypatch, warehouse_url
):
    """On every warehouse dialect: PostgreSQL returns its times zone-aware, SQLite naive."""
    from bitrix_core.emulator import EmulatedPortal
    from dagster_bitrix24 import build_bitrix24_assets
    from tests.dagster.conftest import resources

    monkeypatch.setenv("BITRIX24_EXAMPLE_DATA_DIR", str(tmp_path))
    url = warehouse_url
    _drop_example_tables(url)
    with EmulatedPortal(seed=7, deals=300, plan="unlimited", time_scale=0.1) as portal:
        assets = build_bitrix24_assets(entities=["crm.deal", "crm.status", "crm.category"])
        result = materialize([assets, sales_funnel], resources=resources(portal, url),
                             raise_on_error=False)  # fmt: skip
        assert result.success, [str(e.event_specific_data.error) for e in result.all_events
                                if e.is_step_failure]  # fmt: skip
    engine = sa.create_engine(url)
    stages = pd.read_sql_query("SELECT * FROM bitrix24_crm_status", engine)
    funnel = pd.read_sql_query("SELECT * FROM sales_funnel", engine)
    summary = pd.read_sql_query("SELECT * FROM sales_pipeline_summary", engine)
    engine.dispose()
    _drop_example_tables(url)
    assert summary["avg_cycle_days"].notna().all()  # days to win, from the deal dates
    general = stages[stages["entity_id"] == "DEAL_STAGE"]
    assert general["semantics"].isna().sum() == 5 and general["category_id"].isna().all()
    steps = funnel[funnel["pipeline"] == 0]["stage_id"].tolist()
    assert steps == ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE",
                     "WON"]
    assert funnel["deals_now"].sum() > 0
