"""PortalStore: deterministic generation, id layout, change times, writes, mutate."""

from datetime import datetime, timedelta, timezone

import pytest

from bitrix_core.emulator.store import PortalSizes, PortalStore

NOW = 1_780_000_000


@pytest.fixture(scope="module")
def store() -> PortalStore:
    return PortalStore(seed=7, sizes=PortalSizes(deals=400), now=NOW)


def test_same_seed_same_portal_other_seed_other_portal():
    a = PortalStore(seed=3, sizes=PortalSizes(deals=120), now=NOW)
    b = PortalStore(seed=3, sizes=PortalSizes(deals=120), now=NOW)
    c = PortalStore(seed=4, sizes=PortalSizes(deals=120), now=NOW)
    assert a.raw_rows("crm.deal") == b.raw_rows("crm.deal")
    assert a.multifields("crm.contact", a.ids("crm.contact")) == b.multifields(
        "crm.contact", b.ids("crm.contact"))
    assert a.raw_rows("crm.deal") != c.raw_rows("crm.deal")


def test_sizes_default_from_deals_and_can_be_overridden():
    sizes = PortalSizes(deals=1000).resolved()
    assert sizes["leads"] == 500 and sizes["contacts"] == 500 and sizes["companies"] == 100
    assert sizes["activities"] == 1000 and sizes["users"] == 50 and sizes["tasks"] == 200
    small = PortalStore(seed=1, sizes=PortalSizes(deals=10, leads=3, users=4, smart_items=2))
    assert small.count("crm.deal") == 10 and small.count("crm.lead") == 3
    assert small.count("user") == 4 and small.count("crm.item.128") == 2
    with pytest.raises(ValueError, match="non-negative"):
        PortalSizes(deals=-1).resolved()


def test_counts_match_sizes_and_ids_have_dense_and_sparse_ranges(store):
    assert store.count("crm.deal") == 400
    ids = store.ids("crm.deal")
    assert ids == sorted(set(ids)) and len(ids) == 400
    gaps = {b - a for a, b in zip(ids, ids[1:], strict=False)}
    assert 1 in gaps and max(gaps) >= 10, gaps  # some ranges dense, some sparse


def test_change_times_spread_over_two_years_and_never_before_creation(store):
    rows = store.raw_rows("crm.deal")
    assert all(r["DATE_CREATE"] <= r["DATE_MODIFY"] <= NOW for r in rows)
    assert min(r["DATE_CREATE"] for r in rows) < NOW - 600 * 86400
    assert sum(r["DATE_MODIFY"] > r["DATE_CREATE"] for r in rows) > 200


def test_references_point_at_existing_rows(store):
    contacts = set(store.ids("crm.contact"))
    companies = set(store.ids("crm.company"))
    users = set(store.ids("user"))
    rows = store.raw_rows("crm.deal")
    assert {r["CONTACT_ID"] for r in rows} - {None} <= contacts
    assert {r["COMPANY_ID"] for r in rows} - {None} <= companies
    assert {r["ASSIGNED_BY_ID"] for r in rows} <= users
    deal = next(r for r in rows if r["CONTACT_ID"])
    links = store.deal_contacts(deal["ID"])
    assert links[0] == {"CONTACT_ID": deal["CONTACT_ID"], "SORT": 10, "ROLE_ID": 0,
                        "IS_PRIMARY": "Y"}


def test_stage_agrees_with_pipeline(store):
    for r in store.raw_rows("crm.deal"):
        if r["CATEGORY_ID"] == 0:
            assert ":" not in r["STAGE_ID"]
        else:
            assert r["STAGE_ID"].startswith(f"C{r['CATEGORY_ID']}:")
        assert (r["CLOSED"] == "Y") == (r["STAGE_ID"].split(":")[-1] in ("WON", "LOSE"))


def test_mutate_adds_updates_deletes_and_reports_it():
    s = PortalStore(seed=2, sizes=PortalSizes(deals=100), now=NOW)
    before = {r["ID"]: r for r in s.raw_rows("crm.deal")}
    changes = s.mutate(11, adds=5, updates=4, deletes=3, entities=["crm.deal", "crm.contact"])
    deal = changes["crm.deal"]
    assert len(deal.added) == 5 and len(deal.updated) == 4 and len(deal.deleted) == 3
    assert not set(deal.updated) & set(deal.deleted)
    assert s.count("crm.deal") == 100 + 5 - 3
    after = {r["ID"]: r for r in s.raw_rows("crm.deal")}
    assert min(deal.added) > max(before)
    for i in deal.deleted:
        assert i not in after and not s.deal_contacts(i)
    for i in deal.updated:
        assert after[i]["DATE_MODIFY"] > before[i]["DATE_MODIFY"]
        assert after[i]["OPPORTUNITY"] != before[i]["OPPORTUNITY"]
    for i in deal.added:
        assert after[i]["DATE_CREATE"] == after[i]["DATE_MODIFY"] >= NOW
        assert after[i]["TITLE"]
    assert len(changes["crm.contact"].added) == 5
    again = PortalStore(seed=2, sizes=PortalSizes(deals=100), now=NOW)
    assert again.mutate(11, updates=4, deletes=3, entities=["crm.deal"])["crm.deal"].deleted == \
        deal.deleted


def test_bad_tz_is_a_clear_error():
    with pytest.raises(ValueError, match="tz"):
        PortalStore(seed=1, sizes=PortalSizes(deals=1), tz="Moscow")


def test_stored_instants_do_not_depend_on_the_portal_zone(store):
    utc = PortalStore(seed=7, sizes=PortalSizes(deals=400), now=NOW, tz="+00:00")
    def instants(s):
        return [(r["ID"], r["DATE_CREATE"], r["DATE_MODIFY"]) for r in s.raw_rows("crm.deal")]

    assert instants(utc) == instants(store)
    for r in store.raw_rows("crm.deal"):  # local dates follow the portal's zone (+03:00)
        local = datetime.fromtimestamp(r["DATE_CREATE"], timezone(timedelta(hours=3)))
        assert r["BEGINDATE"] == local.date().isoformat()
