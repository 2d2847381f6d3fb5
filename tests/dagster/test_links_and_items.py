"""Deal-contact links, smart processes, multi-field child tables and honest run totals."""

import asyncio

from dagster import materialize

from bitrix_core.client import BitrixClient
from dagster_bitrix24 import build_bitrix24_assets, discover_smart_processes
from tests.dagster.conftest import (
    PREFIX,
    materializations,
    portal_multifields,
    resources,
    select_columns,
    stored_multifields,
    stored_rows,
)

LINK_METHOD = "crm.deal.contact.items.get"


def _run(assets, portal, url, **config):
    return materialize(
        [assets],
        resources=resources(portal, url),
        run_config={"ops": {assets.node_def.name: {"config": config}}},
    )


def _portal_links(portal) -> dict[tuple[int, int], tuple]:
    return {
        (deal, link["CONTACT_ID"]): (link["SORT"], link["ROLE_ID"], link["IS_PRIMARY"] == "Y")
        for deal in portal.store.ids("crm.deal")
        for link in portal.store.deal_contacts(deal)
    }


def _stored_links(url: str) -> dict[tuple[int, int], tuple]:
    rows = select_columns(url, f"{PREFIX}crm_deal_contact", "deal_id", "contact_id", "sort", "role_id",
                   "is_primary")  # fmt: skip
    return {(int(d), int(c)): (s, r, bool(p)) for d, c, s, r, p in rows}


def _call(portal, method: str, params: dict):
    async def call():
        async with BitrixClient(portal.webhook_url) as client:
            return await client.call(method, params)

    return asyncio.run(call())


