"""An offline Bitrix24 portal: limits, envelopes, batch semantics and failures included.

`EmulatedPortal` and `OAuthClient` load on first use, so importing a light module such as
`bitrix_core.emulator.params` does not pull in the data store.
"""

from typing import Any

from bitrix_core.emulator.costs import PROFILES, CostModel, CostProfile
from bitrix_core.emulator.counters import Counters, MethodCounters
from bitrix_core.emulator.faults import FaultInjector
from bitrix_core.emulator.limits import PLANS, Plan, PortalLimits
from bitrix_core.emulator.params import decode_query

__all__ = [
    "PLANS",
    "PROFILES",
    "CostModel",
    "CostProfile",
    "Counters",
    "EmulatedPortal",
    "FaultInjector",
    "MethodCounters",
    "OAuthClient",
    "Plan",
    "PortalLimits",
    "decode_query",
]


def __getattr__(name: str) -> Any:
    if name in ("EmulatedPortal", "OAuthClient"):
        from bitrix_core.emulator import portal

        return getattr(portal, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
