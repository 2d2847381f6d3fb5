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


def test_fixture_default_marker_and_async_use(pytester: pytest.Pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "asyncio", "--strict-markers",
                                           "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=3)


def test_options_fixture_override(pytester: pytest.Pytester):
    pytester.makeconftest('''
import pytest

@pytest.fixture
def bitrix24_portal_options():
    return {"deals": 30, "plan": "enterprise"}
''')
    pytester.makepyfile(test_user='''
def test_override(bitrix24_portal):
    assert bitrix24_portal.plan.name == "enterprise"
    assert bitrix24_portal.sizes.deals == 30
''')
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=1)


def test_plugin_is_harmless_when_unused(pytester: pytest.Pytester):
    pytester.makepyfile(test_plain="def test_nothing():\n    assert True\n")
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=1)
