"""Features a user builds on: the decorator form, the translator, the default pool, fallbacks in
the metadata, reset_cursor, hourly and monthly partitions, a PostgreSQL schema, WEB and IM
child tables, TLS verification."""

import asyncio
import shutil
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    DagsterInstance,
    MaterializeResult,
    materialize,
)

from bitrix_core.client import BitrixClient
from bitrix_core.errors import BitrixCertificateError, BitrixError
from bitrix_core.requester import RetryPolicy
from dagster_bitrix24 import (
    Bitrix24Resource,
    Bitrix24SyncConfig,
    DagsterBitrix24Translator,
    SQLWarehouseResource,
    bitrix24_assets,
    build_bitrix24_assets,
    change_time_partitions,
)
from dagster_bitrix24.translator import entity_slug
from dagster_bitrix24.warehouse import Warehouse
from tests.dagster.conftest import (
    PREFIX,
    materializations,
    portal_multifields,
    resources,
    select_columns,
    stored_multifields,
    stored_rows,
)


def _sqlite(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'w.sqlite'}"


def _config(assets, **values) -> dict:
    return {"ops": {assets.node_def.name: {"config": values}}}


def _call(portal, method: str, params: dict):
    async def call():
        async with BitrixClient(portal.webhook_url) as client:
            return await client.call(method, params)

    return asyncio.run(call())


def test_decorated_body_runs_and_syncs_the_selected_entities(portal, tmp_path):
    url = _sqlite(tmp_path)
    selections: list[list[str]] = []

    @bitrix24_assets(entities=["crm.deal", "crm.contact"], name="my_crm")
    def my_crm(
        context: AssetExecutionContext,
        bitrix24: Bitrix24Resource,
        warehouse: SQLWarehouseResource,
        config: Bitrix24SyncConfig,
    ):
        selections.append(sorted(key.to_user_string() for key in context.selected_asset_keys))
        for result in bitrix24.sync(context=context, warehouse=warehouse, config=config):
            yield MaterializeResult(
                asset_key=result.asset_key, metadata={**result.metadata, "my/reviewed": True}
            )

    everything = materializations(materialize([my_crm], resources=resources(portal, url)))
    assert selections == [["bitrix24/crm_contact", "bitrix24/crm_deal"]]
    assert set(everything) == {"bitrix24/crm_contact", "bitrix24/crm_deal"}
    assert all(metadata["my/reviewed"] is True for metadata in everything.values())
    assert set(stored_rows(url, "bitrix24_crm_deal")) == set(portal.store.ids("crm.deal"))
    assert set(stored_rows(url, "bitrix24_crm_contact")) == set(portal.store.ids("crm.contact"))

    contact = AssetKey(["bitrix24", "crm_contact"])
    subset = materialize(
        [my_crm],
        resources=resources(portal, url),
        selection=[contact],
        run_config={"ops": {"my_crm": {"config": {"full_refresh": True}}}},
    )
    assert selections[-1] == ["bitrix24/crm_contact"]
    assert set(materializations(subset)) == {"bitrix24/crm_contact"}
    assert materializations(subset)["bitrix24/crm_contact"]["bitrix24/mode"] == "full"


class RawLayerTranslator(DagsterBitrix24Translator):
    """Every attribute a user may want to change, changed."""

    def get_asset_spec(self, props):
        spec = super().get_asset_spec(props)
        return spec.replace_attributes(
            key=AssetKey(["raw", entity_slug(props.entity)]),
            owners=["team:data"],
            group_name="crm_raw",
            automation_condition=AutomationCondition.on_cron("0 * * * *"),
            kinds={"bitrix24", "sqlite"},
            tags={**spec.tags, "layer": "raw"},
        )


