"""What the engine knows about each entity: list method, id key, result key, query style.

A spec tells the pagination strategies how to ask for rows (filter and order key spelling,
where the id lives in a row, which key wraps the result) without special cases elsewhere::

    >>> ENTITIES["crm.deal"].list_method
    'crm.deal.list'
    >>> spec_for_method("crm.item.list", {"entityTypeId": 31}).name
    'crm.smart_invoice'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bitrix_core.errors import BitrixParameterError

Style = Literal["classic", "item", "task", "user", "dictionary"]

_STYLES = ("classic", "item", "task", "user", "dictionary")
_FILTER_CASES = ("upper", "camel")


@dataclass(frozen=True)
class EntitySpec:
    """How one entity is listed.

    `id_field` is the id key in result rows (`ID`, or `id` for crm.item and tasks);
    `result_key` wraps the row list (`None` for a plain list, `items`, `tasks`,
    `categories`). `style` picks the query spelling: `classic` (UPPER_CASE filter and order
    mappings), `item` (camelCase keys, lowercase `id`), `task` (UPPER_CASE input, camelCase
    rows), `user` (top-level `sort`/`order` strings, `FILTER`), `dictionary` (small lists
    paged by offset only). `keyset` says whether rows can be filtered and ordered by id.
    """

    name: str
    list_method: str
    fields_method: str | None
    id_field: str = "ID"
    result_key: str | None = None
    change_time_field: str | None = None
    style: Style = "classic"
    filter_case: Literal["upper", "camel"] = "upper"
    extra_params: Mapping[str, Any] = field(default_factory=dict)
    keyset: bool = True

    def __post_init__(self) -> None:
        for name in ("name", "list_method", "id_field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise BitrixParameterError(f"EntitySpec.{name}", "must be a non-empty string")
        if self.style not in _STYLES:
            raise BitrixParameterError(
                "EntitySpec.style", f"must be one of {_STYLES}, not {self.style!r}"
            )
        if self.filter_case not in _FILTER_CASES:
            raise BitrixParameterError(
                "EntitySpec.filter_case", f"must be one of {_FILTER_CASES}, not {self.filter_case!r}"
            )
        if not isinstance(self.extra_params, Mapping):
            raise BitrixParameterError("EntitySpec.extra_params", "must be a mapping")

    @property
    def id_key(self) -> str:
        """The id key as spelled in filter, order and select (`ID` or `id`)."""
        return "id" if self.filter_case == "camel" else "ID"

    @property
    def filter_param(self) -> str:
        """The name of the filter parameter (`FILTER` for user.get, else `filter`)."""
        return "FILTER" if self.style == "user" else "filter"

    def row_key(self, key: str) -> str:
        """The key under which a filter/select field appears in result rows."""
        if self.style != "task":
            return key
        head, *rest = key.lower().split("_")
        return head + "".join(part.capitalize() for part in rest)


def _classic(name: str, change: str | None = "DATE_MODIFY") -> EntitySpec:
    return EntitySpec(
        name=name,
        list_method=f"{name}.list",
        fields_method=f"{name}.fields",
        change_time_field=change,
    )


def crm_item(entity_type_id: int, *, name: str | None = None) -> EntitySpec:
    """The spec of a crm.item.list entity (smart process, smart invoice, ...)."""
    if not isinstance(entity_type_id, int) or isinstance(entity_type_id, bool):
        raise TypeError("entity_type_id must be an int")
    return EntitySpec(
        name=name or f"crm.item.{entity_type_id}",
        list_method="crm.item.list",
        fields_method="crm.item.fields",
        id_field="id",
        result_key="items",
        change_time_field="updatedTime",
        style="item",
        filter_case="camel",
        extra_params={"entityTypeId": entity_type_id},
    )


ENTITIES: dict[str, EntitySpec] = {
    "crm.deal": _classic("crm.deal"),
    "crm.lead": _classic("crm.lead"),
    "crm.contact": _classic("crm.contact"),
    "crm.company": _classic("crm.company"),
    "crm.activity": _classic("crm.activity", "LAST_UPDATED"),
    "user": EntitySpec(
        name="user",
        list_method="user.get",
        fields_method="user.fields",
        style="user",
    ),
    "department": EntitySpec(
        name="department",
        list_method="department.get",
        fields_method="department.fields",
        style="dictionary",
        keyset=False,
    ),
    "crm.status": EntitySpec(
        name="crm.status",
        list_method="crm.status.list",
        fields_method="crm.status.fields",
        style="dictionary",
        keyset=False,
    ),
    "crm.category": EntitySpec(
        name="crm.category",
        list_method="crm.category.list",
        fields_method="crm.category.fields",
        id_field="id",
        result_key="categories",
        style="dictionary",
        filter_case="camel",
        extra_params={"entityTypeId": 2},
        keyset=False,
    ),
    "tasks.task": EntitySpec(
        name="tasks.task",
        list_method="tasks.task.list",
        fields_method="tasks.task.getFields",
        id_field="id",
        result_key="tasks",
        change_time_field="CHANGED_DATE",
        style="task",
    ),
    "crm.item": crm_item(0, name="crm.item"),
    "crm.smart_invoice": crm_item(31, name="crm.smart_invoice"),
}

# The types of fields whose `*.fields` method gives titles only (user.fields, department.fields
# answer {"NAME": "First name", ...}), keyed by list method; values are `*.fields`-style
# metadata. Source: api-reference/user/user-get.md (b24restdocs): ACTIVE a JSON boolean,
# IS_ONLINE "Y"/"N", times ISO 8601 with an offset (TIMESTAMP_X and LAST_ACTIVITY_DATE may be
# an empty object), PERSONAL_BIRTHDAY a time at midnight, UF_DEPARTMENT a list of ids;
# api-reference/departments/department-get.md: ids and SORT as strings.
BUILT_IN_FIELD_TYPES: dict[str, dict[str, dict[str, Any]]] = {
    "user.get": {
        "ID": {"type": "integer"}, "ACTIVE": {"type": "boolean"}, "IS_ONLINE": {"type": "char"},
        "LAST_LOGIN": {"type": "datetime"}, "DATE_REGISTER": {"type": "datetime"},
        "TIMESTAMP_X": {"type": "datetime"}, "LAST_ACTIVITY_DATE": {"type": "datetime"},
        "PERSONAL_BIRTHDAY": {"type": "date"}, "UF_EMPLOYMENT_DATE": {"type": "date"},
        "TIME_ZONE_OFFSET": {"type": "integer"},
        "UF_DEPARTMENT": {"type": "integer", "isMultiple": True},
    },
    "department.get": {
        "ID": {"type": "integer"}, "SORT": {"type": "integer"}, "PARENT": {"type": "integer"},
        "UF_HEAD": {"type": "user"},
    },
}  # fmt: skip

_SMART_INVOICE = 31
_ENTITY_TYPE_KEY = re.compile(r"^entitytypeid$", re.IGNORECASE)


def _entity_type_id(params: Mapping[str, Any] | None) -> int | None:
    for key, value in (params or {}).items():
        if _ENTITY_TYPE_KEY.match(str(key)):
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def spec_for_method(method: str, params: Mapping[str, Any] | None = None) -> EntitySpec | None:
    """The spec whose list method is `method` (case-insensitive), or None if unknown.

    crm.item.list and crm.category.list take their `entityTypeId` from `params`.
    """
    wanted = method.strip().lower()
    if wanted == "crm.item.list":
        type_id = _entity_type_id(params)
        if type_id is None:
            return None
        if type_id == _SMART_INVOICE:
            return ENTITIES["crm.smart_invoice"]
        return crm_item(type_id)
    for spec in ENTITIES.values():
        if spec.list_method.lower() == wanted:
            type_id = _entity_type_id(params)
            if spec.extra_params and type_id is not None:
                return replace(spec, extra_params={**spec.extra_params, "entityTypeId": type_id})
            return spec
    return None
