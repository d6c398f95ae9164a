"""Reflection: read the real tables behind the configuration, and nothing else.

Fed by a synchronous SQLAlchemy connection (the async engine's ``run_sync``); feeds configuration validation
and the snapshot. A fresh Inspector per call, so a rebuild always sees the schema as it is now.

A reflected view carries, in ``Table.info``, the denied tables it reads (directly or through other views):
from the dependency catalog where the database has one (PostgreSQL), otherwise from the text of its definition
(SQLite, MariaDB), where every mention of a denied name counts, quoted or not, in any letter case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from sqlalchemy import Connection, MetaData, Table, inspect, text

# Never exposed, whatever the configuration says: dxapi's own tables and the catalogs of each backend.
BUILTIN_DENIED_PREFIXES = ("dx_", "sqlite_", "pg_")
BUILTIN_DENIED_NAMES = frozenset({"information_schema"})
# Schemas of the catalogs: anything a view reads from them is denied.
CATALOG_SCHEMAS = frozenset({"information_schema", "pg_catalog", "mysql", "performance_schema", "sys"})
T = TypeVar("T")
_VIEW_READS = "dxapi.view_reads"  # Table.info key: the denied tables a view reads, or None (unknown)


def is_denied(table_name: str, extra: Iterable[str] = ()) -> bool:
    lowered = table_name.lower()
    if lowered.startswith(BUILTIN_DENIED_PREFIXES) or lowered in BUILTIN_DENIED_NAMES:
        return True
    return lowered in {name.lower() for name in extra}


def is_view(table: Table) -> bool:
    return _VIEW_READS in table.info


def denied_reads(table: Table) -> tuple[str, ...] | None:
    """The denied tables a reflected view reads; ``()`` for a table or a harmless view, None when the view's
    definition could not be read (to be treated as denied)."""
    found: tuple[str, ...] | None = table.info.get(_VIEW_READS, ())
    return found


def load_table_names(conn: Connection, views: bool = True) -> list[str]:
    """Tables (and views, unless ``views`` is false) of the default schema, sorted."""
    inspector = inspect(conn)
    return sorted([*inspector.get_table_names(), *(inspector.get_view_names() if views else ())])


def reflect_tables(conn: Connection, names: Iterable[str], deny: Iterable[str] = ()) -> dict[str, Table]:
    """Reflect the named tables that exist; missing names are simply absent from the result. Views are marked
    with the denied tables they read (``deny`` adds to the built-in deny-list)."""
    inspector = inspect(conn)
    views = set(inspector.get_view_names())
    present = views | set(inspector.get_table_names())
    existing = sorted(name for name in set(names) if name in present)
    metadata = MetaData()
    if existing:
        metadata.reflect(bind=conn, only=existing, views=True, resolve_fks=False)
    tables = {name: metadata.tables[name] for name in existing}
    wanted_views = [name for name in existing if name in views]
    if wanted_views:
        reads = view_denied_reads(conn, wanted_views, list(deny))
        for name in wanted_views:
            tables[name].info[_VIEW_READS] = reads.get(name)
    return tables


def view_denied_reads(
    conn: Connection, views: Iterable[str], deny: Iterable[str] = ()
) -> dict[str, tuple[str, ...] | None]:
    """For each named view of the default schema: the denied tables it reads, sorted and in lower case
    (``()``: none; None: its definition cannot be read)."""
    deny = list(deny)
    if conn.dialect.name == "postgresql":
        return _catalog_reads(conn, views, deny)
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'view'")).all()
        definitions = {str(name): sql for name, sql in rows}
    elif conn.dialect.name in ("mysql", "mariadb"):
        definitions = _mariadb_definitions(conn)
    else:
        return {}  # unknown backend: every view counts as unreadable
    return _text_reads(definitions, views, deny)


# --- PostgreSQL: the dependency catalog -----------------------------------------------------------------------

# Every relation each view (or materialized view) reads according to its rewrite rule; the catalogs' own views
# are left out (whatever reads them is denied anyway).
_PG_VIEW_READS = text("""
SELECT vn.nspname, v.relname, tn.nspname, t.relname
FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
     AND d.refclassid = 'pg_catalog.pg_class'::regclass
JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
WHERE v.relkind IN ('v', 'm') AND t.oid <> v.oid
  AND vn.nspname NOT IN ('pg_catalog', 'information_schema')
