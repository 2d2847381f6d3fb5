"""crm.item.* (universal CRM API) and crm.type.list.

crm.item takes and returns camelCase names, lowercase `id`, real JSON numbers; entity type
ids 1-4 reach the classic lead/deal/contact/company tables, 31 smart invoices, 128/130
smart processes. Unlike the classic methods, an unknown filter or order key is an error.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bitrix_core.emulator.crm_dictionaries import CURRENCIES, SOURCES
from bitrix_core.emulator.crm_methods import WEBHOOK_USER, write_values
from bitrix_core.emulator.filters import UnknownFieldError, php_int
from bitrix_core.emulator.listing import fetch_page
from bitrix_core.emulator.method_kit import (
    Handler,
    MethodError,
    MethodResult,
    as_list,
    as_mapping,
    row_id,
)
from bitrix_core.emulator.schema import Entity, Field, describe_camel
from bitrix_core.emulator.shapes import camel_value, id_list_text, row_shape, select_fields
from bitrix_core.emulator.smart_entities import SMART_CATEGORY_BASE, SMART_PROCESSES
from bitrix_core.emulator.store import PortalStore

_CLASSIC_BY_TYPE = {1: "crm.lead", 2: "crm.deal", 3: "crm.contact", 4: "crm.company"}


class CrmItems:
    """Handlers of the universal crm.item API and its type dictionary."""

    def __init__(self, store: PortalStore) -> None:
        self.store = store

    def _entity(self, params: dict[str, Any]) -> Entity:
        type_id = php_int(params.get("entitytypeid") or 0)
        name = _CLASSIC_BY_TYPE.get(type_id, f"crm.item.{type_id}")
        if name not in self.store.entities:
            # crm-item-get.md / crm-item-list.md: `400` `NOT_FOUND` "SPA not found"
            raise MethodError("NOT_FOUND", "SPA not found", 400)
        return self.store.entity(name)

    def _camel_fields(self, entity: Entity) -> list[Field]:
        return [f for f in entity.fields if not f.is_multifield]

    def _item_fields(self, entity: Entity) -> list[Field]:
        """The fields an item carries (crm-item-add.md: no `contacts`)."""
        return [f for f in self._camel_fields(entity) if f.listed]

    def _item(self, entity: Entity, raw: dict[str, Any], fields: list[Field]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": int(raw["ID"])}
        for f in fields:
            value = (self.store.id_list(entity, f, int(raw["ID"])) if f.ids_sql
                     else id_list_text(f, raw) if f.is_id_list else raw.get(f.name))
            out[f.camel_key] = camel_value(f, value, self.store.tz)
        out["entityTypeId"] = entity.entity_type_id  # crm-item-get.md / -add.md: the last key
        return out

    def _fields_from(self, entity: Entity, params: dict[str, Any]) -> dict[str, Any]:
        by_camel = {f.camel_key.lower(): f.name for f in entity.fields}
        return {by_camel.get(str(k).lower(), str(k).upper()): v
                for k, v in as_mapping(params.get("fields")).items()}

    def list(self, params: dict[str, Any]) -> MethodResult:
        entity = self._entity(params)
        names = [str(s) for s in as_list(params.get("select"))]
        fields = [f for f in select_fields(entity, names, camel=True) if not f.is_multifield]
        try:
            page = fetch_page(self.store, entity, filter_=as_mapping(params.get("filter")),
                              order=params.get("order"), start=params.get("start"), camel=True,
                              strict=True, shape=row_shape(entity, fields, tz=self.store.tz,
                                                           camel=True))
        except UnknownFieldError as exc:
            raise MethodError("INVALID_ARG_VALUE", str(exc), 400) from None
        items = page.rows
        return MethodResult(result={"items": items}, next=page.next, total=page.answer_total,
                            rows=len(items), counted=page.total or 0, offset=page.offset)

    def get(self, params: dict[str, Any]) -> MethodResult:
        entity = self._entity(params)
        rows = self.store.raw_rows(entity.name, [row_id(params, code="NOT_FOUND",
                                                        message="Item not found")])
        if not rows:
            raise MethodError("NOT_FOUND", "Item not found", 400)
        return MethodResult(result={"item": self._item(entity, rows[0],
                                                       self._item_fields(entity))}, rows=1)

    def fields(self, params: dict[str, Any]) -> MethodResult:
        entity = self._entity(params)
        return MethodResult(result={"fields": {f.camel_key: describe_camel(f)
                                               for f in self._camel_fields(entity)}})

    def add(self, params: dict[str, Any]) -> MethodResult:
        entity = self._entity(params)
        values, _ = write_values(self.store, entity, self._fields_from(entity, params),
                                 creating=True)
        smart = entity.entity_type_id in SMART_CATEGORY_BASE
        if smart:
            values = {**self._smart_defaults(entity, values), **values}
        new_id = self.store.insert(entity.name, values)
        if smart and values.get("TITLE") is None:
            name = SMART_PROCESSES.get(int(entity.entity_type_id or 0), "Invoice")
            self.store.update(entity.name, new_id, {"TITLE": f"{name} #{new_id}"})
        row = self.store.raw_rows(entity.name, [new_id])[0]
        return MethodResult(result={"item": self._item(entity, row, self._item_fields(entity))})

    def _smart_defaults(self, entity: Entity, given: dict[str, Any]) -> dict[str, Any]:
        """What crm-item-add.md (SPA and Invoice tabs) says a field not passed defaults to:
        assignedById "the user ID who calls the method", opened "`Y`", begindate "Create
        date item", closedate "Create date item + 7 days", stageId "the first available
        stage relative to the funnel", sourceId "first available source", currencyId
        "default currency", isManualOpportunity "`N`"; title "{entityTypeName} #{id}" is
        set once the id is known. categoryId has no documented default: the default
        pipeline (an assumption)."""
        type_id = int(entity.entity_type_id or 0)
        category = php_int(given.get("CATEGORY_ID") or SMART_CATEGORY_BASE[type_id])
        today = datetime.fromtimestamp(self.store.now(), self.store.tz).date()
        return {
            "ASSIGNED_BY_ID": WEBHOOK_USER,
            "OPENED": "Y",
            "BEGINDATE": today.isoformat(),
            "CLOSEDATE": (today + timedelta(days=7)).isoformat(),
            "CATEGORY_ID": category,
            "STAGE_ID": f"DT{type_id}_{category}:NEW",  # org_entities: NEW is a funnel's first
            "SOURCE_ID": SOURCES[0][0],
            "CURRENCY_ID": CURRENCIES[0],
            "IS_MANUAL_OPPORTUNITY": "N",
        }

    def update(self, params: dict[str, Any]) -> MethodResult:
        entity = self._entity(params)
        number = row_id(params, code="NOT_FOUND", message="Item not found")
        values, _ = write_values(self.store, entity, self._fields_from(entity, params),
                                 creating=False)
        if not self.store.update(entity.name, number, values):
            raise MethodError("NOT_FOUND", "Item not found", 400)
        row = self.store.raw_rows(entity.name, [number])[0]
        return MethodResult(result={"item": self._item(entity, row, self._item_fields(entity))})

    def delete(self, params: dict[str, Any]) -> MethodResult:
        entity = self._entity(params)
        if not self.store.delete(entity.name, row_id(params, code="NOT_FOUND",
                                                     message="Item not found")):
            raise MethodError("NOT_FOUND", "Item not found", 400)
        return MethodResult(result=[])

    def types(self, params: dict[str, Any]) -> MethodResult:
        types = [{"id": n, "title": title, "code": "", "entityTypeId": type_id,
                  "isCategoriesEnabled": "Y", "isStagesEnabled": "Y", "isClientEnabled": "Y",
                  "createdBy": 1}
                 for n, (type_id, title) in enumerate(SMART_PROCESSES.items(), 1)]
        return MethodResult(result={"types": types}, total=len(types), rows=len(types))


def handlers(store: PortalStore) -> dict[str, Handler]:
    """Every crm.item / type method name (lower case) -> its handler."""
    items = CrmItems(store)
    out: dict[str, Handler] = {f"crm.item.{verb}": getattr(items, verb)
                               for verb in ("list", "get", "fields", "add", "update", "delete")}
    out["crm.type.list"] = items.types
    return out
