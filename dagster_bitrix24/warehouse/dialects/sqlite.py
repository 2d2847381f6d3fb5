"""SQLite: `INSERT ... ON CONFLICT ... WHERE` with `IS NOT` as the NULL-safe comparison."""

from __future__ import annotations

from typing import ClassVar

from dagster_bitrix24.warehouse.dialects.base import OnConflictWriter
from dagster_bitrix24.warehouse.schema.columns import Dialect


class SqliteWriter(OnConflictWriter):
    """The writes of a SQLite warehouse (every statement of `OnConflictWriter` as it is)."""

    dialect: ClassVar[Dialect] = "sqlite"
    distinct: ClassVar[str] = "IS NOT"
