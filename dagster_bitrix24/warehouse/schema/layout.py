"""A `TableLayout`: one entity's table, child tables and precomputed row converters.

`entity_table(...)` and `child_table(...)` turn planned columns into SQLAlchemy tables;
`with_converters(layout, conversions)` compiles the layout's row functions once;
`convert_rows(layout, rows)` turns API rows into driver-ready tuples (one compiled pass,
value by value only for a chunk the fast path cannot read) and `child_rows(...)` flattens
multi-field lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dagster_bitrix24.warehouse.convert.compile import (
    Conversions,
    LineBuilder,
    RowConverter,
    RowStager,
    ValueBuilder,
)
from dagster_bitrix24.warehouse.convert.rules import rule_for
from dagster_bitrix24.warehouse.convert.values import Caches, Converter
from dagster_bitrix24.warehouse.errors import RowConversionError
from dagster_bitrix24.warehouse.schema.columns import (
    ColumnSpec,
    Dialect,
    Kind,
    MultiFieldSpec,
    fit_identifier,
    sql_type,
)

SYNCED_AT = "_synced_at"
DELETED_AT = "_deleted_at"
CHILD_COLUMNS = ("parent_id", "position", "value_id", "value_type", "value", "type_id")
_FILLFACTOR = 50
_CONVERSION_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError)


@dataclass(frozen=True)
class TypeChange:
    """A field whose portal type no longer matches its stored column."""

    column: str
    field: str
    stored: str
    wanted: Kind


@dataclass(frozen=True)
class SchemaChanges:
    """What `prepare_table` did or found: new table, new columns, changed types, gone fields."""

    created: bool = False
    added_columns: tuple[str, ...] = ()
    type_changes: tuple[TypeChange, ...] = ()
    removed_columns: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.created or self.added_columns or self.type_changes)


@dataclass(frozen=True)
class ChildTable:
    """The child table of one multi-field: (parent id, position) -> value id, type, value."""

    spec: MultiFieldSpec
    table: sa.Table


@dataclass(frozen=True)
class TableLayout:
    """Everything the writer needs about one entity's table; built by `Warehouse.prepare_table`.

    `columns` are the columns written from API rows, id first; `frozen` lists columns whose
    type changed on the portal: they are reported and left as they are, never written.
    """

    entity: str
    dialect: Dialect
    table: sa.Table
    columns: tuple[ColumnSpec, ...]
    id_field: str
    change_field: str | None
    children: tuple[ChildTable, ...] = ()
    frozen: tuple[str, ...] = ()
    changes: SchemaChanges = field(default_factory=SchemaChanges)
    converters: tuple[Converter, ...] = field(default=(), repr=False)
    row_converter: RowConverter | None = field(default=None, repr=False)
    row_stager: RowStager | None = field(default=None, repr=False)
    line_builder: tuple[LineBuilder, ValueBuilder] | None = field(default=None, repr=False)

    @property
    def id_column(self) -> str:
        """The primary key column."""
        return self.columns[0].name

    @property
    def change_column(self) -> str | None:
        """The column compared to refuse older versions, or None to always update."""
        index = self.change_index
        return None if index is None else self.columns[index].name

    @property
    def change_index(self) -> int | None:
        """The position of the change-time column in converted rows."""
        if self.change_field is None:
            return None
        wanted = self.change_field
        return next(
            (i for i, c in enumerate(self.columns) if c.field == wanted and c.part == "value"),
            None,
        )

    @property
    def written_names(self) -> list[str]:
        """Column names in the order of converted row tuples (bookkeeping last)."""
        return [c.name for c in self.columns] + [SYNCED_AT, DELETED_AT]


def entity_table(
    metadata: sa.MetaData, name: str, columns: Sequence[ColumnSpec], dialect: Dialect,
    *, schema: str | None,
) -> sa.Table:  # fmt: skip
    """The SQLAlchemy table of an entity: typed columns with comments, then bookkeeping.

    PostgreSQL tables leave half of each page free (`fillfactor=50`): an upsert then writes
    the new row version on the same page without a new index entry (a HOT update). Measured
    on 200,000 deals (`benchmarks/writer_throughput.py`): the table takes 104 MB after the
    first sync and still 104 MB after two full re-syncs, where `fillfactor=70` grows from 74 to
    138 MB and the default 100 from 51 to 154 MB (their index doubles), and the update merge
    costs the server about a quarter less. A table that is only ever appended to can be
    given `ALTER TABLE ... SET (fillfactor = 100)`; the writer keeps an existing setting."""
    sql_columns = [
        sa.Column(c.name, _key_type(c.kind, dialect) if i == 0 else sql_type(c.kind, dialect),
                  primary_key=i == 0, autoincrement=False, comment=c.description)
        for i, c in enumerate(columns)
    ]  # fmt: skip
    stamp = sql_type("datetime", dialect)
    sql_columns.append(sa.Column(SYNCED_AT, stamp, comment="when this row was written"))
    sql_columns.append(sa.Column(DELETED_AT, stamp, comment="when the portal stopped listing it"))
    options: dict[str, Any] = (
        {"postgresql_with": {"fillfactor": _FILLFACTOR}} if dialect == "postgresql" else {}
    )
    return sa.Table(name, metadata, *sql_columns, schema=schema, **options)


def _key_type(kind: Kind, dialect: Dialect) -> sa.types.TypeEngine[Any]:
    """SQLite: an integer id is declared INTEGER, so it is the rowid itself (one B-tree, not a
    table plus a key index); tables made earlier with BIGINT keep working."""
    return sa.Integer() if dialect == "sqlite" and kind == "integer" else sql_type(kind, dialect)


def child_table(
    metadata: sa.MetaData, parent: str, spec: MultiFieldSpec, id_type: sa.types.TypeEngine[Any],
    *, schema: str | None,
) -> sa.Table:  # fmt: skip
    """The child table `<parent>_<field>` holding one multi-field's values."""
    return sa.Table(
        fit_identifier(f"{parent}_{spec.name}"),
        metadata,
        sa.Column("parent_id", id_type, primary_key=True, autoincrement=False,
                  comment="id of the parent row"),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value_id", sa.BigInteger, comment="ID of the value on the portal"),
        sa.Column("value_type", sa.String(255), comment="VALUE_TYPE, e.g. WORK"),
        sa.Column("value", sa.Text, comment=spec.description),
        sa.Column("type_id", sa.String(255), comment="TYPE_ID, e.g. PHONE"),
        schema=schema,
    )  # fmt: skip


