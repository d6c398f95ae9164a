"""The configuration store: load, save, import and export entity configurations in the ``dx_*`` tables.

Fed by the CLI, the admin page and the snapshot builder; writes go through :func:`save_entities`, which
validates the whole resulting configuration against the live schema, writes rows, audit entries and the
version bump in **one** transaction — all or nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi.registry.capture import sync_captures
from dxapi.registry.checks import check_entities
from dxapi.registry.installer import entry_to_json, parse_entry
from dxapi.registry.model import ConfigError, EntityConfig, RelationConfig
from dxapi.registry.tables import dx_audit, dx_config_version, dx_entity, dx_relation, metadata
from dxapi.schema.reflect import reflect_tables

NOTIFY_CHANNEL = "dxapi_config"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


async def ensure_schema(engine: AsyncEngine) -> None:
    """Create dxapi's own tables and the version row when missing, and add columns and indexes that newer
    versions introduced to tables created by older ones (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(_add_missing_columns)
        exists = (await conn.execute(select(dx_config_version.c.id))).first()
        if exists is None:
            await conn.execute(insert(dx_config_version).values(id=1, version=1, changed_at=_now()))


def _add_missing_columns(conn: Connection) -> None:
    inspector = inspect(conn)
    preparer = conn.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                assert column.nullable, f"{table.name}.{column.name}: new columns must be nullable"
                kind = column.type.compile(dialect=conn.dialect)
                # Names and types come from dxapi's own table definitions above, never from input.
                conn.exec_driver_sql(
                    f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {preparer.quote(column.name)} {kind}"
                )
        indexed = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexed:
                index.create(conn)


async def read_version(conn: AsyncConnection) -> int:
    version = (await conn.execute(select(dx_config_version.c.version).where(dx_config_version.c.id == 1))).scalar()
    return int(version or 0)


async def load_entities(conn: AsyncConnection) -> tuple[list[EntityConfig], dict[str, list[str]]]:
    """Every stored configuration (active or not) ordered by alias, and the rows that do not parse.

    A row written around dxapi (straight SQL) may be malformed: it is reported by alias instead of failing
    the whole load, so every other entity keeps working.
    """
    rows = (await conn.execute(select(dx_entity).order_by(dx_entity.c.table_alias))).mappings().all()
    alias_by_id = {row["id"]: row["table_alias"] for row in rows}
    relations: dict[int, list[RelationConfig]] = {}
    for rel in (await conn.execute(select(dx_relation).order_by(dx_relation.c.id))).mappings():
        relations.setdefault(rel["parent_entity_id"], []).append(
            RelationConfig(
                name=rel["name"],
                child_alias=alias_by_id[rel["child_entity_id"]],
                is_editable=bool(rel["is_editable"]),
                parent_field=rel["parent_field"],
                child_field=rel["child_field"],
            )
        )
    configs = []
    broken: dict[str, list[str]] = {}
    for row in rows:
        entry = {
            "tableName": row["table_name"],
            "tableAlias": row["table_alias"],
            "isActive": bool(row["is_active"]),
            "definition": _loads_or_none(row["definition"]),
        }
        config, problems = parse_entry(entry, f"`{row['table_alias']}`")
        if config is None:
            broken[row["table_alias"]] = problems
            continue
        configs.append(dataclasses.replace(config, relations=tuple(relations.get(row["id"], ()))))
    return configs, broken


def _loads_or_none(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def parse_import(document: Any) -> list[EntityConfig]:
    """Parse an installer-format document (a JSON array); raise ConfigError listing every problem."""
    configs, problems = parse_import_leniently(document)
    if problems:
        raise ConfigError(problems)
    return configs


def parse_import_leniently(document: Any) -> tuple[list[EntityConfig], list[str]]:
    """The entries that parse, and the problems of those that do not (so both can be reported at once)."""
    if not isinstance(document, list):
        return [], ["the configuration file must hold a JSON array of entries"]
    configs: list[EntityConfig] = []
    problems: list[str] = []
    for index, entry in enumerate(document):
        config, found = parse_entry(entry, f"entry[{index}]")
        problems.extend(found)
        if config is not None and not found:
            configs.append(config)
    return configs, problems


async def check_against_schema(
    conn: AsyncConnection, configs: Sequence[EntityConfig], deny: Iterable[str] = ()
) -> dict[str, list[str]]:
    names = {c.table_name for c in configs}
    deny = list(deny)
    tables = await conn.run_sync(lambda sync: reflect_tables(sync, names, deny))
    return check_entities(configs, tables, deny)


async def save_entities(
    engine: AsyncEngine, changed: Sequence[EntityConfig], *, actor: str, action: str, deny: Iterable[str] = ()
) -> int:
    """Upsert ``changed`` by alias, validated together with everything already stored; return the new version.

    Nothing is written unless the whole resulting configuration passes every check.
    """
    async with engine.begin() as conn:
        current = await _check_change(conn, changed, deny, earlier_problems=[])
        await conn.run_sync(lambda sync: _write_entities(sync, changed, current, actor, action))
        version = await _bump_version(conn)
        merged = list({**current, **{c.alias: c for c in changed}}.values())
        if engine.dialect.name != "mysql":  # transactional DDL: the capture changes with the configuration
            await conn.run_sync(sync_captures, merged)
    if engine.dialect.name == "mysql":  # DDL commits on its own there: right after the configuration
        try:
            async with engine.begin() as conn:
                await conn.run_sync(sync_captures, merged)
        except DBAPIError as exc:
            raise ConfigError(
                [
                    f"the configuration was saved, but installing the change capture failed ({exc.orig}); "
                    "grant TRIGGER, CREATE and PROCESS and run `dxapi init`"
                ]
            ) from None
    return version


async def check_change(
    engine: AsyncEngine, changed: Sequence[EntityConfig], deny: Iterable[str] = (), earlier_problems: Sequence[str] = ()
) -> None:
    """Raise ConfigError with ``earlier_problems`` plus everything saving ``changed`` would refuse."""
    async with engine.connect() as conn:
        initialised = await conn.run_sync(lambda sync: inspect(sync).has_table(dx_entity.name))
        if not initialised:  # nothing stored yet: check the change on its own
            found = await check_against_schema(conn, changed, deny)
            raise ConfigError([*earlier_problems, *(p for ps in found.values() for p in ps)])
        await _check_change(conn, changed, deny, list(earlier_problems))


async def _check_change(
    conn: AsyncConnection, changed: Sequence[EntityConfig], deny: Iterable[str], earlier_problems: list[str]
) -> dict[str, EntityConfig]:
    problems = list(earlier_problems)
    repeated = sorted({c.alias for c in changed if sum(o.alias == c.alias for o in changed) > 1})
    problems += [f"`{alias}`: the alias appears more than once in the same change" for alias in repeated]
    stored, _broken = await load_entities(conn)
    current = {c.alias: c for c in stored}
    merged = {**current, **{c.alias: c for c in changed}}
    # Refused: problems of the entities being saved, and new problems of stored ones that the change
    # breaks (a relation now pointing at a renamed alias). A stored entity that was broken already (a column
    # dropped by hand) must not block unrelated saves; it stays broken and is reported elsewhere.
    after = await check_against_schema(conn, list(merged.values()), deny)
    before = await check_against_schema(conn, stored, deny) if after else {}
    changed_aliases = {c.alias for c in changed}
    for alias, alias_problems in after.items():
        known = set(before.get(alias, ())) if alias not in changed_aliases else set()
        problems += [p for p in alias_problems if p not in known]
    if problems:
        raise ConfigError(problems)
    return current


def _write_entities(
    conn: Connection,
    changed: Sequence[EntityConfig],
    current: dict[str, EntityConfig],
    actor: str,
    action: str,
) -> None:
    now = _now()
    stored_aliases = set(conn.execute(select(dx_entity.c.table_alias)).scalars())
    for config in changed:
        values = {
            "table_name": config.table_name,
            "is_active": config.is_active,
            "definition": orjson.dumps(entry_to_json(config)["definition"]).decode(),
            "updated_at": now,
            "updated_by": actor,
        }
        if config.alias in stored_aliases:
            conn.execute(update(dx_entity).where(dx_entity.c.table_alias == config.alias).values(**values))
        else:
            conn.execute(insert(dx_entity).values(table_alias=config.alias, created_at=now, **values))
    ids: dict[str, int] = {alias: id_ for alias, id_ in conn.execute(select(dx_entity.c.table_alias, dx_entity.c.id))}
    for config in changed:
        conn.execute(delete(dx_relation).where(dx_relation.c.parent_entity_id == ids[config.alias]))
        for r in config.relations:
            conn.execute(
                insert(dx_relation).values(
                    parent_entity_id=ids[config.alias],
                    child_entity_id=ids[r.child_alias],
                    name=r.name,
                    is_editable=r.is_editable,
                    parent_field=r.parent_field,
                    child_field=r.child_field,
                )
            )
        before = current.get(config.alias)
        conn.execute(
            insert(dx_audit).values(
                at=now,
                actor=actor,
                action=action if before else "create",
                table_alias=config.alias,
                before=orjson.dumps(entry_to_json(before)).decode() if before else None,
                after=orjson.dumps(entry_to_json(config)).decode(),
            )
        )


async def _bump_version(conn: AsyncConnection) -> int:
    """Bump the version in the caller's transaction; on PostgreSQL also NOTIFY, delivered at commit."""
    await conn.execute(
        update(dx_config_version)
        .where(dx_config_version.c.id == 1)
        .values(version=dx_config_version.c.version + 1, changed_at=_now())
    )
    version = await read_version(conn)
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, str(version))))
    return version


async def export_entities(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        configs, broken = await load_entities(conn)
    if broken:
        raise ConfigError([p for found in broken.values() for p in found])
    return [entry_to_json(c) for c in configs]
