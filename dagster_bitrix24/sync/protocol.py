"""What the sync asks of the two sides it joins: `WarehouseWriter`, the warehouse it writes
to (`dagster_bitrix24.warehouse.Warehouse` is one), and `ClientSource`, what gives a run
its `BitrixClient` (`Bitrix24Resource` is one)."""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from bitrix_core.client import BitrixClient
from dagster_bitrix24.warehouse import CursorState, DeleteCounts, TableLayout, WriteCounts
from dagster_bitrix24.warehouse.links import LinkTable


class WarehouseWriter(Protocol):
    """Tables, chunks, cursors, rejects and delete marks of one warehouse."""

    def table_name(self, entity_name: str) -> str:
        """The table an entity is written to."""
        ...

    def prepare_table(
        self, entity_name: str, fields: Mapping[str, Any], *, id_field: str,
        change_field: str | None,
    ) -> TableLayout:  # fmt: skip
        """Create or evolve the entity's tables to match `fields`."""
        ...

    def link_table(self, entity_name: str) -> LinkTable:
        """Create (if missing) the deal-contact link table of `entity_name`."""
        ...

    def start_run(self, entity_name: str, run_id: str) -> None:
        """Record `run_id` as the entity's latest run."""
        ...

    def write_chunk(
        self, layout: TableLayout, rows: Sequence[Mapping[str, Any]], *, run_id: str | None = None
    ) -> WriteCounts:
        """Upsert `rows` by id, never older over newer."""
        ...

    def deletion_candidates(
        self, layout: TableLayout, present_ids: Iterable[Any], *,
        written_before: datetime | None = None,
    ) -> list[Any]:  # fmt: skip
        """The ids `mark_deleted` would stamp with the same arguments."""
        ...

    def mark_deleted(
        self, layout: TableLayout, present_ids: Iterable[Any], *,
        written_before: datetime | None = None,
    ) -> DeleteCounts:  # fmt: skip
        """Stamp rows whose id is not in `present_ids` deleted; clear it on the rest."""
        ...

    def rejects(
        self, entity_name: str, run_id: str | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """(count, examples) of the entity's values not stored as sent in `run_id`."""
        ...

    def read_cursor(self, key: str) -> CursorState | None:
        """The cursor stored under `key`, or None."""
        ...

    def commit_cursor(self, key: str, value: str) -> None:
        """Store the cursor under `key`."""
        ...


class ClientSource(Protocol):
    """What gives a run its client."""

    def get_client(self) -> BitrixClient:
        """A new client, used as `async with`."""
        ...
