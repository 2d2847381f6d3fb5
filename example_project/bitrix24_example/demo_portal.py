"""The demo portal: an emulated Bitrix24 portal whose data lives on, and changes, between runs.

The generated history is squeezed into the last `HISTORY_DAYS` days (every change time moves
towards the generation time, keeping its order), so a daily backfill of it stays short.
The portal is persisted as its recipe in `<data_dir>/demo_portal.json`: the generation seed
and clock, plus every change applied since (seed and time of each `PortalStore.mutate`).
Loading regenerates the data and replays the changes with their original clocks, so every
process that loads the file sees the same rows with the same change times.

    portal = DemoPortal(data_dir="data")
    portal.advance(key=run_id)            # the portal changes once per run
    with portal.serve() as emulated:      # in-process, free loopback port
        url = emulated.webhook_url
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bitrix_core.emulator.portal import EmulatedPortal
from bitrix_core.emulator.store import PortalSizes, PortalStore

STATE_FILE = "demo_portal.json"
#: The demo's size: big enough for a funnel, small enough to sync in seconds.
DEMO_SIZES = PortalSizes(deals=400, users=30, smart_items=150)
#: The entities each change touches.
CHANGED_ENTITIES = ("crm.deal", "crm.lead", "crm.contact", "crm.company", "crm.item.128")
#: How many days of change history the demo portal has.
HISTORY_DAYS = 45
_FORMAT = 1


@dataclass(frozen=True)
class Change:
    """One recorded `PortalStore.mutate`: its seed, its clock, and who asked for it."""

    key: str
    seed: int
    at: int
    adds: int
    updates: int


class _ReplayStore(PortalStore):
    """A `PortalStore` whose clock can be pinned, so recorded changes replay exactly."""

    pinned_clock: int | None = None

    def now(self) -> int:
        return self.pinned_clock if self.pinned_clock is not None else super().now()


class DemoPortal:
    """A persisted, living demo portal under `data_dir`."""

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str],
        seed: int = 24,
        sizes: PortalSizes = DEMO_SIZES,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.seed = seed
        self.sizes = sizes

    @property
    def state_path(self) -> Path:
        """The JSON file holding the portal's recipe."""
        return self.data_dir / STATE_FILE

    def __repr__(self) -> str:
        return f"DemoPortal(data_dir={str(self.data_dir)!r}, seed={self.seed})"

    def changes(self) -> list[Change]:
        """Every change applied so far, oldest first."""
        return [Change(**item) for item in self._read()["changes"]]

    def first_day(self) -> date:
        """The UTC day of the portal's oldest change: where its daily partitions start."""
        with self._locked():
            state = self._read()
            if not self.state_path.exists():
                self._write(state)
        oldest = state["generated_at"] - HISTORY_DAYS * 86400
        return datetime.fromtimestamp(oldest, UTC).date()

    def advance(self, *, key: str, adds: int = 3, updates: int = 6) -> Change:
        """Record one change of the portal for `key` (a run id); once per key.

        Each change adds `adds` and updates `updates` rows of every entity in
        `CHANGED_ENTITIES`, all with the current time as their change time.
        """
        if adds < 0 or updates < 0:
            raise ValueError("adds and updates must not be negative")
        with self._locked():
            state = self._read()
            for item in state["changes"]:
                if item["key"] == key:
                    return Change(**item)
            seed = zlib.crc32(f"{self.seed}:{len(state['changes'])}:{key}".encode())
            change = Change(key=key, seed=seed, at=int(time.time()), adds=adds, updates=updates)
            state["changes"].append(asdict(change))
            self._write(state)
        return change

    def load(self) -> PortalStore:
        """The portal's data now: generated from the seed, every change replayed."""
        with self._locked():
            state = self._read()
            if not self.state_path.exists():
                self._write(state)
        store = _ReplayStore(seed=state["seed"], sizes=self.sizes, now=state["generated_at"])
        _squeeze_history(store, now=state["generated_at"])
        for item in state["changes"]:
            store.pinned_clock = item["at"]
            store.mutate(
                item["seed"], adds=item["adds"], updates=item["updates"], entities=CHANGED_ENTITIES
            )
        store.pinned_clock = None
        return store

    @contextmanager
    def serve(
        self, *, plan: str = "standard", time_scale: float = 0.05
    ) -> Iterator[EmulatedPortal]:
        """Serve the portal's current data on a free loopback port until the block ends."""
        portal = EmulatedPortal(
            seed=self.seed,
            sizes=self.sizes,
            plan=plan,
            time_scale=time_scale,
            store_factory=self.load,  # an admin data reset reloads the recipe too
        )
        with portal:
            yield portal

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / f"{STATE_FILE}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {
                "format": _FORMAT,
                "seed": self.seed,
                "generated_at": int(time.time()),
                "changes": [],
            }
        state = json.loads(self.state_path.read_text())
        if state.get("format") != _FORMAT:
            raise ValueError(f"{self.state_path}: unknown demo portal format; delete the file")
        return state

    def _write(self, state: dict[str, Any]) -> None:
        partial = self.state_path.with_suffix(".json.partial")
        partial.write_text(json.dumps(state, indent=1))
        os.replace(partial, self.state_path)


def _squeeze_history(store: PortalStore, *, now: int) -> None:
    """Move every generated change time into the last `HISTORY_DAYS` days, order kept.

    A change time only moves later (towards `now`), so it never precedes its creation.
    """
    span = 2 * 365 * 86400  # the generator spreads history over two years
    factor = HISTORY_DAYS * 86400 / span
    for entity in store.entities.values():
        column = entity.modified_field
        if column:
            store.query(
                f'UPDATE "{entity.table}" SET "{column}" = ? - CAST((? - "{column}") * ? AS INTEGER)'
                f' WHERE "{column}" IS NOT NULL',
                [now, now, factor],
            )
