"""From API values to database values: one rule table (`rules.py`) serving the Python
converters, the compiled row converter, PostgreSQL's COPY text and its SQL staging."""

from dagster_bitrix24.warehouse.convert.compile import Conversions
from dagster_bitrix24.warehouse.convert.rules import copy_value
from dagster_bitrix24.warehouse.convert.values import Converter, Unstorable

__all__ = ["Conversions", "Converter", "Unstorable", "copy_value"]
