"""The snapshot: an immutable, versioned view of every active entity, ready for the hot path.

Fed by the stored configuration and the reflected tables; feeds every request (read once per request, never
changed after it is built). Everything that does not depend on the request is worked out here, once: the
``Column`` behind each visible name, codecs, the select list, relation wiring, and the row renderer.

An active entity whose configuration no longer fits its table (column dropped, row edited by hand) is listed
in ``unavailable`` with its problems instead of being served; every other entity keeps working.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import Column, PrimaryKeyConstraint, Table, UniqueConstraint
from sqlalchemy import types as sqltypes
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.fields import CODECS, Check, Codec, FieldType, Parse, Render, Unrenderable, describe_rules
from dxapi.registry.checks import check_entities
from dxapi.registry.model import UPDATED_AT, EntityConfig, FieldConfig
from dxapi.registry.statements import Statements
from dxapi.registry.store import load_entities, read_version
from dxapi.schema.reflect import reflect_tables

log = logging.getLogger("dxapi.render")


@dataclass(frozen=True, slots=True)
class FieldSnapshot:
    name: str
    column: Column[Any]
    type: FieldType
    codec: Codec  # what the type knows (operators, schema, SQL form): fields.CODECS[type]
    config: FieldConfig
    parse: Parse  # URL text (filters, /{id}) → bound value, or ValueError (fields.Invalid)
    check: Check  # JSON body value → bound value, or fields.Invalid
    rules_text: str  # Spryker's "Field rules: …" text for 1306
    db_required: bool  # NOT NULL and nothing fills it in: an insert without it must fail


@dataclass(frozen=True, slots=True)
class Stamp:
    """A column dxapi sets to the database's clock itself (a field's ``autoValue``), on insert, and on update
    when ``on_update`` (``updatedAt``); ``day``: a date field, which gets the current (UTC) day."""

    column: Column[Any]
    day: bool
    on_update: bool


@dataclass(frozen=True, slots=True)
class RelationSnapshot:
    name: str
    child_alias: str
    parent_field: FieldSnapshot
    child_field: FieldSnapshot
    is_editable: bool


@dataclass(frozen=True, slots=True)
class EntitySnapshot:
    alias: str
    table: Table
    config: EntityConfig
    fields: tuple[FieldSnapshot, ...]
    by_name: Mapping[str, FieldSnapshot]
    identifier: FieldSnapshot
    relations: Mapping[str, RelationSnapshot]
    columns: tuple[Column[Any], ...]
    names: tuple[str, ...]
    renderers: tuple[tuple[str, Render], ...]
    by_column: Mapping[str, FieldSnapshot]
    serial_identifier: bool  # a single integer primary key the database generates
    unique_keys: Mapping[str, tuple[str, ...]]  # constraint/index name → column names (for 1309 paths)
    # For the write rules (plan.decide), worked out once: the fields an insert must be given (configured as
    # required, or NOT NULL with nothing to fill them in) and the columns a client may not set on create.
    must_give: tuple[FieldSnapshot, ...]
    not_creatable: frozenset[str]
    # The columns every INSERT (all `autoValue` fields) and every UPDATE (`updatedAt`) sets from the database
    # clock: part of the entity's write statements, so the statement caches below need no key for them.
    insert_stamps: tuple[Stamp, ...]
    update_stamps: tuple[Stamp, ...]
    # Statements by shape, filled on first use: the same request pattern never builds or compiles its SQL
    # twice. Reads and writes apart, so neither evicts the other; they live and die with the snapshot.
    read_statements: Statements[Any] = dataclasses.field(default_factory=Statements, compare=False)
    write_statements: Statements[Any] = dataclasses.field(default_factory=Statements, compare=False)

    # Fields already reported as holding a value that cannot be answered (one WARNING per field and snapshot).
    unrenderable: set[str] = dataclasses.field(default_factory=set, compare=False)

    def render_row(self, row: Sequence[Any]) -> dict[str, Any]:
        """A result row (columns in ``columns`` order) → the API object, keys in configured order.

        A value no answer can carry (``fields.Unrenderable``: JSON too deep or not JSON at all, written by
        another application) is served as null: one bad row must not take the whole collection down, nor turn
        a committed write into a 500.
        """
        item = dict(zip(self.names, row, strict=True))
        for name, render in self.renderers:
            try:
                item[name] = render(item[name])
            except Unrenderable as problem:
                item[name] = None
                self._report(name, item, problem)
        return item

    def render_fields(
        self, row: Sequence[Any], names: Sequence[str], renderers: Sequence[tuple[str, Render]]
    ) -> dict[str, Any]:
        """:meth:`render_row` for a row of some fields only (``fields[...]``): the columns ``names``, of which
        those in ``renderers`` are rendered (a subset of ``self.renderers``)."""
        item = dict(zip(names, row, strict=True))
        for name, render in renderers:
            try:
                item[name] = render(item[name])
            except Unrenderable as problem:
                item[name] = None
                self._report(name, item, problem)
        return item

    def _report(self, name: str, item: Mapping[str, Any], problem: Unrenderable) -> None:
        if name not in self.unrenderable:
            self.unrenderable.add(name)
            log.warning(
                "`%s`.`%s` of the row `%s` cannot be answered (%s); served as null",
                self.alias,
                name,
                item.get(self.identifier.name),
                problem,
            )


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    entities: Mapping[str, EntitySnapshot]
    unavailable: Mapping[str, tuple[str, ...]]

    @property
    def problems(self) -> list[str]:
        return [p for found in self.unavailable.values() for p in found]


EMPTY = Snapshot(version=0, entities=MappingProxyType({}), unavailable=MappingProxyType({}))


async def load_snapshot(engine: AsyncEngine, deny: Iterable[str] = ()) -> Snapshot:
    """Read version, configuration and schema, and build the snapshot from them."""
    async with engine.connect() as conn:
        version = await read_version(conn)
        configs, broken = await load_entities(conn)
        active = [c for c in configs if c.is_active]
        names = {c.table_name for c in active}
        deny = list(deny)
        tables = await conn.run_sync(lambda sync: reflect_tables(sync, names, deny))
    snapshot = build_snapshot(version, active, tables, deny, backend=engine.dialect.name)
    broken_active = {alias: tuple(found) for alias, found in broken.items()}
    return dataclasses.replace(snapshot, unavailable=MappingProxyType({**snapshot.unavailable, **broken_active}))


def build_snapshot(
    version: int,
    active: Sequence[EntityConfig],
    tables: Mapping[str, Table],
    deny: Iterable[str] = (),
    backend: str = "sqlite",
) -> Snapshot:
    # Relations are wired below, once the children are known to be servable; an inactive or broken child
    # only removes the relation, it must not take the parent down.
    without_relations = [dataclasses.replace(c, relations=()) for c in active]
    problems = check_entities(without_relations, tables, deny)
    entities: dict[str, EntitySnapshot] = {}
    for config in active:
        if config.alias not in problems:
            entities[config.alias] = _build_entity(config, tables[config.table_name], backend)
    for alias, entity in entities.items():
        relations = {}
        for r in entity.config.relations:
            child = entities.get(r.child_alias)
            parent_field = _field_by_column(entity, r.parent_field)
            child_field = _field_by_column(child, r.child_field) if child else None
            if child and parent_field and child_field:
                relations[r.name] = RelationSnapshot(r.name, r.child_alias, parent_field, child_field, r.is_editable)
        entities[alias] = dataclasses.replace(entity, relations=MappingProxyType(relations))
    return Snapshot(
        version=version,
        entities=MappingProxyType(entities),
        unavailable=MappingProxyType({alias: tuple(found) for alias, found in problems.items()}),
    )


def _field_by_column(entity: EntitySnapshot, column_name: str) -> FieldSnapshot | None:
    return next((f for f in entity.fields if f.column.name == column_name), None)


def _build_entity(config: EntityConfig, table: Table, backend: str) -> EntitySnapshot:
    fields = tuple(_build_field(f, table.columns[f.field_name], backend) for f in config.enabled_fields)
    by_name = {f.name: f for f in fields}
    identifier = next(f for f in fields if f.column.name == config.identifier)
    renderers = tuple((f.name, render) for f in fields if (render := f.codec.renderer(f.column)) is not None)
    stamps = tuple(
        Stamp(f.column, f.type is FieldType.DATE, f.config.auto_value == UPDATED_AT)
        for f in fields
        if f.config.auto_value is not None
    )
    return EntitySnapshot(
        alias=config.alias,
        table=table,
        config=config,
        fields=fields,
        by_name=MappingProxyType(by_name),
        identifier=identifier,
        relations=MappingProxyType({}),
        columns=tuple(f.column for f in fields),
        names=tuple(f.name for f in fields),
        renderers=renderers,
        by_column=MappingProxyType({f.column.name: f for f in fields}),
        serial_identifier=_generated_key(identifier.column),
        unique_keys=MappingProxyType(_unique_keys(table)),
        must_give=tuple(f for f in fields if f is not identifier and (f.config.rules.is_required or f.db_required)),
        not_creatable=frozenset(f.column.name for f in fields if not f.config.is_creatable),
        insert_stamps=stamps,
        update_stamps=tuple(s for s in stamps if s.on_update),
    )


def _unique_keys(table: Table) -> dict[str, tuple[str, ...]]:
    keys: dict[str, tuple[str, ...]] = {}
    for constraint in table.constraints:
        if isinstance(constraint, (UniqueConstraint, PrimaryKeyConstraint)) and constraint.name:
            keys[str(constraint.name)] = tuple(c.name for c in constraint.columns)
    for index in table.indexes:
        if index.unique and index.name:
            keys[str(index.name)] = tuple(c.name for c in index.columns if isinstance(c, Column))
    # MariaDB names the primary key `PRIMARY` in its messages.
    keys.setdefault("PRIMARY", tuple(c.name for c in table.primary_key.columns))
    return keys


def _build_field(config: FieldConfig, column: Column[Any], backend: str) -> FieldSnapshot:
    codec = CODECS[config.type]
    codec.adapt(column)
    return FieldSnapshot(
        name=config.visible_name,
        column=column,
        type=config.type,
        codec=codec,
        config=config,
        parse=codec.parser(column, backend),
        check=codec.checker(config.rules, column, backend),
        rules_text=describe_rules(config.rules),
        db_required=config.auto_value is None and _db_required(column),  # dxapi fills an autoValue in
    )


def _db_required(column: Column[Any]) -> bool:
    if column.nullable or column.server_default is not None or column.default is not None:
        return False
    return not _generated_key(column)


def _generated_key(column: Column[Any]) -> bool:
    """A single integer primary key is generated by every backend (SERIAL, AUTO_INCREMENT, ROWID)."""
    return bool(
        column.primary_key
        and len(column.table.primary_key.columns) == 1
        and isinstance(column.type, sqltypes.Integer)
        and column.autoincrement in (True, "auto")
    )
