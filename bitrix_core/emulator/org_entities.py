"""The non-CRM entities of the emulated portal: users, departments, tasks, and the CRM
dictionaries (crm.status rows and pipelines) that the CRM entities refer to."""

from __future__ import annotations

from bitrix_core.emulator.crm_dictionaries import (
    COMPANY_TYPES,
    CONTACT_TYPES,
    DEAL_CATEGORIES,
    DEAL_STAGES,
    DEAL_TYPES,
    INDUSTRIES,
    LEAD_STATUSES,
    SOURCES,
)
from bitrix_core.emulator.schema import Entity, Field, pick
from bitrix_core.emulator.smart_entities import SMART_CATEGORY_BASE, SMART_ENTITIES

_FIRST = ("Alexey", "Natalia", "Boris", "Svetlana", "Yuri", "Tatiana", "Nikolai", "Vera")
_LAST = ("Orlov", "Fedorova", "Morozov", "Nikitina", "Zaitsev", "Pavlova", "Semenov", "Belova")

_MIDNIGHT = "(86400 * ((created + TZ) / 86400) - TZ)"  # the day of `created`, 00:00 portal time


def _empty(*names_titles: str) -> tuple[Field, ...]:
    """Fields the generated users leave empty ("" in rows), from "NAME:Title" pairs."""
    return tuple(Field(n, "string", t) for n, t in (x.split(":", 1) for x in names_titles))


# The documented field set, in its order: b24restdocs api-reference/user/user-fields.md;
# value formats from api-reference/user/user-get.md (empty values are "", dates are times at
# midnight, UF_DEPARTMENT a list of ids, "TIMESTAMP_X": {} and "LAST_ACTIVITY_DATE": {}).
USER = Entity(
    name="user", table="user", size_key="users", dense_ids=True, salt=6,
    created_field="DATE_REGISTER", modified_field="TIMESTAMP_X",
    fields=(
        Field("ID", "integer", "ID", gen="id", read_only=True),
        Field("XML_ID", "string", "External code"),
        Field("ACTIVE", "boolean", "Activity", gen="(R(3) % 10 > 0)"),
        Field("NAME", "string", "First Name", gen=pick(4, list(_FIRST))),
        Field("LAST_NAME", "string", "Last Name", gen=pick(5, list(_LAST))),
        Field("SECOND_NAME", "string", "Middle Name", gen="NULL"),
        Field("TITLE", "string", "User List"),
        Field("EMAIL", "string", "E-Mail", gen="'user' || id || '@example.com'"),
        Field("LAST_LOGIN", "datetime", "Last Authorization", gen="modified", read_only=True),
        Field("DATE_REGISTER", "datetime", "Registration Date", gen="created", read_only=True),
        Field("TIME_ZONE", "string", "TIME_ZONE"),
        Field("IS_ONLINE", "char", "IS_ONLINE", gen=pick(9, ["Y", "N"], [1, 3]), read_only=True),
        Field("TIMESTAMP_X", "datetime_opaque", "TIMESTAMP_X", gen="modified", read_only=True),
        Field("LAST_ACTIVITY_DATE", "datetime_opaque", "LAST_ACTIVITY_DATE", gen="modified",
              read_only=True),
        Field("PERSONAL_GENDER", "string", "Gender", gen=pick(6, ["M", "F", ""])),
        Field("PERSONAL_PROFESSION", "string", "Profession"),
        Field("PERSONAL_WWW", "string", "Homepage"),
        Field("PERSONAL_BIRTHDAY", "datetime", "Date of Birth",
              gen="(CASE WHEN R(10) % 3 = 0 THEN 86400 * (R(10) % 12000) - TZ END)"),
        *_empty("PERSONAL_PHOTO:Photo", "PERSONAL_ICQ:ICQ", "PERSONAL_PHONE:Personal Phone",
                "PERSONAL_FAX:Fax"),
        Field("PERSONAL_MOBILE", "string", "Personal Mobile",
              gen="'+7 900 ' || printf('%07d', id)"),
        Field("PERSONAL_PAGER", "string", "Pager"),
        Field("PERSONAL_STREET", "string", "Residential Street"),
        Field("PERSONAL_CITY", "string", "Residential City",
              gen=pick(11, ["Moscow", "Kazan", "Berlin", ""])),
        *_empty("PERSONAL_STATE:State / Region", "PERSONAL_ZIP:Zip Code",
                "PERSONAL_COUNTRY:Country", "PERSONAL_MAILBOX:P.O. Box",
                "PERSONAL_NOTES:Additional Notes", "WORK_PHONE:Company Phone",
                "WORK_COMPANY:Company"),
        Field("WORK_POSITION", "string", "Job Title",
              gen=pick(7, ["Sales manager", "Account manager", "Head of sales", "Support"])),
        *_empty("WORK_DEPARTMENT:Department", "WORK_WWW:Company Website", "WORK_FAX:WORK_FAX",
                "WORK_PAGER:WORK_PAGER", "WORK_STREET:WORK_STREET", "WORK_MAILBOX:WORK_MAILBOX",
                "WORK_CITY:Work City", "WORK_STATE:WORK_STATE", "WORK_ZIP:WORK_ZIP",
                "WORK_COUNTRY:WORK_COUNTRY", "WORK_PROFILE:WORK_PROFILE", "WORK_LOGO:WORK_LOGO",
                "WORK_NOTES:WORK_NOTES", "UF_SKYPE_LINK:Skype Chat Link", "UF_ZOOM:Zoom"),
        Field("UF_EMPLOYMENT_DATE", "datetime", "Hire Date", gen=_MIDNIGHT),
        Field("UF_TIMEMAN", "string", "Time Tracking"),
        Field("UF_DEPARTMENT", "integer", "Units", gen="DEPT(8)"),
        *_empty("UF_INTERESTS:Interests", "UF_SKILLS:Skills", "UF_WEB_SITES:Other Websites",
                "UF_XING:Xing", "UF_LINKEDIN:LinkedIn", "UF_TWITTER:Twitter", "UF_SKYPE:Skype",
                "UF_DISTRICT:District"),
        Field("UF_PHONE_INNER", "string", "Extension", gen="CAST(100 + id AS TEXT)"),
        Field("USER_TYPE", "string", "USER_TYPE", gen="'employee'"),
    ),
)

