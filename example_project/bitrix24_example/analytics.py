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
        deals = _read_table(engine, "bitrix24_crm_deal", schema)
        stages = _read_table(engine, "bitrix24_crm_status", schema)
        pipelines = _read_table(engine, "bitrix24_crm_category", schema)
        funnel = stage_funnel(deals, stages, pipelines=pipelines)
        summary = pipeline_summary(deals, stages, pipelines=pipelines)
        _replace_table(engine, funnel, FUNNEL_TABLE, schema)
        _replace_table(engine, summary, SUMMARY_TABLE, schema)
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


def _read_table(engine: sa.Engine, name: str, schema: str | None) -> pd.DataFrame:
    """Every row of a warehouse table by a plain SELECT (pandas' read_sql_table reflects the
    table, which duckdb_engine cannot do on SQLAlchemy 2.1)."""
    quote = engine.dialect.identifier_preparer.quote
    table = f"{quote(schema)}.{quote(name)}" if schema else quote(name)
    with engine.connect() as connection:
        return pd.read_sql_query(sa.text(f"SELECT * FROM {table}"), connection)


def _replace_table(engine: sa.Engine, frame: pd.DataFrame, name: str, schema: str | None) -> None:
    """Write `frame` as the table `name`, replacing it in one transaction (dropped by name:
    pandas' if_exists="replace" reflects the table first)."""
    quote = engine.dialect.identifier_preparer.quote
    table = f"{quote(schema)}.{quote(name)}" if schema else quote(name)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        frame.to_sql(name, connection, schema=schema, if_exists="append", index=False)


def _overall_win_rate(summary: pd.DataFrame) -> float:
    closed = int(summary["won_deals"].sum() + summary["lost_deals"].sum())
    return round(int(summary["won_deals"].sum()) / closed, 4) if closed else 0.0
