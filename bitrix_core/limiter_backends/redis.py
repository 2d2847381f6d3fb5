"""A limiter backend in Redis, so processes on many machines share one portal's limits.

Every step is ONE round trip: a Lua script runs atomically on the server. The bucket is
kept on the Redis server's clock (`TIME` inside the script), so machines whose clocks
disagree still space their requests on one clock; operating-time records are kept on the
wall clock (as in the SQLite backend). Every key expires: the bucket key when the bucket
has drained (a process killed after reserving slots holds nothing past them), a budget
key `budget_ttl_s` after its last reset or block, so a dead process leaves nothing behind.

Keys: `<prefix>:<portal>:bucket` (the GCRA "theoretical arrival time"),
`<prefix>:<portal>:budget:<method>` (a hash of the `MethodBudget` fields) and
`<prefix>:<portal>:operating:<method>` (operating-time reservations: a sorted set scored
by expiry, trimmed at each step, the key expiring with its last reservation).
"""

import asyncio
import time
import uuid
from dataclasses import fields
from typing import Any

from bitrix_core.limiter_state import MethodBudget
from bitrix_core.store_urls import redact_store_url

_BUDGET_FIELDS = tuple(f.name for f in fields(MethodBudget))
_TIME_FIELDS = ("reset_at", "server_now", "blocked_until", "next_at")

#: The GCRA step: reserve the next slot (ARGV: interval, burst, 0) or, with ARGV[3] = 1,
#: hold the bucket `burst` slots full. Returns the seconds to wait, as a string.
_BUCKET_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, burst, fill = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait, new_tat = 0, tat + interval
if fill then
  new_tat = math.max(tat, now + burst * interval)
else
  wait = math.max(0, tat - (burst - 1) * interval - now)
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat),
           'PX', math.ceil((new_tat - now) * 1000) + 1000)
return string.format('%.6f', wait)
"""

#: Store a budget record: a newer portal report (server_now) replaces it; the client's own
#: additions to the same report keep the later `blocked_until`/`next_at` of either writer.
#: ARGV: ttl_ms, then field/value pairs. One round trip, atomic.
_PUT_BUDGET_SCRIPT = """
local stored = redis.call('HGETALL', KEYS[1])
local old = {}
for i = 1, #stored, 2 do old[stored[i]] = tonumber(stored[i + 1]) end
local args = {}
for i = 2, #ARGV, 2 do
  local name, value = ARGV[i], tonumber(ARGV[i + 1])
  if (name == 'blocked_until' or name == 'next_at') and old[name] and old[name] > value then
    value = old[name]
  end
  args[#args + 1] = name
  args[#args + 1] = string.format('%.6f', value)
end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

#: Reserve operating time (see limiter_backends/operating.py, the same steps): a sorted set
#: of reservations scored by expiry, members "<seconds>:<id>", on the Redis clock. ARGV:
#: seconds, after_s, hold_s, limit_s, id. Returns the seconds until the reservation starts.
_OPERATING_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds, after, hold, limit = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4])
local start = now + after
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.6f', start),
  '+inf', 'WITHSCORES')
local used = 0
for i = 1, #live, 2 do used = used + tonumber(string.match(live[i], '^[^:]+')) end
local i = 1
while used + seconds > limit and i <= #live do
  used = used - tonumber(string.match(live[i], '^[^:]+'))
  start = math.max(start, tonumber(live[i + 1]))
  i = i + 2
end
redis.call('ZADD', KEYS[1], string.format('%.6f', start + hold),
  string.format('%.6f', seconds) .. ':' .. ARGV[5])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) * 1000) + 1000)