DEPARTMENT = Entity(
    name="department", table="department", size_key="departments", dense_ids=True, salt=7,
    created_field=None, modified_field=None,
    fields=(
        Field("ID", "integer", "ID", gen="id", read_only=True),
        Field("NAME", "string", "Name",
              gen="(CASE WHEN id = 1 THEN 'Company' ELSE "
                  + pick(3, ["Sales", "Support", "Marketing", "Finance", "Logistics"])
                  + " || ' ' || id END)"),
        Field("SORT", "integer", "Sort", gen="id * 10"),
        Field("PARENT", "integer", "Parent department",
              gen="(CASE WHEN id = 1 THEN NULL ELSE 1 + R(4) % (id - 1) END)"),
        Field("UF_HEAD", "integer", "Head", gen="USER(5)"),
    ),
)

TASK = Entity(
    name="tasks.task", table="task", size_key="tasks", salt=8,
    created_field="CREATED_DATE", modified_field="CHANGED_DATE",
    fields=(
        Field("ID", "integer", "ID", gen="id", read_only=True),
        Field("TITLE", "string", "Title", gen="'Task ' || id || ': ' || "
              + pick(3, ["call the client", "prepare offer", "send contract", "check payment"])),
        Field("DESCRIPTION", "string", "Description", gen="NULL"),
        Field("STATUS", "integer", "Status", gen=pick(4, [2, 3, 4, 5, 6], [3, 3, 1, 4, 1])),
        Field("PRIORITY", "integer", "Priority", gen=pick(5, [0, 1, 2], [2, 5, 1])),
        Field("RESPONSIBLE_ID", "user", "Assignee", gen="USER(30)"),
        Field("CREATED_BY", "user", "Created by", gen="USER(31)", read_only=True),
        Field("GROUP_ID", "integer", "Workgroup", gen=pick(6, [0, 1, 2], [4, 1, 1])),
        Field("CREATED_DATE", "datetime", "Created", gen="created", read_only=True),
        Field("CHANGED_DATE", "datetime", "Changed", gen="modified", read_only=True),
        Field("CLOSED_DATE", "datetime", "Closed",
              gen="(CASE WHEN " + pick(4, [2, 3, 4, 5, 6], [3, 3, 1, 4, 1]) + " = 5 THEN modified END)"),
        Field("DEADLINE", "datetime", "Deadline", gen="created + 86400 * (1 + R(7) % 30)"),
    ),
)

