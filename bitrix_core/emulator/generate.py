"""Row generation inside SQLite: a recursive CTE of ordinals and arithmetic pseudo-random
numbers of (seed, ordinal), so a million rows never pass through Python objects.

A field's `gen` expression may use: `id`, `n` (the ordinal), `created`, `modified` (epoch
seconds), and the macros `R(k)` (a pseudo-random non-negative integer, salt k),
`REF(table, k, null_percent)` (the id of a random existing row of `table`), `USER(k)`,
`DEPT(k)` (a random user / department id), `TZ` (the portal's UTC offset in seconds) and
`SEED` (the portal's seed, folded; see `multi_present`).
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Mapping

from bitrix_core.emulator.schema import Entity

BLOCK = 50  # ordinals per id block; each block has its own id stride (density)
TWO_YEARS = 730 * 86400
_PRIME = 2147483647
_STRIDES = (1, 1, 1, 1, 2, 3, 10, 25)  # every 8 blocks hold each density once, shuffled


def seed_term(seed: int) -> int:
    """The seed folded into the range the hash arithmetic keeps within 64 bits."""
    return (seed % 1000003) * 7919 + 12345


def rnd(salt: int) -> str:
    """SQL for a pseudo-random integer in [0, 2**31) of the row hash `h` and `salt`."""
    multiplier = (salt * 2654435761 + 40503) % _PRIME + 1
    return f"((h * {multiplier} + {salt}) % 2147483629)"


def expand(expr: str, *, salt: int, tz_seconds: int, counts: Mapping[str, int],
           keep_random: bool = False, seed: int = 0) -> str:
    """Replace the generator macros in `expr` by plain SQL (all but `R(k)` if `keep_random`)."""

    def r(m: re.Match[str]) -> str:
        return rnd(int(m.group(1)) + 100 * salt)

    def ref(m: re.Match[str]) -> str:
        table, k, null_percent = m.group(1), int(m.group(2)), int(m.group(3))
        total = counts.get(table, 0)
        if total == 0:
            return "NULL"
        ordinal = f"(1 + R({k + 50}) % {total})"
        lookup = (f"(SELECT base + (({ordinal} - 1) % {BLOCK}) * stride FROM _blocks_{table}"
                  f" WHERE b = ({ordinal} - 1) / {BLOCK})")
        if null_percent:
            lookup = f"(CASE WHEN R({k}) % 100 < {null_percent} THEN NULL ELSE {lookup} END)"
        return lookup

    def dense(table: str):
        def repl(m: re.Match[str]) -> str:
            total = counts.get(table, 0)
            return f"(1 + R({int(m.group(1))}) % {total})" if total else "NULL"
        return repl

    expr = re.sub(r"REF\((\w+),\s*(\d+),\s*(\d+)\)", ref, expr)
    expr = re.sub(r"USER\((\d+)\)", dense("user"), expr)
    expr = re.sub(r"DEPT\((\d+)\)", dense("department"), expr)
    expr = re.sub(r"\bTZ\b", str(tz_seconds), expr)
    expr = re.sub(r"\bSEED\b", str(seed % 1000003), expr)
    return expr if keep_random else re.sub(r"\bR\((\d+)\)", r, expr)


def random_columns(values: str) -> tuple[str, str]:
    """(`values` reading `r<k>` columns, the SELECT list computing them once per row)."""
    salts = sorted({int(k) for k in re.findall(r"\bR\((\d+)\)", values)})
    return (re.sub(r"\bR\((\d+)\)", lambda m: f"r{m.group(1)}", values),
            "".join(f", R({k}) AS r{k}" for k in salts))


def create_table(conn: sqlite3.Connection, entity: Entity) -> None:
    """CREATE TABLE for an entity: one column per non-multi field, ID the rowid."""
    columns = ", ".join(
        f'"{f.name}" {f.sql_type}' + (" PRIMARY KEY" if f.name == "ID" else "")
        for f in entity.fields if not f.is_multifield
    )
    conn.execute(f'CREATE TABLE "{entity.table}" ({columns})')


def create_id_blocks(conn: sqlite3.Connection, entity: Entity, *, seed: int, count: int) -> int:
    """The id layout: blocks of BLOCK ordinals, each dense or sparse (gaps = deleted rows).
    Returns a bound above every generated id."""
    conn.execute(f"CREATE TABLE _blocks_{entity.table} (b INTEGER PRIMARY KEY, base INTEGER,"
                 " stride INTEGER)")
    rng = random.Random(f"{seed}:{entity.table}")
    rows, base = [], 1
    strides: list[int] = []
    for b in range((count + BLOCK - 1) // BLOCK):
        if not strides:
            strides = list(_STRIDES)
            rng.shuffle(strides)
        stride = 1 if entity.dense_ids else strides.pop()
        rows.append((b, base, stride))
        base += BLOCK * stride
    conn.executemany(f"INSERT INTO _blocks_{entity.table} VALUES (?, ?, ?)", rows)
    return base


def insert_rows(
    conn: sqlite3.Connection,
    entity: Entity,
    *,
    seed: int,
    first: int,
    last: int,
    count: int,
    now: int,
    tz_seconds: int,
    counts: Mapping[str, int],
    new_ids_from: int | None = None,
) -> None:
    """Generate and insert the rows of ordinals first..last.

    With `new_ids_from`, rows are fresh: ids follow it densely and were created `now`.
    Otherwise ids follow the entity's block layout and creation times spread over two
    years in id order, with change times between creation and `now`.
    """
    if last < first:
        return
    if new_ids_from is None:
        id_expr = (f"(SELECT base + ((n - 1) % {BLOCK}) * stride FROM _blocks_{entity.table}"
                   f" WHERE b = (n - 1) / {BLOCK})")
        step = max(1, TWO_YEARS // max(count, 1))
        created = (f"MIN({now}, {now - TWO_YEARS} + ((n - 1) * {TWO_YEARS}) / {max(count, 1)}"
                   f" + R(90) % {step})")
        modified = (f"(created + CASE WHEN R(91) % 10 < 3 THEN 0"
                    f" ELSE R(92) % ({now} - created + 1) END)")
    else:
        id_expr = f"({new_ids_from} + n - {first})"
        created, modified = str(now), "created"
    fields = [f for f in entity.fields if not f.is_multifield]
    columns = ", ".join(f'"{f.name}"' for f in fields)
    values, randoms = random_columns(expand(", ".join(f.gen for f in fields), salt=entity.salt,
                                            tz_seconds=tz_seconds, counts=counts,
                                            keep_random=True, seed=seed))
    sql = (
        f"WITH RECURSIVE seq(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM seq"
        f" WHERE n < {last}),"
        f" lcg AS (SELECT n, (n * 1103515245 + {seed_term(seed)}) % {_PRIME} AS g FROM seq),"
        f" hashed AS (SELECT n, (g * g) % 2147483629 AS h FROM lcg),"
        f" placed AS (SELECT n, h, {id_expr} AS id, {created} AS created FROM hashed),"
        f" timed AS (SELECT n, h, id, created, {modified} AS modified FROM placed),"
        f" drawn AS MATERIALIZED (SELECT n, id, created, modified{randoms} FROM timed)"
        f' INSERT INTO "{entity.table}" ({columns}) SELECT {values} FROM drawn'
    )
    conn.execute(expand(sql, salt=entity.salt, tz_seconds=tz_seconds, counts=counts))


MULTI_KINDS = ("PHONE", "EMAIL", "WEB", "IM")
_MULTI_PERCENT = {"PHONE": 90, "EMAIL": 80, "WEB": 40, "IM": 20}  # rows having such a value


def multi_present(kind: str, id_column: str, seed: int | None = None) -> str:
    """SQL true when the row `id_column` has a generated `kind` multi-field value (HAS_PHONE);
    without `seed`, it reads the `SEED` macro."""
    s = "SEED" if seed is None else str(seed % 1000003)
    return (f"((({id_column} * 2654435761 + {s} * 97 + {len(kind)}) % 1000003) % 100"
            f" < {_MULTI_PERCENT[kind]})")


def insert_multifields(
    conn: sqlite3.Connection, entity: Entity, *, seed: int, where: str = "1",
    id_base: int | None = None,
) -> None:
    """PHONE / EMAIL / WEB / IM values for the entity's rows matching `where`.

    With `id_base`, a value's own ID is `id_base + 4 * owner id + kind` (the same whatever
    order entities are generated in); otherwise IDs follow the table's largest."""
    owner = entity.multi_owner
    names = {f.name for f in entity.fields if f.is_multifield}
    if not owner:
        return
    kinds = {
        "PHONE": ("WORK", "'+7 9' || printf('%02d %03d-%02d-%02d', ID % 100, (ID * 7) % 1000,"
                          " (ID * 13) % 100, (ID * 17) % 100)"),
        "EMAIL": ("WORK", "'client' || ID || '@" + owner.lower() + ".example.com'"),
        "WEB": ("WORK", "'https://site' || ID || '.example.com'"),
        "IM": ("TELEGRAM", "'@tg_' || ID"),
    }
    for type_id, (value_type, value) in kinds.items():
        if type_id not in names:
            continue
        own_id = "NULL" if id_base is None else (
            f"{id_base} + {len(MULTI_KINDS)} * ID + {MULTI_KINDS.index(type_id)}")
        conn.execute(
            "INSERT INTO multifield (ID, ENTITY_ID, ELEMENT_ID, TYPE_ID, VALUE_TYPE, VALUE)"
            f" SELECT {own_id}, '{owner}', ID, '{type_id}', '{value_type}', {value}"
            f' FROM "{entity.table}"'
            f" WHERE {multi_present(type_id, 'ID', seed)} AND ({where})"
        )