def test_translator_override_shows_on_the_asset_specs_and_the_run(portal, tmp_path):
    url = _sqlite(tmp_path)
    assets = build_bitrix24_assets(
        entities=["crm.deal", "crm.lead"], translator=RawLayerTranslator()
    )
    specs = {spec.key.to_user_string(): spec for spec in assets.specs}
    assert set(specs) == {"raw/crm_deal", "raw/crm_lead"}
    for slug in ("crm_deal", "crm_lead"):
        spec = specs[f"raw/{slug}"]
        assert spec.owners == ["team:data"]
        assert spec.group_name == "crm_raw"
        assert spec.automation_condition == AutomationCondition.on_cron("0 * * * *")
        assert spec.kinds == {"bitrix24", "sqlite"}
        assert {"bitrix24/entity": slug, "layer": "raw"}.items() <= spec.tags.items()
        assert spec.metadata["dagster/table_name"] == f"bitrix24_{slug}"

    reported = materializations(materialize([assets], resources=resources(portal, url)))
    assert set(reported) == {"raw/crm_deal", "raw/crm_lead"}
    assert reported["raw/crm_lead"]["dagster/table_name"] == "bitrix24_crm_lead"
    assert reported["raw/crm_lead"]["dagster/row_count"] == portal.store.count("crm.lead")


def test_assets_default_to_one_pool_per_portal():
    assert build_bitrix24_assets(entities=["crm.deal"]).op.pool == "bitrix24/default"
    assert build_bitrix24_assets(entities=["crm.deal"], portal="acme").op.pool == "bitrix24/acme"
    decorated = bitrix24_assets(entities=["crm.deal"], portal="acme", pool="shared")(
        lambda context: iter(())
    )
    assert decorated.op.pool == "shared"


def test_fallbacks_under_portal_faults_show_in_the_materialisation(portal, tmp_path):
    url = _sqlite(tmp_path)
    # past the first page (the count the batched pages wait for): pages inside batches fail
    failing_pages = portal.faults.add("internal_error", method="crm.deal.list", times=3, after=1)
    bad_gateway = portal.faults.add("html_502", method="batch", times=1)

    reported = materializations(
        materialize(
            [build_bitrix24_assets(entities=["crm.deal"])], resources=resources(portal, url)
        )
    )["bitrix24/crm_deal"]
    assert (failing_pages.fired, bad_gateway.fired) == (3, 1)
    assert "retry_failed" in reported["fallbacks"]
    assert reported["retries"] >= 2  # at least the 502 and one failed page
    assert reported["bitrix24/run_retries"] >= 1
    assert reported["strategy"] == "converging"
    assert (
        reported["dagster/row_count"] == reported["rows_fetched"] == portal.store.count("crm.deal")
    )
    assert set(stored_rows(url, "bitrix24_crm_deal")) == set(portal.store.ids("crm.deal"))


def test_reset_cursor_through_run_config_rebuilds_a_broken_cursor(portal, tmp_path):
    url = _sqlite(tmp_path)
    assets = build_bitrix24_assets(entities=["crm.deal"])
    materialize([assets], resources=resources(portal, url))
    future = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    Warehouse(url).commit_cursor("bitrix24_crm_deal", future.isoformat())  # a clock gone wrong
    changed = portal.store.mutate(4, updates=5, entities=("crm.deal",))["crm.deal"].updated
    gone = portal.store.ids("crm.deal")[7]
    assert portal.store.delete("crm.deal", gone)

    stuck = materializations(materialize([assets], resources=resources(portal, url)))
    assert stuck["bitrix24/crm_deal"]["rows_fetched"] == 0  # nothing after the future cursor

    reset = materializations(
        materialize(
            [assets],
            resources=resources(portal, url),
            run_config=_config(assets, reset_cursor=True),
        )
    )["bitrix24/crm_deal"]
    portal_rows = {row["ID"]: row for row in portal.store.raw_rows("crm.deal")}
    assert reset["bitrix24/mode"] == "full"
    assert reset["rows_fetched"] == len(portal_rows)
    assert reset["rows_marked_deleted"] == 0  # unlike full_refresh, no delete marking
    newest = max(row["DATE_MODIFY"] for row in portal_rows.values())
    assert datetime.fromisoformat(reset["bitrix24/cursor"]).timestamp() == newest
    stored_cursor = Warehouse(url).read_cursor("bitrix24_crm_deal")
    assert stored_cursor is not None and stored_cursor.value == reset["bitrix24/cursor"]
    titles = stored_rows(url, "bitrix24_crm_deal", "title")
    assert {i: titles[i] for i in changed} == {i: (portal_rows[i]["TITLE"],) for i in changed}
    assert gone in titles  # still live: only full_refresh or check_deletes mark deletes


