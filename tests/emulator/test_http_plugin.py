"""The `bitrix24_portal` pytest fixture, run inside a pytester session like a user's suite."""

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import json
import urllib.request

import pytest


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_default_portal(bitrix24_portal):
    assert bitrix24_portal.plan.name == "unlimited"
    assert _get(bitrix24_portal.webhook_url + "crm.deal.list?start=0")["total"] == 50


@pytest.mark.bitrix24_portal(deals=70, plan="standard", time_scale=0.01)
def test_marker_options(bitrix24_portal):
    assert bitrix24_portal.plan.name == "standard"
    assert _get(bitrix24_portal.webhook_url + "crm.deal.list?start=0")["total"] == 70


async def test_async_test_can_use_it(bitrix24_portal):
    assert bitrix24_portal.webhook_url.startswith("http://127.0.0.1:")
'''


OVERRIDE_CONFTEST = '''
import pytest

@pytest.fixture
def bitrix24_portal_options():
    return {"deals": 30, "plan": "enterprise"}
'''

OVERRIDE_TESTS = '''
def test_override(bitrix24_portal):
    assert bitrix24_portal.plan.name == "enterprise"
    assert bitrix24_portal.sizes.deals == 30
'''


@pytest.mark.slow
def test_fixture_in_a_users_suite(pytester: pytest.Pytester):
    """Defaults, the marker, an async test, an options override, and a test not using it."""
    pytester.makepyfile(test_user=USER_TESTS, test_plain="def test_nothing():\n    pass\n")
    overridden = pytester.mkpydir("overridden")
    (overridden / "conftest.py").write_text(OVERRIDE_CONFTEST)
    (overridden / "test_override.py").write_text(OVERRIDE_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "asyncio", "--strict-markers",
                                           "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=5)
