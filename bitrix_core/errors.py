"""Every way a Bitrix24 call can fail, one class per reaction.

    BitrixError
    ├── BitrixParameterError         bad input, caught before anything is sent (also a ValueError)
    ├── BitrixResendableError        asking again later may cure it: wait, then resend
    │   ├── BitrixRetryableError     transient; a read may be resent, a write's outcome is unknown
    │   │   ├── BitrixServerError    5xx, INTERNAL_SERVER_ERROR, HTML pages, a 200 without JSON
    │   │   └── BitrixTransportError connection reset, truncated body
    │   │       └── BitrixTimeoutError  no answer within the client's timeout
    │   ├── QueryLimitExceededError  (a limit) 503 request-rate bucket overflow: did not run
    │   └── OperationTimeLimitError  (a limit) 429 per-method operating budget spent: did not run
    ├── BitrixLimitError             a portal limit was hit: the call did not run
    │   ├── QueryLimitExceededError  resendable after the throttle's wait (see above)
    │   ├── OperationTimeLimitError  resendable after the budget's reset (see above)
    │   └── OverloadLimitError       503 portal blocked by support: stop, do not hammer
    ├── BitrixAuthError              who you are was not accepted
    │   ├── TokenExpiredError        OAuth access token expired: refresh once, resend
    │   ├── InvalidTokenError        wrong token or webhook code: fail, no loop
    │   ├── InvalidCredentialsError  webhook deleted, changed or blocked
    │   └── OAuthGrantError          the OAuth server refused a grant (invalid_grant, ...)
    │       └── OAuthRefreshLostError  a refresh's answer was lost after the token rotated
    ├── BitrixPermissionError        known, but not allowed (scope, plan, rights, portal gone)
    ├── BitrixMethodNotFoundError    no such method (or a malformed webhook URL)
    ├── BitrixBadRequestError        the portal rejected the parameters
    │   └── BatchError               the batch itself was refused (length, nested batch)
    ├── BitrixProtocolError          the answer could not be understood
    │   └── BitrixRedirectError      a redirect off the portal's host: credentials never follow
    ├── BitrixCertificateError       the portal's TLS certificate was refused: fix it, no retry
    └── IncompletePaginationError    a list returned fewer rows than the portal holds

`BitrixResendableError` is the one statement of "asking again may cure it": the two limit
answers that are waited out are both resendable and limits, so `except BitrixLimitError`
and `except BitrixRetryableError` catch what they always caught. A limit error did not
run, so even a write may be resent; a retryable one may have run, so only reads are.
"""

from typing import Any


class BitrixError(Exception):
    """Base class: carries the method, the portal's code and description, the HTTP status."""

    def __init__(
        self,
        description: str = "",
        *,
        code: str = "",
        method: str | None = None,
        status: int | None = None,
        url: str | None = None,
    ) -> None:
        self.description = description
        self.code = code
        self.method = method
        self.status = status
        self.url = url  # always the redacted URL, never one holding a secret
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.method:
            parts.append(self.method)
        if self.code:
            parts.append(self.code)
        if self.status:
            parts.append(f"HTTP {self.status}")
        head = ": ".join([" ".join(parts)] if parts else [])
        text = f"{head}: {self.description}" if head and self.description else head or self.description
        return f"{text} ({self.url})" if self.url else text


