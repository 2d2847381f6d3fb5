"""One `DialectWriter` per database: the SQL of upserts, child-table replacement, temporary
tables, the newer-version guard and delete marking, each written once per dialect."""

from dagster_bitrix24.warehouse.dialects.base import DeleteCounts, DialectWriter, WriteCounts
from dagster_bitrix24.warehouse.dialects.duckdb import DuckdbWriter
from dagster_bitrix24.warehouse.dialects.mysql import MysqlWriter
from dagster_bitrix24.warehouse.dialects.postgresql import PostgresWriter
from dagster_bitrix24.warehouse.dialects.sqlite import SqliteWriter

__all__ = [
    "DeleteCounts", "DialectWriter", "DuckdbWriter", "MysqlWriter", "PostgresWriter", "SqliteWriter",
    "WriteCounts",
]  # fmt: skip