def test_deal_contact_links_equal_the_portal_and_follow_changes(portal, clean_url):
    assets = build_bitrix24_assets(entities=["crm.deal", "crm.deal.contact"], table_prefix=PREFIX)
    portal.counters.clear()
    first = materializations(_run(assets, portal, clean_url))["bitrix24/crm_deal_contact"]
    expected = _portal_links(portal)
    assert len(expected) > portal.store.count("crm.deal") // 2  # primary and extra contacts
    assert _stored_links(clean_url) == expected
    assert first["dagster/row_count"] == first["rows_fetched"] == len(expected)
    assert first["dagster/table_name"] == f"{PREFIX}crm_deal_contact"
    # One command per deal, in batch requests, none sent on its own; the method's first
    # batch holds UNKNOWN_COMMANDS (its cost unknown: the 60 s request cap) and the rest of
    # the first page's deals wait for its answer, then every batch holds a page's 50.
    counted = portal.counters[LINK_METHOD]
    deals = portal.store.count("crm.deal")
    assert counted.subcommands == deals and counted.requests == 0
    assert counted.batches <= -(-deals // 50) + 1

    contact = portal.store.ids("crm.contact")[3]
    new_deal = _call(portal, "crm.deal.add", {"fields": {"TITLE": "linked", "CONTACT_ID": contact}})
    gone = portal.store.ids("crm.deal")[5]
    assert _call(portal, "crm.deal.delete", {"id": gone})
    second = materializations(_run(assets, portal, clean_url))["bitrix24/crm_deal_contact"]
    assert second["bitrix24/mode"] == "incremental"
    assert second["rows_fetched"] < len(expected) // 2  # only the window's deals
    stored = _stored_links(clean_url)
    assert stored[(new_deal, contact)] == (10, 0, True)
    assert any(deal == gone for deal, _ in stored)  # an incremental run cannot see deletes

    refreshed = _run(assets, portal, clean_url, full_refresh=True)
    assert materializations(refreshed)["bitrix24/crm_deal_contact"]["rows_marked_deleted"] > 0
    assert _stored_links(clean_url) == _portal_links(portal)


def test_contact_phones_and_emails_equal_the_portal(portal, clean_url):
    assets = build_bitrix24_assets(entities=["crm.contact"], table_prefix=PREFIX)

    def portal_values(kind: str) -> dict[int, list[tuple]]:
        return portal_multifields(portal, "crm.contact", kind)

    def stored_values(kind: str) -> dict[int, list[tuple]]:
        return stored_multifields(clean_url, f"{PREFIX}crm_contact_{kind.lower()}", kind)

    _run(assets, portal, clean_url)
    for kind in ("PHONE", "EMAIL"):
        assert stored_values(kind) == portal_values(kind) != {}

    owner = portal.store.ids("crm.contact")[0]
    _call(portal, "crm.contact.update", {"id": owner, "fields": {
        "PHONE": [{"VALUE": "+7 900 000-00-01", "VALUE_TYPE": "MOBILE"},
                  {"VALUE": "+7 900 000-00-02", "VALUE_TYPE": "HOME"}],
        "EMAIL": [],
    }})  # fmt: skip
    _run(assets, portal, clean_url)
    phones, emails = stored_values("PHONE"), stored_values("EMAIL")
    assert [value for _, _, value in phones[owner]] == ["+7 900 000-00-01", "+7 900 000-00-02"]
    assert owner not in emails
    assert phones == portal_values("PHONE") and emails == portal_values("EMAIL")


def test_smart_processes_are_discovered_at_run_time(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    reported = materializations(_run(build_bitrix24_assets(entities=["crm.item"]), portal, url))
    items = reported["bitrix24/crm_item"]
    assert items["bitrix24/entity_type_ids"] == [31, 128, 130]
    assert set(items["bitrix24/tables"].values()) == {
        "bitrix24_crm_smart_invoice", "bitrix24_crm_item_128", "bitrix24_crm_item_130",
    }  # fmt: skip
    total = 0
    for type_id in (128, 130):
        rows = stored_rows(url, f"bitrix24_crm_item_{type_id}", "title")
        portal_rows = {r["ID"]: r["TITLE"] for r in portal.store.raw_rows(f"crm.item.{type_id}")}
        assert {i: title for i, (title,) in rows.items()} == portal_rows != {}
        total += len(rows)
    total += portal.store.count("crm.item.31")
    assert items["dagster/row_count"] == items["rows_fetched"] == total


def test_smart_processes_listed_on_their_own_are_left_to_their_asset(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    assert discover_smart_processes(bitrix24=resources(portal, url)["bitrix24"]) == [
        "crm.smart_invoice", "crm.item.128", "crm.item.130",
    ]  # fmt: skip
    assets = build_bitrix24_assets(entities=["crm.item.128", "crm.item"])
    reported = materializations(_run(assets, portal, url))
    assert reported["bitrix24/crm_item"]["bitrix24/entity_type_ids"] == [31, 130]
    own = reported["bitrix24/crm_item_128"]
    assert own["dagster/row_count"] == portal.store.count("crm.item.128")


def test_run_totals_count_each_request_once(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    entities = ["crm.deal", "crm.contact", "crm.company", "crm.lead"]
    portal.counters.clear()
    reported = materializations(_run(build_bitrix24_assets(entities=entities), portal, url))
    served = portal.counters.total()
    totals = {name: {m[name] for m in reported.values()} for name in (
        "bitrix24/run_requests", "bitrix24/run_batches", "bitrix24/run_subcommands",
    )}  # fmt: skip
    assert all(len(values) == 1 for values in totals.values())  # the same on every asset
    (run_requests,) = totals["bitrix24/run_requests"]
    (run_batches,) = totals["bitrix24/run_batches"]
    assert run_requests == served.requests  # every HTTP request the portal saw, once
    assert run_batches == portal.counters["batch"].requests
    # Per-entity figures count a shared batch for every entity in it; the sum overshoots.
    assert sum(m["batches"] for m in reported.values()) > run_batches
    (subcommands,) = totals["bitrix24/run_subcommands"]
    assert subcommands == served.subcommands - portal.counters["batch"].subcommands
