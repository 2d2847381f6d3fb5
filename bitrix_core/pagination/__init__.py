"""Page strategies for Bitrix24 list methods behind one protocol, and the list run.

run = paginate(batcher, "crm.deal.list", {"filter": {"STAGE_ID": "WON"}})
async for page in run:
    ...
run.stats.strategy      # "idwindow" (order="id"), "converging" (order=None)
"""

from bitrix_core.pagination.base import Page, PageStrategy, Runner
from bitrix_core.pagination.converging import ConvergingPaging
from bitrix_core.pagination.keyset import KeysetPaging
from bitrix_core.pagination.offset import OffsetPaging
from bitrix_core.pagination.query import PAGE_SIZE, IdBounds, find_key
from bitrix_core.pagination.run import ListRun, choose_strategy, paginate
from bitrix_core.pagination.window import IdWindowPaging

__all__ = [
    "PAGE_SIZE",
    "ConvergingPaging",
    "IdBounds",
    "IdWindowPaging",
    "KeysetPaging",
    "ListRun",
    "OffsetPaging",
    "Page",
    "PageStrategy",
    "Runner",
    "choose_strategy",
    "find_key",
    "paginate",
]