""")


def _catalog_reads(conn: Connection, views: Iterable[str], deny: list[str]) -> dict[str, tuple[str, ...] | None]:
    schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
    edges: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for view_schema, view, read_schema, read in conn.execute(_PG_VIEW_READS):
        edges.setdefault((view_schema, view), set()).add((read_schema, read))

    def denied(node: tuple[str, str]) -> str | None:
        read_schema, read = node
        if is_denied(read, deny):
            return read.lower()
        if read_schema.lower() in CATALOG_SCHEMAS or read_schema.lower().startswith("pg_"):
            return f"{read_schema}.{read}".lower()
        return None

    def step(node: tuple[str, str]) -> tuple[set[str], set[tuple[str, str]]]:
        reads = edges.get(node, set())
        return {name for r in reads if (name := denied(r)) is not None}, {r for r in reads if denied(r) is None}

    return {view: _walk((schema, view), step) for view in views}


def _walk(start: T, step: Callable[[T], tuple[set[str], set[T]] | None]) -> tuple[str, ...] | None:
    """Follow what ``start`` reads, view by view; ``step`` gives the denied names one view reads directly and
    the relations to follow, or None when its definition cannot be read. The denied names found, or None
    when nothing denied was found but some definition on the way could not be read."""
    found: set[str] = set()
    unknown = False
    seen = {start}
    todo = [start]
    while todo:
        direct = step(todo.pop())
        if direct is None:
            unknown = True
            continue
        denied, further = direct
        found |= denied
        for node in further - seen:
            seen.add(node)
            todo.append(node)
    return tuple(sorted(found)) if found or not unknown else None


# --- SQLite and MariaDB: the text of the definition -----------------------------------------------------------

_WORD = r"[\w$]"
_BUILTIN_MENTION = re.compile(rf"(?<!{_WORD})(?:dx_|sqlite_|pg_){_WORD}*", re.IGNORECASE)
_CATALOG_MENTION = re.compile(
    rf"(?<!{_WORD})[`\"\[]?({'|'.join(sorted(CATALOG_SCHEMAS))})[`\"\]]?\s*\.\s*[`\"\[]?({_WORD}+)", re.IGNORECASE
)


def _mariadb_definitions(conn: Connection) -> dict[str, str | None]:
    """View name → definition, for every view the connection may see outside the catalogs (MariaDB leaves
    the definition empty without the SHOW VIEW privilege: unreadable). The qualifier of the current database
    is dropped, so that a database name is never taken for a table a view reads."""
    database = str(conn.execute(text("SELECT DATABASE()")).scalar_one())
    qualifier = re.compile(rf"`{re.escape(database.replace('`', '``'))}`\s*\.")
    rows = conn.execute(text("SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS")).all()
    texts: dict[str, list[str]] = {}
    for schema, name, definition in rows:
        if str(schema).lower() in CATALOG_SCHEMAS:
            continue  # whatever reads the catalogs is denied anyway
        found = texts.setdefault(str(name), [])
        if definition:
            found.append(qualifier.sub("", definition))
    # A mention names a view without saying of which database: it reads what any view of that name reads.
    return {name: "\n".join(found) if found else None for name, found in texts.items()}


def _mentions(definition: str, deny: list[str]) -> set[str]:
    found = {m.group(0).lower() for m in _BUILTIN_MENTION.finditer(definition)}
    found |= {f"{m.group(1)}.{m.group(2)}".lower() for m in _CATALOG_MENTION.finditer(definition)}
    for name in deny:
        if re.search(rf"(?<!{_WORD}){re.escape(name)}(?!{_WORD})", definition, re.IGNORECASE):
            found.add(name.lower())
    return found


def _text_reads(
    definitions: Mapping[str, str | None], views: Iterable[str], deny: list[str]
) -> dict[str, tuple[str, ...] | None]:
    """A view reads whatever its definition mentions, and whatever the views it mentions read."""
    by_lower = {name.lower(): name for name in definitions}

    def step(view: str) -> tuple[set[str], set[str]] | None:
        definition = definitions.get(view)
        if definition is None:
            return None
        lowered = definition.lower()
        words = set(re.findall(rf"{_WORD}+", lowered))
        further = {
            name
            for key, name in by_lower.items()
            if name != view
            and (
                key in words
                if re.fullmatch(rf"{_WORD}+", key)
                else re.search(rf"(?<!{_WORD}){re.escape(key)}(?!{_WORD})", lowered)
            )
        }
        return _mentions(definition, deny), further

    return {view: _walk(view, step) for view in views}
