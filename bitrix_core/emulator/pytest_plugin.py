"""pytest plugin: the `bitrix24_portal` fixture, an emulated portal for testing pipelines.

Registered through the `pytest11` entry point, so it is available once the package is
installed. By default it is a small portal (50 deals, seed 1) on the `unlimited` plan,
served from a background thread, so sync and async tests can both use it::

    def test_my_pipeline(bitrix24_portal):
        run_my_sync(webhook_url=bitrix24_portal.webhook_url)

Configure one test with the marker (any `EmulatedPortal` keyword)::

    @pytest.mark.bitrix24_portal(deals=500, plan="standard", time_scale=0.01)
    def test_under_limits(bitrix24_portal): ...

or a whole module/directory by overriding the `bitrix24_portal_options` fixture::

    @pytest.fixture
    def bitrix24_portal_options():
        return {"deals": 1000, "plan": "enterprise"}
"""

from collections.abc import Iterator
from typing import Any

import pytest

DEFAULT_OPTIONS: dict[str, Any] = {"seed": 1, "deals": 50, "plan": "unlimited"}


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker so `--strict-markers` accepts it."""
    config.addinivalue_line(
        "markers",
        "bitrix24_portal(**options): EmulatedPortal keywords for the bitrix24_portal fixture",
    )


@pytest.fixture
def bitrix24_portal_options() -> dict[str, Any]:
    """Keywords for `EmulatedPortal`; override this fixture to change the defaults."""
    return dict(DEFAULT_OPTIONS)


@pytest.fixture
def bitrix24_portal(
    request: pytest.FixtureRequest, bitrix24_portal_options: dict[str, Any]
) -> Iterator[Any]:
    """A started `EmulatedPortal`; the marker's keywords win over the options fixture."""
    from bitrix_core.emulator.portal import EmulatedPortal  # imported only when used

    options = dict(bitrix24_portal_options)
    marker = request.node.get_closest_marker("bitrix24_portal")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("bitrix24_portal marker takes keyword arguments only")
        options.update(marker.kwargs)
    portal = EmulatedPortal(**options).start()
    try:
        yield portal
    finally:
        portal.stop()
