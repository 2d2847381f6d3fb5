"""Packing page chains into batches: a request is a bucket slot, so each should be full.

A chain is a run of linked pages that must travel in one batch (page j refers to page
j-1's result). `BatchPacker` places chains best-fit into open batches of 50 commands and
hands a batch out as soon as it is full; batches still partly empty are handed out only when
the caller says nothing more will come to fill them::

    packer = BatchPacker()
    full = packer.place(chain_of_30)   # []: one open batch, 20 commands free
    full = packer.place(chain_of_20)   # [[chain_of_30, chain_of_20]]: full, send it
    rest = packer.drain()              # the partly empty batches, at the end
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from bitrix_core.batching import MAX_BATCH


class Sized(Protocol):
    """Anything that knows how many commands it takes."""

    @property
    def commands(self) -> int: ...


ChainT = TypeVar("ChainT", bound=Sized)


class BatchPacker(Generic[ChainT]):
    """Open batches of chains; full ones are returned by `place`, the rest by `drain`."""

    def __init__(self, size: int = MAX_BATCH) -> None:
        if not 1 <= size <= MAX_BATCH:
            raise ValueError(f"size must be between 1 and {MAX_BATCH}")
        self.size = size
        self._open: list[list[ChainT]] = []

    @staticmethod
    def _used(batch: list[ChainT]) -> int:
        return sum(chain.commands for chain in batch)

    @property
    def open_commands(self) -> int:
        """Commands waiting in open (not yet full) batches."""
        return sum(self._used(batch) for batch in self._open)

    def largest_open(self) -> int:
        """Commands in the fullest open batch (0 when none is open)."""
        return max((self._used(batch) for batch in self._open), default=0)

    def tightest_free(self) -> int:
        """The free commands of the fullest open batch (0 when none is open): a chain of
        exactly this length fills it."""
        free = [self.size - self._used(batch) for batch in self._open]
        return min(free, default=0)

    def place(self, chain: ChainT) -> list[list[ChainT]]:
        """Put `chain` in the fullest open batch it fits (or a new one); the batches it filled."""
        if not 1 <= chain.commands <= self.size:
            raise ValueError(f"a chain takes 1 to {self.size} commands, not {chain.commands}")
        fitting = [b for b in self._open if self._used(b) + chain.commands <= self.size]
        if fitting:
            batch = max(fitting, key=self._used)
        else:
            batch = []
            self._open.append(batch)
        batch.append(chain)
        if self._used(batch) < self.size:
            return []
        self._open.remove(batch)
        return [batch]

    def drain(self) -> list[list[ChainT]]:
        """Every open batch, fullest first; the packer is empty afterwards."""
        batches = sorted(self._open, key=self._used, reverse=True)
        self._open = []
        return batches