def _recent_changes(portal, *, hours: int) -> None:
    """Stamp 30 deals over the last `hours` hours, so hourly partitions have rows."""
    now = int(datetime.now(UTC).timestamp())
    for step, deal_id in enumerate(portal.store.ids("crm.deal")[:30]):
        portal.store.update("crm.deal", deal_id, {"DATE_MODIFY": now - step * hours * 120})


@pytest.mark.parametrize("granularity", ["hourly", "monthly"])
def test_hourly_and_monthly_range_backfills_count_each_partition(portal, tmp_path, granularity):
    url = _sqlite(tmp_path)
    if granularity == "hourly":
        _recent_changes(portal, hours=10)
        start = (datetime.now(UTC) - timedelta(hours=12)).strftime("%Y-%m-%d-%H:00")
    else:
        oldest = min(row["DATE_MODIFY"] for row in portal.store.raw_rows("crm.deal"))
        start = datetime.fromtimestamp(oldest, UTC).strftime("%Y-%m-01")
    partitions = change_time_partitions(granularity, start=start)
    keys = partitions.get_partition_keys()  # the last one is the last complete hour or month
    assets = build_bitrix24_assets(entities=["crm.deal"], partitions_def=partitions)
    instance = DagsterInstance.ephemeral()

    result = materialize(
        [assets],
        resources=resources(portal, url),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    assert len(instance.get_runs()) == 1
    counts = {
        e.materialization.partition: e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }
    low = partitions.time_window_for_partition_key(keys[0]).start.timestamp()
    high = partitions.time_window_for_partition_key(keys[-1]).end.timestamp()
    in_range = {
        row["ID"]: row["DATE_MODIFY"]
        for row in portal.store.raw_rows("crm.deal")
        if low <= row["DATE_MODIFY"] < high
    }
    expected = Counter(partitions.get_partition_key_for_timestamp(s) for s in in_range.values())
    assert counts == {key: expected.get(key, 0) for key in keys}
    assert sum(counts.values()) == len(in_range) > 0
    assert set(stored_rows(url, "bitrix24_crm_deal")) == set(in_range)  # nothing outside


@pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True)
def test_postgres_schema_holds_the_tables_and_the_cursor(portal, warehouse_url):
    schema, prefix = "dtest_schema", "dschema_"
    engine = sa.create_engine(warehouse_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        assets = build_bitrix24_assets(entities=["crm.deal", "crm.contact"], table_prefix=prefix)
        in_schema = {
            **resources(portal, warehouse_url),
            "warehouse": SQLWarehouseResource(url=warehouse_url, schema_name=schema),
        }
        first = materializations(materialize([assets], resources=in_schema))
        deal = first["bitrix24/crm_deal"]
        assert deal["dagster/table_name"] == f"{schema}.{prefix}crm_deal"
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names(schema=schema))
        assert {f"{prefix}crm_deal", f"{prefix}crm_contact", f"_{prefix}sync_state"} <= tables
        assert not [t for t in inspector.get_table_names() if prefix in t]  # none in public
        ids = select_columns(warehouse_url, f"{prefix}crm_deal", "id", schema=schema)
        assert sorted(i for (i,) in ids) == portal.store.ids("crm.deal")
        cursor = Warehouse(warehouse_url, schema=schema, table_prefix=prefix).read_cursor(
            f"{prefix}crm_deal"
        )
        assert cursor is not None and cursor.value == deal["bitrix24/cursor"]

        second = materializations(materialize([assets], resources=in_schema))["bitrix24/crm_deal"]
        assert second["bitrix24/mode"] == "incremental"
        assert second["bitrix24/cursor_before"] == deal["bitrix24/cursor"]
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()


