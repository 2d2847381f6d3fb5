"""Programmable failures: error bodies, HTML 5xx pages, resets, truncated and slow answers.

A fault targets one method (or every request when `method` is None) for the next `times`
matching requests, or with a `probability` drawn from a seeded RNG. Inside a batch the
error-body kinds hit just that sub-command (in `result_error`); the HTTP-level kinds
(`html_502`, `html_503`, `reset`, `truncated`, `slow`, and the integrity kinds below but
the token and foreign-client ones) hit the whole batch request.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bitrix_core.emulator.limits import LeakyBucket

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

# --- Integrity faults (issue 11): answers a client must neither trust nor die of. -----------
BAD_200_FAULTS = frozenset({"php_warning_200", "empty_200", "null_200"})
"""The request RUNS, then its 200 answer is replaced: `php_warning_200` puts a PHP warning
page in front of the JSON (PHP with display_errors on), `empty_200` sends no body, `null_200`
sends `null` (a PHP handler that returned nothing). Assumption: not in the documentation;
the kinds of answer issue 11 saw through a proxy. A write under these did happen."""
REDIRECT_OFF_HOST = "redirect_off_host"
"""Answers 301 to the same path and query on host OFF_HOST (same port) without running the
request. A renamed portal answers a redirect (digest section 1, documented for 302); one
pointing off the portal's host is the assumption a client must be safe against."""
OFF_HOST = "127.0.0.2"
TOKEN_FAULTS = frozenset({"token_lost_502", "token_lost_reset"})
"""On `/oauth/token/` (any `method`): the grant IS processed (the refresh token rotated, the
old one dead: digest section 8, documented), then the answer is lost: an nginx 502 page
(`token_lost_502`) or a dropped connection (`token_lost_reset`). The loss is an assumption."""
FOREIGN_CLIENT = "foreign_client"
"""Another application on the portal takes every free slot of the request bucket for
`delay_s` real seconds from when the fault is added (pass seconds times the time scale), so
each of our requests gets 503 QUERY_LIMIT_EXCEEDED; then the full bucket drains at the
plan's rate. Applications share the bucket (digest section 3, documented); a foreign client
this greedy is an assumption. No effect on a plan without a bucket."""
WHOLE_REQUEST_FAULTS = HTTP_FAULTS | BAD_200_FAULTS | {REDIRECT_OFF_HOST}
"""The kinds that replace a whole request's answer (a batch's too)."""


def take_free_slots(bucket: LeakyBucket, now: float) -> None:
    """The foreign client's requests: fill `bucket` to the top at `now`."""
    while bucket.try_acquire(now):
        pass


def php_warning(body: bytes) -> bytes:
    """A real answer behind the warning PHP prints when display_errors is on."""
    warning = (
        b'<br />\n<b>Warning</b>:  Undefined array key "ID" in '
        b"<b>/home/bitrix/www/bitrix/modules/crm/lib/entity.php</b> on line <b>412</b><br />\n"
    )
    return warning + body


#: The faults that drop a row from a list page (see `drop_row` below).
ROW_FAULTS = frozenset({"drop_row_low", "drop_row_high", "drop_row_middle"})
#: The faults that alter a list page's `total` or `next` (see `paging_fields` below).
PAGING_FAULTS = frozenset({"total_low", "next_skip"})
KINDS = (
    frozenset(ERROR_FAULTS) | WHOLE_REQUEST_FAULTS | TOKEN_FAULTS | {FOREIGN_CLIENT}
    | ROW_FAULTS | PAGING_FAULTS
)  # fmt: skip
REQUEST_KINDS = KINDS - TOKEN_FAULTS - {FOREIGN_CLIENT} - ROW_FAULTS - PAGING_FAULTS
"""The kinds a REST request draws from (the others act at the token endpoint, the bucket
and inside one list command)."""

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
    after: int = 0  # matching requests (or commands) let through before it first fires
    fired: int = 0
    until: float | None = None  # monotonic end of a `foreign_client` window

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "kind": self.kind,
            "method": self.method,
            "times": self.times,
            "probability": self.probability,
            "delay_s": self.delay_s,
            "after": self.after,
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
        after: int = 0,
    ) -> Fault:
        """Program a fault; e.g. `add("internal_error", method="crm.deal.list", times=2)`;
        `after=N` lets the first N matching requests (or batch commands) through."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        if probability is not None and not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if delay_s < 0:
            raise ValueError("delay_s must not be negative")
        if after < 0:
            raise ValueError("after must not be negative")
        if after and kind in ROW_FAULTS | PAGING_FAULTS | {FOREIGN_CLIENT}:
            raise ValueError(f"after applies to request and command faults, not {kind!r}")
        fault = Fault(
            kind, method.lower() if method else None, times, probability, float(delay_s), after
        )
        if kind == FOREIGN_CLIENT:
            fault.until = time.monotonic() + fault.delay_s
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault and re-seed the RNG."""
        self._faults.clear()
        self._rng = random.Random(self._seed)

    def active(self) -> list[Fault]:
        """Faults still able to fire."""
        now = time.monotonic()
        return [
            fault
            for fault in self._faults
            if (fault.times is None or fault.times > 0)
            and (fault.until is None or fault.until > now)
        ]

    def foreign_client(self, now: float) -> bool:
        """True while a `foreign_client` fault holds the request bucket (counts it fired)."""
        for fault in self.active():
            if fault.kind == FOREIGN_CLIENT and fault.until is not None and fault.until > now:
                fault.fired += 1
                return True
        return False

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
            if fault.after > 0:
                fault.after -= 1
                continue
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            if fault.times is not None:
                fault.times -= 1
            fault.fired += 1
            return fault
        return None


