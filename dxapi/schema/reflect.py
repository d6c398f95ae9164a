"""Reflection: read the real tables behind the configuration, and nothing else.

Fed by a synchronous SQLAlchemy connection (the async engine's ``run_sync``); feeds configuration validation
and the snapshot. A fresh Inspector per call, so a rebuild always sees the schema as it is now.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, MetaData, Table, inspect

# Never exposed, whatever the configuration says: dxapi's own tables and the catalogs of each backend.
BUILTIN_DENIED_PREFIXES = ("dx_", "sqlite_", "pg_")
BUILTIN_DENIED_NAMES = frozenset({"information_schema"})


def is_denied(table_name: str, extra: Iterable[str] = ()) -> bool:
    lowered = table_name.lower()
    if lowered.startswith(BUILTIN_DENIED_PREFIXES) or lowered in BUILTIN_DENIED_NAMES:
        return True
    return lowered in {name.lower() for name in extra}


def load_table_names(conn: Connection) -> list[str]:
    """Tables and views of the default schema, sorted."""
    inspector = inspect(conn)
    return sorted([*inspector.get_table_names(), *inspector.get_view_names()])


def reflect_tables(conn: Connection, names: Iterable[str]) -> dict[str, Table]:
    """Reflect the named tables that exist; missing names are simply absent from the result."""
    wanted = set(names)
    existing = [name for name in load_table_names(conn) if name in wanted]
    metadata = MetaData()
    if existing:
        metadata.reflect(bind=conn, only=existing, views=True, resolve_fks=False)
    return {name: metadata.tables[name] for name in existing}
