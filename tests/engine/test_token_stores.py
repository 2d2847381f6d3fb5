"""Token stores: round trips, atomic files, and one refresher at a time across connections."""

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from bitrix_core.errors import BitrixParameterError
from bitrix_core.token_stores import (
    InMemoryTokenStore,
    JsonFileTokenStore,
    OAuthTokens,
    SqlAlchemyTokenStore,
)

TOKENS = OAuthTokens(
    access_token="access-canary-1",
    refresh_token="refresh-canary-1",
    expires_at=1_700_000_000.5,
    client_endpoint="https://example.bitrix24.com/rest/",
    member_id="m1",
    domain="example.bitrix24.com",
    scope="crm",
)
ROTATED = OAuthTokens(access_token="access-canary-2", refresh_token="refresh-canary-2")


def test_tokens_repr_hides_secrets_and_dict_round_trips():
    assert "canary" not in repr(TOKENS)
    assert OAuthTokens.from_dict(TOKENS.to_dict()) == TOKENS


def test_token_response_is_parsed_and_keeps_the_previous_endpoint():
    body = {"access_token": "a-new-1", "refresh_token": "r-new-1", "expires_in": 3600}
    tokens = OAuthTokens.from_token_response(body, now=1000.0, previous=TOKENS)
    assert tokens.expires_at == 4600.0
    assert tokens.client_endpoint == TOKENS.client_endpoint


async def test_in_memory_store_round_trip():
    store = InMemoryTokenStore()
    assert store.load() is None
    async with store.refresh_lock():
        store.save(TOKENS)
    assert store.load() == TOKENS


async def test_json_file_store_is_private_atomic_and_round_trips(tmp_path):
    path = tmp_path / "nested" / "tokens.json"
    store = JsonFileTokenStore(path)
    assert store.load() is None
    store.save(TOKENS)
    store.save(ROTATED)
    assert JsonFileTokenStore(path).load() == ROTATED
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json"]  # no temp files
    assert json.loads(path.read_text())["refresh_token"] == "refresh-canary-2"
    assert "canary" not in repr(store)


_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


async def test_json_file_lock_waits_for_another_process(tmp_path):
    path = tmp_path / "tokens.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path) + ".lock", "0.5"], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        started = time.monotonic()
        async with JsonFileTokenStore(path).refresh_lock():
            waited = time.monotonic() - started
    finally:
        holder.wait(timeout=5)
    assert waited >= 0.2


async def test_json_file_lock_gives_up_after_its_timeout(tmp_path):
    path = tmp_path / "tokens.json"
    holder = JsonFileTokenStore(path)
    waiter = JsonFileTokenStore(path, lock_timeout=0.1)
    async with holder.refresh_lock():
        with pytest.raises(TimeoutError):
            async with waiter.refresh_lock():
                pass


def test_duckdb_is_refused_as_a_token_store_before_any_table_is_made(tmp_path):
    url = f"duckdb:///{tmp_path / 'tokens.duckdb'}"
    with pytest.raises(BitrixParameterError, match="DuckDB cannot lock a row"):
        SqlAlchemyTokenStore(url)
    assert not (tmp_path / "tokens.duckdb").exists()


@pytest.fixture
def table_name(warehouse_url: str) -> Iterator[str]:
    if warehouse_url.startswith("duckdb"):
        pytest.skip("DuckDB is refused as a token store (no row lock): tested above")
    name = f"oauth_tokens_{uuid.uuid4().hex[:10]}"
    yield name
    engine = sa.create_engine(warehouse_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    engine.dispose()


async def test_sql_store_round_trip(warehouse_url: str, table_name: str):
    store = SqlAlchemyTokenStore(warehouse_url, key="portal-a", table_name=table_name)
    assert store.load() is None
    store.save(TOKENS)
    async with store.refresh_lock():
        assert store.load() == TOKENS
        store.save(ROTATED)
    other = SqlAlchemyTokenStore(warehouse_url, key="portal-a", table_name=table_name)
    assert other.load() == ROTATED
    assert SqlAlchemyTokenStore(warehouse_url, key="b", table_name=table_name).load() is None
    for each in (store, other):
        each.close()


async def test_sql_store_lock_admits_one_refresher_at_a_time(warehouse_url: str, table_name: str):
    first = SqlAlchemyTokenStore(warehouse_url, table_name=table_name)
    second = SqlAlchemyTokenStore(warehouse_url, table_name=table_name)
    first.save(TOKENS)
    events: list[str] = []

    async def refresher(store: SqlAlchemyTokenStore, name: str, tokens: OAuthTokens) -> None:
        async with store.refresh_lock():
            events.append(f"{name} in")
            seen = store.load()
            await asyncio.sleep(0.3)
            if seen == TOKENS:  # only the first one in should still see the old pair
                store.save(tokens)
            events.append(f"{name} out")

    first_task = asyncio.create_task(refresher(first, "first", ROTATED))
    await asyncio.sleep(0.1)
    await refresher(second, "second", TOKENS)
    await first_task
    assert events == ["first in", "first out", "second in", "second out"]
    assert second.load() == ROTATED


async def test_sql_store_rolls_back_when_the_refresh_fails(warehouse_url: str, table_name: str):
    store = SqlAlchemyTokenStore(warehouse_url, table_name=table_name)
    store.save(TOKENS)
    with pytest.raises(RuntimeError):
        async with store.refresh_lock():
            store.save(ROTATED)
            raise RuntimeError("token server failed")
    assert store.load() == TOKENS
