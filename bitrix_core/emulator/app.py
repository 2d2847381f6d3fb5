"""The aiohttp application: routing, auth, limits, faults, and running methods and batches.

Order of checks for a REST request: URL shape (404), request bucket (503), credentials
(401), programmed faults, then per command: method exists (404), operating budget (429),
run, spend the processing time as latency, charge it to the method's budget.
"""

import asyncio
import secrets
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from bitrix_core.emulator import batch as batch_method
from bitrix_core.emulator.admin import admin_routes
from bitrix_core.emulator.batch import CommandOutcome
from bitrix_core.emulator.envelope import (
    error_response,
    json_response,
    success_body,
    time_block,
)
from bitrix_core.emulator.faults import (
    BAD_200_FAULTS,
    ERROR_FAULTS,
    OFF_HOST,
    REDIRECT_OFF_HOST,
    REQUEST_KINDS,
    TOKEN_FAULTS,
    WHOLE_REQUEST_FAULTS,
    Fault,
    drop_row,
    html_page,
    paging_fields,
    php_warning,
    take_free_slots,
)
from bitrix_core.emulator.methods import MethodError
from bitrix_core.emulator.oauth import OAuthError
from bitrix_core.emulator.params import decode_request
from bitrix_core.emulator.state import PortalState

ADMIN_HEADER = "X-Emulator-Admin-Token"
WEBHOOK_USER_ID = "1"


class RequestTimeout(Exception):
    """The request's modelled processing passed the plan's per-request cap."""


def _error_outcome(code: str, description: str) -> CommandOutcome:
    return CommandOutcome(error=(code, description))


def _bad_200(kind: str, response: web.Response) -> web.Response:
    """The 200 answer a `BAD_200_FAULTS` kind replaces the real one with (see faults.py)."""
    if kind == "php_warning_200":  # printed before PHP sent its headers: text/html
        body = response.body if isinstance(response.body, bytes) else b""
        return web.Response(body=php_warning(body), content_type="text/html")
    body = b"" if kind == "empty_200" else b"null"
    return web.Response(body=body, content_type="application/json")


