"""What one command costs the portal, per entity family, under three profiles.

A command's processing time (portal seconds, charged to its method's operating budget and
spent as latency) is `base + per_row * rows + COUNT(counted) + offset cost`. Real portals
price entity families very differently (smart processes and tasks are far dearer than the
classic CRM tables) and a COUNT is not linear in table size (small tables stay cached), so
every family has its own `CostModel` and the COUNT follows a power law through the two
data points below.

Data points (numbers from /work/shared/bitrix24-api.md, section 4; the crm.item.list COUNT
example is in b24restdocs `settings/performance/huge-data.md`):

- (L) 7,531 leads, `select ID,TITLE`, offset pages each paying the COUNT: 5.5-12 ms of
  processing per page up to offset 450, about 30 ms from offset 500, about 46 ms near
  offset 7,500. So a COUNT of 7,531 rows costs at most 5.5 ms: under 0.73 us per row.
- (I) crm.item.list over 2,387,743 items: 49.9 s with the COUNT, about 68 ms of processing
  (0.097 s end to end) with `start=-1`: the COUNT costs 20.9 us per row there.
- (I3) crm.item.list returning 3 items: about 31 ms.
- (T) tasks.task.list pages: 0.9-1.6 s each.
- (W) crm.contact.add about 94 ms, crm.item.add about 44 ms.

Profiles: "calibrated" is the best reading of the data; "optimistic" and "pessimistic"
take the low and high ends where the data give a range, and the cheapest / dearest
plausible analogue where there is no data point. Each number below says which it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

_BIG_ROWS = 2_387_743  # (I)
_BIG_COUNT_PER_ROW_S = (49.9 - 0.097) / _BIG_ROWS  # (I): 20.9 us per counted row
_SMALL_ROWS = 7_531  # (L)


def _power_through(small_per_row_s: float) -> float:
    """The COUNT exponent p with count(n) ~ n**p through (L) at `small_per_row_s` per row
    and through (I)."""
    return 1.0 + math.log(small_per_row_s / _BIG_COUNT_PER_ROW_S) / math.log(
        _SMALL_ROWS / _BIG_ROWS
    )


@dataclass(frozen=True)
class CostModel:
    """Processing seconds of one command of one entity family.

    `count_s` is the COUNT's price per row at `count_ref_rows` counted rows; below that
    the price per row falls as `(counted / count_ref_rows) ** (count_power - 1)` (cached
    small tables), above it stays linear. `count_power=1` is a plain linear COUNT.
    `offset_s` is paid per skipped row, `offset_step_s` once the offset reaches
    `offset_step_at`.
    """

    base_s: float = 0.007
    per_row_s: float = 0.0001
    count_s: float = _BIG_COUNT_PER_ROW_S
    offset_s: float = 0.0
    count_ref_rows: int = _BIG_ROWS
    count_power: float = 1.0
    offset_step_s: float = 0.0
    offset_step_at: int = 0

    def count_seconds(self, counted: int) -> float:
        """What a COUNT over `counted` matching rows costs."""
        if counted <= 0 or self.count_s <= 0:
            return 0.0
        fraction = min(1.0, counted / self.count_ref_rows)
        return self.count_s * counted * fraction ** (self.count_power - 1.0)

    def offset_seconds(self, offset: int) -> float:
        """What skipping `offset` rows costs."""
        if offset <= 0:
            return 0.0
        step = self.offset_step_s if self.offset_step_s and offset >= self.offset_step_at else 0.0
        return self.offset_s * offset + step

    def processing(self, *, rows: int, counted: int, offset: int) -> float:
        """Portal seconds one command takes."""
        return (
            self.base_s
            + self.per_row_s * max(rows, 0)
            + self.count_seconds(counted)
            + self.offset_seconds(offset)
        )

    def scaled(self, factor: float) -> CostModel:
        """Every price times `factor` (the COUNT's shape kept)."""
        return replace(
            self,
            base_s=self.base_s * factor,
            per_row_s=self.per_row_s * factor,
            count_s=self.count_s * factor,
            offset_s=self.offset_s * factor,
            offset_step_s=self.offset_step_s * factor,
        )


FAMILIES = ("classic", "item", "activity", "task", "user", "classic_write", "item_write")


def family_of(method: str) -> str:
    """The entity family a method's cost is taken from."""
    name = method.lower()
    verb = name.rsplit(".", 1)[-1]
    writes = verb in ("add", "update", "delete")
    if name.startswith("crm.item."):
        return "item_write" if writes else "item"
    if name.startswith("tasks."):
        return "task"
    if name.startswith(("user.", "department.")):
        return "user"
    if writes:
        return "classic_write"
    if name.startswith("crm.activity."):
        return "activity"
    return "classic"


@dataclass(frozen=True)
class CostProfile:
    """A `CostModel` per entity family (see `family_of`)."""

    name: str
    families: Mapping[str, CostModel] = field(default_factory=dict)

    @classmethod
    def uniform(cls, model: CostModel) -> CostProfile:
        """Every family priced by one model (tests that need a flat, known cost)."""
        return cls("uniform", MappingProxyType({f: model for f in FAMILIES}))

    @classmethod
    def for_name(cls, name: str) -> CostProfile:
        """`calibrated`, `optimistic` or `pessimistic`."""
        try:
            return PROFILES[name.lower()]
        except KeyError:
            raise ValueError(
                f"unknown cost profile {name!r}; expected one of {sorted(PROFILES)}"
            ) from None

    def model_for(self, method: str) -> CostModel:
        """The cost model of `method`'s family."""
        return self.families[family_of(method)]

    def processing(self, method: str, *, rows: int, counted: int, offset: int) -> float:
        """Portal seconds one command of `method` takes."""
        return self.model_for(method).processing(rows=rows, counted=counted, offset=offset)


def _profile(name: str, *, small_count_per_row_s: float, classic_page_s: float,
             task_page_s: float, activity: str, user_scale: float) -> CostProfile:
    """One profile; the arguments are where the profiles differ (see `PROFILES`)."""
    # (L): from offset 500 pages cost ~30 ms instead of 5.5-12 ms (a jump of ~20 ms, cause
    # unknown), then ~16 ms more by offset 7,500: 2.3 us per skipped row. Used for every
    # family (no other family has an offset data point: an assumption). The COUNT curve
    # runs through (L) and (I) for every family (no family has two points: an assumption).
    shape = CostModel(count_s=_BIG_COUNT_PER_ROW_S,
                      count_power=_power_through(small_count_per_row_s),
                      offset_s=0.016 / 7_000, offset_step_s=0.02, offset_step_at=500)
    # classic page without COUNT: base + 50 rows; the split (0.1 ms per row) is an assumption.
    classic = replace(shape, base_s=classic_page_s - 50 * 0.0001, per_row_s=0.0001)
    # (I3) + (I): 31 ms for 3 items, 68 ms for 50: 0.79 ms per item, 28.6 ms base.
    item_per_row = (0.068 - 0.031) / 47
    item = replace(shape, base_s=0.031 - 3 * item_per_row, per_row_s=item_per_row)
    # (T): a 50-task page; one fifth of it fixed per call is an assumption.
    task = replace(shape, base_s=task_page_s / 5, per_row_s=task_page_s * 4 / 5 / 50)
    families = {
        "classic": classic,
        "item": item,
        # no data point for activities: priced like classic (optimistic) or crm.item.
        "activity": classic if activity == "classic" else item.scaled(
            1.5 if activity == "item_x1.5" else 1.0),
        "task": task,
        # no data point for users/departments: small tables read like classic lists.
        "user": classic.scaled(user_scale),
        # (W): crm.contact.add 94 ms; update/delete/other classic writes assumed alike.
        "classic_write": CostModel(base_s=0.094, per_row_s=0.0, count_s=0.0),
        # (W): crm.item.add 44 ms; update/delete assumed alike.
        "item_write": CostModel(base_s=0.044, per_row_s=0.0, count_s=0.0),
    }
    return CostProfile(name, MappingProxyType(families))


PROFILES: dict[str, CostProfile] = {
    # COUNT at 7,531 rows: half of (L)'s 5.5 ms page (the page itself is the other half);
    # a page without COUNT 6 ms, so a counted page costs 8.75 ms, the middle of (L)'s
    # 5.5-12 ms, ~30 ms at offset 500 and ~46 ms at 7,500 as measured (selecting every
    # field rather than ID,TITLE is assumed to cost no more); tasks: the middle of (T);
    # activities: unmeasured, priced like crm.item (conservative).
    "calibrated": _profile("calibrated", small_count_per_row_s=0.0055 / 2 / _SMALL_ROWS,
                           classic_page_s=0.006, task_page_s=1.25, activity="item",
                           user_scale=1.0),
    # the low ends: COUNT a fifth of (L)'s smallest page, the page the rest of it (a counted
    # page 5.5 ms, the bottom of (L)), tasks 0.9 s, activities like classic lists, users
    # at half the classic price.
    "optimistic": _profile("optimistic", small_count_per_row_s=0.0055 / 5 / _SMALL_ROWS,
                           classic_page_s=0.0055 * 4 / 5, task_page_s=0.9, activity="classic",
                           user_scale=0.5),
    # the high ends: the whole 5.5 ms page charged to the COUNT (0.73 us per row), a
    # page without COUNT 12 ms, the top of (L) (a full row twice the calibrated page:
    # assumption), tasks 1.6 s, activities 1.5x crm.item, users 2x classic.
    "pessimistic": _profile("pessimistic", small_count_per_row_s=0.0055 / _SMALL_ROWS,
                            classic_page_s=0.012, task_page_s=1.6, activity="item_x1.5",
                            user_scale=2.0),
}
