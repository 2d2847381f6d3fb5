"""Smart processes: every `entityTypeId` the portal reports, discovered at run time or not.

Two ways to sync them, both one table per type (`<prefix>crm_item_128`, ids are unique
only within a type, and every type has its own `ufCrm<N>_*` fields):

- `entities=["crm.item"]`: ONE asset for all smart processes. Each run asks `crm.type.list`
  which types exist, adds smart invoices (31, table `<prefix>crm_smart_invoice`) and syncs
  each type with its own cursor; a type created on the portal lands on the next run with no
  code change. Types listed as their own assets in the same factory are left to those.
- `entities=["crm.item.128", "crm.item.130"]`: one asset per type, known at definition
  time. `discover_smart_processes(bitrix24=resource)` builds that list from a reachable
  portal when the code location loads.
"""

import asyncio
from collections.abc import Iterable

from bitrix_core.client import BitrixClient
from bitrix_core.entities import ENTITIES, EntitySpec, crm_item
from dagster_bitrix24.sync.entity import EntitySync
from dagster_bitrix24.sync.options import SyncOptions, SyncResult
from dagster_bitrix24.sync.protocol import ClientSource, WarehouseWriter

#: The entity name of the all-smart-processes asset.
SMART_PROCESSES = "crm.item"
#: The smart invoice's entityTypeId (not always reported by crm.type.list).
SMART_INVOICE_TYPE = 31


def smart_process_spec(entity_type_id: int) -> EntitySpec:
    """The spec of one type: `crm.smart_invoice` for 31, else `crm.item.<id>`."""
    if entity_type_id == SMART_INVOICE_TYPE:
        return ENTITIES["crm.smart_invoice"]
    return crm_item(entity_type_id)


async def smart_process_types(client: BitrixClient, *, invoices: bool = True) -> list[int]:
    """Every entityTypeId `crm.type.list` reports (all pages), plus 31 when `invoices`."""
    found: set[int] = {SMART_INVOICE_TYPE} if invoices else set()
    types = await client.get_all("crm.type.list")  # rows of `result.types`, every page
    found.update(int(t["entityTypeId"]) for t in types if t.get("entityTypeId") is not None)
    return sorted(found)


def discover_smart_processes(*, bitrix24: ClientSource, invoices: bool = True) -> list[str]:
    """Entity names (`crm.item.<id>`, `crm.smart_invoice`) of the portal's smart processes.

    Calls the portal now (use it at definition time only with the portal reachable)::

        entities = ["crm.deal", *discover_smart_processes(bitrix24=resource)]
    """

    async def discover() -> list[int]:
        async with bitrix24.get_client() as client:
            return await smart_process_types(client, invoices=invoices)

    return [smart_process_spec(t).name for t in asyncio.run(discover())]


class SmartProcessesSync:
    """Syncs every smart-process type the portal reports, concurrently, one table each."""

    def __init__(
        self,
        *,
        client: BitrixClient,
        warehouse: WarehouseWriter,
        options: SyncOptions,
        exclude: Iterable[str] = (),
        write_lock: asyncio.Lock | None = None,
    ) -> None:
        self.client = client
        self.warehouse = warehouse
        self.options = options
        self.exclude = frozenset(exclude)
        self._write_lock = write_lock or asyncio.Lock()

    async def run(self) -> list[SyncResult]:
        """One result per type, in entityTypeId order; the first failure is raised last."""
        specs = [smart_process_spec(t) for t in await smart_process_types(self.client)]
        specs = [spec for spec in specs if spec.name not in self.exclude]
        outcomes = await asyncio.gather(
            *(
                EntitySync(
                    client=self.client, warehouse=self.warehouse, spec=spec,
                    options=self.options, write_lock=self._write_lock,
                ).run()
                for spec in specs
            ),
            return_exceptions=True,
        )  # fmt: skip
        for spec, outcome in zip(specs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                outcome.add_note(f"while syncing {spec.name}")
                raise outcome
        return [o for o in outcomes if isinstance(o, SyncResult)]
