"""Programmable failures: error bodies, HTML 5xx pages, resets, truncated and slow answers.

A fault targets one method (or every request when `method` is None) for the next `times`
matching requests, or with a `probability` drawn from a seeded RNG. Inside a batch the
error-body kinds hit just that sub-command (in `result_error`); the HTTP-level kinds
(`html_502`, `html_503`, `reset`, `truncated`, `slow`) hit the whole batch request.
"""

import random
from dataclasses import dataclass
from typing import Any

#: kind -> (HTTP status, code, description) for the faults that answer with a JSON error.
ERROR_FAULTS: dict[str, tuple[int, str, str]] = {
    "internal_error": (500, "INTERNAL_SERVER_ERROR", "Internal server error"),
    "unexpected_answer": (500, "ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response"),
    "expired_token": (401, "expired_token", "The access token provided has expired"),
    "invalid_token": (401, "invalid_token", "The access token provided is invalid."),
    "no_auth_found": (401, "NO_AUTH_FOUND", "Wrong authorization data"),
    "invalid_credentials": (403, "INVALID_CREDENTIALS", "Invalid request credentials"),
    "insufficient_scope": (403, "insufficient_scope", "The request requires higher privileges than provided by the webhook token"),
    "access_denied": (403, "ACCESS_DENIED", "REST API is available only on commercial plans"),
    "user_access_error": (403, "user_access_error", "The user does not have access to the application"),
    "wrong_auth_type": (403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method"),
    "portal_deleted": (500, "PORTAL_DELETED", "Portal was deleted"),
    "method_not_found": (404, "ERROR_METHOD_NOT_FOUND", "Method not found!"),
    "invalid_arg_value": (400, "INVALID_ARG_VALUE", "Invalid value of the argument"),
    "error_argument": (400, "ERROR_ARGUMENT", "Argument 'id' is null or empty"),
    "error_core": (400, "ERROR_CORE", "Access denied."),
    "empty_code": (400, "", "Not found"),
    "query_limit": (503, "QUERY_LIMIT_EXCEEDED", "Too many requests"),
    "overload": (503, "OVERLOAD_LIMIT", "REST API is blocked due to overload"),
}
"""Texts and statuses as b24restdocs _includes/system-errors.md lists them (PORTAL_DELETED:
500). Every error code of the API digest's table that a portal answers on its own (the batch
refusals and the operating-time 429 come from the emulator's real checks instead)."""
#: The faults that act on the HTTP exchange itself.
HTTP_FAULTS = frozenset({"html_502", "html_503", "reset", "truncated", "slow"})
KINDS = frozenset(ERROR_FAULTS) | HTTP_FAULTS

_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def html_page(status: int) -> str:
    """The nginx error page a loaded portal answers with instead of JSON."""
    reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}.get(status, "Error")
    return _HTML.format(status=status, reason=reason)


@dataclass
class Fault:
    """One programmed fault. `times=None` with `probability=None` means every request."""

    kind: str
    method: str | None = None
    times: int | None = None
    probability: float | None = None
    delay_s: float = 0.0  # real seconds, for `slow`; not multiplied by the time scale
    fired: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "kind": self.kind,
            "method": self.method,
            "times": self.times,
            "probability": self.probability,
            "delay_s": self.delay_s,
            "fired": self.fired,
        }


class FaultInjector:
    """Holds programmed faults and decides, request by request, which one fires."""

    def __init__(self, *, seed: int = 1) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        self._faults: list[Fault] = []

    def add(
        self,
        kind: str,
        *,
        method: str | None = None,
        times: int | None = None,
        probability: float | None = None,
        delay_s: float = 0.0,
    ) -> Fault:
        """Program a fault; e.g. `add("internal_error", method="crm.deal.list", times=2)`."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        if probability is not None and not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if delay_s < 0:
            raise ValueError("delay_s must not be negative")
        fault = Fault(
            kind, method.lower() if method else None, times, probability, float(delay_s)
        )
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault and re-seed the RNG."""
        self._faults.clear()
        self._rng = random.Random(self._seed)

    def active(self) -> list[Fault]:
        """Faults still able to fire."""
        return [fault for fault in self._faults if fault.times is None or fault.times > 0]

    def take(self, method: str, *, kinds: frozenset[str], wildcard: bool) -> Fault | None:
        """The fault that fires for this request of `method`, consuming one of its `times`.

        `wildcard` lets faults without a method match (request level only).
        """
        method = method.lower()
        for fault in self.active():
            if fault.kind not in kinds:
                continue
            if fault.method != method and not (wildcard and fault.method is None):
                continue
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            if fault.times is not None:
                fault.times -= 1
            fault.fired += 1
            return fault
        return None
