"""The plan of a converging run: the gaps of the id range still to fetch, the chains of
linked pages walked into a gap from either end, and the rounds that pair them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class Gap:
    """Ids [lo, hi) still to fetch (None: unbounded); `remaining` is the rows they hold, once
    counted. `whole` marks the whole range before round 0: what is left is then cut up."""

    lo: int | None
    hi: int | None
    remaining: int | None = None
    done: bool = False
    whole: bool = False
    stalls: int = 0
    """Rounds in a row that failed without bringing a row."""
    recounts: int = 0
    """Rounds in a row that brought no row and ended short of the count."""


@dataclass(eq=False)
class Chain:
    """`commands` linked pages of one gap from one end; `outcomes` once its batch returned."""

    gap: Gap
    commands: int
    descending: bool
    counted: bool = False
    sent: bool = False
    outcomes: list[Any] | None = None


@dataclass(eq=False)
class Round:
    """One step of a gap: an ascending chain and, when there is room, a descending one."""

    gap: Gap
    up: Chain
    down: Chain | None
    final: bool
    """Sized from an exact count to finish the gap: it cannot bring new work."""

    @property
    def chains(self) -> list[Chain]:
        return [self.up] if self.down is None else [self.up, self.down]

    @property
    def returned(self) -> bool:
        return all(chain.outcomes is not None for chain in self.chains)
