"""The smart entities of the emulated portal, reachable only through crm.item.*: the smart
invoice (entity type 31) and two smart processes."""

from __future__ import annotations

from bitrix_core.emulator.crm_dictionaries import CURRENCIES, SOURCES
from bitrix_core.emulator.crm_entities import CATEGORY_SQL, CREATED_DAY_SQL, ref_field
from bitrix_core.emulator.schema import Entity, Field, pick, user_field

SMART_CATEGORY_BASE = {31: 10, 128: 20, 130: 30}  # pipeline ids of smart types: base + 0..2


def smart_entity(entity_type_id: int, title: str, *, salt: int) -> Entity:
    """A smart process (or the smart invoice, 31): reachable only through crm.item.*.

    The documented field set, in its order, with its names (`upperName`), titles and flags:
    b24restdocs api-reference/crm/universal/crm-item-fields.md (a smart process's fields,
    without its portal-specific `parentId1248`). Values as crm-item-add.md's item shows them:
    `"opened": "N"` and `"isManualOpportunity": "Y"` (described "boolean", sent Y/N),
    `"observers": [2, 3]`, `"contactIds": [4, 5]`, `"taxValue": 0`, `"webformId": null`,
    `"parentId1220": 2`; `contacts` is described but absent from the item (not listed).
    """
    category = f"({SMART_CATEGORY_BASE[entity_type_id]} + {CATEGORY_SQL})"
    stage = (f"'DT{entity_type_id}_' || {category} || ':' || "
             + pick(6, ["NEW", "PREPARATION", "CLIENT", "SUCCESS", "FAIL"], [3, 2, 2, 2, 1]))
    uf = f"UF_CRM_{entity_type_id}_"
    stages = f"DYNAMIC_{entity_type_id}_STAGE"
    return Entity(
        name=f"crm.item.{entity_type_id}", table=f"item_{entity_type_id}", size_key="smart_items",
        entity_type_id=entity_type_id, uf_entity_id=f"CRM_{entity_type_id}", salt=salt,
        created_field="CREATED_TIME", modified_field="UPDATED_TIME",
        fields=(
            Field("ID", "integer", "ID", gen="id", read_only=True),
            Field("TITLE", "string", "Name", gen=f"'{title} #' || id"),
            Field("XML_ID", "string", "External code", gen="NULL"),
            Field("CREATED_TIME", "datetime", "Created at", gen="created", read_only=True),
            Field("UPDATED_TIME", "datetime", "Updated at", gen="modified", read_only=True),
            Field("CREATED_BY", "user", "Created by", gen="USER(31)", read_only=True),
            Field("UPDATED_BY", "user", "Updated by", gen="USER(32)", read_only=True),
            Field("ASSIGNED_BY_ID", "user", "Assigned to", gen="USER(30)"),
            Field("OPENED", "char", "Publicly available", gen=pick(33, ["Y", "N"], [4, 1]),
                  required=True, described_type="boolean"),
            Field("WEBFORM_ID", "integer", "Created by CRM form"),
            Field("BEGINDATE", "date", "Start date", gen=CREATED_DAY_SQL),
            Field("CLOSEDATE", "date", "End date",
                  gen="date(created + TZ + 86400 * (7 + R(13) % 60), 'unixepoch')"),
            ref_field("crm_company", "Company", "REF(company, 11, 20)", 4),
            Field("CONTACT_ID", "crm_contact", "Contact", gen="REF(contact, 12, 20)",
                  deprecated=True),
            Field("CONTACT_IDS", "crm_contact", "CONTACT_IDS", multiple=True, ids_of="CONTACT_ID"),
            Field("CONTACTS", "crm_contact", "CONTACTS", multiple=True, listed=False),
            Field("OBSERVERS", "user", "Observers", multiple=True,
                  gen="(CASE WHEN R(19) % 4 = 0 THEN '[' || USER(19) || ']' END)"),
            Field("CATEGORY_ID", "crm_category", "Pipeline", gen=category),
            Field("MOVED_TIME", "datetime", "Moved at", read_only=True,
                  gen="(created + (modified - created) / 2)"),
            Field("MOVED_BY", "user", "Moved by", gen="USER(30)", read_only=True),
            Field("STAGE_ID", "crm_status", "Stage", gen=stage, status_type=stages),
            Field("PREVIOUS_STAGE_ID", "crm_status", "Previous stage", read_only=True,
                  status_type=stages),
            Field("SOURCE_ID", "crm_status", "Source", gen=pick(15, [s for s, _ in SOURCES]),
                  status_type="SOURCE"),
            Field("SOURCE_DESCRIPTION", "text", "Additional source info"),
            Field("CURRENCY_ID", "crm_currency", "Currency",
                  gen=pick(8, list(CURRENCIES), [6, 2, 1])),
            Field("IS_MANUAL_OPPORTUNITY", "char", "Amount calculation mode",
                  gen=pick(10, ["Y", "N"]), described_type="boolean"),
            Field("OPPORTUNITY", "double", "Amount", gen="ROUND((R(9) % 1000000) / 100.0, 2)"),
            Field("TAX_VALUE", "double", "Tax amount", gen="0"),
            Field("MYCOMPANY_ID", "crm_company", "Your company details",
                  settings={"isMyCompany": True, "parentEntityTypeId": 4,
                            "isEmbeddedEditorEnabled": True}),
            Field("LAST_ACTIVITY_BY", "user", "Last activity in timeline by", gen="USER(30)",
                  read_only=True),
            Field("LAST_ACTIVITY_TIME", "datetime", "Last activity", gen="modified",
                  read_only=True),
            Field("PARENT_ID_1", "crm_entity", "Lead", gen="REF(lead, 23, 80)",
                  settings={"parentEntityTypeId": 1}),
            Field("PARENT_ID_2", "crm_entity", "Deal", gen="REF(deal, 24, 60)",
                  settings={"parentEntityTypeId": 2}),
            user_field(f"{uf}PROJECT_CODE", "string", "Project code",
                       gen="'PRJ-' || (R(17) % 9000 + 1000)"),
            user_field(f"{uf}HOURS", "double", "Hours", gen="ROUND((R(18) % 4000) / 10.0, 1)"),
        ),
    )


INVOICE = smart_entity(31, "Invoice", salt=31)
SMART_PROCESSES = {128: "Projects", 130: "Supplier contracts"}
SMART_ENTITIES = (INVOICE, *(smart_entity(t, title, salt=t) for t, title in SMART_PROCESSES.items()))
