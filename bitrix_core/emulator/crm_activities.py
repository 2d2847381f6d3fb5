"""The CRM activity entity of the emulated portal (crm.activity.list): meetings, calls,
tasks and e-mails bound to deals, contacts and leads (those: `crm_entities`)."""

from __future__ import annotations

from bitrix_core.emulator.crm_entities import TITLE_SQL
from bitrix_core.emulator.schema import Entity, Field, pick

# TYPE_ID 1 meeting, 2 call, 3 task, 4 e-mail (crm_enum_activitytype) and the provider of each
_ACTIVITY_KIND = "(1 + R(5) % 4)"
_PROVIDERS = ("CRM_MEETING", "VOXIMPLANT_CALL", "CRM_TASKS_TASK", "CRM_EMAIL")
_PROVIDER_TYPES = ("MEETING", "CALL", "TASK", "EMAIL")
_START = "(created + 3600 * (R(9) % 240))"
_END = f"({_START} + 1800)"


def _by_kind(values: tuple[str, ...]) -> str:
    return "(CASE " + _ACTIVITY_KIND + " " + " ".join(
        f"WHEN {i} THEN '{v}'" for i, v in enumerate(values, 1)) + " END)"


def _zero(name: str, type_: str = "integer", title: str = "") -> Field:
    """A field the activity rows of the documented example carry as "0"."""
    return Field(name, type_, title or name, gen="0")


# The documented field set, in its order, and each field's flags and title:
# b24restdocs api-reference/crm/timeline/activities/activity-base/crm-activity-fields.md.
# Row values follow crm-activity-list.md / crm-activity-get.md ("Response Handling"): ids and
# enums as strings, "ASSOCIATED_ENTITY_ID": "0", "DESCRIPTION": "", "LOCATION": "",
# "SETTINGS": [], "PROVIDER_PARAMS": [], RESULT_* "0" or null; BINDINGS, COMMUNICATIONS,
# FILES, WEBDAV_ELEMENTS and IS_INCOMING_CHANNEL are described but absent from the rows.
# DEADLINE "is taken from START_TIME for calls and meetings and from END_TIME for tasks"
# (crm-activity-fields.md; e-mails like tasks: an assumption); STATUS 2 (completed) when
# COMPLETED is Y, else 1 (waiting): crm_enum_activitystatus, api-reference/crm/data-types.md.
ACTIVITY = Entity(
    name="crm.activity", table="activity", size_key="activities", salt=5,
    created_field="CREATED", modified_field="LAST_UPDATED",
    fields=(
        Field("ID", "integer", "ID", gen="id", read_only=True),
        Field("OWNER_ID", "integer", "Owner ID", immutable=True,
              gen="(CASE " + pick(3, [2, 3, 1], [7, 2, 1]) + " WHEN 2 THEN REF(deal, 4, 0)"
                  " WHEN 3 THEN REF(contact, 4, 0) ELSE REF(lead, 4, 0) END)"),
        Field("OWNER_TYPE_ID", "crm_enum_ownertype", "Owner Type", immutable=True,
              gen=pick(3, [2, 3, 1], [7, 2, 1])),
        Field("TYPE_ID", "crm_enum_activitytype", "Type", gen=_ACTIVITY_KIND, required=True,
              immutable=True),
        Field("PROVIDER_ID", "string", "Provider ID", gen=_by_kind(_PROVIDERS)),
        Field("PROVIDER_TYPE_ID", "string", "Provider Type", gen=_by_kind(_PROVIDER_TYPES)),
        Field("PROVIDER_GROUP_ID", "string", "Connector Type"),
        Field("ASSOCIATED_ENTITY_ID", "integer", "Associated Entity ID", gen="0", read_only=True),
        Field("SUBJECT", "string", "Subject", gen="'Follow up: ' || " + TITLE_SQL, required=True),
        Field("START_TIME", "datetime", "Start", gen=_START),
        Field("END_TIME", "datetime", "Deadline", gen=_END),
        Field("DEADLINE", "datetime", "Execution Deadline",
              gen=f"(CASE WHEN {_ACTIVITY_KIND} <= 2 THEN {_START} ELSE {_END} END)"),
        Field("COMPLETED", "char", "Completed", gen=pick(6, ["Y", "N"])),
        Field("STATUS", "crm_enum_activitystatus", "Status", gen=pick(6, [2, 1])),
        Field("RESPONSIBLE_ID", "user", "Responsible", gen="USER(30)", required=True),
        Field("PRIORITY", "crm_enum_activitypriority", "Priority", gen=pick(8, [1, 2, 3])),
        Field("NOTIFY_TYPE", "crm_enum_activitynotifytype", "Notification Type",
              gen=pick(10, [0, 1], [1, 2])),
        Field("NOTIFY_VALUE", "integer", "Notification Parameter", gen=pick(10, [0, 15], [1, 2])),
        Field("DESCRIPTION", "string", "Description", gen="''"),
        Field("DESCRIPTION_TYPE", "crm_enum_contenttype", "Description Type", gen="1"),
        Field("DIRECTION", "crm_enum_activitydirection", "Direction", gen=pick(7, [0, 1, 2])),
        Field("LOCATION", "string", "Location", gen="''"),
        Field("CREATED", "datetime", "Creation Date", gen="created", read_only=True),
        Field("AUTHOR_ID", "user", "Created By", gen="USER(31)", read_only=True),
        Field("LAST_UPDATED", "datetime", "Last Updated Date", gen="modified", read_only=True),
        Field("EDITOR_ID", "user", "Edited By", gen="USER(32)", read_only=True),
        Field("SETTINGS", "object", "Settings", gen="'[]'"),
        Field("ORIGIN_ID", "string", "External Code"),
        Field("ORIGINATOR_ID", "string", "External Source"),
        _zero("RESULT_STATUS"),
        _zero("RESULT_STREAM"),
        Field("RESULT_SOURCE_ID", "string", "RESULT_SOURCE_ID"),
        Field("PROVIDER_PARAMS", "object", "Provider Parameters", gen="'[]'"),
        Field("PROVIDER_DATA", "string", "Provider Data"),
        _zero("RESULT_MARK"),
        Field("RESULT_VALUE", "double", "RESULT_VALUE"),
        Field("RESULT_SUM", "double", "RESULT_SUM"),
        Field("RESULT_CURRENCY_ID", "string", "RESULT_CURRENCY_ID"),
        _zero("AUTOCOMPLETE_RULE", title="Autocomplete"),
        Field("BINDINGS", "crm_activity_binding", "Bindings", multiple=True, read_only=True),
        Field("COMMUNICATIONS", "crm_activity_communication", "Communication Channel",
              multiple=True, required=True),
        Field("FILES", "diskfile", "Files", multiple=True),
        Field("WEBDAV_ELEMENTS", "diskfile", "Added Files", multiple=True, deprecated=True),
        Field("IS_INCOMING_CHANNEL", "char", "IS_INCOMING_CHANNEL", gen="'N'", read_only=True,
              listed=False),
    ),
)
