"""`EmulatedPortal`: an offline Bitrix24 portal on loopback, async or in a background thread.

    async with EmulatedPortal(seed=1, deals=500, plan="standard", time_scale=0.01) as portal:
        url = portal.webhook_url          # http://127.0.0.1:<port>/rest/1/<code>/

    portal = EmulatedPortal(deals=100).start()   # own thread and event loop
    ...
    portal.stop()
"""

import asyncio
import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bitrix_core.emulator.app import PortalServer
from bitrix_core.emulator.costs import CostModel, CostProfile
from bitrix_core.emulator.counters import Counters
from bitrix_core.emulator.faults import FaultInjector
from bitrix_core.emulator.limits import Plan, PortalLimits
from bitrix_core.emulator.methods import PortalMethods
from bitrix_core.emulator.oauth import OAuthServer
from bitrix_core.emulator.state import PortalState
from bitrix_core.emulator.store import PortalSizes, PortalStore, parse_tz


@dataclass(frozen=True)
class OAuthClient:
    """What an OAuth application needs to talk to this portal."""

    client_id: str
    client_secret: str
    token_url: str  # the `/oauth/token/` endpoint
    portal_url: str  # base URL; REST calls go to `{portal_url}/rest/{method}`

    def __repr__(self) -> str:
        return f"OAuthClient(client_id={self.client_id!r}, token_url={self.token_url!r})"


class EmulatedPortal:
    """An emulated Bitrix24 portal serving the REST API over HTTP on `host:port`.

    `port=0` picks a free port. `plan` is "standard", "enterprise", "unlimited" or a `Plan`.
    `time_scale` multiplies every duration (latency, bucket drain period, operating
    baskets and budget, token lifetimes). `cost_profile` ("calibrated", "optimistic",
    "pessimistic", see `costs.py`) prices each command by its entity family; `cost` (a
    `CostProfile`, or one `CostModel` for every method) replaces it. `store_factory` supplies the data (at start and
    on an admin data reset) instead of a fresh `PortalStore(seed, sizes, tz)`. Secrets
    (`webhook_code`, `admin_token`, `client_secret`) are random unless given and are never
    part of the repr.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        deals: int = 100,
        plan: str | Plan = "standard",
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        sizes: PortalSizes | None = None,
        tz: str = "+03:00",
        cost: CostModel | CostProfile | None = None,
        cost_profile: str = "calibrated",
        webhook_code: str | None = None,
        admin_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        fault_seed: int | None = None,
        store_factory: Callable[[], PortalStore] | None = None,
    ) -> None:
        if deals < 0:
            raise ValueError("deals must not be negative")
        if webhook_code is not None and (not webhook_code or "/" in webhook_code):
            raise ValueError("webhook_code must be a non-empty string without '/'")
        self.seed = seed
        self.sizes = sizes if sizes is not None else PortalSizes(deals=deals)
        self.plan = Plan.for_name(plan) if isinstance(plan, str) else plan
        self.time_scale = float(time_scale)
        self.limits = PortalLimits(
            self.plan, time_scale=self.time_scale, cost=cost if cost is not None else cost_profile
        )
        self.host = host
        self.port = port
        self.tz = tz
        self._tzinfo = parse_tz(tz)
        self._webhook_code = webhook_code or secrets.token_hex(8)
        self.admin_token = admin_token or secrets.token_urlsafe(18)
        self.faults = FaultInjector(seed=seed if fault_seed is None else fault_seed)
        self.counters = Counters()
        self._client_secret = client_secret or secrets.token_urlsafe(36)
        member_id = hashlib.md5(f"emulated-portal-{seed}".encode()).hexdigest()
        self.oauth = OAuthServer(
            client_id=client_id or f"local.{secrets.token_hex(7)}.{secrets.randbelow(10**8):08d}",
            client_secret=self._client_secret,
            time_scale=self.time_scale,
            member_id=member_id,
        )
        self._store_factory = store_factory
        self._state: PortalState | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._runner else "not started"
        return f"EmulatedPortal({where}, plan={self.plan.name!r}, time_scale={self.time_scale})"

    @property
    def base_url(self) -> str:
        """`http://host:port` once started."""
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """`http://host:port/rest/1/<code>/`: the only place the webhook code appears."""
        return f"{self.base_url}/rest/1/{self._webhook_code}/"

    @property
    def store(self) -> PortalStore:
        """The portal's data (after start)."""
        return self._started().store

    def _started(self) -> PortalState:
        if self._state is None:
            raise RuntimeError("the portal is not started")
        return self._state

    def issue_auth_code(self) -> str:
        """An OAuth authorization code, valid 30 s (scaled)."""
        return self.oauth.issue_auth_code()

    def oauth_client(self) -> OAuthClient:
        """The OAuth application registered on this portal."""
        return OAuthClient(
            client_id=self.oauth.client_id,
            client_secret=self._client_secret,
            token_url=f"{self.base_url}/oauth/token/",
            portal_url=self.base_url,
        )

    def _make_data(self) -> tuple[PortalStore, PortalMethods]:
        if self._store_factory is not None:
            store = self._store_factory()
        else:
            store = PortalStore(seed=self.seed, sizes=self.sizes, tz=self.tz)
        return store, PortalMethods(store)

    async def _serve(self) -> None:
        store, methods = self._make_data()
        self._state = PortalState(
            store=store,
            methods=methods,
            make_data=self._make_data,
            limits=self.limits,
            faults=self.faults,
            counters=self.counters,
            oauth=self.oauth,
            webhook_code=self._webhook_code,
            admin_token=self.admin_token,
            tz=self._tzinfo,
        )
        # no access log (URLs hold the webhook code); do not wait on slow-fault handlers
        runner = web.AppRunner(
            PortalServer(self._state).application(), access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.oauth.base_url = self.base_url

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "EmulatedPortal":
        await self._serve()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._shutdown()

    def start(self) -> "EmulatedPortal":
        """Serve from a background thread with its own event loop; returns when listening."""
        if self._thread is not None:
            raise RuntimeError("the portal is already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as error:  # reported to the starting thread
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="bitrix24-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread, self._loop = None, None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the background server started by `start()`."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread, self._loop = None, None

    def __enter__(self) -> "EmulatedPortal":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
