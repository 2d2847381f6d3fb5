"""The CRM entities of the emulated portal: leads, deals, contacts and companies, with their
standard and custom fields (activities: `crm_activities`; smart processes: `smart_entities`;
the dictionaries their values come from: `crm_dictionaries`)."""

from __future__ import annotations

from bitrix_core.emulator.crm_dictionaries import (
    COMPANY_TYPES,
    CONTACT_TYPES,
    CURRENCIES,
    DEAL_STAGES,
    DEAL_TYPES,
    INDUSTRIES,
    LEAD_STATUSES,
    SOURCES,
)
from bitrix_core.emulator.generate import multi_present
from bitrix_core.emulator.schema import Entity, Field, pick, user_field

_WORDS = ("Supply of", "Support for", "Licences for", "Audit of", "Installation of", "Upgrade of")
_THINGS = ("servers", "office chairs", "CRM seats", "printers", "laptops", "cloud storage")
_FIRST = ("Anna", "Ivan", "Maria", "Oleg", "Elena", "Pavel", "Olga", "Sergey", "Irina", "Dmitry")
_LAST = ("Ivanova", "Petrov", "Smirnova", "Kuznetsov", "Popova", "Volkov", "Sokolova", "Lebedev")
_ORGS = ("Horns & Hooves", "Vector", "Polar Star", "Northwind", "Altair", "Granite", "Orbita")


def _multi(*names: str) -> tuple[Field, ...]:
    titles = {"PHONE": "Phone", "EMAIL": "E-mail", "WEB": "Website", "IM": "Messenger",
              "LINK": "LINK"}
    return tuple(Field(n, "crm_multifield", titles[n], multiple=True) for n in names)


def _has(kinds: tuple[str, ...] = ("PHONE", "EMAIL")) -> tuple[Field, ...]:
    """HAS_PHONE, HAS_EMAIL (Y when the row has such a multi-field value), HAS_IMOL."""
    titles = {"PHONE": "Phone Set", "EMAIL": "E-mail Set"}
    return (
        *(Field(f"HAS_{k}", "char", titles[k], read_only=True,
                gen=f"(CASE WHEN {multi_present(k, 'id')} THEN 'Y' ELSE 'N' END)") for k in kinds),
        Field("HAS_IMOL", "char", "Open Line Set", gen="'N'", read_only=True),
    )


def _address(prefix: str = "ADDRESS", city: str = "NULL") -> tuple[Field, ...]:
    """ADDRESS, ADDRESS_2, ..._CITY ... _LOC_ADDR_ID (or REG_ADDRESS_*): only the city set."""
    parts = (("", "Address"), ("_2", "Address (Line 2)"), ("_CITY", "City"),
             ("_POSTAL_CODE", "Postal Code"), ("_REGION", "Region"), ("_PROVINCE", "Province"),
             ("_COUNTRY", "Country"), ("_COUNTRY_CODE", "Country Code"))
    return (
        *(Field(prefix + tail, "string", title, gen=city if tail == "_CITY" else "NULL")
          for tail, title in parts),
        Field(prefix + "_LOC_ADDR_ID", "integer", "Location Address ID"),
    )


def _origin(version: bool = False) -> tuple[Field, ...]:
    return (
        Field("ORIGINATOR_ID", "string", "External Source"),
        Field("ORIGIN_ID", "string", "Identifier in External Source"),
        *((Field("ORIGIN_VERSION", "string", "Original Version"),) if version else ()),
    )


# UTM_* from one random number (the source's: no extra draw per row), so a row without a
# UTM source has no medium or campaign either
_UTM_SALT = 15
UTM = (
    Field("UTM_SOURCE", "string", "Advertising System",
          gen=pick(_UTM_SALT, ["google", "yandex", "facebook", None, None, None])),
    Field("UTM_MEDIUM", "string", "Traffic Type",
          gen=pick(_UTM_SALT, ["CPC", "CPC", "social", None, None, None])),
    Field("UTM_CAMPAIGN", "string", "Campaign Identifier",
          gen=pick(_UTM_SALT, ["spring_sale", "brand", "retarget", None, None, None])),
    Field("UTM_CONTENT", "string", "Campaign Content"),
    Field("UTM_TERM", "string", "Campaign Search Condition"),
)


def _last_activity(read_only: bool = True) -> tuple[Field, ...]:
    return (
        Field("LAST_ACTIVITY_TIME", "datetime", "LAST_ACTIVITY_TIME", gen="modified",
              read_only=read_only),
        Field("LAST_ACTIVITY_BY", "user", "LAST_ACTIVITY_BY", gen="USER(30)",
              read_only=read_only),
    )


