"""The error tree: one class per reaction, and every `except` that worked before still does."""

import pytest

from bitrix_core.errors import (
    BitrixError,
    BitrixLimitError,
    BitrixResendableError,
    BitrixRetryableError,
    BitrixServerError,
    BitrixTimeoutError,
    BitrixTransportError,
    OperationTimeLimitError,
    OverloadLimitError,
    QueryLimitExceededError,
    error_class_for,
)

RESENDABLE = [
    BitrixServerError,
    BitrixTransportError,
    BitrixTimeoutError,
    QueryLimitExceededError,
    OperationTimeLimitError,
]


@pytest.mark.parametrize("cls", RESENDABLE)
def test_what_asking_again_may_cure_is_resendable(cls):
    assert issubclass(cls, BitrixResendableError) and issubclass(cls, BitrixError)


def test_a_blocked_portal_is_a_limit_but_not_resendable():
    assert issubclass(OverloadLimitError, BitrixLimitError)
    assert not issubclass(OverloadLimitError, BitrixResendableError)
    assert not issubclass(error_class_for("OVERLOAD_LIMIT"), BitrixResendableError)


def test_limits_stay_limits_and_are_not_retryable():
    """`except BitrixLimitError` catches the three limits; `except BitrixRetryableError`
    (a read may be sent again, a write's outcome unknown) catches none of them."""
    for cls in (QueryLimitExceededError, OperationTimeLimitError, OverloadLimitError):
        assert issubclass(cls, BitrixLimitError)
        assert not issubclass(cls, BitrixRetryableError)
    for cls in (BitrixServerError, BitrixTransportError, BitrixTimeoutError):
        assert issubclass(cls, BitrixRetryableError)
        assert not issubclass(cls, BitrixLimitError)


def test_an_error_raised_as_a_limit_is_caught_as_resendable():
    with pytest.raises(BitrixResendableError):
        raise error_class_for("QUERY_LIMIT_EXCEEDED", 503)("Too many requests")
    with pytest.raises(BitrixLimitError):
        raise error_class_for("", 429)("budget")
