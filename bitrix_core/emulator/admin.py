"""The admin API under `/_emulator/`: counters, faults, data mutation, OAuth codes, reset.

Every admin call needs the portal's admin token in the `X-Emulator-Admin-Token` header;
the webhook code is not accepted there.

    GET    /_emulator/counters        per-method counters
    GET    /_emulator/faults          programmed faults
    POST   /_emulator/faults          {"kind", "method"?, "times"?, "probability"?, "delay_s"?, "after"?}
    DELETE /_emulator/faults          remove every fault
    POST   /_emulator/mutate          {"seed", "adds"?, "updates"?, "deletes"?, "entities"?}
    POST   /_emulator/plant           {"entity", "id", "key", "value"} or {"entity", "id",
                                      "clear": true}: a raw value sent as is (test facility)
    POST   /_emulator/oauth/code      a fresh authorization code
    POST   /_emulator/oauth/expire    expire every access token now
    POST   /_emulator/reset           counters, bucket, budgets, faults; {"data": true} regenerates
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web

from bitrix_core.emulator.envelope import error_response, json_response
from bitrix_core.emulator.state import PortalState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        value = json.loads(await request.read() or b"{}")
    except ValueError:
        raise web.HTTPBadRequest(text="admin body must be a JSON object") from None
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="admin body must be a JSON object")
    return value


def admin_routes(state: PortalState, header: str) -> list[web.RouteDef]:
    """The admin routes, each guarded by the admin token."""

    def guarded(handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            given = request.headers.get(header, "")
            if not secrets.compare_digest(given.encode(), state.admin_token.encode()):
                return error_response("ACCESS_DENIED", "Admin token required", status=401)
            try:
                return await handler(request)
            except (TypeError, ValueError) as error:
                return error_response("INVALID_REQUEST", str(error), status=400)

        return check

    async def counters(request: web.Request) -> web.StreamResponse:
        return json_response(state.counters.snapshot())

    async def list_faults(request: web.Request) -> web.StreamResponse:
        return json_response([fault.as_dict() for fault in state.faults.active()])

    async def add_fault(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        fault = state.faults.add(
            str(body.pop("kind", "")),
            method=body.pop("method", None),
            times=body.pop("times", None),
            probability=body.pop("probability", None),
            delay_s=float(body.pop("delay_s", 0.0)),
            after=int(body.pop("after", 0)),
        )
        if body:
            raise ValueError(f"unknown fault options {sorted(body)}")
        return json_response(fault.as_dict())

    async def clear_faults(request: web.Request) -> web.StreamResponse:
        state.faults.clear()
        return json_response({"cleared": True})

    async def mutate(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        options = {key: body[key] for key in ("adds", "updates", "deletes", "entities") if key in body}
        changes = state.store.mutate(int(body.get("seed", 1)), **options)
        return json_response({name: asdict(change) for name, change in changes.items()})

    async def plant(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        entity, row_id = str(body.get("entity", "")), int(body.get("id", 0))
        if body.get("clear"):
            state.store.planted.clear(entity, row_id)
        else:
            state.store.planted.plant(entity, row_id, str(body["key"]), body.get("value"))
        return json_response({"planted": not body.get("clear")})

    async def oauth_code(request: web.Request) -> web.StreamResponse:
        return json_response({"code": state.oauth.issue_auth_code()})

    async def oauth_expire(request: web.Request) -> web.StreamResponse:
        state.oauth.expire_access_tokens()
        return json_response({"expired": True})

    async def reset(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        state.counters.clear()
        state.limits.reset()
        state.faults.clear()
        if body.get("data"):
            state.store, state.methods = state.make_data()
        return json_response({"reset": True})

    return [
        web.get("/_emulator/counters", guarded(counters)),
        web.get("/_emulator/faults", guarded(list_faults)),
        web.post("/_emulator/faults", guarded(add_fault)),
        web.delete("/_emulator/faults", guarded(clear_faults)),
        web.post("/_emulator/mutate", guarded(mutate)),
        web.post("/_emulator/plant", guarded(plant)),
        web.post("/_emulator/oauth/code", guarded(oauth_code)),
        web.post("/_emulator/oauth/expire", guarded(oauth_expire)),
        web.post("/_emulator/reset", guarded(reset)),
    ]