class BitrixParameterError(BitrixError, ValueError):
    """A parameter is wrong; raised before any request is sent. `.parameter` names it."""

    def __init__(self, parameter: str, problem: str, *, method: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(f"parameter {parameter!r}: {problem}", method=method)


class BitrixResendableError(BitrixError):
    """Asking again later may cure it (after a backoff, or the throttle's wait for a limit)."""


class BitrixRetryableError(BitrixResendableError):
    """Transient failure: a read may be sent again; a write's outcome is unknown."""


class BitrixServerError(BitrixRetryableError):
    """The portal failed (5xx, INTERNAL_SERVER_ERROR, ERROR_UNEXPECTED_ANSWER, an HTML page,
    or a 200 with no JSON: empty, `null`, a PHP warning page)."""


class BitrixTransportError(BitrixRetryableError):
    """The connection failed: reset, refused, or a body cut short."""


class BitrixTimeoutError(BitrixTransportError):
    """No complete answer within the client's timeout."""


class BitrixLimitError(BitrixError):
    """A portal limit was hit; the call did not run."""


class QueryLimitExceededError(BitrixLimitError, BitrixResendableError):
    """503 QUERY_LIMIT_EXCEEDED: the request-rate bucket overflowed; the call did not run."""


class OperationTimeLimitError(BitrixLimitError, BitrixResendableError):
    """429 OPERATION_TIME_LIMIT: this method's operating budget is spent until `reset_at`
    (unix time on the SERVER's clock) or for `retry_after_s` seconds (a `Retry-After`)."""

    def __init__(
        self,
        *args: Any,
        reset_at: float | None = None,
        retry_after_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.reset_at = reset_at
        self.retry_after_s = retry_after_s
        super().__init__(*args, **kwargs)


class OverloadLimitError(BitrixLimitError):
    """503 OVERLOAD_LIMIT: the portal is blocked by support; stop rather than retry."""


class BitrixAuthError(BitrixError):
    """The credentials were not accepted."""

    #: a short hash of the token the failed request carried (set by the transport), so an
    #: OAuth auth can tell "my current token expired" from "an older token expired".
    credential_fingerprint: str | None = None


class TokenExpiredError(BitrixAuthError):
    """401 expired_token: refresh the OAuth access token once, then resend."""


class InvalidTokenError(BitrixAuthError):
    """401 invalid_token or NO_AUTH_FOUND: wrong token or webhook code."""


class InvalidCredentialsError(BitrixAuthError):
    """403 INVALID_CREDENTIALS: the webhook was deleted, changed or blocked."""


class OAuthGrantError(BitrixAuthError):
    """The OAuth server refused a grant; invalid_grant means the app must be re-authorised."""


class OAuthRefreshLostError(OAuthGrantError):
    """The token server's answer to a refresh was lost (5xx, dropped connection) and the
    resend was refused: the server had rotated the refresh token in the lost answer, so the
    stored one is dead. Re-authorize the application (a new authorization code)."""


class BitrixPermissionError(BitrixError):
    """Allowed to call, not allowed to do this: scope, plan, rights, or the portal is gone."""


class BitrixMethodNotFoundError(BitrixError):
    """404 ERROR_METHOD_NOT_FOUND: no such method, or a malformed webhook URL."""


class BitrixBadRequestError(BitrixError):
    """The portal rejected the parameters (INVALID_ARG_VALUE, ERROR_ARGUMENT, ERROR_CORE, "")."""


class BatchError(BitrixBadRequestError):
    """The batch itself was refused: over 50 commands, or a method not allowed in a batch."""


class BitrixProtocolError(BitrixError):
    """The answer could not be understood: JSON, but not in the documented shape."""


class BitrixRedirectError(BitrixProtocolError):
    """The portal redirected to another host (`.location_host`); nothing was sent there, as
    a token or webhook code never leaves the configured host: if the portal moved, use its
    new address."""

    def __init__(self, *args: Any, location_host: str, **kwargs: Any) -> None:
        self.location_host = location_host
        super().__init__(*args, **kwargs)


class BitrixCertificateError(BitrixError):
    """The portal's TLS certificate was refused; asking again cannot cure it (turn
    certificate checks off only for a portal you trust: `verify_ssl=False`)."""


class IncompletePaginationError(BitrixError):
    """A list returned fewer rows than the portal reports holding."""

    def __init__(self, *args: Any, expected: int, received: int, **kwargs: Any) -> None:
        self.expected = expected
        self.received = received
        super().__init__(*args, **kwargs)


_BY_CODE: dict[str, type[BitrixError]] = {
    "query_limit_exceeded": QueryLimitExceededError,
    "operation_time_limit": OperationTimeLimitError,
    "overload_limit": OverloadLimitError,
    "internal_server_error": BitrixServerError,
    "error_unexpected_answer": BitrixServerError,
    "expired_token": TokenExpiredError,
    "invalid_token": InvalidTokenError,
    "no_auth_found": InvalidTokenError,
    "invalid_credentials": InvalidCredentialsError,
    "insufficient_scope": BitrixPermissionError,
    "access_denied": BitrixPermissionError,
    "user_access_error": BitrixPermissionError,
    "wrong_auth_type": BitrixPermissionError,
    "portal_deleted": BitrixPermissionError,
    "payment_required": BitrixPermissionError,
    "error_method_not_found": BitrixMethodNotFoundError,
    "error_batch_length_exceeded": BatchError,
    "error_batch_method_not_allowed": BatchError,
    "invalid_arg_value": BitrixBadRequestError,
    "error_argument": BitrixBadRequestError,
    "error_core": BitrixBadRequestError,
    "invalid_request": BitrixBadRequestError,
    "invalid_grant": OAuthGrantError,
    "invalid_client": OAuthGrantError,
    "invalid_scope": OAuthGrantError,
}


def error_class_for(code: str, status: int | None = None) -> type[BitrixError]:
    """The exception class for a portal error code (compared case-insensitively)."""
    cls = _BY_CODE.get((code or "").lower())
    if cls is not None:
        return cls
    if status is not None and status >= 500:
        return BitrixServerError
    if status == 429:
        return OperationTimeLimitError
    if status == 404:
        return BitrixMethodNotFoundError
    if status in (401,):
        return BitrixAuthError
    if status in (403,):
        return BitrixPermissionError
    return BitrixBadRequestError


def error_from_response(
    body: dict[str, Any],
    *,
    method: str | None = None,
    status: int | None = None,
    url: str | None = None,
) -> BitrixError:
    """Build the exception for an error body `{"error": ..., "error_description": ...}`."""
    code = str(body.get("error", ""))
    description = str(body.get("error_description", "") or "")
    cls = error_class_for(code, status)
    return cls(description, code=code, method=method, status=status, url=url)
