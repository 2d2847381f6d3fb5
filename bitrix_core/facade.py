"""Bitrix: a synchronous facade with fast_bitrix24's method names, safe inside Jupyter.

    b = Bitrix(webhook_url)
    deals = b.get_all("crm.deal.list", {"select": ["ID", "TITLE"]})
    by_id = b.get_by_ID("crm.deal.get", [1, 2, 3])          # {1: {...}, 2: {...}, 3: {...}}
    one = b.call("crm.deal.update", {"id": 1, "fields": {"TITLE": "x"}})
    many = b.call("crm.deal.get", [{"id": 1}, {"id": 2}])   # a tuple, in input order
    b.close()

Every coroutine runs on a private event loop in a background thread, so the methods block
and return results whether or not the calling thread already runs a loop (Jupyter does);
they never hand back a Task. One BitrixClient (one HTTP session) lives on that loop until
`close()`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from bitrix_core.client import BitrixClient
from bitrix_core.errors import BitrixParameterError, error_from_response

T = TypeVar("T")


class Bitrix:
    """Synchronous Bitrix24 client: get_all, get_by_ID, call, call_batch, close."""

    def __init__(
        self,
        webhook: str | None = None,
        *,
        verbose: bool = True,
        auth: Any = None,
        **client_options: Any,
    ) -> None:
        self._client = BitrixClient(webhook, auth=auth, verbose=verbose, **client_options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="bitrix-facade-loop", daemon=True
        )
        self._thread.start()
        self._opened = False
        self._closed = False

    def __repr__(self) -> str:
        return f"Bitrix({self._client.auth.redacted_base!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def client(self) -> BitrixClient:
        """The async client behind the facade (lives on the facade's own loop)."""
        return self._client

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the private loop and block until its result."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("this Bitrix facade is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("Bitrix facade methods cannot be called from its own loop")
        return asyncio.run_coroutine_threadsafe(self._opened_then(coroutine), self._loop).result()

    async def _opened_then(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if not self._opened:
            await self._client.__aenter__()
            self._opened = True
        return await coroutine

    def close(self) -> None:
        """Close the HTTP session and stop the background loop (idempotent)."""
        if self._closed:
            return
        if self._opened:
            future = asyncio.run_coroutine_threadsafe(
                self._client.__aexit__(None, None, None), self._loop
            )
            future.result()
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def get_all(self, method: str, params: Mapping[str, Any] | None = None) -> list[Any] | Any:
        """Every row of a list method (paged by the fastest strategy), as one list.

        For `*.fields` methods (not paged) the `result` value is returned as is.
        """
        if method.strip().lower().endswith(".fields"):
            return self._run(self._client.call(method, params))
        return self._run(self._client.get_all(method, params))

    def get_by_ID(
        self,
        method: str,
        ID_list: Iterable[Any],
        ID_field_name: str = "ID",
        params: Mapping[str, Any] | None = None,
    ) -> dict[Any, Any]:
        """`method` once per id (batched): {id: result}. The first failure is raised."""
        ids = list(ID_list)
        if not ids:
            raise BitrixParameterError("ID_list", "must not be empty", method=method)
        base = dict(params or {})
        if any(key.lower() == ID_field_name.lower() for key in base):
            raise BitrixParameterError(
                "params", f"must not contain {ID_field_name!r}: it comes from ID_list"
            )
        commands = [(method, {**base, ID_field_name: value}) for value in ids]
        results = _raise_first(self._run(self._client.call_many(commands)))
        return dict(zip(ids, results, strict=True))

    def call(
        self,
        method: str,
        item_list: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
        *,
        raw: bool = False,
    ) -> Any:
        """Call `method` for one params dict (its result) or many (a tuple, input order).

        `raw=True` sends `item_list` as the parameters of ONE request, unbatched.
        """
        if item_list is None and not raw:
            raise BitrixParameterError("item_list", "give a params dict or a list of them")
        if item_list is None or isinstance(item_list, Mapping):
            return self._run(self._client.call(method, item_list))
        if raw:
            raise BitrixParameterError("item_list", "raw=True sends one params dict, not a list")
        items = list(item_list)
        if not items:
            raise BitrixParameterError("item_list", "must not be empty", method=method)
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise BitrixParameterError(f"item_list[{index}]", "must be a params dict")
        commands = [(method, dict(item)) for item in items]
        return tuple(_raise_first(self._run(self._client.call_many(commands))))

    def call_batch(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Call `batch` with {"halt": 0|1, "cmd": {...}}; the per-command results by key.

        A command that failed raises its BitrixError (as fast_bitrix24 raises).
        """
        if not isinstance(params, Mapping) or not isinstance(params.get("cmd"), Mapping | list):
            raise BitrixParameterError("cmd", "call_batch needs {'halt': 0, 'cmd': {...}}")
        answer = self._run(self._client.call("batch", params))
        errors = answer.get("result_error") or {}
        if errors:
            key, body = next(
                iter(errors.items()) if isinstance(errors, Mapping) else enumerate(errors)
            )
            raise error_from_response(body, method=f"batch command {key}")
        results = answer.get("result") or {}
        if isinstance(results, Mapping):
            return dict(results)
        return {str(index): value for index, value in enumerate(results)}


def _raise_first(results: list[Any]) -> list[Any]:
    for value in results:
        if isinstance(value, BaseException):
            raise value
    return results
