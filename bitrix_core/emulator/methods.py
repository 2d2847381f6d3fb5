"""PortalMethods: REST method name -> handler over a PortalStore, with no HTTP in it.

`call` receives parameters already decoded from the query string, form or JSON body
(top-level names in any case) and returns a `MethodResult`, or raises `MethodError`
with the real server's code and HTTP status.
"""

from __future__ import annotations

from typing import Any

from bitrix_core.emulator import crm_methods, item_methods, org_methods, pipeline_methods
from bitrix_core.emulator.method_kit import Handler, MethodError, MethodResult, normalise
from bitrix_core.emulator.store import PortalStore

__all__ = ["MethodError", "MethodResult", "PortalMethods"]


class PortalMethods:
    """Every data method of the emulated portal (batch is the server's business)."""

    def __init__(self, store: PortalStore) -> None:
        self.store = store
        self._handlers: dict[str, Handler] = {
            **crm_methods.handlers(store),
            **item_methods.handlers(store),
            **org_methods.handlers(store),
            **pipeline_methods.handlers(store),
        }

    def has(self, method: str) -> bool:
        """Whether `method` exists (names are case-insensitive, as on the real server)."""
        return method.lower() in self._handlers

    def names(self) -> list[str]:
        """Every method name, lower case, sorted."""
        return sorted(self._handlers)

    def call(self, method: str, params: dict[str, Any]) -> MethodResult:
        """Run `method`; MethodError carries the real code, description and HTTP status."""
        handler = self._handlers.get(method.lower())
        if handler is None:
            raise MethodError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        params = normalise(params)
        answer = handler(params)
        if self.store.planted.values:  # a test facility: see planted.py
            self.store.planted.apply(method, params, answer.result)
        return answer
