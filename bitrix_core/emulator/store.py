"""PortalStore: the emulated portal's data in SQLite, generated from a seed.

Rows are generated inside SQLite (see `generate.py`), so a portal of a million deals
starts in seconds without holding rows in Python. Values are stored in native SQLite
types (ids and counts as integers, change times as epoch seconds); `shapes.py` turns them
into what each REST method returns.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bitrix_core.emulator import generate
from bitrix_core.emulator.crm_activities import ACTIVITY
from bitrix_core.emulator.crm_entities import CLASSIC_ENTITIES, DEAL
from bitrix_core.emulator.living import LivingPortal
from bitrix_core.emulator.org_entities import (
    DEPARTMENT,
    STATUS,
    TASK,
    USER,
    category_rows,
    status_rows,
)
from bitrix_core.emulator.planted import PlantedValues
from bitrix_core.emulator.schema import Entity, Field
from bitrix_core.emulator.sizes import PortalSizes, parse_tz
from bitrix_core.emulator.smart_entities import SMART_ENTITIES

_CHUNK = 100_000  # ordinals generated per INSERT


class PortalStore(LivingPortal):
    """The portal's data: entities, user fields, multi-fields, deal contacts, dictionaries."""

    def __init__(
        self,
        *,
        seed: int = 1,
        sizes: PortalSizes | None = None,
        tz: str = "+03:00",
        now: float | None = None,
        path: str = ":memory:",
    ) -> None:
        self.seed = int(seed)
        self.sizes = (sizes or PortalSizes()).resolved()
        self.tz = parse_tz(tz)
        self.tz_seconds = int(self.tz.utcoffset(None).total_seconds())
        self.generated_at = int(now if now is not None else time.time())
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=MEMORY",
                       "cache_size=-65536"):
            self._conn.execute(f"PRAGMA {pragma}")
        self.entities: dict[str, Entity] = {
            e.name: e
            for e in (*CLASSIC_ENTITIES, ACTIVITY, *SMART_ENTITIES, USER, DEPARTMENT, TASK, STATUS)
        }
        self.user_field_ids: dict[tuple[str, str], int] = {}
        self.planted = PlantedValues(self)  # a test facility: raw values sent as they are
        self._generate()

    # ------------------------------------------------------------------ generation
    def _count_of(self, entity: Entity) -> int:
        return self.sizes.get(entity.size_key, 0)

    def _generate(self) -> None:
        """Tables, id layouts and dictionaries for every entity; rows only for the eager
        ones (users, departments, deals). Every other entity's rows are generated on first
        use (`_ready`), from the same seed, sizes and clock, so the data does not depend on
        when that happens."""
        conn = self._conn
        order = (USER, DEPARTMENT, *CLASSIC_ENTITIES, ACTIVITY, TASK, *SMART_ENTITIES)
        self._counts = {e.table: self._count_of(e) for e in order}
        self._multi_base: dict[str, int] = {}
        multi_top = 0
        conn.execute("BEGIN")
        for entity in order:
            generate.create_table(conn, entity)
            top = generate.create_id_blocks(conn, entity, seed=self.seed,
                                            count=self._counts[entity.table])
            if entity.multi_owner:
                self._multi_base[entity.name] = multi_top
                multi_top += len(generate.MULTI_KINDS) * (top + 1)
            for f in entity.fields:
                if f.user_field:
                    self._register_user_field(entity, f)
        conn.execute("CREATE TABLE multifield (ID INTEGER PRIMARY KEY, ENTITY_ID TEXT,"
                     " ELEMENT_ID INTEGER, TYPE_ID TEXT, VALUE_TYPE TEXT, VALUE TEXT)")
        conn.execute("CREATE INDEX ix_multifield_owner ON multifield (ENTITY_ID, ELEMENT_ID)")
        conn.execute("CREATE TABLE deal_contact (DEAL_ID INTEGER, CONTACT_ID INTEGER,"
                     " SORT INTEGER, ROLE_ID INTEGER, IS_PRIMARY TEXT,"
                     " PRIMARY KEY (DEAL_ID, CONTACT_ID)) WITHOUT ROWID")
        generate.create_table(conn, STATUS)
        conn.executemany(
            "INSERT INTO status (ENTITY_ID, STATUS_ID, NAME, NAME_INIT, SORT, SYSTEM,"
            " CATEGORY_ID, COLOR, SEMANTICS, EXTRA) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            status_rows(),
        )
        conn.execute("CREATE TABLE category (ID INTEGER PRIMARY KEY, ENTITY_TYPE_ID INTEGER,"
                     " NAME TEXT, SORT INTEGER, IS_DEFAULT TEXT)")
        conn.executemany("INSERT INTO category VALUES (?, ?, ?, ?, ?)", category_rows())
        conn.execute("COMMIT")
        self._pending = {e.name for e in order}
        for entity in (USER, DEPARTMENT, DEAL):
            self._ready(entity.name)

    def _ready(self, name: str) -> None:
        """Generate the rows of entity `name` now if they are still pending."""
        if name not in self._pending:
            return
        with self._lock:
            if name not in self._pending:
                return
            entity = self.entities[name]
            conn = self._conn
            count = self._counts[entity.table]
            conn.execute("BEGIN")
            for first in range(1, count + 1, _CHUNK):  # bounded temporary storage
                generate.insert_rows(
                    conn, entity, seed=self.seed, first=first,
                    last=min(count, first + _CHUNK - 1), count=count, now=self.generated_at,
                    tz_seconds=self.tz_seconds, counts=self._counts,
                )
            generate.insert_multifields(conn, entity, seed=self.seed,
                                        id_base=self._multi_base.get(entity.name))
            if entity.name == "crm.deal":
                self._link_deal_contacts(where="1")
            if entity.modified_field:
                conn.execute(f'CREATE INDEX "ix_{entity.table}_modified" ON "{entity.table}"'
                             f' ("{entity.modified_field}")')
            conn.execute("COMMIT")
            self._pending.discard(name)

    def _writable(self) -> None:
        """Generate every pending entity: writes take new ids (rows, multi-field values)
        above everything generated, which needs everything generated first."""
        for name in list(self._pending):
            self._ready(name)

    def _link_deal_contacts(self, *, where: str) -> None:
        contacts = self.sizes["contacts"]
        self._conn.execute(
            "INSERT OR IGNORE INTO deal_contact SELECT ID, CONTACT_ID, 10, 0, 'Y' FROM deal"
            f" WHERE CONTACT_ID IS NOT NULL AND ({where})")
        if contacts:
            ordinal = f"(1 + (ID * 7919 + {self.seed % 1000003}) % {contacts})"
            self._conn.execute(
                "INSERT OR IGNORE INTO deal_contact SELECT ID,"
                f" (SELECT base + (({ordinal} - 1) % {generate.BLOCK}) * stride"
                f" FROM _blocks_contact WHERE b = ({ordinal} - 1) / {generate.BLOCK}),"
                f" 20, 0, 'N' FROM deal WHERE CONTACT_ID IS NOT NULL AND ID % 5 = 0 AND ({where})")

    def _register_user_field(self, entity: Entity, f: Field) -> None:
        self.user_field_ids.setdefault((entity.name, f.name), len(self.user_field_ids) + 1)

    # ------------------------------------------------------------------ access
    def entity(self, name: str) -> Entity:
        """The entity called `name` (`crm.deal`, `crm.item.128`, `user`, ...), its rows
        generated (every access to an entity's table goes through here)."""
        if name not in self.entities:
            raise KeyError(f"unknown entity {name!r}")
        self._ready(name)
        return self.entities[name]

    def now(self) -> int:
        """The real clock, epoch seconds: the change time of a write made now."""
        return int(time.time())

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run any SQL under the store's lock; rows support access by column name.
        Raw SQL may touch any table, so every pending entity is generated first."""
        self._writable()
        return self._query(sql, params)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of any SQL (every entity generated first)."""
        self._writable()
        return self._scalar(sql, params)

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples of a read query over tables of entities already obtained
        through `entity()` (and the dictionaries); nothing is generated here."""
        with self._lock:
            return self._conn.execute(sql, list(params)).fetchall()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._conn.execute(sql, list(params))
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            row = self._conn.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def count(self, entity: str) -> int:
        """How many rows the entity holds now."""
        return int(self._scalar(f'SELECT COUNT(*) FROM "{self.entity(entity).table}"'))

    def ids(self, entity: str) -> list[int]:
        """Every id of the entity, ascending."""
        return [r[0] for r in self._query(f'SELECT ID FROM "{self.entity(entity).table}" ORDER BY ID')]

    def raw_rows(self, entity: str, ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Stored rows (native values: epoch seconds, integers) keyed by UPPER_CASE name."""
        table = self.entity(entity).table
        if ids is None:
            rows = self._query(f'SELECT * FROM "{table}" ORDER BY ID')
        else:
            wanted = sorted(set(int(i) for i in ids))
            rows = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                rows += self._query(f'SELECT * FROM "{table}" WHERE ID IN'
                                   f' ({",".join("?" * len(chunk))}) ORDER BY ID', chunk)
        return [dict(r) for r in rows]

    def multifields(self, entity: str, ids: Sequence[int]) -> dict[int, dict[str, list[dict]]]:
        """{owner id: {"PHONE": [{"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"}, ...], ...}}."""
        owner = self.entity(entity).multi_owner
        out: dict[int, dict[str, list[dict]]] = {int(i): {} for i in ids}
        if not owner or not ids:
            return out
        rows = self._query(
            "SELECT ID, ELEMENT_ID, TYPE_ID, VALUE_TYPE, VALUE FROM multifield WHERE ENTITY_ID = ?"
            f" AND ELEMENT_ID IN ({','.join('?' * len(ids))}) ORDER BY ID", [owner, *ids])
        for r in rows:
            out[r["ELEMENT_ID"]].setdefault(r["TYPE_ID"], []).append(
                {"ID": str(r["ID"]), "VALUE_TYPE": r["VALUE_TYPE"], "VALUE": r["VALUE"],
                 "TYPE_ID": r["TYPE_ID"]})
        return out

    def deal_contacts(self, deal_id: int) -> list[dict[str, Any]]:
        """The contacts linked to a deal, primary first."""
        rows = self._query("SELECT CONTACT_ID, SORT, ROLE_ID, IS_PRIMARY FROM deal_contact"
                          " WHERE DEAL_ID = ? ORDER BY SORT, CONTACT_ID", [deal_id])
        return [dict(r) for r in rows]

    def id_list(self, entity: Entity, f: Field, row_id: int) -> str:
        """The JSON id list `f.ids_sql` reads for one row."""
        return str(self._scalar(f'SELECT {f.ids_sql} FROM "{entity.table}" t WHERE t.ID = ?',
                                [row_id]))

    def _link_contacts(self, deal_id: int, contact_ids_json: str | None) -> None:
        """A written CONTACT_IDS becomes the deal's contact links, the first one primary."""
        self._conn.execute("DELETE FROM deal_contact WHERE DEAL_ID = ?", [deal_id])
        for n, contact in enumerate(json.loads(contact_ids_json or "[]")):
            self._conn.execute("INSERT OR IGNORE INTO deal_contact VALUES (?, ?, ?, 0, ?)",
                               [deal_id, contact, 10 * (n + 1), "Y" if n == 0 else "N"])

    # ------------------------------------------------------------------ writes
    def insert(self, entity: str, values: Mapping[str, Any],
               multi: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> int:
        """Insert a row (UPPER_CASE column -> stored value); returns its new id."""
        self._writable()
        e = self.entity(entity)
        with self._lock:
            new_id = int(self._scalar(f'SELECT COALESCE(MAX(ID), 0) + 1 FROM "{e.table}"'))
            row = {**values, "ID": new_id}
            cols = list(row)
            names = ", ".join(f'"{c}"' for c in cols)
            marks = ", ".join("?" * len(cols))
            self._conn.execute(f'INSERT INTO "{e.table}" ({names}) VALUES ({marks})',
                               [row[c] for c in cols])
            self._write_multi(e, new_id, multi or {})
            if e.name == "crm.deal" and "CONTACT_IDS" in row:
                self._link_contacts(new_id, row["CONTACT_IDS"])
            elif e.name == "crm.deal" and row.get("CONTACT_ID"):
                self._conn.execute("INSERT OR IGNORE INTO deal_contact VALUES (?, ?, 10, 0, 'Y')",
                                   [new_id, row["CONTACT_ID"]])
        return new_id

    def update(self, entity: str, row_id: int, values: Mapping[str, Any],
               multi: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> bool:
        """Update a row; False when no such id."""
        self._writable()
        e = self.entity(entity)
        with self._lock:
            if not self.exists(entity, row_id):
                return False
            if values:
                sets = ", ".join(f'"{c}" = ?' for c in values)
                self._conn.execute(f'UPDATE "{e.table}" SET {sets} WHERE ID = ?',
                                   [*values.values(), row_id])
            if e.name == "crm.deal" and "CONTACT_IDS" in values:
                self._link_contacts(row_id, values["CONTACT_IDS"])
            self._write_multi(e, row_id, multi or {})
        return True

    def delete(self, entity: str, row_id: int) -> bool:
        """Delete a row and everything hanging off it; False when no such id."""
        self._writable()
        e = self.entity(entity)
        with self._lock:
            gone = self._conn.execute(f'DELETE FROM "{e.table}" WHERE ID = ?', [row_id]).rowcount
            if e.multi_owner:
                self._conn.execute("DELETE FROM multifield WHERE ENTITY_ID = ? AND ELEMENT_ID = ?",
                                   [e.multi_owner, row_id])
            if e.name == "crm.deal":
                self._conn.execute("DELETE FROM deal_contact WHERE DEAL_ID = ?", [row_id])
        return bool(gone)

    def exists(self, entity: str, row_id: int) -> bool:
        """Whether the entity has a row with this id."""
        table = self.entity(entity).table
        return self._scalar(f'SELECT 1 FROM "{table}" WHERE ID = ?', [row_id]) is not None

    def _write_multi(self, e: Entity, row_id: int,
                     multi: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        for type_id, items in multi.items():
            self._conn.execute("DELETE FROM multifield WHERE ENTITY_ID = ? AND ELEMENT_ID = ?"
                               " AND TYPE_ID = ?", [e.multi_owner, row_id, type_id])
            self._conn.executemany(
                "INSERT INTO multifield (ENTITY_ID, ELEMENT_ID, TYPE_ID, VALUE_TYPE, VALUE)"
                " VALUES (?, ?, ?, ?, ?)",
                [(e.multi_owner, row_id, type_id, str(i.get("VALUE_TYPE") or "WORK"),
                  str(i.get("VALUE"))) for i in items if i.get("VALUE") not in (None, "")])

    def add_user_field(self, entity: str, f: Field) -> int:
        """Add a custom field (ALTER TABLE); it shows in `*.fields` and lists from now on."""
        self._writable()
        e = self.entity(entity)
        with self._lock:
            if f.name in e.by_name():
                raise ValueError(f"field {f.name} already exists")
            self._conn.execute(f'ALTER TABLE "{e.table}" ADD COLUMN "{f.name}" {f.sql_type}')
            self.entities[entity] = dataclasses.replace(e, fields=(*e.fields, f))
            self._register_user_field(e, f)
        return self.user_field_ids[(entity, f.name)]