def _moved() -> tuple[Field, ...]:
    return (
        Field("MOVED_BY_ID", "user", "MOVED_BY_ID", gen="USER(30)", read_only=True),
        Field("MOVED_TIME", "datetime", "MOVED_TIME", gen="(created + (modified - created) / 2)",
              read_only=True),
    )


def _people() -> tuple[Field, ...]:
    """ASSIGNED_BY_ID, CREATED_BY_ID, MODIFY_BY_ID, DATE_CREATE, DATE_MODIFY."""
    return (
        Field("ASSIGNED_BY_ID", "user", "Responsible person", gen="USER(30)"),
        Field("CREATED_BY_ID", "user", "Created by", gen="USER(31)", read_only=True),
        Field("MODIFY_BY_ID", "user", "Modified by", gen="USER(32)", read_only=True),
        Field("DATE_CREATE", "datetime", "Created", gen="created", read_only=True),
        Field("DATE_MODIFY", "datetime", "Modified", gen="modified", read_only=True),
    )


def ref_field(type_: str, title: str, gen: str, parent: int, *, read_only: bool = False) -> Field:
    return Field(f"{type_.upper()[4:]}_ID", type_, title, gen=gen, read_only=read_only,
                 settings={"parentEntityTypeId": parent})


CATEGORY_SQL = f"(CASE WHEN R(5) % 10 < 7 THEN 0 WHEN R(5) % 10 < 9 THEN 1 ELSE {2} END)"
_STAGE_INDEX = ("(CASE WHEN R(6) % 20 < 5 THEN 0 WHEN R(6) % 20 < 8 THEN 1 WHEN R(6) % 20 < 10"
                " THEN 2 WHEN R(6) % 20 < 13 THEN 3 WHEN R(6) % 20 < 14 THEN 4"
                " WHEN R(6) % 20 < 18 THEN 5 ELSE 6 END)")  # more open deals than closed
_STAGE = ("(CASE WHEN R(5) % 10 < 7 THEN '' ELSE 'C' || " + CATEGORY_SQL + " || ':' END || "
          + "(CASE " + _STAGE_INDEX + " " + " ".join(f"WHEN {i} THEN '{s}'"
                                for i, (s, _) in enumerate(DEAL_STAGES)) + " END))")
_CLOSED = f"(CASE WHEN {_STAGE_INDEX} >= 5 THEN 'Y' ELSE 'N' END)"
TITLE_SQL = ("(" + pick(1, list(_WORDS)) + " || ' ' || " + pick(2, list(_THINGS)) + ")")
CREATED_DAY_SQL = "date(created + TZ, 'unixepoch')"

# straight from R(6), as _STAGE_INDEX draws it: 14..17 is WON (S), 18..19 LOSE (F), 0..4 NEW
_STAGE_SEMANTIC = "(CASE WHEN R(6) % 20 >= 18 THEN 'F' WHEN R(6) % 20 >= 14 THEN 'S' ELSE 'P' END)"
_CITY = pick(41, ["Moscow", "Kazan", "Berlin", None], [2, 1, 1, 2])

# the deal's contacts as crm.deal.contact.items.get lists them (store.deal_contacts), primary first
_DEAL_CONTACTS = ("(SELECT json_group_array(CONTACT_ID) FROM (SELECT CONTACT_ID FROM deal_contact"
                  " WHERE DEAL_ID = t.ID ORDER BY SORT, CONTACT_ID))")