def test_lead_websites_and_messengers_equal_the_portal(portal, clean_url):
    assets = build_bitrix24_assets(entities=["crm.lead"], table_prefix=PREFIX)

    def portal_values(kind: str) -> dict[int, list[tuple]]:
        return portal_multifields(portal, "crm.lead", kind)

    def stored_values(kind: str) -> dict[int, list[tuple]]:
        return stored_multifields(clean_url, f"{PREFIX}crm_lead_{kind.lower()}", kind)

    materialize([assets], resources=resources(portal, clean_url))
    for kind in ("WEB", "IM"):
        assert stored_values(kind) == portal_values(kind) != {}

    lead = portal.store.ids("crm.lead")[0]
    _call(portal, "crm.lead.update", {"id": lead, "fields": {
        "WEB": [{"VALUE": "https://one.example", "VALUE_TYPE": "WORK"},
                {"VALUE": "https://two.example", "VALUE_TYPE": "HOME"}],
        "IM": [{"VALUE": "@lead_tg", "VALUE_TYPE": "TELEGRAM"}],
    }})  # fmt: skip
    materialize([assets], resources=resources(portal, clean_url))
    websites, messengers = stored_values("WEB"), stored_values("IM")
    assert [value for _, _, value in websites[lead]] == [
        "https://one.example",
        "https://two.example",
    ]
    assert [value for _, _, value in messengers[lead]] == ["@lead_tg"]
    assert websites == portal_values("WEB") and messengers == portal_values("IM")


@pytest.fixture
def tls_webhook_url(portal, tmp_path) -> Iterator[str]:
    """The portal's webhook URL behind a TLS proxy whose certificate nobody trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificate; it is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(portal.host, portal.port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(forward, "127.0.0.1", 0, ssl=context))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = server.sockets[0].getsockname()[1]
    async def shut_down() -> None:  # the proxy's pipes end while the loop still runs
        server.close()
        pipes = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    try:
        yield portal.webhook_url.replace(portal.base_url, f"https://127.0.0.1:{port}")
    finally:
        asyncio.run_coroutine_threadsafe(shut_down(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _first_deals(resource: Bitrix24Resource) -> tuple[object, int]:
    """(the first page of deals, or the exception), and the retries the client made."""

    async def read() -> tuple[object, int]:
        async with resource.get_client() as client:
            try:
                page: object = await client.call("crm.deal.list", {"order": {"ID": "ASC"}})
            except BitrixError as error:
                page = error
            return page, client.stats.retries

    return asyncio.run(read())


@pytest.fixture
def no_backoff(monkeypatch) -> None:
    """Retries without their waits (the tests check what is sent, not when)."""
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt: 0.0)


def test_tls_certificates_are_verified_by_default(tls_webhook_url, no_backoff):
    default = Bitrix24Resource(webhook_url=tls_webhook_url, plan="unlimited")
    assert default.verify_ssl is True
    refused, _ = _first_deals(default)
    assert isinstance(refused, BitrixCertificateError)  # not retryable: a fix is needed
    assert "certificate verify failed" in str(refused)

    trusting = Bitrix24Resource(webhook_url=tls_webhook_url, plan="unlimited", verify_ssl=False)
    page, retries = _first_deals(trusting)
    assert isinstance(page, list) and len(page) == 50 and retries == 0


def test_a_certificate_failure_is_not_retried(tls_webhook_url, no_backoff):
    refused, retries = _first_deals(Bitrix24Resource(webhook_url=tls_webhook_url, plan="unlimited"))
    assert isinstance(refused, Exception) and "certificate" in str(refused)
    assert retries == 0
