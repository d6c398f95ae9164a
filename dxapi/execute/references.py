"""Which rows other rows still reference: the diagnosis behind 1317, set-based on every backend.

Used only after the database refused a DELETE. The foreign keys pointing at the entity's table come from the
database's own catalog (one query; the referencing table need not be configured), and then one join per
foreign key and chunk of keys tells which of the keys are referenced. Only keys that block count: ``ON DELETE
CASCADE`` / ``SET NULL`` / ``SET DEFAULT`` references are the database's business, and a row referenced only by
rows deleted in the same request (a self-reference) does not block either — unless the backend checks row by row
(MariaDB) and nothing else explains the refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, column, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dxapi.registry.snapshot import EntitySnapshot

# Under SQLite's bind-parameter limit (32,766 since 3.32) and far under the servers'.
KEYS_PER_QUERY = 2000
BLOCKING_RULES = frozenset({"NO ACTION", "RESTRICT"})


@dataclass(frozen=True, slots=True)
class Reference:
    """A foreign key of ``table`` (``schema`` None: the default schema) on columns of the entity's table."""

    schema: str | None
    table: str
    columns: tuple[str, ...]
    referred: tuple[str, ...]


_POSTGRESQL = text("""
SELECT CASE WHEN cn.nspname = current_schema() THEN NULL ELSE cn.nspname END, cc.relname, k.n,
       ca.attname, pa.attname
FROM pg_constraint c
JOIN pg_class pc ON pc.oid = c.confrelid
JOIN pg_namespace pn ON pn.oid = pc.relnamespace
JOIN pg_class cc ON cc.oid = c.conrelid
JOIN pg_namespace cn ON cn.oid = cc.relnamespace
CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(child_at, parent_at, n)
JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.child_at
JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.parent_at
WHERE c.contype = 'f' AND c.confdeltype IN ('a', 'r') AND pc.relname = :table AND pn.nspname = current_schema()
ORDER BY cc.relname, c.conname, k.n
""")
_MYSQL = text("""
SELECT CASE WHEN k.TABLE_SCHEMA = DATABASE() THEN NULL ELSE k.TABLE_SCHEMA END, k.TABLE_NAME,
       k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE k
JOIN information_schema.REFERENTIAL_CONSTRAINTS r
  ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
 AND r.TABLE_NAME = k.TABLE_NAME
WHERE k.REFERENCED_TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME = :table
  AND r.DELETE_RULE IN ('NO ACTION', 'RESTRICT')
ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION
""")
# Table-valued pragmas (SQLite 3.16+): every foreign key of every table in one query.
_SQLITE = text("""
SELECT NULL, m.name, p.id, p."from", p."to"
FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) p
WHERE m.type = 'table' AND lower(p."table") = lower(:table) AND upper(p.on_delete) IN ('NO ACTION', 'RESTRICT')
ORDER BY m.name, p.id, p.seq
""")


async def references_to(conn: AsyncConnection, entity: EntitySnapshot) -> list[Reference]:
    """The foreign keys that keep a row of the entity's table from being deleted while they point at it."""
    query = {"postgresql": _POSTGRESQL, "mysql": _MYSQL}.get(conn.dialect.name, _SQLITE)
    grouped: dict[tuple[Any, ...], tuple[list[str], list[str]]] = {}
    for schema, table_name, constraint, child_column, parent_column in await conn.execute(
        query, {"table": entity.table.name}
    ):
        columns, referred = grouped.setdefault((schema, table_name, constraint), ([], []))
        columns.append(child_column)
        referred.append(parent_column)
    primary_key = [c.name for c in entity.table.primary_key.columns]
    found = []
    for (schema, table_name, _), (columns, referred) in grouped.items():
        if any(name is None for name in referred):  # SQLite: `REFERENCES parent` means its primary key
            referred = primary_key
        if len(referred) == len(columns) and all(name in entity.table.c for name in referred):
            found.append(Reference(schema, table_name, tuple(columns), tuple(referred)))
    return found


async def blocked_keys(
    conn: AsyncConnection, entity: EntitySnapshot, keys: Sequence[Any]
) -> dict[Any, list[Reference]]:
    """Of ``keys`` (identifiers of rows about to be deleted together), those still referenced, in key order,
    each with the foreign keys that reference it."""
    outside: dict[Any, list[Reference]] = {}
    inside: dict[Any, list[Reference]] = {}  # referenced only by rows of the same delete
    deleted = set(keys)
    identifier = entity.identifier.column.name
    for reference in await references_to(conn, entity):
        parent = entity.table.alias("p")
        self_reference = reference.schema is None and reference.table == entity.table.name
        if self_reference:
            child: Any = entity.table.alias("c")
        else:
            child = table(reference.table, *(column(c) for c in reference.columns), schema=reference.schema).alias("c")
        on = and_(*(child.c[c] == parent.c[p] for c, p in zip(reference.columns, reference.referred, strict=True)))
        selected = [parent.c[identifier]] + ([child.c[identifier]] if self_reference else [])
        statement = (
            select(*selected)
            .distinct()
            .select_from(parent.join(child, on))
            .where(parent.c[identifier].in_(bindparam("keys", expanding=True)))
        )
        for start in range(0, len(keys), KEYS_PER_QUERY):
            for row in await conn.execute(statement, {"keys": list(keys[start : start + KEYS_PER_QUERY])}):
                into = inside if self_reference and row[1] in deleted else outside
                found = into.setdefault(row[0], [])
                if reference not in found:
                    found.append(reference)
    chosen = outside or inside
    ordered = {key: chosen[key] for key in keys if key in chosen}
    ordered.update({key: refs for key, refs in chosen.items() if key not in ordered})
    return ordered
