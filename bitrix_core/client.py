"""BitrixClient: the async entry point: call, call_many, list, get_all.

    async with BitrixClient(webhook_url, limits=Limits.for_plan("standard")) as client:
        deal = await client.call("crm.deal.get", {"id": 5})
        answers = await client.call_many([("crm.deal.get", {"id": 1}), ("crm.deal.get", {"id": 2})])
        async for page in client.list("crm.deal.list", {"select": ["ID", "TITLE"]}):
            ...
        client.stats.as_dict()    # requests, batches, retries, waits... since the client opened

One aiohttp session (the Transport) lives as long as the client; every request goes
through the throttle; `call_many` and `list` share one batcher, so concurrent callers'
commands travel in the same batches.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Self

from bitrix_core.auth import Auth, WebhookAuth
from bitrix_core.batching import Batcher
from bitrix_core.entities import EntitySpec
from bitrix_core.errors import BitrixAuthError, BitrixParameterError
from bitrix_core.limiter_state import LimiterBackend
from bitrix_core.pagination import ListRun, PageStrategy, paginate
from bitrix_core.pagination.base import LinkedRunner
from bitrix_core.pagination.run import StrategyName, count_rows, list_spec
from bitrix_core.requester import Requester, RetryPolicy, is_read_method
from bitrix_core.stats import CallStats, ListStats
from bitrix_core.throttle import Limits, Throttle
from bitrix_core.transport import Transport
from bitrix_core.validation import validate_call


class BitrixClient:
    """An async Bitrix24 REST client for one portal (webhook URL or an `auth` object)."""

    def __init__(
        self,
        webhook_url: str | None = None,
        *,
        auth: Auth | None = None,
        limits: Limits | None = None,
        timeout: float = 30,
        verify_ssl: bool = True,
        verbose: bool | None = None,
        progress: Callable[..., Any] | None = None,
        retry: RetryPolicy | None = None,
        backend: LimiterBackend | None = None,
        linger_s: float = 0.002,
    ) -> None:
        if (webhook_url is None) == (auth is None):
            raise BitrixParameterError(
                "webhook_url", "give either a webhook URL or auth=, not both"
            )
        self.auth: Auth = auth if auth is not None else WebhookAuth(webhook_url or "")
        self.limits = limits or Limits.for_plan("standard")
        self.verbose = verbose
        self.progress = progress
        self.stats = CallStats()
        self.throttle = Throttle(self.limits, backend=backend)
        self._transport = Transport(timeout=timeout, verify_ssl=verify_ssl)
        self._requester = Requester(self._post, self.throttle, retry=retry, renew=self._renew)
        self._linger_s = linger_s
        self._batcher: Batcher | None = None

    def __repr__(self) -> str:
        return f"BitrixClient({self.auth.redacted_base!r})"

    async def __aenter__(self) -> Self:
        await self._transport.__aenter__()
        self._batcher = Batcher(self._requester, linger_s=self._linger_s, stats=self.stats)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._batcher is not None:
            await self._batcher.aclose()
            self._batcher = None
        await self._transport.__aexit__(exc_type, exc, tb)
        close = getattr(self.throttle.backend, "aclose", None)
        if close is not None:  # a shared backend's connections (Redis, PostgreSQL)
            await close()

    @property
    def batcher(self) -> Batcher:
        """The shared batch queue (open the client first)."""
        return self._require_open()

    def _require_open(self) -> Batcher:
        if self._batcher is None:
            raise RuntimeError("BitrixClient is not open: use 'async with BitrixClient(...)'")
        return self._batcher

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotent: bool | None = None,
        stats: CallStats | None = None,
    ) -> Any:
        """Call one method in its own request; return the `result` value."""
        params = _checked(method, params)
        self._require_open()
        sinks = [self.stats] + ([stats] if stats is not None else [])
        envelope = await self._requester.send(
            method,
            params,
            idempotent=is_read_method(method) if idempotent is None else idempotent,
            stats=sinks,
        )
        return envelope.get("result")

    async def call_many(
        self,
        commands: Iterable[tuple[str, Mapping[str, Any] | None]],
        *,
        stats: CallStats | None = None,
    ) -> builtins.list[Any]:
        """Run commands in batches; results in input order, a failed one as its exception."""
        checked = [(method, _checked(method, params)) for method, params in commands]
        batcher = self.batcher
        answers = await asyncio.gather(
            *(
                batcher.run(method, params, stats=stats, idempotent=is_read_method(method))
                for method, params in checked
            ),
            return_exceptions=True,
        )
        return [a if isinstance(a, BaseException) else a.result for a in answers]

    def list(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        strategy: StrategyName | PageStrategy = "auto",
        order: Literal["id"] | None = "id",
        progress: Any = None,
        verify: bool = False,
        spec: EntitySpec | None = None,
        stats: ListStats | None = None,
    ) -> ListRun:
        """A ListRun: an async iterator of pages (rows stream as pages complete); `.stats`.

        `verify=True` proves the read against the portal's counts (see `ListRun`) and raises
        IncompletePaginationError on a shortfall (offset paging always does). `spec` says
        how the method's rows are keyed and filtered where the engine cannot tell from the
        method name (a `crm.item` type's own spec); the run counts into `stats` when given
        (several runs of one entity add up)."""
        params = _checked(method, params)
        runner: LinkedRunner = self.batcher
        return paginate(
            runner,
            method,
            params,
            strategy=strategy,
            order=order,
            verify=verify,
            spec=spec,
            stats=stats,
            progress=self.progress if progress is None else progress,
            verbose=self.verbose,
        )

    async def count(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        spec: EntitySpec | None = None,
    ) -> int | None:
        """How many rows list method `method` holds for the filter in `params`, as the
        portal counts them (one page of ids, not the rows), or None when the method
        reports no total. Counts asked at once share batches."""
        params = _checked(method, params)
        runner: LinkedRunner = self.batcher
        total, _ = await count_rows(runner, list_spec(method, params, spec), params)
        return total

    async def get_all(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        strategy: StrategyName | PageStrategy = "auto",
        order: Literal["id"] | None = "id",
        progress: Any = None,
        verify: bool = False,
    ) -> builtins.list[dict[str, Any]]:
        """Every row of a list method, in one list (`verify` as in `list`)."""
        rows: builtins.list[dict[str, Any]] = []
        async for page in self.list(
            method, params, strategy=strategy, order=order, progress=progress, verify=verify
        ):
            rows.extend(page.rows)
        return rows

    async def _post(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request with the current credentials."""
        return await self._transport.post(
            self.auth.method_url(method), {**params, **self.auth.auth_params()}, method=method
        )

    async def _renew(self, error: BitrixAuthError) -> bool:
        """True when the credentials were renewed (the requester resends through the
        throttle, so the resend takes its own bucket slot)."""
        return await self.auth.handle_auth_error(error, self._transport)


def _checked(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a call before anything is sent; the parameters as a dict."""
    if params is not None and not isinstance(params, Mapping):
        raise BitrixParameterError("params", f"expected a mapping, got {type(params).__name__}")
    params = dict(params or {})
    validate_call(method, params)
    return params
