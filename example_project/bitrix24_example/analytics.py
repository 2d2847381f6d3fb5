"""The downstream asset: a sales funnel table and chart built from the synced tables."""

import base64

import pandas as pd
import sqlalchemy as sa
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from bitrix24_example.chart import funnel_markdown, render_funnel_png
from bitrix24_example.funnel import pipeline_summary, stage_funnel
from bitrix24_example.resources import data_dir
from dagster_bitrix24 import SQLWarehouseResource

FUNNEL_TABLE = "sales_funnel"
SUMMARY_TABLE = "sales_pipeline_summary"


@asset(
    deps=[
        AssetKey(["bitrix24", "crm_deal"]),
        AssetKey(["bitrix24", "crm_status"]),
        AssetKey(["bitrix24", "crm_category"]),
    ],
    group_name="analytics",
    kinds={"pandas", "sql"},
    description="Deals reaching each stage per pipeline, conversion rates, deal velocity.",
)
def sales_funnel(
    context: AssetExecutionContext, warehouse: SQLWarehouseResource
) -> MaterializeResult:
    """Read deals, stages and pipelines, write the funnel and pipeline summary tables, draw the chart."""
    engine = sa.create_engine(warehouse.url)
    try:
        schema = warehouse.schema_name
        deals = pd.read_sql_table("bitrix24_crm_deal", engine, schema=schema)
        stages = pd.read_sql_table("bitrix24_crm_status", engine, schema=schema)
        pipelines = pd.read_sql_table("bitrix24_crm_category", engine, schema=schema)
        funnel = stage_funnel(deals, stages, pipelines=pipelines)
        summary = pipeline_summary(deals, stages, pipelines=pipelines)
        funnel.to_sql(FUNNEL_TABLE, engine, schema=schema, if_exists="replace", index=False)
        summary.to_sql(SUMMARY_TABLE, engine, schema=schema, if_exists="replace", index=False)
    finally:
        engine.dispose()
    path = data_dir() / "charts" / "sales_funnel.png"
    png = render_funnel_png(funnel, summary, path=path)
    picture = base64.b64encode(png).decode()
    context.log.info(f"funnel chart written to {path}")
    return MaterializeResult(
        metadata={
            "funnel": MetadataValue.md(funnel_markdown(funnel, summary)),  # shown inline
            "dagster/table_name": FUNNEL_TABLE,
            "dagster/row_count": len(funnel),
            "chart": MetadataValue.md(f"![Sales funnel](data:image/png;base64,{picture})"),
            "chart_path": MetadataValue.path(str(path)),
            "pipelines": MetadataValue.md(summary.to_markdown(index=False)),
            "open_deals": int(summary["open_deals"].sum()),
            "win_rate": _overall_win_rate(summary),
        }
    )


def _overall_win_rate(summary: pd.DataFrame) -> float:
    closed = int(summary["won_deals"].sum() + summary["lost_deals"].sum())
    return round(int(summary["won_deals"].sum()) / closed, 4) if closed else 0.0
