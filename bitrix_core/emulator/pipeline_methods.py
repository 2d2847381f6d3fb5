"""crm.category.* (pipelines, "funnels"): list, get and fields, as the real portal answers.

Every method takes `entityTypeId`: 2 for deals, 31 / 128 / 130 for the smart types. Rows
are camelCase with real JSON integers and `isDefault` as "Y"/"N"; deal pipelines other
than the default one carry `originId`/`originatorId`, smart-type pipelines `isSystem` and
`code`. Leads have no pipelines (ENTITY_TYPE_NOT_SUPPORTED), contacts and companies none
generated (an empty list); any other type is NOT_FOUND.
"""

from __future__ import annotations

from typing import Any

from bitrix_core.emulator.filters import php_int
from bitrix_core.emulator.method_kit import Handler, MethodError, MethodResult
from bitrix_core.emulator.store import PortalStore

_DEAL = 2
_NO_PIPELINES = {1: "Lead"}
_CLIENTS = {3, 4}  # contacts and companies: known types, no pipelines generated
_BASE_FIELDS = (
    ("id", "integer", "ID", False, True),
    ("name", "string", "NAME", False, False),
    ("sort", "integer", "SORT", False, False),
    ("entityTypeId", "integer", "ENTITY_TYPE_ID", True, True),
    ("isDefault", "boolean", "IS_DEFAULT", False, True),
)  # (key, type, upper name, required, read-only)
_DEAL_FIELDS = (("originId", "string", "ORIGIN_ID", False, False),
                ("originatorId", "string", "ORIGINATOR_ID", False, False))
_SMART_FIELDS = (("isSystem", "boolean", "IS_SYSTEM", False, True),
                 ("code", "string", "CODE", False, False))


class Pipelines:
    """The pipelines of deals and smart types, from the store's `category` table."""

    def __init__(self, store: PortalStore) -> None:
        self.store = store

    def _type_id(self, params: dict[str, Any]) -> int:
        """The `entityTypeId` parameter, refused as the real server refuses it."""
        type_id = php_int(params.get("entitytypeid") or 0)
        if type_id in _NO_PIPELINES:
            raise MethodError("ENTITY_TYPE_NOT_SUPPORTED",
                              f"Entity type `{_NO_PIPELINES[type_id]}` is not supported", 400)
        known = self.store.tuples("SELECT 1 FROM category WHERE ENTITY_TYPE_ID = ? LIMIT 1",
                                  [type_id])
        if not known and type_id not in _CLIENTS:
            raise MethodError("NOT_FOUND", "SPA not found", 400)
        return type_id

    def _rows(self, type_id: int, *, only_id: int | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT ID, NAME, SORT, ENTITY_TYPE_ID, IS_DEFAULT FROM category"
               " WHERE ENTITY_TYPE_ID = ?")
        args: list[Any] = [type_id]
        if only_id is not None:
            sql += " AND ID = ?"
            args.append(only_id)
        keys = ("id", "name", "sort", "entityTypeId", "isDefault")
        rows = []
        for values in self.store.tuples(sql + " ORDER BY SORT, ID", args):
            row = dict(zip(keys, values, strict=True))
            if type_id != _DEAL:
                row.update(isSystem="N", code="")
            elif row["isDefault"] == "N":  # the default deal pipeline has no origin keys
                row.update(originId="", originatorId="")
            rows.append(row)
        return rows

    def list(self, params: dict[str, Any]) -> MethodResult:
        rows = self._rows(self._type_id(params))
        return MethodResult(result={"categories": rows}, total=len(rows), rows=len(rows))

    def get(self, params: dict[str, Any]) -> MethodResult:
        type_id = self._type_id(params)
        value = params.get("id")  # 0 is a real id: the default deal pipeline
        number = php_int(value) if value not in (None, "") else -1
        rows = self._rows(type_id, only_id=number) if number >= 0 else []
        if not rows:
            raise MethodError("NOT_FOUND", "Element not found", 400)
        return MethodResult(result={"category": rows[0]}, rows=1)

    def fields(self, params: dict[str, Any]) -> MethodResult:
        type_id = self._type_id(params)
        extra = _DEAL_FIELDS if type_id == _DEAL else _SMART_FIELDS
        return MethodResult(result={"fields": {
            key: {"type": kind, "isRequired": required, "isReadOnly": read_only,
                  "isImmutable": False, "isMultiple": False, "isDynamic": False,
                  "title": upper, "upperName": upper}
            for key, kind, upper, required, read_only in (*_BASE_FIELDS, *extra)
        }})


def handlers(store: PortalStore) -> dict[str, Handler]:
    """crm.category.list / get / fields (lower case) -> their handlers."""
    pipelines = Pipelines(store)
    return {"crm.category.list": pipelines.list, "crm.category.get": pipelines.get,
            "crm.category.fields": pipelines.fields}
