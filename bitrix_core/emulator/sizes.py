"""How big an emulated portal is, and its time zone."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta, timezone

_TZ = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


@dataclasses.dataclass(frozen=True)
class PortalSizes:
    """How many rows each entity gets; unset sizes are derived from `deals`."""

    deals: int = 1000
    leads: int | None = None
    contacts: int | None = None
    companies: int | None = None
    activities: int | None = None
    users: int = 50
    departments: int | None = None
    tasks: int | None = None
    smart_items: int = 300

    def resolved(self) -> dict[str, int]:
        """Every size as a number, keyed like the fields of this class."""
        sizes = {
            "deals": self.deals,
            "leads": self.leads if self.leads is not None else self.deals // 2,
            "contacts": self.contacts if self.contacts is not None else self.deals // 2,
            "companies": self.companies if self.companies is not None else max(1, self.deals // 10),
            "activities": self.activities if self.activities is not None else self.deals,
            "users": self.users,
            "departments": (self.departments if self.departments is not None
                            else max(3, self.users // 8)),
            "tasks": self.tasks if self.tasks is not None else self.deals // 5,
            "smart_items": self.smart_items,
        }
        bad = [k for k, v in sizes.items() if not isinstance(v, int) or v < 0]
        if bad:
            raise ValueError(f"sizes must be non-negative integers: {', '.join(bad)}")
        if sizes["users"] < 1:
            raise ValueError("a portal needs at least one user")
        return sizes



def parse_tz(tz: str) -> timezone:
    """`+03:00` -> a fixed-offset timezone."""
    m = _TZ.match(tz or "")
    if not m:
        raise ValueError(f"tz must look like +03:00, got {tz!r}")
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return timezone(timedelta(minutes=minutes if m.group(1) == "+" else -minutes))
