"""The deal-contact link table: (deal_id, contact_id) -> sort, role_id, is_primary.

Each deal's links are replaced in one transaction per page, as the multi-field child tables
are; a full sync also drops the links of deals the portal no longer lists. The deletes and
inserts are the dialect writer's (`delete_in`, `insert_rows`: in bulk on DuckDB).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse.dialects.base import DialectWriter
from dagster_bitrix24.warehouse.schema.columns import Dialect, sql_type
from dagster_bitrix24.warehouse.schema.layout import SYNCED_AT

LINK_COLUMNS = ("deal_id", "contact_id", "sort", "role_id", "is_primary")


def link_table(
    metadata: sa.MetaData, name: str, dialect: Dialect, *, schema: str | None
) -> sa.Table:
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


class LinkTable:
    """One link table of one warehouse: replace a page's links, drop the gone deals'."""

    def __init__(
        self, engine: sa.Engine, table: sa.Table, dialect: Dialect, writer: DialectWriter
    ) -> None:
        self.engine = engine
        self.table = table
        self.dialect = dialect
        self.writer = writer

    @property
    def name(self) -> str:
        return self.table.name

    def replace(self, deal_ids: Sequence[int], links: list[tuple[Any, ...]]) -> int:
        """Delete the deals' links and insert `links` (`LINK_COLUMNS` tuples) in one
        transaction; return the rows written."""
        synced_at = self._as_stored(datetime.now(UTC))
        with self.engine.begin() as connection:
            self.writer.delete_in(connection, self.table, "deal_id", deal_ids)
            self.writer.insert_rows(connection, self.table, (*LINK_COLUMNS, SYNCED_AT),
                                    [(*link, synced_at) for link in links])  # fmt: skip
        return len(links)

    def deals_missing(self, seen: set[int], written_before: datetime | None = None) -> list[int]:
        """The deals that have links stored and are not in `seen`; with `written_before`,
        only links written before it (another run may have stored links of a deal created
        after this read started: not this read's to judge)."""
        query = sa.select(self.table.c.deal_id).distinct()
        if written_before is not None:
            bound = self._as_stored(written_before)
            if self.dialect == "mysql":  # DATETIME keeps whole seconds
                bound = bound.replace(microsecond=0)
            query = query.where(self.table.c[SYNCED_AT] < bound)
        with self.engine.connect() as connection:
            return sorted({r[0] for r in connection.execute(query)} - seen)

    def _as_stored(self, moment: datetime) -> datetime:
        """`moment` (aware) as `_synced_at` holds it: naive UTC except on PostgreSQL."""
        moment = moment.astimezone(UTC)
        return moment if self.dialect == "postgresql" else moment.replace(tzinfo=None)

    def drop_deals(self, deal_ids: list[int]) -> int:
        """Delete the links of `deal_ids`; return the rows removed."""
        with self.engine.begin() as connection:
            return self.writer.delete_in(connection, self.table, "deal_id", deal_ids)

    def row_count(self) -> int:
        """Links stored now."""
        with self.engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(self.table)
            return int(connection.execute(query).scalar_one())

    def column_schema(self) -> list[tuple[str, str, str]]:
        """(column, SQL type, description) of the link table."""
        dialect = self.engine.dialect
        return [(c.name, c.type.compile(dialect=dialect), c.comment or "") for c in self.table.c]
