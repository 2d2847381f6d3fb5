"""Classic CRM methods: crm.{lead,deal,contact,company,activity}.{list,get,fields,add,update,
delete}, `*.userfield.list/add` and crm.deal.contact.items.get.

Unknown `filter`, `order` and `select` keys are ignored, as the classic server does.
Missing ids answer the classic 400 with an empty code and "Not found".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from bitrix_core.emulator.filters import php_int, sql_value
from bitrix_core.emulator.listing import fetch_page
from bitrix_core.emulator.method_kit import (
    Handler,
    MethodError,
    MethodResult,
    array_param,
    as_list,
    as_mapping,
    normalise,
    row_id,
)
from bitrix_core.emulator.schema import Entity, Field, describe, user_field
from bitrix_core.emulator.shapes import classic_value, row_shape, select_fields
from bitrix_core.emulator.store import PortalStore

CLASSIC = ("crm.lead", "crm.deal", "crm.contact", "crm.company", "crm.activity")
WITH_USER_FIELDS = ("crm.lead", "crm.deal", "crm.contact", "crm.company")
_UF_TYPES = {"string", "integer", "double", "boolean", "date", "datetime", "enumeration", "money",
             "url", "employee", "crm", "file", "address", "iblock_element"}
WEBHOOK_USER = 1
_DEFAULTS: dict[str, dict[str, Any]] = {  # what the real server fills in on add when the caller leaves it out
    "crm.deal": {"CATEGORY_ID": 0, "STAGE_ID": "NEW", "CURRENCY_ID": "RUB", "OPPORTUNITY": 0.0,
                 "OPENED": "Y", "CLOSED": "N", "IS_MANUAL_OPPORTUNITY": "N"},
    "crm.lead": {"STATUS_ID": "NEW", "CURRENCY_ID": "RUB", "OPENED": "Y"},
    "crm.contact": {"OPENED": "Y", "EXPORT": "Y"},
    "crm.company": {"OPENED": "Y", "CURRENCY_ID": "RUB"},
    # crm-activity-get.md's row: "ASSOCIATED_ENTITY_ID": "0", "DESCRIPTION": "", "LOCATION": "",
    # "SETTINGS": [], "PROVIDER_PARAMS": [], RESULT_* and AUTOCOMPLETE_RULE "0"
    "crm.activity": {"COMPLETED": "N", "STATUS": 1, "PRIORITY": "2", "DIRECTION": "0",
                     "ASSOCIATED_ENTITY_ID": 0, "DESCRIPTION": "", "DESCRIPTION_TYPE": 1,
                     "LOCATION": "", "SETTINGS": "[]", "PROVIDER_PARAMS": "[]",
                     "RESULT_STATUS": 0, "RESULT_STREAM": 0, "RESULT_MARK": 0,
                     "AUTOCOMPLETE_RULE": 0, "NOTIFY_TYPE": 0, "NOTIFY_VALUE": 0,
                     "IS_INCOMING_CHANNEL": "N"},
}


def classic_row(store: PortalStore, entity: Entity, raw: Mapping[str, Any],
                fields: list[Field], multi: Mapping[str, list[dict]] | None) -> dict[str, Any]:
    """One row in the classic shape; multi-fields as lists (absent ones omitted)."""
    out: dict[str, Any] = {}
    for f in fields:
        if f.is_multifield:
            if multi and f.name in multi:
                out[f.name] = multi[f.name]
        else:
            out[f.name] = classic_value(f, raw.get(f.name), store.tz)
    return out


def with_multi(row: Mapping[str, Any], fields: list[Field],
               multi: Mapping[str, list[dict]]) -> dict[str, Any]:
    """A shaped row with its selected multi-fields in field order (absent ones omitted)."""
    out: dict[str, Any] = {}
    for f in fields:
        if not f.is_multifield:
            out[f.name] = row[f.name]
        elif f.name in multi:
            out[f.name] = multi[f.name]
    return out


def write_values(store: PortalStore, entity: Entity, fields: Mapping[str, Any],
                 *, creating: bool) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """Stored values and multi-field items from a `fields` parameter; read-only and
    unknown keys are skipped, as the real server does."""
    known = entity.by_name()
    values: dict[str, Any] = {}
    multi: dict[str, list[dict]] = {}
    for key, raw in fields.items():
        f = known.get(str(key).upper())
        if f is None or f.read_only or (f.immutable and not creating):
            continue
        if f.is_multifield:
            multi[f.name] = [as_mapping(i) for i in as_list(raw)]
        elif f.is_id_list:
            values[f.name] = json.dumps([php_int(i) for i in as_list(raw) if php_int(i) > 0])
        elif raw is None or raw == "" or raw == []:
            values[f.name] = None
        else:
            values[f.name] = sql_value(f, raw, store.tz)
    for f in entity.fields:  # a written id list sets its single id, a single id the list
        if f.is_id_list and f.ids_of:
            if f.name in values:
                first = json.loads(values[f.name])[:1]
                values[f.ids_of] = first[0] if first else None
            elif f.ids_of in values:  # an assumption: the single id becomes the whole list
                single = values[f.ids_of]
                values[f.name] = json.dumps([] if single is None else [int(single)])
    for kind in ("PHONE", "EMAIL"):  # HAS_PHONE / HAS_EMAIL follow the values written
        if f"HAS_{kind}" in known and (creating or kind in multi):
            values[f"HAS_{kind}"] = "Y" if multi.get(kind) else "N"
    now = store.now()
    if entity.modified_field:
        values[entity.modified_field] = now
    if creating and entity.created_field:
        values[entity.created_field] = now
    for name in ("MODIFY_BY_ID", "EDITOR_ID", "UPDATED_BY"):
        if name in known:
            values[name] = WEBHOOK_USER
    if creating:
        for name in ("CREATED_BY_ID", "AUTHOR_ID", "CREATED_BY"):
            if name in known:
                values[name] = WEBHOOK_USER
        for name in ("ASSIGNED_BY_ID", "RESPONSIBLE_ID"):
            if name in known and values.get(name) is None:
                values[name] = WEBHOOK_USER
    return values, multi


class ClassicCrm:
    """Handlers for one classic CRM entity."""

    def __init__(self, store: PortalStore, name: str) -> None:
        self.store = store
        self.name = name

    @property
    def entity(self) -> Entity:
        return self.store.entity(self.name)

    def list(self, params: dict[str, Any]) -> MethodResult:
        entity = self.entity
        fields = select_fields(entity, [str(s) for s in as_list(params.get("select"))])
        shape = row_shape(entity, [f for f in fields if not f.is_multifield], tz=self.store.tz)
        filter_, order = array_param(params, "filter"), array_param(params, "order")
        page = fetch_page(self.store, entity, filter_=filter_, order=order,
                          start=params.get("start"), round_to_page=True, shape=shape)
        result = page.rows
        if any(f.is_multifield for f in fields):
            multi = self.store.multifields(self.name, page.ids)
            result = [with_multi(row, fields, multi[i]) for row, i in zip(result, page.ids, strict=True)]
        return MethodResult(result=result, next=page.next, total=page.answer_total, rows=len(result),
                            counted=page.total or 0, offset=page.offset)

    def get(self, params: dict[str, Any]) -> MethodResult:
        number = row_id(params)
        entity = self.entity
        rows = self.store.raw_rows(self.name, [number])
        if not rows:
            raise MethodError("", "Not found", 400)
        multi = self.store.multifields(self.name, [number]).get(number, {})
        # as crm-deal-get.md / crm-activity-get.md show: no id lists, no unlisted fields
        fields = [f for f in entity.fields if not f.is_id_list and f.listed]
        return MethodResult(result=classic_row(self.store, entity, rows[0], fields,
                                               multi), rows=1)

    def fields(self, params: dict[str, Any]) -> MethodResult:
        return MethodResult(result={f.name: describe(f) for f in self.entity.fields})

    def add(self, params: dict[str, Any]) -> MethodResult:
        values, multi = write_values(self.store, self.entity, as_mapping(params.get("fields")),
                                     creating=True)
        values = {**_DEFAULTS.get(self.name, {}), **values}
        if self.name == "crm.deal" and values["CATEGORY_ID"] and values["STAGE_ID"] == "NEW":
            values["STAGE_ID"] = f"C{values['CATEGORY_ID']}:NEW"
        new_id = self.store.insert(self.name, values, multi)
        if self.name == "crm.deal" and values.get("TITLE") is None:
            self.store.update(self.name, new_id, {"TITLE": f"Deal #{new_id}"})
        return MethodResult(result=new_id)

    def update(self, params: dict[str, Any]) -> MethodResult:
        number = row_id(params)
        values, multi = write_values(self.store, self.entity, as_mapping(params.get("fields")),
                                     creating=False)
        if not self.store.update(self.name, number, values, multi):
            raise MethodError("", "Not found", 400)
        return MethodResult(result=True)

    def delete(self, params: dict[str, Any]) -> MethodResult:
        if not self.store.delete(self.name, row_id(params)):
            raise MethodError("", "Not found", 400)
        return MethodResult(result=True)

    def userfield_list(self, params: dict[str, Any]) -> MethodResult:
        entity = self.entity
        result = [self._userfield(entity, f) for f in entity.fields if f.user_field]
        return MethodResult(result=result, total=len(result), rows=len(result))

    def _userfield(self, entity: Entity, f: Field) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ID": str(self.store.user_field_ids[(entity.name, f.name)]),
            "ENTITY_ID": entity.uf_entity_id, "FIELD_NAME": f.name, "USER_TYPE_ID": f.type,
            "XML_ID": None, "SORT": "100", "MULTIPLE": "Y" if f.multiple else "N",
            "MANDATORY": "N", "SHOW_FILTER": "E", "SHOW_IN_LIST": "Y", "EDIT_IN_LIST": "Y",
            "IS_SEARCHABLE": "N", "SETTINGS": dict(f.settings) or [],
        }
        if f.items:
            out["LIST"] = [{"ID": str(i), "SORT": str((n + 1) * 10), "VALUE": v, "DEF": "N",
                            "XML_ID": f"XML_{i}"} for n, (i, v) in enumerate(f.items)]
        return out

    def userfield_add(self, params: dict[str, Any]) -> MethodResult:
        fields = normalise(as_mapping(params.get("fields")))
        name = str(fields.get("field_name") or "").upper()
        type_id = str(fields.get("user_type_id") or "").lower()
        if not name:
            raise MethodError("ERROR_CORE", "FIELD_NAME: required field", 400)
        if not name.startswith("UF_CRM_"):
            name = "UF_CRM_" + name
        if not re.fullmatch(r"UF_CRM_[A-Z0-9_]{1,40}", name):
            raise MethodError("ERROR_CORE", f"FIELD_NAME: invalid name {name}", 400)
        if type_id not in _UF_TYPES:
            raise MethodError("ERROR_CORE", "USER_TYPE_ID: unknown user type", 400)
        label = fields.get("edit_form_label") or fields.get("list_column_label") or fields.get(
            "label") or name
        if isinstance(label, Mapping):
            label = next(iter(label.values()), name)
        base = 1000 + 100 * len(self.store.user_field_ids)  # enumeration item ids: unique
        values = [i.get("VALUE") if isinstance(i, Mapping) else i
                  for i in as_list(fields.get("list"))]
        items = tuple((base + n, str(v)) for n, v in enumerate(values) if v not in (None, ""))
        f = user_field(name, type_id, str(label), items=items,
                       multiple=str(fields.get("multiple", "N")).upper() in ("Y", "1", "TRUE"),
                       settings=as_mapping(fields.get("settings")))
        try:
            new_id = self.store.add_user_field(self.name, f)
        except ValueError:
            raise MethodError("ERROR_CORE", f"Field {name} already exists", 400) from None
        return MethodResult(result=new_id)

    def contact_items(self, params: dict[str, Any]) -> MethodResult:
        number = row_id(params)
        if not self.store.exists("crm.deal", number):
            raise MethodError("", "Not found", 400)
        return MethodResult(result=self.store.deal_contacts(number))


def handlers(store: PortalStore) -> dict[str, Handler]:
    """Every classic CRM method name (lower case) -> its handler."""
    out: dict[str, Handler] = {}
    for name in CLASSIC:
        crm = ClassicCrm(store, name)
        for verb in ("list", "get", "fields", "add", "update", "delete"):
            out[f"{name}.{verb}"] = getattr(crm, verb)
        if name in WITH_USER_FIELDS:
            out[f"{name}.userfield.list"] = crm.userfield_list
            out[f"{name}.userfield.add"] = crm.userfield_add
    out["crm.deal.contact.items.get"] = ClassicCrm(store, "crm.deal").contact_items
    return out
