"""Asset checks against the emulator and a real SQLite warehouse."""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from dagster import AssetSelection, materialize

from dagster_bitrix24 import build_bitrix24_assets, build_bitrix24_checks, change_time_partitions
from tests.dagster.conftest import resources

ONLY_CHECKS = AssetSelection.all_asset_checks()


def _outcomes(result) -> dict[tuple[str, str], bool]:
    evaluations = result.get_asset_check_evaluations()
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in evaluations}


def test_checks_pass_after_a_sync_then_catch_drift_and_staleness(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    assets = build_bitrix24_assets(entities=["crm.deal", "crm.status"])
    checks = build_bitrix24_checks(assets, max_lag=timedelta(hours=1))
    res = resources(portal, url)

    after_sync = _outcomes(materialize([assets, checks], resources=res))
    assert after_sync == {
        ("bitrix24/crm_deal", "row_count_matches_portal"): True,
        ("bitrix24/crm_deal", "unique_ids"): True,
        ("bitrix24/crm_deal", "no_rejected_values"): True,
        ("bitrix24/crm_deal", "freshness"): True,
        ("bitrix24/crm_status", "row_count_matches_portal"): True,
        ("bitrix24/crm_status", "unique_ids"): True,  # no change time: no freshness check
        ("bitrix24/crm_status", "no_rejected_values"): True,
    }

    portal.store.mutate(2, adds=6, entities=("crm.deal",))
    drifted = _outcomes(materialize([assets, checks], resources=res, selection=ONLY_CHECKS))
    assert drifted[("bitrix24/crm_deal", "row_count_matches_portal")] is False
    assert drifted[("bitrix24/crm_status", "row_count_matches_portal")] is True

    strict = build_bitrix24_checks(assets, max_lag=timedelta(0), name="strict_checks")
    stale = _outcomes(materialize([assets, strict], resources=res, selection=ONLY_CHECKS))
    assert stale[("bitrix24/crm_deal", "freshness")] is False


def test_unique_ids_fails_on_a_table_without_a_primary_key(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE bitrix24_crm_deal (id INTEGER, title TEXT, _deleted_at TIMESTAMP)"
        )
        connection.exec_driver_sql(
            "INSERT INTO bitrix24_crm_deal VALUES (1, 'a', NULL), (1, 'b', NULL), (2, 'c', NULL)"
        )
    engine.dispose()
    assets = build_bitrix24_assets(entities=["crm.deal"])
    checks = build_bitrix24_checks(assets)
    result = materialize([assets, checks], resources=resources(portal, url), selection=ONLY_CHECKS)
    outcomes = _outcomes(result)
    assert outcomes[("bitrix24/crm_deal", "unique_ids")] is False
    assert outcomes[("bitrix24/crm_deal", "freshness")] is False  # never synced: no cursor


def test_partitioned_assets_are_fresh_once_a_partition_run_reaches_the_present(portal, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    first_day = datetime.fromtimestamp(
        min(row["DATE_MODIFY"] for row in portal.store.raw_rows("crm.deal")), UTC
    ).date()
    daily = change_time_partitions("daily", start=first_day.isoformat())
    assets = build_bitrix24_assets(entities=["crm.deal"], partitions_def=daily)
    checks = build_bitrix24_checks(assets, max_lag=timedelta(hours=1))
    res = resources(portal, url)
    today = datetime.now(UTC).date()

    def run(first, last) -> dict[tuple[str, str], bool]:
        tags = {"dagster/asset_partition_range_start": str(first),
                "dagster/asset_partition_range_end": str(last)}  # fmt: skip
        return _outcomes(materialize([assets, checks], resources=res, tags=tags))

    old_days = run(first_day, first_day)  # a backfill of the past says nothing of freshness
    assert old_days[("bitrix24/crm_deal", "freshness")] is False
    everything = run(first_day, today)
    assert everything == {
        ("bitrix24/crm_deal", "row_count_matches_portal"): True,
        ("bitrix24/crm_deal", "unique_ids"): True,
        ("bitrix24/crm_deal", "no_rejected_values"): True,
        ("bitrix24/crm_deal", "freshness"): True,
    }


def test_every_check_says_what_it_tests():
    assets = build_bitrix24_assets(entities=["crm.deal", "crm.status"])
    checks = build_bitrix24_checks(assets, max_lag=timedelta(hours=3))
    described = {(s.asset_key.to_user_string(), s.name): s.description for s in checks.check_specs}
    assert len(described) == 7 and all(described.values())  # deal 4, status 3
    assert "3:00:00" in described[("bitrix24/crm_deal", "freshness")]
    assert "portal's count" in described[("bitrix24/crm_status", "row_count_matches_portal")]
