"""Planted raw values: a TEST FACILITY, not portal behaviour.

Tests that prove a hostile value never blocks a sync need the portal to send exactly that
value (`'0000-00-00'`, `'12abc'`, a NUL byte, NaN), which the typed SQLite store cannot hold.
`PlantedValues.plant(entity, row_id, key, value)` makes every list/get answer carry `value`
under `key` for that row from then on, and moves the row's change time to now (as an edit
on the portal would, so an incremental sync reads it again); `clear` ends it the same way.
Real portals do send such values: `0000-00-00` for an empty date is an observed one
(issue 11); the rest are assumptions about what a broken integration may write.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bitrix_core.emulator.schema import Entity


class Rows(Protocol):
    """What planting needs of the store (store.PortalStore, which holds the planted values)."""

    entities: dict[str, Entity]

    def entity(self, name: str) -> Entity: ...

    def exists(self, entity: str, row_id: int) -> bool: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


class PlantedValues:
    """Raw values to send instead of the stored ones: {entity: {row id: {key: value}}}."""

    def __init__(self, store: Rows) -> None:
        self.store = store
        self.values: dict[str, dict[int, dict[str, Any]]] = {}

    def plant(self, entity: str, row_id: int, key: str, value: Any) -> None:
        """Send `value` as `key` of row `row_id` (the key as the answer spells it)."""
        self._touch(entity, int(row_id))
        self.values.setdefault(entity, {}).setdefault(int(row_id), {})[key] = value

    def clear(self, entity: str, row_id: int) -> None:
        """Send the row's stored values again (its change time moves to now)."""
        self._touch(entity, int(row_id))
        self.values.get(entity, {}).pop(int(row_id), None)

    def _touch(self, entity: str, row_id: int) -> None:
        e = self.store.entity(entity)
        if not self.store.exists(entity, row_id):
            raise ValueError(f"{entity} has no row {row_id}")
        if e.modified_field:
            self.store.query(f'UPDATE "{e.table}" SET "{e.modified_field}" = ? WHERE ID = ?',
                             [int(time.time()), row_id])

    def apply(self, method: str, params: Mapping[str, Any], result: Any) -> None:
        """Put the planted values into the rows of one method's `result`, in place."""
        planted = self.values.get(self.entity_of(method, params))
        if not planted:
            return
        rows = result
        if isinstance(result, Mapping):
            lists = [v for v in result.values() if isinstance(v, list)]
            rows = lists[0] if lists else [result.get("item", result)]
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict):
                row_id = row.get("ID", row.get("id"))
                if row_id is not None and str(row_id).isdigit():
                    row.update(planted.get(int(row_id), {}))

    def entity_of(self, method: str, params: Mapping[str, Any]) -> str:
        """`crm.deal.list` -> crm.deal, `user.get` -> user, crm.item.* by its entityTypeId."""
        name = method.lower().rsplit(".", 1)[0]
        if name != "crm.item":
            return name
        wanted = str(next((v for k, v in params.items() if k.lower() == "entitytypeid"), ""))
        return next((e.name for e in self.store.entities.values()
                     if str(e.entity_type_id) == wanted), name)