# -- row faults: a list page that comes back one row short ---------------------------------


def drop_row(
    faults: FaultInjector, method: str, result: Any, id_range: Callable[[], tuple[int, int] | None]
) -> Any:
    """`result` less the row a row fault drops, or None when none fires.

    `drop_row_low` / `_high` / `_middle` fire on the next list page of their method (any
    list method when `method` is None) whose rows carry ids (`ID`, or `id` as crm.item.list
    and tasks.task.list spell it inside `{"items": [...]}` / `{"tasks": [...]}`) and that
    holds the entity's lowest id / its highest id / neither (`id_range()` gives them, or
    None for a method with no entity table; it is asked only while a row fault is active).
    The row in the middle of that page goes; the page keeps its `total` and `next`.

    An ASSUMPTION, no captured response: it models a page missing a row its count holds: a
    proxy or cache between client and portal, a permission change, or a row deleted between
    the count and the page.
    """
    method = method.lower()
    active = [f for f in faults.active() if f.kind in ROW_FAULTS and f.method in (None, method)]
    if not active:
        return None
    wrapper = next(iter(result), None) if isinstance(result, dict) and len(result) == 1 else None
    rows = result if wrapper is None else result[wrapper]
    if not isinstance(rows, list) or len(rows) < 2:
        return None
    ids = [_row_id(row) for row in rows]
    if None in ids:
        return None
    bounds = id_range()
    if bounds is None:
        return None
    lowest, highest = bounds
    place = "low" if lowest in ids else "high" if highest in ids else "middle"
    fault = next((f for f in active if f.kind == f"drop_row_{place}"), None)
    if fault is None:
        return None
    if fault.times is not None:
        fault.times -= 1
    fault.fired += 1
    middle = len(rows) // 2
    kept = rows[:middle] + rows[middle + 1 :]
    return kept if wrapper is None else {wrapper: kept}


# -- paging faults: a list page whose `total` or `next` is wrong -----------------------------


def paging_fields(
    faults: FaultInjector, method: str, total: int | None, next_start: int | None
) -> tuple[int | None, int | None] | None:
    """(total, next) as a paging fault alters them, or None when none fires.

    `total_low` fires on every list answer of its method (any list method when `method` is
    None) that carries a `total` above 0, each consuming one of its `times`, and reports one
    row fewer: the COUNTing pages a client proves its reads with included. `next_skip` fires
    on the next answer carrying a `next`: that `next` points one page (50 rows) further.

    ASSUMPTIONS, no captured response: `total_low` models a count that lags the rows (a
    caching proxy or a portal serving a stale count); `next_skip` a proxy or portal bug that
    rewrites the offset. Rows and the other fields are left as they are.
    """
    method = method.lower()
    changed = False
    for fault in faults.active():
        if fault.kind not in PAGING_FAULTS or fault.method not in (None, method):
            continue
        if fault.kind == "total_low" and total:
            total, changed = total - 1, True
        elif fault.kind == "next_skip" and next_start is not None:
            next_start, changed = next_start + 50, True
        else:
            continue
        if fault.times is not None:
            fault.times -= 1
        fault.fired += 1
    return (total, next_start) if changed else None


def _row_id(row: Any) -> int | None:
    """A row's id (`ID` or `id`), or None for a row without one."""
    value = row.get("ID", row.get("id")) if isinstance(row, dict) else None
    return int(value) if value is not None and str(value).isdigit() else None