return string.format('%.6f', start - now)
"""


class RedisLimiterBackend:
    """Leaky-bucket and operating-budget state for one portal, shared through Redis."""

    def __init__(
        self,
        url: str,
        *,
        portal: str,
        prefix: str = "bitrix24:limiter",
        budget_ttl_s: float = 3600.0,
    ) -> None:
        import redis.asyncio  # noqa: F401 - fail here, not on the first request

        self._url = url
        self.portal = portal
        self.prefix = prefix
        self.budget_ttl_s = budget_ttl_s
        self._clients: dict[
            int, tuple[Any, Any, Any, Any]
        ] = {}  # one client per event loop (a loop owns sockets)

    def __repr__(self) -> str:
        return f"RedisLimiterBackend({redact_store_url(self._url)!r}, portal={self.portal!r})"

    @property
    def bucket_key(self) -> str:
        return f"{self.prefix}:{self.portal}:bucket"

    def budget_key(self, method: str) -> str:
        return f"{self.prefix}:{self.portal}:budget:{method}"

    def operating_key(self, method: str) -> str:
        return f"{self.prefix}:{self.portal}:operating:{method}"

    def _client(self) -> tuple[Any, Any, Any, Any]:
        """(client, bucket script, put-budget script, operating script) for the running
        event loop."""
        import redis.asyncio as aioredis

        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            self._clients.clear()  # a closed loop's client cannot be used any more
            client = aioredis.Redis.from_url(self._url)
            self._clients[loop] = (
                client,
                client.register_script(_BUCKET_SCRIPT),
                client.register_script(_PUT_BUDGET_SCRIPT),
                client.register_script(_OPERATING_SCRIPT),
            )
        return self._clients[loop]

    async def take_slot(self, *, now: float, interval_s: float, burst: int) -> float:
        """Reserve the next slot (GCRA, on the Redis clock); the seconds to wait."""
        bucket = self._client()[1]
        wait = await bucket(keys=[self.bucket_key], args=[interval_s, burst, 0])
        return float(wait)

    async def fill_bucket(self, *, now: float, interval_s: float, burst: int) -> None:
        """Hold the bucket `burst` slots full: the portal answered 503 QUERY_LIMIT_EXCEEDED."""
        bucket = self._client()[1]
        await bucket(keys=[self.bucket_key], args=[interval_s, burst, 1])

    async def get_budget(self, method: str) -> MethodBudget | None:
        """The stored operating-time record of a method, on this process's clock."""
        stored = await self._client()[0].hgetall(self.budget_key(method))
        if not stored:
            return None
        values = {key.decode(): float(value) for key, value in stored.items()}
        offset = time.time() - time.monotonic()
        return MethodBudget(
            **{
                name: values[name] - offset
                if name in _TIME_FIELDS and values[name]
                else values[name]
                for name in _BUDGET_FIELDS
            }
        )

    async def put_budget(self, method: str, budget: MethodBudget) -> None:
        """Store a method's operating-time record (times on the wall clock), with a TTL."""
        offset = time.time() - time.monotonic()
        pairs: list[Any] = []
        latest = 0.0
        for name in _BUDGET_FIELDS:
            value = float(getattr(budget, name))
            if name in _TIME_FIELDS and value:
                value += offset
                if name != "server_now":  # the portal's clock, not a moment to keep until
                    latest = max(latest, value)
            pairs += [name, value]
        ttl_ms = int((max(0.0, latest - time.time()) + self.budget_ttl_s) * 1000)
        await self._client()[2](keys=[self.budget_key(method)], args=[ttl_ms, *pairs])

    async def reserve_operating(
        self, method: str, *, seconds: float, after_s: float, hold_s: float, limit_s: float
    ) -> float:
        """Reserve operating time against every process's live reservations (one Lua step
        on the Redis clock; the key expires with its last reservation); the seconds until
        it starts."""
        wait = await self._client()[3](
            keys=[self.operating_key(method)],
            args=[seconds, after_s, hold_s, limit_s, uuid.uuid4().hex],
        )
        return float(wait)

    async def aclose(self) -> None:
        """Close this process's connections."""
        for client, *_ in self._clients.values():
            await client.aclose()
        self._clients.clear()
