"""Which portal and warehouse the example talks to: yours if configured, else the demo.

A real portal is one environment variable, `BITRIX24_WEBHOOK_URL`. Without it the runs
sync a demo portal (see `demo_portal.py`) served in-process for the run's duration.
`WAREHOUSE_URL` (optional) names the warehouse; the default is SQLite in the data dir.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field

from bitrix24_example.demo_portal import DemoPortal
from dagster_bitrix24 import Bitrix24Resource, SQLWarehouseResource

#: Where the demo portal, the SQLite warehouse and the charts live.
DATA_DIR_ENV = "BITRIX24_EXAMPLE_DATA_DIR"


def data_dir() -> Path:
    """`$BITRIX24_EXAMPLE_DATA_DIR`, else `data/` next to this package's project folder."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).resolve()
    return Path(__file__).resolve().parent.parent / "data"


def demo_mode() -> bool:
    """True when no real portal is configured."""
    return not os.environ.get("BITRIX24_WEBHOOK_URL")


class DemoBitrix24Resource(ConfigurableResource):
    """Serves the demo portal for one run and hands the run a `Bitrix24Resource` for it.

    The portal changes once per run (new deals, leads, contacts... and updates), so an
    incremental sync always has something to pick up.
    """

    data_dir: str = Field(description="Folder holding the demo portal's state file.")
    plan: str = Field(default="standard", description="Emulated plan limits.")
    time_scale: float = Field(
        default=0.05, description="Emulator speed-up: limits pass 20x faster than real."
    )

    @contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator[Bitrix24Resource]:
        portal = DemoPortal(data_dir=self.data_dir)
        portal.advance(key=context.run_id)
        with portal.serve(plan=self.plan, time_scale=self.time_scale) as emulated:
            yield Bitrix24Resource(
                webhook_url=emulated.webhook_url, plan=self.plan, time_scale=self.time_scale
            )


def bitrix24_resource(folder: Path) -> ConfigurableResource:
    """The real portal from `BITRIX24_WEBHOOK_URL`, or the demo portal."""
    if demo_mode():
        return DemoBitrix24Resource(data_dir=str(folder))
    return Bitrix24Resource(
        webhook_url=EnvVar("BITRIX24_WEBHOOK_URL"),
        plan=os.environ.get("BITRIX24_PLAN", "standard"),
        limiter_path=str(folder / "bitrix24_limiter.sqlite"),
    )


def warehouse_resource(folder: Path) -> SQLWarehouseResource:
    """`WAREHOUSE_URL` if set, else the embedded SQLite warehouse in the data dir."""
    if os.environ.get("WAREHOUSE_URL"):
        return SQLWarehouseResource(url=EnvVar("WAREHOUSE_URL"))
    return SQLWarehouseResource(url=f"sqlite:///{folder / 'warehouse.sqlite'}")
