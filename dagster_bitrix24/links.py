"""Deal-contact links: `crm.deal.contact`, one row per (deal, contact) of the deals synced.

The link table `<prefix>crm_deal_contact` (deal_id, contact_id, sort, role_id, is_primary)
follows the deals: the deals changed in the window (`crm.deal.list`, ids and change times
only) are looked up with `crm.deal.contact.items.get`, 50 deals per batch request, and each
deal's links are replaced in one transaction per page, as the multi-field child tables are.
A full sync also drops the links of deals the portal no longer lists. The cursor (newest
deal change time seen, capped at the run's start as `EntitySync` does) is committed under
the link table's name after every page landed.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bitrix_core.entities import ENTITIES, EntitySpec
from dagster_bitrix24.sync import EntitySync, SyncResult, parse_change_time, read_started
from dagster_bitrix24.warehouse.convert.values import to_bool, to_int
from dagster_bitrix24.warehouse.schema.columns import sql_type
from dagster_bitrix24.warehouse.schema.layout import SYNCED_AT

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
_COLUMNS = ("deal_id", "contact_id", "sort", "role_id", "is_primary")
_DELETE_BATCH = 500


def link_table(metadata: sa.MetaData, name: str, dialect: Any, *, schema: str | None) -> sa.Table:
    """The SQLAlchemy table of deal-contact links, keyed by (deal_id, contact_id)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("deal_id", sa.BigInteger, primary_key=True, autoincrement=False,
                  comment="ID of the deal"),
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False,
                  comment="ID of the linked contact"),
        sa.Column("sort", sa.Integer, comment="SORT: position among the deal's contacts"),
        sa.Column("role_id", sa.Integer, comment="ROLE_ID"),
        sa.Column("is_primary", sa.Boolean, comment="IS_PRIMARY: the deal's main contact"),
        sa.Column(SYNCED_AT, sql_type("datetime", dialect), comment="when this row was written"),
        schema=schema,
    )  # fmt: skip


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
        self._table: sa.Table | None = None

    async def run(self) -> SyncResult:
        """List the window's deals, fetch and replace their links page by page, move the cursor."""
        self._table = await self._blocking(self._prepare)
        result = await self._plan()
        result.entity, result.table_name = DEAL_CONTACT, self.table_name
        params = self._params({}, result)
        params["select"] = [self.spec.id_key, "DATE_MODIFY"]
        started = read_started()
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
                moment = self._change_time(row)
                newest = moment if newest is None or (moment and moment > newest) else newest
                found = link_rows(deal_id, answer)
                self._count_links(row, len(found), result)
                links.extend(found)
            deal_ids = [deal_id for _, deal_id in deals]
            seen.update(deal_ids)
            written = await self._blocking(self._replace, deal_ids, links)
            result.inserted += written
            result.chunks += 1
        if result.mode == "full":
            result.deleted = await self._blocking(self._drop_missing, seen)
        await self._commit_cursor(result, newest, started=started)
        return result

    def row_count(self) -> int:
        """Links stored now."""
        assert self._table is not None, "run() first"
        with self.warehouse.engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(self._table)
            return int(connection.execute(query).scalar_one())

    def column_schema(self) -> list[tuple[str, str, str]]:
        """(column, SQL type, description) of the link table."""
        assert self._table is not None, "run() first"
        dialect = self.warehouse.engine.dialect
        return [(c.name, c.type.compile(dialect=dialect), c.comment or "") for c in self._table.c]

    def _change_time(self, row: Mapping[str, Any]) -> Any:
        return parse_change_time(row.get("DATE_MODIFY"))

    def _count_links(self, row: Mapping[str, Any], links: int, result: SyncResult) -> None:
        result.rows += links
        moment = self._change_time(row)
        if self.options.partition_key is not None and moment is not None:
            partition = self.options.partition_key(moment)
            if partition is not None:
                result.partition_counts[partition] += links

    def _prepare(self) -> sa.Table:
        table = link_table(sa.MetaData(), self.table_name, self.warehouse.dialect_name,
                           schema=self.warehouse.schema)  # fmt: skip
        table.create(self.warehouse.engine, checkfirst=True)
        return table

    def _replace(self, deal_ids: Sequence[int], links: list[tuple[Any, ...]]) -> int:
        """Delete the deals' links and insert the new ones in one transaction."""
        table = self._table
        assert table is not None
        synced_at = datetime.now(UTC)
        if self.warehouse.dialect_name != "postgresql":  # naive UTC, as the writer stores it
            synced_at = synced_at.replace(tzinfo=None)
        with self.warehouse.transaction() as connection:
            for batch in _batches(deal_ids):
                connection.execute(table.delete().where(table.c.deal_id.in_(batch)))
            if links:
                connection.execute(
                    table.insert(),
                    [dict(zip(_COLUMNS, link, strict=True), **{SYNCED_AT: synced_at})
                     for link in links],
                )  # fmt: skip
        return len(links)

    def _drop_missing(self, seen: set[int]) -> int:
        """Delete the links of deals the portal no longer lists; return the rows removed."""
        table = self._table
        assert table is not None
        with self.warehouse.transaction() as connection:
            stored = {r[0] for r in connection.execute(sa.select(table.c.deal_id).distinct())}
            gone = sorted(stored - seen)
            removed = 0
            for batch in _batches(gone):
                removed += connection.execute(
                    table.delete().where(table.c.deal_id.in_(batch))
                ).rowcount
        return removed


def _batches(items: Sequence[Any] | Iterable[Any]) -> list[list[Any]]:
    values = list(items)
    return [values[i : i + _DELETE_BATCH] for i in range(0, len(values), _DELETE_BATCH)]