def with_converters(layout: TableLayout, conversions: Conversions) -> TableLayout:
    """The layout with one converter per written column (and PostgreSQL's COPY line builder
    and stager), compiled once by `conversions`."""
    dialect = layout.dialect
    converters = tuple(conversions.converter(c.kind, dialect, part=c.part) for c in layout.columns)
    row_converter = conversions.row_converter(layout.columns, dialect)
    if dialect != "postgresql":
        return replace(layout, converters=converters, row_converter=row_converter)
    return replace(
        layout, converters=converters, row_converter=row_converter,
        row_stager=conversions.stager(layout.columns),
        line_builder=conversions.line_builder(layout.columns),
    )  # fmt: skip


def synced_at_value(dialect: Dialect) -> Any:
    """Now, as the driver value of a bookkeeping timestamp on `dialect`."""
    return rule_for("datetime", dialect).python(Caches())(datetime.now(UTC))


def convert_rows(
    layout: TableLayout, rows: Sequence[Mapping[str, Any]], *, synced_at: Any
) -> list[tuple[Any, ...]]:
    """API rows as driver-ready tuples in `layout.written_names` order; a chunk the fast
    path cannot read is converted row by row (`convert_row`)."""
    assert layout.row_converter is not None, "build layouts with with_converters()"
    try:
        converted = layout.row_converter(rows, synced_at)
    except _CONVERSION_ERRORS:
        converted = [convert_row(layout, row, synced_at) for row in rows]
    for row, values in zip(rows, converted, strict=True):
        if values[0] is None:
            raise RowConversionError(
                entity=layout.entity, field=layout.id_field, row_id=row.get(layout.id_field)
            )
    return converted


def convert_row(layout: TableLayout, row: Mapping[str, Any], synced_at: Any) -> tuple[Any, ...]:
    """One row through the fast path, else value by value through the converters (a zero
    date, say, which only the converter reads); `RowConversionError` names the first value
    no converter takes."""
    assert layout.row_converter is not None
    try:
        return layout.row_converter([row], synced_at)[0]
    except _CONVERSION_ERRORS:
        pass
    values = []
    for spec, convert in zip(layout.columns, layout.converters, strict=True):
        try:
            values.append(convert(row.get(spec.field)))
        except _CONVERSION_ERRORS:
            raise RowConversionError(
                entity=layout.entity, field=spec.field, row_id=row.get(layout.id_field)
            ) from None
    return (*values, synced_at, None)


def child_rows(
    child: ChildTable, rows: Sequence[Mapping[str, Any]], ids: Sequence[Any]
) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """(parents whose values are replaced: every row's, child tuples). A row without the
    field has no values: the portal leaves an empty multi-field out of the row, and the
    sync always asks for every multi-field."""
    parents = list(ids)
    values: list[tuple[Any, ...]] = []
    field_name = child.spec.field
    for row, parent in zip(rows, ids, strict=True):
        items = row.get(field_name) or []
        for position, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, Mapping):
                continue
            value_id = item.get("ID", item.get("id"))
            values.append((
                parent, position, int(value_id) if value_id not in (None, "") else None,
                item.get("VALUE_TYPE", item.get("valueType")) or None,
                item.get("VALUE", item.get("value")) or None,
                item.get("TYPE_ID", item.get("typeId")) or None,
            ))  # fmt: skip
    return parents, values