# The documented field set, in its order: b24restdocs api-reference/crm/deals/crm-deal-fields.md
DEAL = Entity(
    name="crm.deal", table="deal", size_key="deals", entity_type_id=2, uf_entity_id="CRM_DEAL",
    salt=2,
    fields=(
        Field("ID", "integer", "ID", gen="id", read_only=True),
        Field("TITLE", "string", "Title", gen=TITLE_SQL + " || ' #' || id"),
        Field("TYPE_ID", "crm_status", "Type", gen=pick(3, [t for t, _ in DEAL_TYPES]),
              status_type="DEAL_TYPE"),
        Field("CATEGORY_ID", "crm_category", "Sales Funnel", gen=CATEGORY_SQL, immutable=True),
        Field("STAGE_ID", "crm_status", "Deal Stage", gen=_STAGE, status_type="DEAL_STAGE"),
        Field("STAGE_SEMANTIC_ID", "string", "Stage Group", gen=_STAGE_SEMANTIC, read_only=True),
        Field("IS_NEW", "char", "New Deal", read_only=True,
              gen="(CASE WHEN R(6) % 20 < 5 THEN 'Y' ELSE 'N' END)"),
        Field("IS_RECURRING", "char", "Recurring Deal", gen="'N'"),
        Field("IS_RETURN_CUSTOMER", "char", "Repeat Deal",
              gen="(CASE WHEN R(7) % 5 = 0 THEN 'Y' ELSE 'N' END)"),
        Field("IS_REPEATED_APPROACH", "char", "Repeated Approach", gen="'N'"),
        Field("PROBABILITY", "integer", "Probability", gen="(R(7) % 11) * 10"),
        Field("CURRENCY_ID", "crm_currency", "Currency", gen=pick(8, list(CURRENCIES), [6, 2, 1])),
        Field("OPPORTUNITY", "double", "Amount", gen="ROUND((R(9) % 5000000) / 100.0, 2)"),
        Field("IS_MANUAL_OPPORTUNITY", "char", "IS_MANUAL_OPPORTUNITY", gen=pick(10, ["Y", "N"])),
        Field("TAX_VALUE", "double", "Tax Rate", gen="ROUND((R(9) % 5000000) / 600.0, 2)"),
        ref_field("crm_company", "Company", "REF(company, 11, 20)", 4),
        Field("CONTACT_ID", "crm_contact", "Contact", gen="REF(contact, 12, 15)", deprecated=True),
        Field("CONTACT_IDS", "crm_contact", "Contacts", multiple=True, ids_of="CONTACT_ID",
              ids_sql=_DEAL_CONTACTS),
        ref_field("crm_quote", "Estimate", "NULL", 7, read_only=True),
        Field("BEGINDATE", "date", "Start Date", gen=CREATED_DAY_SQL),
        Field("CLOSEDATE", "date", "Close Date",
              gen="date(created + TZ + 86400 * (7 + R(13) % 60), 'unixepoch')"),
        Field("OPENED", "char", "Available to All", gen=pick(33, ["Y", "N"], [4, 1])),
        Field("CLOSED", "char", "Closed", gen=_CLOSED),
        Field("COMMENTS", "string", "Comment",
              gen="(CASE WHEN R(14) % 5 = 0 THEN 'Call back about ' || " + pick(2, list(_THINGS))
                  + " ELSE NULL END)"),
        *_people()[:3],
        _moved()[0],
        *_people()[3:],
        _moved()[1],
        Field("SOURCE_ID", "crm_status", "Source", gen=pick(15, [s for s, _ in SOURCES]),
              status_type="SOURCE"),
        Field("SOURCE_DESCRIPTION", "string", "Additional Info about Source"),
        ref_field("crm_lead", "Lead", "REF(lead, 16, 70)", 1, read_only=True),
        Field("ADDITIONAL_INFO", "string", "Additional Information"),
        Field("LOCATION_ID", "location", "Location"),
        *_origin(),
        *UTM,
        *_last_activity(),
        user_field("UF_CRM_PROMO_CODE", "string", "Promo code",
                   gen="(CASE WHEN R(17) % 3 = 0 THEN 'PROMO' || (R(17) % 900 + 100) END)"),
        user_field("UF_CRM_DEAL_KIND", "enumeration", "Deal kind",
                   items=((101, "New business"), (102, "Upsell"), (103, "Renewal")),
                   gen=pick(18, [101, 102, 103, None], [5, 3, 2, 2])),
        user_field("UF_CRM_IS_VIP", "boolean", "VIP", gen="(R(19) % 7 = 0)"),
        user_field("UF_CRM_CONTRACT_DATE", "date", "Contract date",
                   gen="(CASE WHEN R(20) % 2 = 0 THEN " + CREATED_DAY_SQL + " END)"),
        user_field("UF_CRM_BUDGET", "money", "Budget",
                   gen="printf('%.2f|', (R(21) % 300000) / 100.0) || " + pick(8, list(CURRENCIES),
                                                                            [6, 2, 1])),
        user_field("UF_CRM_SCORE", "double", "Score", gen="ROUND((R(22) % 1000) / 10.0, 1)"),
    ),
)

_LEAD_SEMANTIC = {"NEW": "P", "IN_PROCESS": "P", "PROCESSED": "P", "JUNK": "F", "CONVERTED": "S"}

