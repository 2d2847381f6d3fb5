"""What one command of each method costs the portal (seconds of processing), and so how many
of its commands one request may hold: learnt from the answers' time blocks, and raised when a
request of many commands is cut at the portal's cap (a 500) or left unanswered within the
client's own timeout, so the resend is split smaller instead of failing the same way again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from bitrix_core.limits import Limits

logger = logging.getLogger("bitrix_core")

UNKNOWN_COMMANDS = 24
"""Commands in a batch of a method whose cost is not known yet (its first): priced at 2.5 s
each, above the dearest list page measured (tasks.task.list, 0.9-1.6 s:
../shared/bitrix24-api.md), they end within the portal's 60 s request cap."""
_CUT_SHARE = 0.9
"""A 5xx after this fraction of the portal's cap is taken for the cap (see `on_request_cut`)."""


class MethodCosts:
    """A command's price per method (0: not known yet), and the request size it allows.

    `on_price(name, price)` is told every new price (the throttle prices the operating time
    it committed before the cost was known)."""

    def __init__(self, limits: Limits, on_price: Callable[[str, float], None]) -> None:
        self.limits = limits
        self._on_price = on_price
        self._costs: dict[str, float] = {}
        # how long a request may run: the portal's cap, or less once the client's own
        # timeout fired before an answer came
        self._answer_within_s = limits.request_timeout_s

    def of(self, method: str, default: float = 0.0) -> float:
        """What one command of `method` is priced at (`default` while unknown)."""
        return self._costs.get(method.lower(), default)

    def learn(self, method: str, processing: float) -> None:
        """An answer's processing time: prices go up at once with a dearer call (a page that
        also COUNTs), back down by a tenth per call, so a burst is never underpriced."""
        name = method.lower()
        peak = self._costs.get(name, processing)
        self._price(name, max(float(processing), 0.9 * peak + 0.1 * float(processing)))

    def commands_per_request(self, method: str, most: int) -> int:
        """How many commands of `method` one batch should hold (at most `most`): as many as
        run in a sixth of a basket (10 s on the portal's clock; a batch runs its commands
        one after another) and in a quarter of the time a request may run (the portal's
        60 s cap, or the client's timeout once one fired), so an expensive method's time
        is committed and freed in small steps and a request ends well in time. A method
        whose cost is not known yet: `UNKNOWN_COMMANDS`."""
        cost = self._costs.get(method.lower(), 0.0)
        if cost <= 0:
            return min(most, UNKNOWN_COMMANDS)
        per_request = min(self.limits.basket_s / 6, self._answer_within_s / 4)
        return max(1, min(most, int(per_request / cost)))

    def slots_per_batch(self, method: str, most: int, commands: int) -> float:
        """Bucket slots that drain while a full batch of `method` (at most `most` commands)
        runs: what waiting for one costs while the bucket is what limits `commands` of it.
        0 when its cost is unknown, or when they need more than one operating budget (the
        budget, not the bucket, then limits them)."""
        cost = self._costs.get(method.lower(), 0.0)
        if cost * commands > self.limits.operating_budget_s * self.limits.operating_hard:
            return 0.0
        return cost * self.commands_per_request(method, most) * self.limits.drain_per_s

    def on_request_cut(self, method_names: Iterable[str], elapsed_s: float) -> bool:
        """A request answered 5xx after `elapsed_s`: if that is the portal's request cap, its
        commands (run one after another) took at least that long, so each is priced at no
        less than its share of it and the next batches are sized from that. True when it
        was the cap (resending the same request would be cut again)."""
        if elapsed_s < _CUT_SHARE * self.limits.request_timeout_s:
            return False
        return self._price_from(list(method_names), elapsed_s, "was cut (the portal's cap)")

    def on_request_timeout(self, method_names: Iterable[str], elapsed_s: float) -> bool:
        """The client's own timeout fired after `elapsed_s` with no answer: like a cut at
        the cap, the commands took at least that long, and requests must now end well
        within it. Priced only for a request of several commands (a single one cannot be
        split, and one slow answer says little of its cost); True when priced."""
        names = list(method_names)
        if len(names) < 2:
            return False
        self._answer_within_s = min(self._answer_within_s, elapsed_s)
        return self._price_from(names, elapsed_s, "got no answer within the client's timeout")

    def _price_from(self, method_names: list[str], elapsed_s: float, what: str) -> bool:
        names = [name.lower() for name in method_names]
        if not names:
            return False
        share = elapsed_s / len(names)
        for name in set(names):
            self._price(name, max(share, self._costs.get(name, 0.0)))
        logger.warning(
            "a request of %d commands %s after %.3g s; %s priced at >= %.3g s a command",
            len(names),
            what,
            elapsed_s,
            ", ".join(sorted(set(names))),
            share,
        )
        return True

    def _price(self, name: str, price: float) -> None:
        self._costs[name] = price
        self._on_price(name, price)
