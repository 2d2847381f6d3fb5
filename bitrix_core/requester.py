"""One HTTP request to the portal: throttled, classified, and retried within its own budget.

An auth error the credentials can cure (an expired OAuth token) is renewed once and the
request resent through the throttle like any other send.

A 5xx that came after the portal's request cap (`Limits.request_timeout_s`), or no answer
within the client's own timeout for a request of several commands, is not resent as it is:
the throttle prices its commands from it (`MethodCosts`) and the caller sends them in smaller
batches.

Every time block of an answer (a batch's commands' too) is fed to the throttle before the
cost probes the request claimed are ended (cost_probes), so the commands waiting for them
are grouped at the size the learnt cost allows; a probe refused with 503/429 stays the
probe through its resend, and other methods' commands never wait for it.

Limit answers (503 QUERY_LIMIT_EXCEEDED, 429 OPERATION_TIME_LIMIT) mean the call did not run,
so any method is resent after the throttle's wait: 503s for as long as the limits'
`query_limit_patience_s` (backoff.py), 429s up to `max_limit_resends` times. Timeouts and
5xx leave a write's outcome unknown: reads are retried with backoff, writes are never resent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bitrix_core.batch_results import BatchSections
from bitrix_core.cost_probes import Probe
from bitrix_core.errors import (
    BitrixAuthError,
    BitrixError,
    BitrixLimitError,
    BitrixResendableError,
    BitrixServerError,
    BitrixTimeoutError,
    OperationTimeLimitError,
    QueryLimitExceededError,
)
from bitrix_core.stats import CallStats
from bitrix_core.throttle import Throttle

logger = logging.getLogger("bitrix_core")

PostFn = Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]
"""Sends one REST method with its parameters; returns the decoded envelope or raises."""
RenewFn = Callable[[BitrixAuthError], Awaitable[bool]]
"""Renews the credentials after an auth error; True when the request may be resent."""

_READ_VERBS = frozenset(
    {"list", "get", "fields", "search", "count", "current", "info", "types", "version"}
)
_READ_PREFIXES = ("list", "get", "fields", "search")


def is_read_method(method: str) -> bool:
    """True for methods that only read (*.list, *.get, *.fields, ...); unknown verbs are writes."""
    verb = method.lower().rsplit(".", 1)[-1]
    return verb in _READ_VERBS or verb.startswith(_READ_PREFIXES)


@dataclass(frozen=True)
class RetryPolicy:
    """Per-request retry budget: transient failures and 429 resends are counted apart (503s
    are waited out for `Limits.query_limit_patience_s` instead)."""

    max_retries: int = 4
    max_limit_resends: int = 12
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the given retry number (1-based)."""
        base = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)


