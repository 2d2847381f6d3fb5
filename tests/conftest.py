"""Shared fixtures: warehouse URLs for the real databases named by the environment.

Under pytest-xdist (`-n 2`, the CI command) every worker gets its own PostgreSQL and
MariaDB database, `<name>_<worker id>` (created when missing), so tests that drop their
prefix's tables or use fixed table names never meet another worker's. Tests go to workers a
file at a time (a module's fixtures are set up once; the tests of one file, which may share
Redis keys, never run on two workers at once), the files with `slow` tests first, so the
long end-to-end runs do not start last and leave one worker idle at the end.
"""

import os

import pytest
import sqlalchemy as sa

_IN_CI = os.environ.get("CI", "").lower() == "true"
_PER_WORKER = ("BITRIX24_TEST_POSTGRES_URL", "BITRIX24_TEST_MYSQL_URL")


def pytest_configure(config: pytest.Config) -> None:
    """In an xdist worker, point the database URLs at the worker's own databases."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    if not worker:
        return
    for variable in _PER_WORKER:
        if os.environ.get(variable):
            try:
                os.environ[variable] = _worker_database(os.environ[variable], worker)
            except sa.exc.SQLAlchemyError as error:
                raise pytest.UsageError(
                    f"{variable}: could not create the database of xdist worker {worker} "
                    f"({type(error).__name__}); allow CREATE DATABASE or run without -n"
                ) from None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201
    """Whole files to workers, in collection order (xdist would put big files first)."""
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, put the `slow` tests first (stable: otherwise in file order)."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _worker_database(url: str, worker: str) -> str:
    """The URL of `<database>_<worker>` on the same server, created if it is missing."""
    base = sa.engine.make_url(url)
    name = f"{base.database}_{worker}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if base.get_backend_name() == "postgresql":
                found = connection.exec_driver_sql(
                    "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name}
                ).scalar()
                if not found:
                    connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                connection.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{name}`")
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


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