STATUS = Entity(
    name="crm.status", table="status", size_key="", dense_ids=True,
    created_field=None, modified_field=None,
    # fields, their order and row shape as b24restdocs api-reference/crm/status/
    # crm-status-fields.md and crm-status-list.md show them; SEMANTICS is documented as
    # "char" and holds S / F (null while a stage is in progress)
    fields=(
        Field("ID", "integer", "ID", read_only=True),
        Field("ENTITY_ID", "string", "Entity ID", required=True, immutable=True),
        Field("STATUS_ID", "string", "Status", required=True, immutable=True),
        Field("NAME", "string", "Name", required=True),
        Field("NAME_INIT", "string", "Default Name", read_only=True),
        Field("SORT", "integer", "Sorting"),
        Field("SYSTEM", "char", "System", read_only=True),
        Field("CATEGORY_ID", "integer", "CATEGORY_ID", immutable=True),
        Field("COLOR", "string", "COLOR"),
        Field("SEMANTICS", "char", "SEMANTICS", immutable=True),
        Field("EXTRA", "crm_status_extra", "Additional Fields"),  # stored: EXTRA's SEMANTICS
    ),
)

_SEMANTICS = {"WON": "S", "LOSE": "F", "SUCCESS": "S", "FAIL": "F", "CONVERTED": "S", "JUNK": "F"}
_EXTRA_SEMANTICS = {"S": "success", "F": "failure", None: "process"}
_COLORS = ("#39A8EF", "#2FC6F6", "#55D0E0", "#47E4C2", "#FFA900", "#7BD500", "#FF5752")


def status_rows() -> list[tuple]:
    """Every crm.status row: (ENTITY_ID, STATUS_ID, NAME, NAME_INIT, SORT, SYSTEM,
    CATEGORY_ID, COLOR, SEMANTICS, EXTRA semantics).

    As in crm-status-list.md's example: an in-progress stage has SEMANTICS null and
    EXTRA.SEMANTICS "process"; the default deal pipeline's CATEGORY_ID is null; NAME_INIT
    is the name for system rows and "" for the others. Dictionaries other than stages and
    lead statuses (sources, types) carry no EXTRA (an assumption: the docs show stages)."""
    rows: list[tuple] = []

    def add(entity_id: str, items, *, prefix: str = "", category: int | None = None) -> None:
        stages = entity_id.endswith("STAGE") or "STAGE_" in entity_id or entity_id == "STATUS"
        for i, (status_id, name) in enumerate(items):
            semantics = _SEMANTICS.get(status_id) if stages else None
            system = i == 0 or semantics in ("S", "F")
            rows.append((entity_id, prefix + status_id, name, name if system else "",
                         (i + 1) * 10, "Y" if system else "N", category or None,
                         _COLORS[i % len(_COLORS)], semantics,
                         _EXTRA_SEMANTICS[semantics] if stages else None))
    for category, _ in DEAL_CATEGORIES:
        entity_id = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
        add(entity_id, DEAL_STAGES, prefix="" if category == 0 else f"C{category}:",
            category=category)
    add("STATUS", LEAD_STATUSES)
    add("SOURCE", SOURCES)
    add("DEAL_TYPE", DEAL_TYPES)
    add("CONTACT_TYPE", CONTACT_TYPES)
    add("COMPANY_TYPE", COMPANY_TYPES)
    add("INDUSTRY", INDUSTRIES)
    add("EMPLOYEES", [(f"EMPLOYEES_{i}", label) for i, label in
                      enumerate(("fewer than 50", "50-250", "250-500", "over 500"), 1)])
    smart_stages = (("NEW", "New"), ("PREPARATION", "Preparation"), ("CLIENT", "Client"),
                    ("SUCCESS", "Success"), ("FAIL", "Failed"))
    for smart in SMART_ENTITIES:
        t = int(smart.entity_type_id or 0)
        for offset, _ in DEAL_CATEGORIES:
            category = SMART_CATEGORY_BASE[t] + offset
            add(f"DYNAMIC_{t}_STAGE_{category}", smart_stages, prefix=f"DT{t}_{category}:",
                category=category)
    return rows


def category_rows() -> list[tuple[int, int, str, int, str]]:
    """Every pipeline: (ID, ENTITY_TYPE_ID, NAME, SORT, IS_DEFAULT); ids unique per portal."""
    rows = [(c, 2, name, (c + 1) * 100, "Y" if c == 0 else "N") for c, name in DEAL_CATEGORIES]
    for smart in SMART_ENTITIES:
        t = int(smart.entity_type_id or 0)
        for c, name in DEAL_CATEGORIES:
            rows.append((SMART_CATEGORY_BASE[t] + c, t, name, (c + 1) * 100, "Y" if c == 0 else "N"))
    return rows
