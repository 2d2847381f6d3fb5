"""Deal-contact links: `crm.deal.contact`, one row per (deal, contact) of the deals synced.

The link table `<prefix>crm_deal_contact` (deal_id, contact_id, sort, role_id, is_primary)
follows the deals: the deals changed in the window (`crm.deal.list`, ids and change times
only) are looked up with `crm.deal.contact.items.get`, 50 deals per batch request, and each
deal's links are replaced in one transaction per page (`warehouse.links.LinkTable`). A full
sync also drops the links of deals the portal no longer lists. The cursor (newest deal
change time seen, capped at the run's start as `EntitySync` does) is committed under the
link table's name after every page landed. A deal's links are dropped only once the portal,
asked by id, no longer lists the deal (`deletes`).
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bitrix_core.entities import ENTITIES, EntitySpec
from dagster_bitrix24.sync.cursor import parse_change_time, read_started
from dagster_bitrix24.sync.deletes import refuse_if_still_listed
from dagster_bitrix24.sync.entity import EntitySync
from dagster_bitrix24.sync.options import SyncResult
from dagster_bitrix24.warehouse.convert.values import to_bool, to_int
from dagster_bitrix24.warehouse.links import LinkTable

#: The link entity name, as listed in `entities=[...]`.
DEAL_CONTACT = "crm.deal.contact"
#: How the link entity is described on its asset spec (it is no list method of its own).
DEAL_CONTACT_SPEC = EntitySpec(
    name=DEAL_CONTACT,
    list_method="crm.deal.contact.items.get",
    fields_method=None,
    id_field="CONTACT_ID",
    style="dictionary",
    keyset=False,
)
_ITEMS_METHOD = "crm.deal.contact.items.get"


def link_rows(deal_id: int, items: Any) -> list[tuple[Any, ...]]:
    """(deal_id, contact_id, sort, role_id, is_primary) for one deal's API answer."""
    rows = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and to_int(item.get("CONTACT_ID")) is not None:
            rows.append((
                deal_id, to_int(item.get("CONTACT_ID")), to_int(item.get("SORT")),
                to_int(item.get("ROLE_ID")), to_bool(item.get("IS_PRIMARY")),
            ))  # fmt: skip
    return rows


class DealContactSync(EntitySync):
    """Syncs the contact links of the deals changed in the window into the link table."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(spec=ENTITIES["crm.deal"], **kwargs)
        self.table_name = self.warehouse.table_name(DEAL_CONTACT)
        self._table: LinkTable | None = None

    @property
    def table(self) -> LinkTable:
        """The link table (after `run`)."""
        assert self._table is not None, "run() first"
        return self._table

    async def run(self) -> SyncResult:
        """List the window's deals, fetch and replace their links page by page, move the cursor."""
        table = self._table = await self._blocking(self.warehouse.link_table, DEAL_CONTACT)
        result = await self._plan()
        result.entity, result.table_name = DEAL_CONTACT, self.table_name
        params = self._params({}, result)
        params["select"] = [self.spec.id_key, "DATE_MODIFY"]
        started = read_started()
        links_before = datetime.now(UTC)  # (links stored before it are this read's to judge)
        run = self.client.list(
            self.spec.list_method, params, spec=self.spec, order=None,
            stats=result.stats, verify=True,  # the cursor moves past every read
        )  # fmt: skip
        seen: set[int] = set()
        newest = result.cursor_before
        async for page in run:
            rows = [(row, to_int(row.get(self.spec.id_field))) for row in page.rows]
            deals = [(row, deal_id) for row, deal_id in rows if deal_id is not None]
            answers = await self.client.call_many(
                [(_ITEMS_METHOD, {"id": deal_id}) for _, deal_id in deals], stats=result.stats
            )
            links: list[tuple[Any, ...]] = []
            for (row, deal_id), answer in zip(deals, answers, strict=True):
                if isinstance(answer, BaseException):
                    raise answer
                moment = parse_change_time(row.get("DATE_MODIFY"))
                newest = moment if newest is None or (moment and moment > newest) else newest
                found = link_rows(deal_id, answer)
                self._count_links(moment, len(found), result)
                links.extend(found)
            deal_ids = [deal_id for _, deal_id in deals]
            seen.update(deal_ids)
            result.inserted += await self._blocking(table.replace, deal_ids, links)
            result.chunks += 1
        if result.mode == "full":
            gone = await self._blocking(table.deals_missing, seen, links_before)
            await self._refuse_if_listed(gone, seen, result)
            result.deleted = await self._blocking(table.drop_deals, gone)
        await self._commit_cursor(result, newest, started=started)
        return result

    async def _refuse_if_listed(self, gone: list[int], seen: set[int], result: SyncResult) -> None:
        """IncompletePaginationError when a deal whose links are about to go is still on the
        portal (see `deletes`); only confirmed deals lose their links, so links another run
        wrote meanwhile for a deal this read did not see stay too."""
        await refuse_if_still_listed(self.client, self.spec, gone, seen, stats=result.stats,
                                     rows="deals", spared="no links were dropped")  # fmt: skip

    def _count_links(self, moment: Any, links: int, result: SyncResult) -> None:
        result.rows += links
        if self.options.partition_key is not None and moment is not None:
            partition = self.options.partition_key(moment)
            if partition is not None:
                result.partition_counts[partition] += links
