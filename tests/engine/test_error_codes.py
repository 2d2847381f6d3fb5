"""Every error code of the API digest, answered by the emulator over HTTP, raises the
exception class a caller reacts to, with the code and description, and without looping."""

import pytest

from bitrix_core.client import BitrixClient
from bitrix_core.emulator.faults import ERROR_FAULTS
from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.errors import (
    BitrixBadRequestError,
    BitrixMethodNotFoundError,
    BitrixPermissionError,
    BitrixServerError,
    InvalidCredentialsError,
    InvalidTokenError,
    OverloadLimitError,
)
from bitrix_core.throttle import Limits

from .conftest import FAST_RETRY

RAISED = {
    "unexpected_answer": BitrixServerError,
    "internal_error": BitrixServerError,
    "invalid_token": InvalidTokenError,
    "no_auth_found": InvalidTokenError,
    "invalid_credentials": InvalidCredentialsError,
    "insufficient_scope": BitrixPermissionError,
    "access_denied": BitrixPermissionError,
    "user_access_error": BitrixPermissionError,
    "wrong_auth_type": BitrixPermissionError,
    "portal_deleted": BitrixPermissionError,
    "method_not_found": BitrixMethodNotFoundError,
    "invalid_arg_value": BitrixBadRequestError,
    "error_argument": BitrixBadRequestError,
    "error_core": BitrixBadRequestError,
    "empty_code": BitrixBadRequestError,
    "overload": OverloadLimitError,
}
RECOVERED = {"expired_token", "query_limit"}  # refreshed or waited out, tested elsewhere


def test_every_fault_kind_has_an_expected_reaction():
    assert set(ERROR_FAULTS) == set(RAISED) | RECOVERED


@pytest.fixture(scope="module")
def portal():
    portal = EmulatedPortal(seed=2, deals=20, plan="unlimited").start()
    yield portal
    portal.stop()


@pytest.mark.parametrize(("kind", "expected"), sorted(RAISED.items()))
@pytest.mark.parametrize("in_batch", [False, True], ids=["alone", "in-batch"])
async def test_error_code_raises_its_class(portal, kind, expected, in_batch):
    portal.faults.clear()
    portal.faults.add(kind, method="crm.deal.get")  # every time: retries cannot cure it
    status, code, description = ERROR_FAULTS[kind]
    async with BitrixClient(
        portal.webhook_url, limits=Limits.for_plan("unlimited"), retry=FAST_RETRY, verbose=False
    ) as client:
        if in_batch:  # call_many hands each command its own result or exception
            results = await client.call_many([("crm.deal.get", {"id": 1}), ("crm.deal.list", {})])
            error, other = results
            assert isinstance(error, expected) and isinstance(other, list)
        else:
            with pytest.raises(expected) as caught:
                await client.call("crm.deal.get", {"id": 1})
            error = caught.value
            assert error.status == status
        retries = FAST_RETRY.max_retries if issubclass(expected, BitrixServerError) else 0
        assert client.stats.requests <= 2 + 2 * retries  # no loop
    portal.faults.clear()
    assert error.code == code and error.method == "crm.deal.get"
    assert description in str(error)
