"""README command 1's last step: `python -m bitrix24_example.demo` syncs and prints the tables."""

import os
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa
from bitrix24_example.demo_portal import DemoPortal

from bitrix_core.emulator.portal import EmulatedPortal


def run_demo(data_dir, *, status: int = 0, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("BITRIX24_WEBHOOK_URL", "WAREHOUSE_URL", "DAGSTER_HOME")}
    env["BITRIX24_EXAMPLE_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "bitrix24_example.demo"],
        env={**env, **extra}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == status, done.stdout + done.stderr[-3000:]
    return done.stdout


def printed_rows(output: str, table: str) -> int:
    match = re.search(rf"^{table}\s+(\d+)$", output, re.MULTILINE)
    assert match, output
    return int(match.group(1))


@pytest.mark.slow
def test_demo_syncs_everything_and_picks_up_the_next_change(tmp_path):
    first = run_demo(tmp_path)
    store = DemoPortal(data_dir=tmp_path / "demo").load()
    for entity, table in [("crm.deal", "bitrix24_crm_deal"), ("crm.lead", "bitrix24_crm_lead"),
                          ("crm.item.128", "bitrix24_crm_item_128"), ("user", "bitrix24_user")]:
        assert printed_rows(first, table) == store.count(entity)
    deal_pipelines = store.scalar("SELECT COUNT(*) FROM category WHERE ENTITY_TYPE_ID = 2")
    assert printed_rows(first, "bitrix24_crm_category") == deal_pipelines > 0
    assert printed_rows(first, "sales_funnel") > 0
    assert (tmp_path / "demo" / "charts" / "sales_funnel.png").stat().st_size > 10_000

    second = run_demo(tmp_path)  # the portal changed in between: 3 new deals landed
    assert printed_rows(second, "bitrix24_crm_deal") == printed_rows(first, "bitrix24_crm_deal") + 3


@pytest.mark.slow
def test_demo_with_a_warehouse_url_then_a_real_portal_on_it_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'mine.sqlite'}"
    first = run_demo(tmp_path / "data", WAREHOUSE_URL=url)  # crashed after the sync before
    store = DemoPortal(data_dir=tmp_path / "data" / "demo").load()
    assert printed_rows(first, "bitrix24_crm_deal") == store.count("crm.deal")
    assert not (tmp_path / "data" / "demo" / "warehouse.sqlite").exists()

    with EmulatedPortal(seed=5, deals=30, plan="unlimited") as real:
        refused = run_demo(
            tmp_path / "data", status=1, WAREHOUSE_URL=url, BITRIX24_WEBHOOK_URL=real.webhook_url,
            BITRIX24_FIRST_DAY="2026-01-01",
        )  # fmt: skip
    assert "holds data of the demo portal, not 127.0.0.1" in refused, refused
    assert "bitrix24_crm_deal" not in refused  # no table counts after a failure
    assert real.webhook_url.split("/")[-2] not in refused
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        deals = connection.execute(sa.text("SELECT COUNT(*) FROM bitrix24_crm_deal")).scalar_one()
    engine.dispose()
    assert deals == store.count("crm.deal")  # nothing of the other portal landed


@pytest.mark.slow
def test_a_wrong_webhook_code_is_one_message_naming_the_cause(tmp_path):
    with EmulatedPortal(seed=5, deals=30, plan="unlimited") as real:
        code = real.webhook_url.rstrip("/").rsplit("/", 1)[1]
        wrong = real.webhook_url.replace(f"/{code}/", "/wr0ngc0de/")
        env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_URL", "DAGSTER_HOME")}
        env.update(BITRIX24_WEBHOOK_URL=wrong, BITRIX24_EXAMPLE_DATA_DIR=str(tmp_path),
                   BITRIX24_FIRST_DAY="2026-01-01")  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "bitrix24_example.demo"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    [message] = [line for line in done.stdout.splitlines() if "401" in line]
    assert message.strip().startswith("12 assets (bitrix24/crm_deal, ")  # both steps, once
    assert "bitrix24/user" in message and "What to do: check BITRIX24_WEBHOOK_URL" in message
    assert "Traceback" not in done.stderr and "Stack Trace" not in done.stderr + done.stdout
    assert "wr0ngc0de" not in done.stdout + done.stderr


@pytest.mark.slow
def test_the_demo_writes_a_duckdb_file_with_one_setting(tmp_path):
    url = f"duckdb:///{tmp_path / 'mine.duckdb'}"
    output = run_demo(tmp_path / "data", WAREHOUSE_URL=url)
    store = DemoPortal(data_dir=tmp_path / "data" / "demo").load()
    assert printed_rows(output, "bitrix24_crm_deal") == store.count("crm.deal")
    assert printed_rows(output, "sales_funnel") > 0
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        deals = connection.execute(sa.text("SELECT COUNT(*) FROM bitrix24_crm_deal")).scalar_one()
    engine.dispose()
    assert deals == store.count("crm.deal")