# The documented field set, in its order: b24restdocs api-reference/crm/leads/crm-lead-fields.md
LEAD = Entity(
    name="crm.lead", table="lead", size_key="leads", entity_type_id=1, uf_entity_id="CRM_LEAD",
    multi_owner="LEAD", salt=1,
    fields=(
        Field("ID", "integer", "ID", gen="id", read_only=True),
        Field("TITLE", "string", "Lead Title", gen="'Lead: ' || " + TITLE_SQL),
        Field("HONORIFIC", "crm_status", "Salutation", status_type="HONORIFIC"),
        Field("NAME", "string", "First Name", gen=pick(3, list(_FIRST))),
        Field("SECOND_NAME", "string", "Middle Name"),
        Field("LAST_NAME", "string", "Last Name", gen=pick(4, list(_LAST))),
        Field("BIRTHDATE", "date", "Birthdate"),
        Field("COMPANY_TITLE", "string", "Company Name", gen=pick(6, list(_ORGS))),
        Field("SOURCE_ID", "crm_status", "Source", gen=pick(15, [s for s, _ in SOURCES]),
              status_type="SOURCE"),
        Field("SOURCE_DESCRIPTION", "string", "Source Description"),
        Field("STATUS_ID", "crm_status", "Stage", gen=pick(5, [s for s, _ in LEAD_STATUSES]),
              status_type="STATUS"),
        Field("STATUS_DESCRIPTION", "string", "Stage Description"),
        Field("STATUS_SEMANTIC_ID", "string", "Status Semantic", read_only=True,
              gen=pick(5, [_LEAD_SEMANTIC[s] for s, _ in LEAD_STATUSES])),
        Field("POST", "string", "Position", gen=pick(7, ["Manager", "Director", "Buyer", None])),
        *_address(city=_CITY),
        Field("CURRENCY_ID", "crm_currency", "Currency", gen=pick(8, list(CURRENCIES), [6, 2, 1])),
        Field("OPPORTUNITY", "double", "Amount", gen="ROUND((R(9) % 2000000) / 100.0, 2)"),
        Field("IS_MANUAL_OPPORTUNITY", "char", "IS_MANUAL_OPPORTUNITY", gen=pick(10, ["Y", "N"])),
        Field("OPENED", "char", "Available to All", gen=pick(33, ["Y", "N"], [4, 1])),
        Field("COMMENTS", "string", "Comments", gen="NULL"),
        *_has(),
        *_people()[:3],
        _moved()[0],
        *_people()[3:],
        _moved()[1],
        ref_field("crm_company", "Company", "REF(company, 11, 80)", 4),
        Field("CONTACT_ID", "crm_contact", "Contact", gen="REF(contact, 12, 80)", deprecated=True),
        Field("CONTACT_IDS", "crm_contact", "CONTACT_IDS", multiple=True, ids_of="CONTACT_ID"),
        Field("IS_RETURN_CUSTOMER", "char", "Returning Lead", gen="'N'", read_only=True),
        Field("DATE_CLOSED", "datetime", "Closing Date", read_only=True,
              gen="(CASE " + pick(5, [_LEAD_SEMANTIC[s] for s, _ in LEAD_STATUSES])
                  + " WHEN 'P' THEN NULL ELSE modified END)"),
        *_origin(),
        *UTM,
        *_last_activity(),
        *_multi("PHONE", "EMAIL", "WEB", "IM", "LINK"),
        user_field("UF_CRM_UTM_CAMPAIGN", "string", "UTM campaign",
                   gen=pick(17, ["spring_sale", "brand", None], [1, 1, 2])),
        user_field("UF_CRM_LEAD_SCORE", "double", "Lead score", gen="ROUND((R(22) % 1000) / 10.0, 1)"),
    ),
)