class Requester:
    """Sends requests through the throttle, counting each into the given statistics."""

    def __init__(
        self,
        post: PostFn,
        throttle: Throttle,
        *,
        retry: RetryPolicy | None = None,
        renew: RenewFn | None = None,
    ) -> None:
        self._post = post
        self.throttle = throttle
        self.retry = retry or RetryPolicy()
        self._renew = renew

    async def send(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        idempotent: bool,
        stats: Iterable[CallStats] = (),
        budget_methods: Iterable[str] | None = None,
        max_retries: int | None = None,
        on_slot: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Send one request and return its envelope; raise once its retry budget is spent.
        `on_slot` is called when its bucket slot is reserved (see `Throttle.reserve`)."""
        sinks = list(stats)
        methods = list(budget_methods) if budget_methods is not None else [method]
        allowed = self.retry.max_retries if max_retries is None else max_retries
        retries = limit_resends = 0
        renewed = False
        refused_at: float | None = None  # when this request first got a 503
        # the cost probes this request claimed: kept through its resends after a limit
        # answer (the throttle holds every request back then anyway), ended once it is
        # answered and recorded, or has failed for good (cost_probes)
        probes: list[Probe] = []
        try:
            while True:
                sent_at = time.monotonic()
                try:
                    # The bucket slot is taken inside the concurrency slot, right before sending:
                    # a wait after reserving would let requests bunch up past their slot times.
                    async with self.throttle.concurrency():
                        held: list[list[float]] = []
                        waited = await self.throttle.reserve(
                            methods, on_slot=on_slot, held=held, probes=probes
                        )
                        _count_request(sinks, method, waited)
                        sent_at = time.monotonic()
                        try:
                            envelope = await self._post(method, params)
                        finally:
                            self.throttle.answered(held)
                        self.throttle.observe_request(time.monotonic() - sent_at)
                except BitrixAuthError as error:
                    if renewed or self._renew is None or not await self._renew(error):
                        raise
                    renewed = True  # a renewal is not a retry: resend through the throttle
                    continue
                except BitrixResendableError as error:
                    if isinstance(error, BitrixLimitError):  # it did not run: any method is resent
                        if isinstance(error, QueryLimitExceededError):
                            refused_at = time.monotonic() if refused_at is None else refused_at
                        else:
                            limit_resends += 1
                        refused = await wait_for_limit(error, method, self.throttle, sinks)
                        if refused is not None:
                            raise refused from None
                        if limit_resends > self.retry.max_limit_resends:
                            raise
                    else:
                        self.throttle.on_overload()
                        retries += 1
                        # the same request would be cut again: the caller makes it smaller
                        cut = self._priced_from(error, methods, time.monotonic() - sent_at)
                        if cut or not idempotent or retries > allowed:
                            raise
                        delay = self.retry.backoff(retries)
                        logger.info(
                            "%s failed (%s); retry %d in %.2f s",
                            method,
                            type(error).__name__,
                            retries,
                            delay,
                        )
                        await asyncio.sleep(delay)
                else:
                    self.throttle.on_success()
                    if refused_at is not None:
                        for sink in sinks:
                            sink.query_limit_wait_s += time.monotonic() - refused_at
                    await self._record(method, params, envelope)
                    return envelope
                for sink in sinks:
                    sink.retries += 1
        finally:
            self.throttle.probes_ended(probes)

    def _priced_from(self, error: BitrixError, methods: list[str], elapsed_s: float) -> bool:
        """A request cut at the portal's cap (5xx) or left unanswered within the client's
        timeout: True when the throttle priced its commands from it (resend it smaller)."""
        costs = self.throttle.costs
        if isinstance(error, BitrixServerError):
            return costs.on_request_cut(methods, elapsed_s)
        return isinstance(error, BitrixTimeoutError) and costs.on_request_timeout(
            methods, elapsed_s
        )

    async def _record(
        self, method: str, params: Mapping[str, Any], envelope: Mapping[str, Any]
    ) -> None:
        """Feed the answer's time blocks to the throttle: the request's, and for a batch
        each command's (to its own method)."""
        await self._record_time(method, envelope.get("time"))
        body = envelope.get("result")
        commands = params.get("cmd")
        if method.lower() != "batch" or not isinstance(body, Mapping):
            return
        if not isinstance(commands, Mapping):
            return
        for key, timing in BatchSections.read(body).times.items():
            command = commands.get(key)
            if isinstance(command, str):
                await self._record_time(command.partition("?")[0], timing)

    async def _record_time(self, method: str, timing: Any) -> None:
        if isinstance(timing, Mapping):
            await self.throttle.record_time(
                method,
                timing.get("operating"),
                timing.get("operating_reset_at"),
                timing.get("finish"),
                processing=timing.get("processing"),
            )


async def wait_for_limit(
    error: BitrixLimitError, method: str, throttle: Throttle, sinks: Iterable[CallStats]
) -> BitrixError | None:
    """The one reaction to a limit answer (the call did not run): count it in `sinks` and
    wait as the throttle says (a 503 backs off, a 429 waits for the method's budget). None
    when the call may be resent; else the error to fail with: a limit that is not
    resendable (OVERLOAD_LIMIT), or a 503 streak past `Limits.query_limit_patience_s`."""
    if not isinstance(error, BitrixResendableError):
        return error
    for sink in sinks:
        sink.limit_errors += 1
    if isinstance(error, OperationTimeLimitError):
        await throttle.on_operation_limit(method, error.reset_at, retry_after_s=error.retry_after_s)
    elif isinstance(error, QueryLimitExceededError) and await throttle.on_query_limit() is None:
        return out_of_patience(error, throttle)
    return None


def out_of_patience(error: QueryLimitExceededError, throttle: Throttle) -> QueryLimitExceededError:
    """The 503 that ended a streak longer than the patience, saying so."""
    patience = throttle.limits.query_limit_patience_s
    return QueryLimitExceededError(
        f"{error.description or 'Too many requests'}; the request bucket stayed full for "
        f"{throttle.limit_streak_s:.1f} s of backoff (Limits.query_limit_patience_s="
        f"{patience:g}): other applications may be using the portal's request limit",
        code=error.code,
        method=error.method,
        status=error.status,
        url=error.url,
    )


def _count_request(sinks: list[CallStats], method: str, waited: float) -> None:
    for sink in sinks:
        sink.requests += 1
        if method.lower() == "batch":
            sink.batches += 1
        else:
            sink.single_requests += 1
        sink.add_wait(waited)
