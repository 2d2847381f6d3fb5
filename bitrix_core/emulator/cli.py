"""The `bitrix24-emulator` console script: serve an emulated portal until interrupted.

    bitrix24-emulator --host 127.0.0.1 --port 8924 --seed 1 --deals 1000 \\
        --plan standard --time-scale 1.0 --cost-profile calibrated

prints one line holding the webhook URL once the portal accepts requests.
"""

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from bitrix_core.emulator.costs import PROFILES
from bitrix_core.emulator.limits import PLANS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitrix24-emulator", description="Serve an offline Bitrix24 portal over HTTP."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8924, help="port (0 picks a free one)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated data")
    parser.add_argument("--deals", type=int, default=1000, help="number of deals")
    parser.add_argument("--tasks", type=int, default=None, help="number of tasks (deals / 5)")
    parser.add_argument(
        "--smart-items", type=int, default=None, help="items per smart process (300)"
    )
    parser.add_argument("--plan", choices=sorted(PLANS), default="standard", help="limits")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="factor on every duration (0.01 = 100x)"
    )
    parser.add_argument(
        "--cost-profile", choices=sorted(PROFILES), default="calibrated",
        help="processing-time prices per entity family (see bitrix_core/emulator/costs.py)",
    )
    parser.add_argument("--webhook-code", default=None, help="fixed webhook code (random)")
    parser.add_argument("--admin-token", default=None, help="fixed admin API token (random)")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    from bitrix_core.emulator.portal import EmulatedPortal
    from bitrix_core.emulator.sizes import PortalSizes
    from bitrix_core.emulator.smart_entities import SMART_ENTITIES

    sizes = PortalSizes(deals=args.deals, tasks=args.tasks)
    if args.smart_items is not None:
        sizes = PortalSizes(deals=args.deals, tasks=args.tasks, smart_items=args.smart_items)
    portal = EmulatedPortal(
        seed=args.seed,
        sizes=sizes,
        plan=args.plan,
        time_scale=args.time_scale,
        cost_profile=args.cost_profile,
        host=args.host,
        port=args.port,
        webhook_code=args.webhook_code,
        admin_token=args.admin_token,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with portal:
        # entities sized on the command line are generated now, not on their first call
        sized = (["tasks.task"] if args.tasks is not None else []) + (
            [e.name for e in SMART_ENTITIES] if args.smart_items is not None else [])
        for name in sized:
            portal.store.count(name)
        print(f"Bitrix24 emulator ready: {portal.webhook_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.time_scale <= 0:
        _parser().error("--time-scale must be positive")
    if args.deals < 0:
        _parser().error("--deals must not be negative")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
