"""user.*, department.*, tasks.task.* and crm.status.* methods.

user.get and department.get take top-level `sort` and `order` strings and filter keys
(in `FILTER`/`filter`, or at top level); tasks.task.list takes UPPER_CASE filter, select and
order keys and answers `{"tasks": [...]}` with camelCase keys and string values.
"""

from __future__ import annotations

from typing import Any

from bitrix_core.emulator.filters import php_int
from bitrix_core.emulator.listing import fetch_page
from bitrix_core.emulator.method_kit import (
    Handler,
    MethodError,
    MethodResult,
    as_list,
    as_mapping,
)
from bitrix_core.emulator.schema import Entity, describe
from bitrix_core.emulator.shapes import classic_value, select_fields
from bitrix_core.emulator.store import PortalStore

_PAGING_KEYS = {"sort", "order", "filter", "start", "admin_mode", "select"}


class Directory:
    """Users, departments, tasks and CRM dictionaries."""

    def __init__(self, store: PortalStore) -> None:
        self.store = store

    def _strings(self, entity: Entity, raw: dict[str, Any], *, camel: bool = False,
                 names: list[str] | None = None) -> dict[str, Any]:
        fields = select_fields(entity, names) if names else entity.fields
        return {(f.camel_key if camel else f.name): classic_value(f, raw.get(f.name), self.store.tz)
                for f in fields}

    def _sorted_list(self, name: str, params: dict[str, Any]) -> tuple[Entity, Any]:
        entity = self.store.entity(name)
        filter_ = {**{k.upper(): v for k, v in params.items() if k not in _PAGING_KEYS},
                   **as_mapping(params.get("filter"))}
        sort = str(params.get("sort") or "ID").upper()
        order = {sort: str(params.get("order") or "ASC")}
        page = fetch_page(self.store, entity, filter_=filter_, order=order,
                          start=params.get("start"))
        return entity, page

    def users(self, params: dict[str, Any]) -> MethodResult:
        entity, page = self._sorted_list("user", params)
        result = []
        for raw in page.rows:
            # empty values are "" (b24restdocs api-reference/user/user-get.md example)
            row = {k: "" if v is None else v for k, v in self._strings(entity, raw).items()}
            row["ACTIVE"] = bool(raw["ACTIVE"])
            row["UF_DEPARTMENT"] = [raw["UF_DEPARTMENT"]] if raw["UF_DEPARTMENT"] else []
            result.append(row)
        return MethodResult(result=result, next=page.next, total=page.answer_total, rows=len(result),
                            counted=page.total or 0, offset=page.offset)

    def departments(self, params: dict[str, Any]) -> MethodResult:
        entity, page = self._sorted_list("department", params)
        result = [self._strings(entity, raw) for raw in page.rows]
        for row, raw in zip(result, page.rows, strict=True):
            # an integer on real portals (b24restdocs api-reference/departments/
            # department-get.md: `"SORT": 500` beside `"ID": "15"`)
            row["SORT"] = None if raw["SORT"] is None else int(raw["SORT"])
        return MethodResult(result=result, next=page.next, total=page.answer_total, rows=len(result),
                            counted=page.total or 0, offset=page.offset)

    def titles(self, name: str) -> Handler:
        def handler(params: dict[str, Any]) -> MethodResult:
            return MethodResult(result={f.name: f.title for f in self.store.entity(name).fields})
        return handler

    def tasks(self, params: dict[str, Any]) -> MethodResult:
        entity = self.store.entity("tasks.task")
        names = [str(s).upper() for s in as_list(params.get("select"))]
        page = fetch_page(self.store, entity, filter_=as_mapping(params.get("filter")),
                          order=params.get("order"), start=params.get("start"))
        tasks = [self._task(entity, raw, names) for raw in page.rows]
        return MethodResult(result={"tasks": tasks}, next=page.next, total=page.answer_total,
                            rows=len(tasks), counted=page.total or 0, offset=page.offset)

    def task(self, params: dict[str, Any]) -> MethodResult:
        number = php_int(params.get("taskid") or params.get("id") or 0)
        rows = self.store.raw_rows("tasks.task", [number]) if number > 0 else []
        if not rows:
            raise MethodError("ERROR_CORE", "Task not found or not accessible", 400)
        return MethodResult(result={"task": self._task(self.store.entity("tasks.task"), rows[0])},
                            rows=1)

    def _task(self, entity: Entity, raw: dict[str, Any], names: list[str] | None = None,
              ) -> dict[str, Any]:
        """A task row with what every row carries whatever the select (b24restdocs
        api-reference/tasks/tasks-task-list.md example: `"group": []` for a task outside any
        workgroup, `"subStatus": "2"`; tasks-task-complete.md: `"group": {"id": "125", "name":
        ..., "opened": false, "membersCount": 1, "image": ..., "additionalData": []}`).
        subStatus repeats the status (an assumption: the docs do not show it differ)."""
        row = self._strings(entity, raw, camel=True, names=names)
        group = raw.get("GROUP_ID")
        row["group"] = [] if not group else {
            "id": str(group), "name": f"Workgroup {group}", "opened": False, "membersCount": 1,
            "image": "/bitrix/images/socialnetwork/workgroup/bag.png", "additionalData": []}
        row["subStatus"] = None if raw.get("STATUS") is None else str(raw["STATUS"])
        return row

    def task_fields(self, params: dict[str, Any]) -> MethodResult:
        fields = {f.name: {"title": f.title, "type": "enum" if f.name in ("STATUS", "PRIORITY")
                           else f.type, **({"primary": True} if f.name == "ID" else {})}
                  for f in self.store.entity("tasks.task").fields}
        return MethodResult(result={"fields": fields})

    def statuses(self, params: dict[str, Any]) -> MethodResult:
        entity = self.store.entity("crm.status")
        names = [str(s) for s in as_list(params.get("select"))]
        page = fetch_page(self.store, entity, filter_=as_mapping(params.get("filter")),
                          order=params.get("order") or {"SORT": "ASC"}, start=params.get("start"))
        result = [self._status(entity, raw, names) for raw in page.rows]
        return MethodResult(result=result, next=page.next, total=page.answer_total, rows=len(result),
                            counted=page.total or 0, offset=page.offset)

    def _status(self, entity: Entity, raw: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """A crm.status row; EXTRA as crm-status-list.md shows it: `{"SEMANTICS": "process",
        "COLOR": "#39A8EF"}` (stages and lead statuses only)."""
        row = self._strings(entity, raw, names=names)
        if "EXTRA" in row:
            if raw["EXTRA"] is None:
                del row["EXTRA"]
            else:
                row["EXTRA"] = {"SEMANTICS": raw["EXTRA"], "COLOR": raw["COLOR"]}
        return row

    def status_fields(self, params: dict[str, Any]) -> MethodResult:
        return MethodResult(result={f.name: describe(f)
                                    for f in self.store.entity("crm.status").fields})


def handlers(store: PortalStore) -> dict[str, Handler]:
    """Every user / department / task / status method name (lower case) -> its handler."""
    d = Directory(store)
    return {
        "user.get": d.users,
        "user.fields": d.titles("user"),
        "department.get": d.departments,
        "department.fields": d.titles("department"),
        "tasks.task.list": d.tasks,
        "tasks.task.get": d.task,
        "tasks.task.getfields": d.task_fields,
        "crm.status.list": d.statuses,
        "crm.status.fields": d.status_fields,
    }
