"""Which portal and warehouse the example talks to: yours if configured, else the demo.

A real portal is one environment variable, `BITRIX24_WEBHOOK_URL`. Without it the runs
sync a demo portal (see `demo_portal.py`) served in-process for the run's duration.
`WAREHOUSE_URL` (optional) names the warehouse; the default is SQLite in the data dir.

Demo and real data never mix: each mode has its own data folder (`data/demo/`,
`data/portal/`), and a warehouse or a Dagster instance (`DAGSTER_HOME`) that already holds
one portal's data refuses a run of the other, saying what to change.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from dagster import ConfigurableResource, EnvVar, Failure, InitResourceContext, template_var
from pydantic import Field

from bitrix24_example.demo_portal import DemoPortal
from dagster_bitrix24 import Bitrix24Resource, SQLWarehouseResource
from dagster_bitrix24.resources import warehouse_kind as kind_of_url

#: Where the demo portal, the SQLite warehouse and the charts live.
DATA_DIR_ENV = "BITRIX24_EXAMPLE_DATA_DIR"
#: The table (in the warehouse) and the key (in the Dagster instance) naming their portal.
PORTAL_TABLE = "_bitrix24_example_portal"
PORTAL_KEY = "bitrix24_example/portal"


def demo_mode() -> bool:
    """True when no real portal is configured."""
    return not os.environ.get("BITRIX24_WEBHOOK_URL")


def portal_name() -> str:
    """`demo`, or the host of the configured portal (never the webhook's secret code)."""
    if demo_mode():
        return "demo"
    return urlsplit(os.environ["BITRIX24_WEBHOOK_URL"]).hostname or "portal"


def data_dir() -> Path:
    """This mode's folder: `demo/` or `portal/` in `$BITRIX24_EXAMPLE_DATA_DIR`, else in `data/`."""
    base = os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parent.parent / "data"
    return Path(base).resolve() / ("demo" if demo_mode() else "portal")


@template_var
def first_day() -> str:
    """The first daily partition: `$BITRIX24_FIRST_DAY`, else the demo portal's oldest day."""
    if demo_mode():
        return DemoPortal(data_dir=data_dir()).first_day().isoformat()
    return os.environ.get("BITRIX24_FIRST_DAY", "2024-01-01")


@template_var
def warehouse_kind() -> str:
    """The warehouse's dialect as a Dagster kind (sqlite, postgres, mysql, duckdb)."""
    return kind_of_url(os.environ.get("WAREHOUSE_URL") or "sqlite://")


def _checks_only(context: InitResourceContext) -> bool:
    """True for a run that only executes asset checks."""
    run = context.dagster_run
    return bool(run and run.asset_check_selection and not run.asset_selection)


class DemoBitrix24Resource(ConfigurableResource):
    """Serves the demo portal for one run and hands the run a `Bitrix24Resource` for it.

    The portal changes once per sync run (new deals, leads, contacts... and updates), so an
    incremental sync always has something to pick up; a checks-only run sees it unchanged.
    """

    data_dir: str = Field(description="Folder holding the demo portal's state file.")
    plan: str = Field(default="standard", description="Emulated plan limits.")
    time_scale: float = Field(
        default=0.05, description="Emulator speed-up: limits pass 20x faster than real."
    )

    @contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator[Bitrix24Resource]:
        portal = DemoPortal(data_dir=self.data_dir)
        if not _checks_only(context):
            portal.advance(key=context.run_id)
        with portal.serve(plan=self.plan, time_scale=self.time_scale) as emulated:
            yield Bitrix24Resource(
                webhook_url=emulated.webhook_url, plan=self.plan, time_scale=self.time_scale
            )


class ExampleWarehouseResource(SQLWarehouseResource):
    """The warehouse, refusing a run whose portal differs from the one its data came from."""

    portal: str = Field(description="The portal whose data this warehouse holds.")

    def setup_for_execution(self, context: InitResourceContext) -> None:
        if context.instance is not None:
            held = context.instance.run_storage.get_cursor_values({PORTAL_KEY}).get(PORTAL_KEY)
            if held and held != self.portal:
                raise Failure(
                    f"This Dagster instance (DAGSTER_HOME) holds the run history of the {held}"
                    f" portal, not {self.portal}: use another DAGSTER_HOME for each portal."
                )
            context.instance.run_storage.set_cursor_values({PORTAL_KEY: self.portal})
        warehouse = self.get_warehouse()
        warehouse.ensure_schema()  # the claim's table may be the schema's first
        claim_warehouse(warehouse.engine, self.portal, schema=self.schema_name)


def claim_warehouse(engine: sa.Engine, portal: str, *, schema: str | None = None) -> None:
    """Record `portal` as the warehouse's portal; raise if it holds another portal's data."""
    table = sa.Table(PORTAL_TABLE, sa.MetaData(schema=schema), sa.Column("portal", sa.String(255)))
    with engine.begin() as connection:
        table.create(connection, checkfirst=True)
        held = connection.execute(sa.select(table.c.portal)).scalars().first()
        if held is None:
            connection.execute(table.insert().values(portal=portal))
        elif held != portal:
            where = engine.url.render_as_string(hide_password=True)
            raise Failure(
                f"The warehouse {where} holds data of the {held} portal, not {portal}: demo and"
                " real data must not mix. Set WAREHOUSE_URL to another database, or drop its"
                " tables to start over."
            )


def bitrix24_resource(folder: Path) -> ConfigurableResource:
    """The real portal from `BITRIX24_WEBHOOK_URL`, or the demo portal."""
    if demo_mode():
        return DemoBitrix24Resource(data_dir=str(folder))
    return Bitrix24Resource(
        webhook_url=EnvVar("BITRIX24_WEBHOOK_URL"),
        plan=os.environ.get("BITRIX24_PLAN", "standard"),
        limiter_url=str(folder / "bitrix24_limiter.sqlite"),
    )


def warehouse_resource(folder: Path) -> ExampleWarehouseResource:
    """`WAREHOUSE_URL` if set, else the embedded SQLite warehouse in the data dir."""
    if os.environ.get("WAREHOUSE_URL"):
        return ExampleWarehouseResource(url=EnvVar("WAREHOUSE_URL"), portal=portal_name())
    return ExampleWarehouseResource(
        url=f"sqlite:///{folder / 'warehouse.sqlite'}", portal=portal_name()
    )