class PortalServer:
    """Request handlers over one `PortalState`."""

    def __init__(self, state: PortalState) -> None:
        self.state = state

    def application(self) -> web.Application:
        """The aiohttp application with REST, OAuth and admin routes."""
        app = web.Application()
        app.router.add_route("*", "/rest/{tail:.*}", self.rest)
        app.router.add_route("*", "/oauth/token/", self.token)
        app.router.add_route("*", "/oauth/token", self.token)
        app.router.add_routes(admin_routes(self.state, ADMIN_HEADER))
        return app

    async def token(self, request: web.Request) -> web.Response:
        """The OAuth token endpoint (GET or POST)."""
        params = await decode_request(request)
        try:
            answer = self.state.oauth.grant(params)
        except OAuthError as error:
            return json_response(
                {"error": error.code, "error_description": error.description},
                status=error.status,
            )
        lost = self.state.faults.take("oauth.token", kinds=TOKEN_FAULTS, wildcard=True)
        if lost is not None and lost.kind == "token_lost_502":  # rotated, answer lost
            return web.Response(text=html_page(502), status=502, content_type="text/html")
        if lost is not None:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        return json_response(answer)

    def _identity(
        self, parts: list[str], params: dict[str, Any]
    ) -> tuple[str | None, web.Response | None]:
        """The auth identity the operating budget is kept for, or the 401 answer."""
        if len(parts) == 3:
            user_id, code = parts[0], parts[1]
            good = secrets.compare_digest(code.encode(), self.state.webhook_code.encode())
            if good and user_id == WEBHOOK_USER_ID:
                return "webhook", None
            return None, error_response("NO_AUTH_FOUND", "Wrong authorization data")
        token = params.pop("auth", None)
        if not isinstance(token, str) or not token:
            return None, error_response("NO_AUTH_FOUND", "Wrong authorization data")
        problem = self.state.oauth.check_access(token)
        if problem == "expired_token":
            return None, error_response("expired_token", "The access token provided has expired")
        if problem:
            return None, error_response("invalid_token", "The access token provided is invalid.")
        return f"app:{self.state.oauth.client_id}", None

    async def rest(self, request: web.Request) -> web.StreamResponse:
        """`/rest/{user}/{code}/{method}` (webhook) and `/rest/{method}` (OAuth)."""
        tail = request.match_info["tail"]
        parts = (tail[:-1] if tail.endswith("/") else tail).split("/")
        webhook = len(parts) == 3 and parts[0].isdigit()
        if not (webhook or (len(parts) == 1 and parts[0] and not parts[0].isdigit())):
            return error_response("ERROR_METHOD_NOT_FOUND", "Method not found!")
        method = parts[-1].lower().removesuffix(".json")
        params = await decode_request(request)
        counters = self.state.counters
        counters[method].requests += 1
        now = time.monotonic()
        if self.state.faults.foreign_client(now) and self.state.limits.bucket is not None:
            take_free_slots(self.state.limits.bucket, now)
        if not self.state.limits.admit(now):
            counters[method].status_503 += 1
            return error_response("QUERY_LIMIT_EXCEEDED", "Too many requests")
        identity, refusal = self._identity(parts, params)
        if refusal is not None:
            return refusal
        assert identity is not None
        commands: list[batch_method.Command] = []
        halt = False
        if method == "batch":
            commands, halt = batch_method.parse_commands(params)
        fault = self.state.faults.take(method, kinds=REQUEST_KINDS, wildcard=True)
        for command in commands:
            fault = fault or self.state.faults.take(
                command.method, kinds=WHOLE_REQUEST_FAULTS, wildcard=False
            )
        if fault is not None and fault.kind != "slow":
            early = await self._fault_response(request, method, fault)
            if early is not None:
                return early
        elif fault is not None:
            await asyncio.sleep(fault.delay_s)
        timeout = self.state.limits.request_timeout
        deadline = None if timeout is None else time.time() + timeout
        try:
            if method == "batch":
                response = await self._batch(identity, commands, halt, deadline)
            else:
                response = await self._single(identity, method, params, deadline)
        except RequestTimeout:
            self.state.counters.count_status(method, 500)
            return error_response("INTERNAL_SERVER_ERROR", "Internal server error", status=500)
        if fault is not None and fault.kind == "truncated":
            return await self._truncated(request, response)
        if fault is not None and fault.kind in BAD_200_FAULTS:
            return _bad_200(fault.kind, response)
        return response

    async def _fault_response(
        self, request: web.Request, method: str, fault: Fault
    ) -> web.StreamResponse | None:
        """The answer a fault replaces the real one with; None to run the request first."""
        if fault.kind in ERROR_FAULTS:
            status, code, description = ERROR_FAULTS[fault.kind]
            self.state.counters.count_status(method, status)
            return error_response(code, description, status=status)
        if fault.kind in ("html_502", "html_503"):
            status = int(fault.kind[-3:])
            self.state.counters.count_status(method, status)
            return web.Response(text=html_page(status), status=status, content_type="text/html")
        if fault.kind == REDIRECT_OFF_HOST:
            target = request.url.with_host(OFF_HOST)
            return web.Response(status=301, headers={"Location": str(target)})
        if fault.kind == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # the handler is gone with its connection
        return None

    async def _truncated(self, request: web.Request, response: web.Response) -> web.StreamResponse:
        """Declare the full Content-Length, send half the body, and drop the connection."""
        body = response.body if isinstance(response.body, bytes) else b""
        stream = web.StreamResponse(status=response.status)
        stream.content_type = "application/json"
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError

    def _ids(self, list_method: str, params: dict[str, Any]) -> tuple[int, int] | None:
        """The lowest and highest id of a list method's entity (for row faults), or None."""
        store = self.state.store
        name = store.planted.entity_of(list_method, params)
        if list_method.lower().rpartition(".")[2] not in ("list", "get"):
            return None
        if name not in store.entities:
            return None
        table = store.entity(name).table
        low, high = self.state.store.tuples(f'SELECT MIN(ID), MAX(ID) FROM "{table}"')[0]
        return None if low is None else (int(low), int(high))

    async def _single(
        self, identity: str, method: str, params: dict[str, Any], deadline: float | None
    ) -> web.Response:
        outcome, status = await self.run_command(
            identity, method, params, in_batch=False, deadline=deadline
        )
        if outcome.error is not None:
            code, description = outcome.error
            return error_response(code, description, status=status)
        assert outcome.time is not None
        return json_response(
            success_body(outcome.result, next=outcome.next, total=outcome.total, time=outcome.time)
        )

    async def _batch(
        self, identity: str, commands: list[batch_method.Command], halt: bool,
        deadline: float | None,
    ) -> web.Response:
        start = time.time()
        for name in {command.method.lower() for command in commands}:
            self.state.counters[name].batches += 1

        due = start  # when the previous command was due to end: late wake-ups do not add up

        async def run(method: str, params: dict[str, Any]) -> CommandOutcome:
            nonlocal due
            outcome, _ = await self.run_command(
                identity, method.lower(), params, in_batch=True, began=due, deadline=deadline
            )
            due += (outcome.time or {}).get("processing", 0.0)
            return outcome

        result = await batch_method.run_batch(commands, halt=halt, run_command=run)
        # a float even when no command ran (real portals never send an integer here)
        processing = sum((e.get("processing", 0.0) for e in result["result_time"].values()), 0.0)
        return json_response(
            success_body(result, time=self._time(identity, "batch", start, processing))
        )

    def _time(self, identity: str, method: str, start: float, processing: float) -> dict[str, Any]:
        finish = time.time()
        budget = self.state.limits.operating
        key = (identity, method)
        return time_block(
            start=start,
            finish=finish,
            processing=processing,
            operating=budget.used(key, finish) if budget else None,
            operating_reset_at=budget.reset_at(key, finish) if budget else None,
            tz=self.state.tz,
        )

    async def run_command(
        self,
        identity: str,
        method: str,
        params: dict[str, Any],
        *,
        in_batch: bool,
        began: float | None = None,
        deadline: float | None = None,
    ) -> tuple[CommandOutcome, int]:
        """Run one method call (alone or inside a batch): the outcome and its HTTP status.

        The call ends `processing` seconds (the cost model's) after `began` (default now), its
        own work included, or when that work is done if it takes longer. A call that would end
        after the request's `deadline` (the plan's 60 s cap) stops there: `RequestTimeout`,
        its work done and its time up to the cut charged (both assumptions: the docs say only
        that the request "is interrupted with an error INTERNAL_SERVER_ERROR")."""
        methods = self.state.methods
        counts = self.state.counters[method]
        start = time.time() if began is None else began
        if not methods.has(method):
            return _error_outcome("ERROR_METHOD_NOT_FOUND", "Method not found!"), 404
        if in_batch:
            counts.subcommands += 1
        budget = self.state.limits.operating
        key = (identity, method)
        if budget is not None and budget.blocked(key, start):
            counts.status_429 += 1
            description = "Method is blocked due to operation time limit."
            return _error_outcome("OPERATION_TIME_LIMIT", description), 429
        if in_batch:
            fault = self.state.faults.take(method, kinds=frozenset(ERROR_FAULTS), wildcard=False)
            if fault is not None:
                status, code, description = ERROR_FAULTS[fault.kind]
                self.state.counters.count_status(method, status)
                return _error_outcome(code, description), status
        try:
            result = methods.call(method, params)
        except MethodError as error:
            return _error_outcome(error.code, error.description), error.status
        dropped = drop_row(
            self.state.faults, method, result.result, lambda: self._ids(method, params)
        )
        if dropped is not None:
            result = replace(result, result=dropped)
        altered = paging_fields(self.state.faults, method, result.total, result.next)
        if altered is not None:
            result = replace(result, total=altered[0], next=altered[1])
        processing = self.state.limits.processing(
            method, rows=result.rows, counted=result.counted, offset=result.offset
        )
        if deadline is not None and start + processing > deadline:
            await asyncio.sleep(max(0.0, deadline - time.time()))
            if budget is not None:
                budget.spend(key, max(0.0, deadline - start), time.time())
            raise RequestTimeout
        # The command takes `processing` seconds in all: the emulator's own work is part of it.
        await asyncio.sleep(max(0.0, start + processing - time.time()))
        if budget is not None:
            budget.spend(key, processing, time.time())
        counts.rows += result.rows
        counts.operating_s += processing
        outcome = CommandOutcome(
            result=result.result,
            next=result.next,
            total=result.total,
            time=self._time(identity, method, start, processing),
        )
        return outcome, 200
