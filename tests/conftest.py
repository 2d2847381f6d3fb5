"""Shared fixtures: warehouse URLs for the real databases named by the environment."""

import os

import pytest

_IN_CI = os.environ.get("CI", "").lower() == "true"


def _database_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        if _IN_CI:
            pytest.fail(f"{variable} is not set: CI must test against this database")
        pytest.skip(f"{variable} is not set; set it to run this test against that database")
    return url


@pytest.fixture(params=["sqlite", "postgres", "mysql", "duckdb"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A SQLAlchemy URL for each warehouse dialect the environment provides (SQLite and
    DuckDB: a file in the test's temporary directory)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    if request.param == "postgres":
        return _database_url("BITRIX24_TEST_POSTGRES_URL")
    return _database_url("BITRIX24_TEST_MYSQL_URL")


@pytest.fixture(params=["redis", "postgres"])
def shared_state_url(request: pytest.FixtureRequest) -> str:
    """A URL of each store machines can share (limiter, OAuth tokens) the environment has."""
    if request.param == "redis":
        return _database_url("BITRIX24_TEST_REDIS_URL")
    return _database_url("BITRIX24_TEST_POSTGRES_URL")
