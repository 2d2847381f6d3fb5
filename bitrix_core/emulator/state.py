"""PortalState: everything the emulated portal's server and its admin API consult."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone

from bitrix_core.emulator.counters import Counters
from bitrix_core.emulator.faults import FaultInjector
from bitrix_core.emulator.limits import PortalLimits
from bitrix_core.emulator.methods import PortalMethods
from bitrix_core.emulator.oauth import OAuthServer
from bitrix_core.emulator.store import PortalStore


@dataclass
class PortalState:
    """Everything the server consults; `make_data()` builds a fresh (store, methods) pair."""

    store: PortalStore
    methods: PortalMethods
    make_data: Callable[[], tuple[PortalStore, PortalMethods]]
    limits: PortalLimits
    faults: FaultInjector
    counters: Counters
    oauth: OAuthServer
    webhook_code: str
    admin_token: str
    tz: timezone
