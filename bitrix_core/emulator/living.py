"""A living portal: rows added, changed and deleted over time (demo mode, tests)."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bitrix_core.emulator import generate
from bitrix_core.emulator.schema import Entity


@dataclasses.dataclass
class Changes:
    """What `PortalStore.mutate` did to one entity."""

    added: list[int] = dataclasses.field(default_factory=list)
    updated: list[int] = dataclasses.field(default_factory=list)
    deleted: list[int] = dataclasses.field(default_factory=list)


class LivingPortal:
    """`PortalStore.mutate` and its helpers, kept apart from the store's data access.

    Mixed into `PortalStore`: it uses the store's connection, lock, clock and writes,
    declared here for the type checker.
    """

    _conn: sqlite3.Connection
    _lock: threading.RLock
    entities: dict[str, Entity]
    tz_seconds: int

    if TYPE_CHECKING:
        def _writable(self) -> None: ...
        def entity(self, name: str) -> Entity: ...
        def now(self) -> int: ...
        def delete(self, entity: str, row_id: int) -> bool: ...
        def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
        def _count_of(self, entity: Entity) -> int: ...
        def _link_deal_contacts(self, *, where: str) -> None: ...

    def mutate(
        self,
        seed: int,
        *,
        adds: int | Mapping[str, int] = 0,
        updates: int | Mapping[str, int] = 0,
        deletes: int | Mapping[str, int] = 0,
        entities: Sequence[str] = ("crm.deal", "crm.lead", "crm.contact", "crm.company"),
    ) -> dict[str, Changes]:
        """Add, change (new change time: now) and delete rows, chosen from `seed`.

        Each count is per entity, or a mapping entity -> count. Returns what changed.
        """
        self._writable()
        def per(value: int | Mapping[str, int], name: str) -> int:
            return int(value.get(name, 0) if isinstance(value, Mapping) else value)

        out: dict[str, Changes] = {}
        with self._lock:
            for name in entities:
                e = self.entity(name)
                changes = out[name] = Changes()
                now = self.now()
                chosen = self._pick_ids(e, seed, per(updates, name) + per(deletes, name))
                changes.updated = sorted(chosen[:per(updates, name)])
                changes.deleted = sorted(chosen[per(updates, name):])
                self._touch(e, changes.updated, now=now, seed=seed)
                for row_id in changes.deleted:
                    self.delete(name, row_id)
                changes.added = self._add_generated(e, seed, per(adds, name), now=now)
        return out

    def _pick_ids(self, e: Entity, seed: int, k: int) -> list[int]:
        if k <= 0:
            return []
        rows = self._conn.execute(
            f'SELECT ID FROM "{e.table}" ORDER BY (ID * 2654435761 + ?) % 1000003, ID LIMIT ?',
            [generate.seed_term(seed), k]).fetchall()
        return [r[0] for r in rows]

    def _touch(self, e: Entity, ids: list[int], *, now: int, seed: int) -> None:
        if not ids:
            return
        names = e.by_name()
        sets = [f'"{e.modified_field}" = {now}'] if e.modified_field else []
        if "OPPORTUNITY" in names:
            sets.append('"OPPORTUNITY" = ROUND(COALESCE("OPPORTUNITY", 0) + 100, 2)')
        elif "TITLE" in names:
            sets.append(f"\"TITLE\" = 'Changed ({seed}) ' || ID")
        elif "NAME" in names:
            sets.append(f"\"NAME\" = 'Changed {seed}'")
        if sets:
            self._conn.execute(f'UPDATE "{e.table}" SET {", ".join(sets)}'
                               f' WHERE ID IN ({",".join(map(str, ids))})')

    def _add_generated(self, e: Entity, seed: int, k: int, *, now: int) -> list[int]:
        if k <= 0:
            return []
        first_id = int(self._scalar(f'SELECT COALESCE(MAX(ID), 0) + 1 FROM "{e.table}"'))
        counts = {x.table: self._count_of(x) for x in self.entities.values()}
        base = self._count_of(e) + 1
        generate.insert_rows(self._conn, e, seed=seed, first=base, last=base + k - 1,
                             count=base + k, now=now, tz_seconds=self.tz_seconds, counts=counts,
                             new_ids_from=first_id)
        generate.insert_multifields(self._conn, e, seed=seed, where=f"ID >= {first_id}")
        if e.name == "crm.deal":
            self._link_deal_contacts(where=f"ID >= {first_id}")
        return list(range(first_id, first_id + k))