# The documented field set, in its order: b24restdocs api-reference/crm/contacts/crm-contact-fields.md
CONTACT = Entity(
    name="crm.contact", table="contact", size_key="contacts", entity_type_id=3,
    uf_entity_id="CRM_CONTACT", multi_owner="CONTACT", salt=3,
    fields=(
        Field("ID", "integer", "ID", gen="id", read_only=True),
        Field("HONORIFIC", "crm_status", "Salutation", status_type="HONORIFIC"),
        Field("NAME", "string", "First Name", gen=pick(3, list(_FIRST)), required=True),
        Field("SECOND_NAME", "string", "Middle Name", gen="NULL", required=True),
        Field("LAST_NAME", "string", "Last Name", gen=pick(4, list(_LAST)), required=True),
        Field("PHOTO", "file", "Photo"),
        Field("BIRTHDATE", "date", "Birthdate",
              gen="(CASE WHEN R(7) % 3 = 0 THEN date(86400 * (R(7) % 12000), 'unixepoch') END)"),
        Field("TYPE_ID", "crm_status", "Contact Type", gen=pick(6, [t for t, _ in CONTACT_TYPES]),
              status_type="CONTACT_TYPE"),
        Field("SOURCE_ID", "crm_status", "Source", gen=pick(15, [s for s, _ in SOURCES]),
              status_type="SOURCE"),
        Field("SOURCE_DESCRIPTION", "string", "Additional Source Information"),
        Field("POST", "string", "Position", gen=pick(5, ["Manager", "Director", "Buyer", None])),
        *_address(city=_CITY),
        Field("COMMENTS", "string", "Comment"),
        Field("OPENED", "char", "Available to All", gen=pick(33, ["Y", "N"], [4, 1])),
        Field("EXPORT", "char", "Participates in Contact Export", gen=pick(10, ["Y", "N"])),
        *_has(),
        *_people(),
        Field("COMPANY_ID", "crm_company", "Company", gen="REF(company, 11, 30)", deprecated=True),
        Field("COMPANY_IDS", "crm_company", "COMPANY_IDS", multiple=True, ids_of="COMPANY_ID"),
        ref_field("crm_lead", "Lead", "NULL", 1, read_only=True),
        *_origin(version=True),
        *UTM,
        Field("LAST_ACTIVITY_TIME", "datetime", "Last Activity", gen="modified", read_only=True),
        Field("LAST_ACTIVITY_BY", "user", "Last Activity By", gen="USER(30)", read_only=True),
        *_multi("PHONE", "EMAIL", "WEB", "IM", "LINK"),
        user_field("UF_CRM_LOYALTY", "enumeration", "Loyalty",
                   items=((201, "Bronze"), (202, "Silver"), (203, "Gold")),
                   gen=pick(18, [201, 202, 203, None])),
    ),
)

# The documented field set, in its order: b24restdocs api-reference/crm/companies/crm-company-fields.md
# (without its portal-specific PARENT_ID_156 and UF_* examples)
COMPANY = Entity(
    name="crm.company", table="company", size_key="companies", entity_type_id=4,
    uf_entity_id="CRM_COMPANY", multi_owner="COMPANY", salt=4,
    fields=(
        Field("ID", "integer", "ID", gen="id", read_only=True),
        Field("TITLE", "string", "Company Name", gen=pick(3, list(_ORGS)) + " || ' ' || id",
              required=True),
        Field("COMPANY_TYPE", "crm_status", "Company Type",
              gen=pick(4, [t for t, _ in COMPANY_TYPES]), status_type="COMPANY_TYPE"),
        Field("LOGO", "file", "Logo"),
        *_address(city=_CITY),
        Field("ADDRESS_LEGAL", "string", "Legal Address"),
        *_address("REG_ADDRESS"),
        Field("BANKING_DETAILS", "string", "Banking Details"),
        Field("INDUSTRY", "crm_status", "Industry", gen=pick(5, [t for t, _ in INDUSTRIES]),
              status_type="INDUSTRY"),
        Field("EMPLOYEES", "crm_status", "Number of Employees",
              gen=pick(6, ["EMPLOYEES_1", "EMPLOYEES_2", "EMPLOYEES_3", "EMPLOYEES_4"]),
              status_type="EMPLOYEES"),
        Field("CURRENCY_ID", "crm_currency", "Currency", gen=pick(8, list(CURRENCIES), [6, 2, 1])),
        Field("REVENUE", "double", "Annual Revenue", gen="ROUND((R(9) % 90000000) / 10.0, 2)"),
        Field("OPENED", "char", "Available to Everyone", gen=pick(33, ["Y", "N"], [4, 1])),
        Field("COMMENTS", "string", "Comment"),
        *_has(),
        Field("IS_MY_COMPANY", "char", "My Company", gen="'N'"),
        *_people(),
        Field("CONTACT_ID", "crm_contact", "Contact", multiple=True),
        ref_field("crm_lead", "Lead", "NULL", 1, read_only=True),
        *_origin(version=True),
        *UTM,
        *_last_activity(read_only=False),
        Field("LAST_COMMUNICATION_TIME", "string", "Last Communication Date", read_only=True),
        *_multi("PHONE", "EMAIL", "WEB", "IM", "LINK"),
        user_field("UF_CRM_INN", "string", "Tax ID", gen="printf('77%08d', R(17) % 100000000)"),
    ),
)


CLASSIC_ENTITIES = (COMPANY, CONTACT, LEAD, DEAL)
"""The classic CRM tables of this module, parents first (activities: `crm_activities`)."""
