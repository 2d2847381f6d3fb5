"""What can go wrong in the warehouse writer, each a named error raised before any SQL runs."""


class WarehouseError(Exception):
    """Base class of the warehouse writer's errors."""


class WarehouseUnavailableError(WarehouseError):
    """The warehouse cannot be opened (a SQLite file in a missing or read-only folder)."""


class FieldMetadataError(WarehouseError, ValueError):
    """The field metadata (or a table option) cannot describe a table: raised before any DDL."""


class RowConversionError(WarehouseError, ValueError):
    """A row value does not fit its field's type; names the entity, field and row id, never
    the value (raw values go to the rejects table only)."""

    def __init__(self, *, entity: str, field: str, row_id: object) -> None:
        self.entity = entity
        self.field = field
        self.row_id = row_id
        shown = repr(row_id)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        super().__init__(f"{entity}: field {field!r} of row id {shown} cannot hold its value")

class WarehouseWriteError(WarehouseError):
    """The database refused a chunk: names the table, the chunk's id range and the database's
    error code and message, never a row value. `transient`: a deadlock, lock wait timeout or
    serialization failure that persisted through every retry."""

    def __init__(
        self, message: str, *, table: str, code: str | None, transient: bool = False
    ) -> None:
        self.table = table
        self.code = code
        self.transient = transient
        super().__init__(message)
