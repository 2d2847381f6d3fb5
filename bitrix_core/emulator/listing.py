"""One page of a `*.list` call: filter, order, offset paging by 50, COUNT unless start=-1."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bitrix_core.emulator.filters import FilterBuilder, Resolver, order_by, php_int
from bitrix_core.emulator.schema import Entity, Field
from bitrix_core.emulator.shapes import RowShape
from bitrix_core.emulator.store import PortalStore

PAGE = 50


@dataclass
class Page:
    """Rows of one page (raw, or shaped when a `RowShape` was given), their ids, and the
    paging facts the envelope and cost model need."""

    rows: list[dict[str, Any]]
    offset: int
    total: int | None  # None when start=-1 (nothing counted)
    ids: list[int]

    @property
    def answer_total(self) -> int:
        """The `total` a response carries: 0 when start=-1 counted nothing, as in the
        documented example (b24restdocs settings/performance/huge-data.md: `[total] => 0`)."""
        return self.total if self.total is not None else 0

    @property
    def next(self) -> int | None:
        """The `next` offset, only while more rows exist."""
        if self.total is None or self.offset + len(self.rows) >= self.total:
            return None
        return self.offset + PAGE


def resolver(entity: Entity, *, camel: bool) -> Resolver:
    """Field lookup by the caller's spelling: UPPER_CASE (classic) or camelCase (crm.item)."""
    exact = {(f.camel_key if camel else f.name): f for f in entity.fields}
    folded = {k.lower(): f for k, f in exact.items()}

    def resolve(name: str) -> Field | None:
        return exact.get(name) or folded.get(name.lower())

    return resolve


def fetch_page(
    store: PortalStore,
    entity: Entity,
    *,
    filter_: Any,
    order: Any,
    start: Any,
    camel: bool = False,
    strict: bool = False,
    round_to_page: bool = False,
    extra_where: tuple[str, list[Any]] | None = None,
    shape: RowShape | None = None,
) -> Page:
    """Run one page of a list: UnknownFieldError when `strict` and a key names no field.
    With `shape`, rows come back in that response shape; otherwise as stored."""
    resolve = resolver(entity, camel=camel)
    builder = FilterBuilder(resolve, tz=store.tz, multi_owner=entity.multi_owner, strict=strict)
    where, params = builder.where(filter_ if isinstance(filter_, Mapping) else {})
    if extra_where:
        where, params = f"({where}) AND ({extra_where[0]})", [*params, *extra_where[1]]
    order_sql = order_by(order or {}, resolve, strict=strict)
    begin = php_int(start) if start not in (None, "") else 0
    counting = begin >= 0
    offset = max(begin, 0)
    if round_to_page:
        offset -= offset % PAGE
    table = f'"{entity.table}" t'
    tail = f" FROM {table} WHERE {where} ORDER BY {order_sql} LIMIT {PAGE} OFFSET {offset}"
    rows: list[dict[str, Any]]
    if shape is not None:
        fetched = store.tuples(f"SELECT {shape.columns}{tail}", params)
        rows, ids = shape.rows(fetched), [r[-1] for r in fetched]
    else:
        names = [f.name for f in entity.fields if not f.is_multifield]  # the table's columns
        rows = [dict(zip(names, r, strict=True)) for r in store.tuples(f"SELECT t.*{tail}", params)]
        ids = [r["ID"] for r in rows]
    total = (int(store.tuples(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)[0][0])
             if counting else None)
    return Page(rows=rows, offset=offset, total=total, ids=ids)
