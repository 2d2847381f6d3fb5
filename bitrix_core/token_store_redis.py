"""OAuth tokens in Redis, so workers on any machine use the newest refresh token.

One key holds the token pair (JSON); a second is the refresh lock, taken with
`SET NX PX` and released only by its holder (a Lua compare-and-delete). The lock expires
(`lock_ttl_s`), so a worker killed while refreshing holds nobody up for longer. A save is a
compare-and-set on the refresh token the saver read under the lock: if the lock expired
and another worker stored newer tokens meanwhile, the save is refused
(`TokenStoreConflictError`) rather than overwriting them; the refresher's next load reads
the winner's tokens.
"""

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from bitrix_core.errors import BitrixError
from bitrix_core.store_urls import redact_store_url
from bitrix_core.token_stores import OAuthTokens

__all__ = ["RedisTokenStore", "TokenStoreConflictError"]

#: ARGV: the new JSON, the refresh token the saver based it on ('' = none: write anyway).
_SAVE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if ARGV[2] ~= '' and current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and stored['refresh_token'] ~= ARGV[2] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class TokenStoreConflictError(BitrixError):
    """Another worker stored newer tokens while this one refreshed (its lock had expired)."""


class RedisTokenStore:
    """One token pair under `<prefix>:<key>` in Redis; one refresher at a time anywhere."""

    def __init__(
        self,
        url: str,
        *,
        key: str = "default",
        prefix: str = "bitrix24:oauth",
        lock_ttl_s: float = 60.0,
        lock_timeout: float = 120.0,
    ) -> None:
        import redis

        self._url = url
        self.key = key
        self.data_key = f"{prefix}:{key}"
        self.lock_key = f"{prefix}:{key}:refresh-lock"
        self.lock_ttl_s = lock_ttl_s
        self.lock_timeout = lock_timeout
        self._redis = redis.Redis.from_url(url)
        self._save_script = self._redis.register_script(_SAVE_SCRIPT)
        self._release_script = self._redis.register_script(_RELEASE_SCRIPT)
        self._local = asyncio.Lock()
        self._held = False
        self._read_under_lock: str | None = None  # refresh token loaded while holding the lock

    def __repr__(self) -> str:
        return f"RedisTokenStore({redact_store_url(self._url)!r}, key={self.key!r})"

    def load(self) -> OAuthTokens | None:
        data = self._redis.get(self.data_key)
        tokens = OAuthTokens.from_dict(json.loads(data)) if data else None
        if self._held:
            self._read_under_lock = tokens.refresh_token if tokens else None
        return tokens

    def save(self, tokens: OAuthTokens) -> None:
        based_on = self._read_under_lock if self._held else None
        saved = self._save_script(
            keys=[self.data_key], args=[json.dumps(tokens.to_dict()), based_on or ""]
        )
        if not saved:
            raise TokenStoreConflictError(
                "another worker stored newer OAuth tokens while this one refreshed (the "
                f"refresh lock outlived its {self.lock_ttl_s:g} s): load() has them"
            )
        if self._held:
            self._read_under_lock = tokens.refresh_token

    @contextlib.asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        async with self._local:
            token = secrets.token_hex(16)
            ttl_ms = int(self.lock_ttl_s * 1000)
            deadline = time.monotonic() + self.lock_timeout
            while not await asyncio.to_thread(
                self._redis.set, self.lock_key, token, nx=True, px=ttl_ms
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.lock_key} is held by another worker")
                await asyncio.sleep(0.02)
            self._held, self._read_under_lock = True, None
            try:
                yield
            finally:
                self._held, self._read_under_lock = False, None
                await asyncio.to_thread(self._release, token)

    def _release(self, token: str) -> Any:
        return self._release_script(keys=[self.lock_key], args=[token])

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
