"""Executing writes: a ``WritePlan`` → saved rows, all or nothing by default.

Per relation level the work is set-based: one ``SELECT … WHERE id IN (…)`` to learn which rows exist
(PATCH/PUT), one multi-row ``INSERT … RETURNING`` per group of items sending the same columns, one
executemany ``UPDATE`` per group, one ``SELECT`` to read the updated rows back. Children are written after
their parents with the parent-key column taken from the saved parent row.

Transactional (default): the whole request is one transaction; any problem → rollback and every error of
every item is returned. When the database refuses the batch (unique key, foreign key …) the batch is replayed
item by item under savepoints — still rolled back — only to name each failing item precisely; the replay writes
each row alone (``precise``), so a refused nested child is named at its own path.

Per item (``X-Is-Transactional: false``): valid items are first written together in one transaction; if
that fails, each root item is written in its own transaction, and the response lists what was saved and
what was not. A deadlock or serialization failure is retried once, then answered 409.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi import errors
from dxapi.dberrors import (
    CONFLICT,
    FOREIGN_KEY,
    NOT_NULL,
    REFERENCED,
    SCHEMA,
    UNAVAILABLE,
    UNIQUE,
    VALUE,
    DbProblem,
    classify,
    database_errors,
)
from dxapi.errors import ErrorItem
from dxapi.execute.references import Reference, blocked_keys
from dxapi.plan.types import Condition
from dxapi.plan.write import INSERT, PATCH, POST, PUT, Action, ItemPlan, WritePlan, decide
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot
from dxapi.sql.build import (
    build_delete,
    build_existing,
    build_insert,
    build_matching_keys,
    build_select_by_keys,
    build_update,
    condition_parameters,
    selected,
)

log = logging.getLogger("dxapi.execute")

STATEMENTS_PER_ENTITY = 256

KEYS_PER_QUERY = 2000

OTHER_ROWS = "Other rows reference it."  # 1317 without naming a table or an entity the caller may not know


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    saved: list[dict[str, Any]]
    errors: list[ErrorItem]


class _Refused(Exception):
    """Items refused while writing (rules that needed the database, or a translated database error)."""

    def __init__(self, items: list[ErrorItem]) -> None:
        super().__init__(items[0].message)
        self.items = items


class _Retry(Exception):
    pass


async def execute_write(engine: AsyncEngine, plan: WritePlan, autocommit: AsyncEngine | None = None) -> WriteOutcome:
    """``autocommit`` (the same pool without BEGIN/COMMIT, PostgreSQL) serves writes that are one statement
    — a single item without children, POST or PATCH — which are atomic on their own."""
    one_statement = plan.method in (POST, PATCH) and len(plan.items) == 1 and not plan.items[0].children
    target = autocommit if one_statement and autocommit is not None else engine
    async with database_errors():
        for attempt in (1, 2):
            try:
                if plan.transactional:
                    return await _transactional(target, plan)
                return await _per_item(engine, plan)
            except _Retry:
                if attempt == 2:
                    raise errors.WRITE_CONFLICT.error() from None
                log.info("write conflict on `%s`; retrying once", plan.entity.alias)
    raise AssertionError("unreachable")


async def _transactional(engine: AsyncEngine, plan: WritePlan) -> WriteOutcome:
    if plan.errors:
        # The body already has problems: add what only the database can tell about the other items (missing
        # rows, PUT-create rules) so the client gets every error at once, then stop — nothing is written.
        found = dict(plan.errors)
        async with engine.connect() as conn:
            valid = [item for item in plan.items if item.index not in plan.errors]
            for item, problems in await _root_rule_problems(conn, plan, valid):
                found.setdefault(item.index, []).extend(problems)
        raise errors.ApiError([e for index in sorted(found) for e in found[index]])
    try:
        async with engine.begin() as conn:
            return WriteOutcome(await _write_level(conn, plan.entity, plan.method, list(plan.items)), [])
    except _Refused as refused:
        raise errors.ApiError(refused.items) from None
    except sa_exc.DBAPIError as exc:
        _reraise_if_global(exc)
    # The database refused the batch: replay item by item, rolled back, to name every failing item.
    problems = []
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            for item in plan.items:
                outcome = await _try_item(conn, plan, item, savepoint=True)
                if isinstance(outcome, list):
                    problems.extend(outcome)
        finally:
            await transaction.rollback()
    raise errors.ApiError(problems or [errors.PERSISTENCE_FAILED(path=plan.entity.alias)])


async def _per_item(engine: AsyncEngine, plan: WritePlan) -> WriteOutcome:
    valid = [item for item in plan.items if item.index not in plan.errors]
    found: dict[int, list[ErrorItem]] = dict(plan.errors)
    saved: dict[int, dict[str, Any]] = {}
    if valid:
        try:
            async with engine.begin() as conn:
                rows = await _write_level(conn, plan.entity, plan.method, valid)
            saved = {item.index: row for item, row in zip(valid, rows, strict=True)}
        except (_Refused, sa_exc.DBAPIError) as exc:
            if isinstance(exc, sa_exc.DBAPIError):
                _reraise_if_global(exc)
            # Each root item with its children on its own: a savepoint each, so a failing item is undone
            # alone; one commit at the end, so a crash half-way leaves nothing the client was not told of.
            async with engine.begin() as conn:
                for item in valid:
                    outcome = await _try_item(conn, plan, item, savepoint=True)
                    if isinstance(outcome, dict):
                        saved[item.index] = outcome
                    else:
                        found.setdefault(item.index, []).extend(outcome)
    return WriteOutcome(
        [saved[i] for i in sorted(saved)], [e for index in sorted(found) for e in found[index]]
    )


async def _try_item(conn: AsyncConnection, plan: WritePlan, item: ItemPlan, *, savepoint: bool) -> Any:
    """Write one root item; return its saved row, or its problems (the caller rolls back).

    Under a savepoint a failed item is undone alone and the items that worked stay in the (outer)
    transaction, so a later item duplicating an earlier one of the same batch is found too.
    """
    try:
        if savepoint:
            async with conn.begin_nested():
                rows = await _write_level(conn, plan.entity, plan.method, [item], precise=True)
        else:
            rows = await _write_level(conn, plan.entity, plan.method, [item], precise=True)
        return rows[0]
    except _Refused as refused:
        return refused.items
    except sa_exc.DBAPIError as exc:
        _reraise_if_global(exc)
        return [_translate(classify(exc), plan.entity, item.path)]


def _reraise_if_global(exc: sa_exc.DBAPIError) -> None:
    kind = classify(exc).kind
    if kind == CONFLICT:
        raise _Retry() from exc
    if kind in (UNAVAILABLE, SCHEMA):
        raise exc


def _translate(problem: DbProblem, entity: EntitySnapshot, path: str) -> ErrorItem:
    columns = problem.columns or (entity.unique_keys.get(problem.constraint or "", ()))
    names = [entity.by_column[c].name for c in columns if c in entity.by_column]
    where = f"{path}.{','.join(names)}" if names else path
    if problem.kind == UNIQUE:
        return errors.DUPLICATE_ENTRY(path=where)
    if problem.kind == FOREIGN_KEY:
        return errors.REFERENCE_NOT_FOUND(path=where)
    if problem.kind == NOT_NULL:
        return errors.NOT_NULLABLE(path=where)
    if problem.kind == VALUE:
        return errors.VALUE_REJECTED(path=where)
    log.error("unexpected database error writing `%s`: %s", path, problem)
    return errors.PERSISTENCE_FAILED(path=path)


# --- one relation level ---------------------------------------------------------------------------------------

async def _existing(
    conn: AsyncConnection, entity: EntitySnapshot, keys: Sequence[Any], covered: FieldSnapshot | None
) -> dict[Any, Any]:
    """identifier → parent-key value (or True) of the rows that exist among ``keys``."""
    found: dict[Any, Any] = {}
    unique = list(dict.fromkeys(keys))
    extra = covered.column if covered is not None else None
    for start in range(0, len(unique), KEYS_PER_QUERY):
        result = await conn.execute(build_existing(entity, unique[start:start + KEYS_PER_QUERY], extra))
        for row in result:
            found[row[0]] = row[1] if extra is not None else True
    return found


async def _decide_all(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    method: str,
    items: Sequence[ItemPlan],
    covered: FieldSnapshot | None,
    parent_values: Sequence[Any] | None,
) -> tuple[list[Action | None], list[ErrorItem]]:
    existing: dict[Any, Any] = {}
    # A root PATCH needs no lookup: updating a missing row changes nothing, and reading the rows back
    # (or RETURNING) tells which were missing (_update). Children must also belong to their parent.
    look_up = method == PUT or (method == PATCH and covered is not None)
    if look_up:
        existing = await _existing(conn, entity, [i.key for i in items if i.key is not None], covered)
    actions: list[Action | None] = []
    problems: list[ErrorItem] = []
    for position, item in enumerate(items):
        parent_value = parent_values[position] if parent_values is not None else None
        exists = item.key is not None and (item.key in existing or not look_up)
        if exists and covered is not None:
            exists = existing[item.key] == parent_value  # a child of another parent is not "this" child
        actions.append(decide(entity, method, item, exists, problems, covered, parent_value))
    return actions, problems


async def _root_rule_problems(
    conn: AsyncConnection, plan: WritePlan, items: Sequence[ItemPlan]
) -> list[tuple[ItemPlan, list[ErrorItem]]]:
    out = []
    if plan.method in (PATCH, PUT) and items:
        existing = await _existing(conn, plan.entity, [i.key for i in items if i.key is not None], None)
        for item in items:
            problems: list[ErrorItem] = []
            decide(plan.entity, plan.method, item, item.key in existing, problems)
            if problems:
                out.append((item, problems))
    return out


async def _write_level(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    method: str,
    items: Sequence[ItemPlan],
    covered: FieldSnapshot | None = None,
    parent_values: Sequence[Any] | None = None,
    *,
    precise: bool = False,
) -> list[dict[str, Any]]:
    """Write ``items`` of one entity (and then their children); return the saved rows in item order.

    ``precise`` (replaying a refused write): rows that would share a statement are written one by one, each
    under a savepoint, so a database refusal is reported at the item that caused it — a nested child's own
    path — rather than at its whole group, and the rows after it are still tried.
    """
    actions, problems = await _decide_all(conn, entity, method, items, covered, parent_values)
    if problems:
        raise _Refused(problems)
    raw_rows: list[Any] = [None] * len(items)
    await _insert(conn, entity, actions, raw_rows, items, precise)
    await _update(conn, entity, actions, raw_rows, items, precise)
    rows = [entity.render_row(row) for row in raw_rows]
    for name in _relation_names(items):
        await _write_children(conn, entity, method, name, items, raw_rows, rows, precise)
    return rows


async def _insert(
    conn: AsyncConnection, entity: EntitySnapshot, actions: list[Action | None], raw_rows: list[Any],
    items: Sequence[ItemPlan], precise: bool,
) -> None:
    # Runs of consecutive items sending the same columns share one multi-row INSERT; keeping runs in
    # request order keeps generated identifiers in request order too.
    runs: list[tuple[tuple[str, ...], list[int]]] = []
    for position, action in enumerate(actions):
        if action is not None and action.kind == INSERT:
            columns = tuple(action.values)
            if runs and runs[-1][0] == columns:
                runs[-1][1].append(position)
            else:
                runs.append((columns, [position]))
    identifier = entity.identifier
    at = entity.columns.index(identifier.column)
    refused: list[ErrorItem] = []
    for columns, positions in runs:
        params = [actions[p].values for p in positions]  # type: ignore[union-attr]
        if precise and len(positions) > 1:
            for position, one in zip(positions, params, strict=True):
                result = await _run_alone(conn, _insert_statement(entity, ordered=True), one, entity,
                                          items[position], refused)
                raw_rows[position] = result.first() if result is not None else None
            continue
        # Generated integer keys grow in VALUES order, so sorting by them restores request order; that
        # spares the database SQLAlchemy's order-preserving INSERT … SELECT form (about 5x slower here).
        generated = entity.serial_identifier and identifier.column.name not in columns and len(positions) > 1
        statement = _insert_statement(entity, ordered=not generated)
        result = await _run(conn, statement, params, entity, [items[p] for p in positions])
        rows = sorted(result.all(), key=lambda row: row[at]) if generated else result.all()
        for position, row in zip(positions, rows, strict=True):
            raw_rows[position] = row
    if refused:
        raise _Refused(refused)


async def _update(
    conn: AsyncConnection, entity: EntitySnapshot, actions: list[Action | None], raw_rows: list[Any],
    items: Sequence[ItemPlan], precise: bool,
) -> None:
    groups: dict[tuple[str, ...], list[int]] = {}
    for position, action in enumerate(actions):
        if action is not None and action.kind != INSERT:
            groups.setdefault(tuple(action.values), []).append(position)
    if not groups:
        return
    returned: dict[int, Any] = {}
    for columns, positions in groups.items():
        if columns:
            params = [
                {"key": actions[p].key, **{f"v{i}": actions[p].values[c] for i, c in enumerate(columns)}}  # type: ignore[union-attr]
                for p in positions
            ]
            if precise and len(positions) > 1:
                statement = _update_statement(entity, columns, returning=False)
                refused: list[ErrorItem] = []
                for position, one in zip(positions, params, strict=True):
                    await _run_alone(conn, statement, one, entity, items[position], refused)
                if refused:
                    raise _Refused(refused)
            elif len(positions) == 1 and conn.dialect.update_returning:
                # The common single-row PATCH: one round trip instead of UPDATE + SELECT.
                statement = _update_statement(entity, columns, returning=True)
                result = await _run(conn, statement, params, entity, [items[positions[0]]])
                returned[positions[0]] = result.first()
            else:
                statement = _update_statement(entity, columns, returning=False)
                await _run(conn, statement, params, entity, [items[p] for p in positions])
    for position, row in returned.items():
        if row is None:
            raise _Refused([_missing(entity, items[position])])
        raw_rows[position] = row
    positions = [p for group in groups.values() for p in group if p not in returned]
    if not positions:
        return
    keys = [actions[p].key for p in positions]  # type: ignore[union-attr]
    by_key: dict[Any, Any] = {}
    identifier_at = entity.columns.index(entity.identifier.column)
    for start in range(0, len(keys), KEYS_PER_QUERY):
        result = await conn.execute(build_select_by_keys(entity, keys[start:start + KEYS_PER_QUERY]))
        for row in result:
            by_key[row[identifier_at]] = row
    missing = []
    for position, key in zip(positions, keys, strict=True):
        row = by_key.get(key)
        if row is None:  # never there (PATCH), or deleted by someone else since we looked (PUT)
            missing.append(_missing(entity, items[position]))
        raw_rows[position] = row
    if missing:
        raise _Refused(missing)


def _missing(entity: EntitySnapshot, item: ItemPlan) -> ErrorItem:
    return errors.ENTITY_NOT_FOUND(path=entity.alias if item.by_id else item.path)


async def _run(
    conn: AsyncConnection, statement: Any, params: list[dict[str, Any]], entity: EntitySnapshot,
    items: Sequence[ItemPlan],
) -> Any:
    try:
        return await conn.execute(statement, params if len(params) > 1 else params[0])
    except sa_exc.DBAPIError as exc:
        problem = classify(exc)
        if len(items) == 1 and problem.kind not in (CONFLICT, UNAVAILABLE, SCHEMA):
            raise _Refused([_translate(problem, entity, items[0].path)]) from None
        raise


async def _run_alone(
    conn: AsyncConnection, statement: Any, params: dict[str, Any], entity: EntitySnapshot, item: ItemPlan,
    refused: list[ErrorItem],
) -> Any:
    """One row under a savepoint: a refusal is added to ``refused`` (the caller raises them together) and
    undone alone, so the rows after it are still tried and every failing item of the group is named."""
    try:
        async with conn.begin_nested():
            return await _run(conn, statement, [params], entity, [item])
    except _Refused as exc:
        refused.extend(exc.items)
        return None


def _insert_statement(entity: EntitySnapshot, *, ordered: bool) -> Any:
    shape = ("insert", ordered)
    statement = entity.statements.get(shape)
    if statement is None:
        statement = _remember(entity, shape, build_insert(entity, ordered=ordered))
    return statement


def _update_statement(entity: EntitySnapshot, columns: tuple[str, ...], *, returning: bool) -> Any:
    shape = ("update", columns, returning)
    statement = entity.statements.get(shape)
    if statement is None:
        built = build_update(entity, columns)
        statement = _remember(entity, shape, built.returning(*selected(entity)) if returning else built)
    return statement


def _remember(entity: EntitySnapshot, shape: tuple[Any, ...], statement: Any) -> Any:
    """Write statements are built once per entity snapshot and shape; SQLAlchemy then skips re-keying them."""
    if len(entity.statements) >= STATEMENTS_PER_ENTITY:
        entity.statements.clear()
    entity.statements[shape] = statement
    return statement


def _relation_names(items: Sequence[ItemPlan]) -> list[str]:
    names: dict[str, None] = {}
    for item in items:
        for children in item.children:
            names[children.relation.name] = None
    return list(names)


async def _write_children(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    method: str,
    name: str,
    items: Sequence[ItemPlan],
    raw_rows: list[Any],
    rows: list[dict[str, Any]],
    precise: bool,
) -> None:
    relation = entity.relations[name]
    parent_at = entity.columns.index(relation.parent_field.column)
    owners: list[int] = []
    child_items: list[ItemPlan] = []
    parent_values: list[Any] = []
    child_entity = None
    for position, item in enumerate(items):
        for children in item.children:
            if children.relation.name != name:
                continue
            child_entity = children.entity
            for child in children.items:
                owners.append(position)
                child_items.append(child)
                parent_values.append(raw_rows[position][parent_at])
    for position in range(len(items)):
        rows[position][name] = []
    if child_entity is None or not child_items:
        return
    if method == PATCH:
        missing = [errors.MISSING_IDENTIFIER(path=c.path) for c in child_items if c.key is None]
        if missing:
            raise _Refused(missing)
    saved = await _write_level(conn, child_entity, method, child_items, relation.child_field, parent_values,
                               precise=precise)
    for owner, row in zip(owners, saved, strict=True):
        rows[owner][name].append(row)


# --- delete ---------------------------------------------------------------------------------------------------

async def execute_delete(
    engine: AsyncEngine, entity: EntitySnapshot, conditions: Sequence[Condition], key: Any, max_rows: int,
    child_alias: Callable[[str], str | None] = lambda table: None,
) -> None:
    """Delete one row (``key``) or every row matching ``conditions``; nothing at all if any row is blocked.

    ``child_alias`` names the entity a referencing table is served as (None: say nothing about it): a 1317
    never names a table, nor an entity the caller may not know of.
    """
    async with database_errors(), engine.begin() as conn:
        if key is not None:
            keys = [key] if await _existing(conn, entity, [key], None) else []
        else:
            statement = build_matching_keys(entity, conditions, max_rows + 1)
            result = await conn.execute(statement, condition_parameters(conditions))
            keys = [row[0] for row in result]
            if len(keys) > max_rows:
                raise errors.TOO_MANY_ITEMS.error(count=f"more than {max_rows}", maximum=max_rows)
        if not keys:
            raise errors.ENTITY_NOT_FOUND.error(path=entity.alias)
        try:
            async with conn.begin_nested():
                for start in range(0, len(keys), KEYS_PER_QUERY):
                    await conn.execute(build_delete(entity, keys[start:start + KEYS_PER_QUERY]))
            return
        except sa_exc.DBAPIError as exc:
            problem = classify(exc)
            if problem.kind not in (REFERENCED, FOREIGN_KEY):
                raise
        # One query per referencing foreign key, not one savepoint per row: the write lock (SQLite) is held
        # only as long as the refused DELETE itself.
        blocked = await blocked_keys(conn, entity, keys)
        column = entity.identifier.column.name
        named = functools.cache(child_alias)  # a few tables, up to max_rows keys
        found = [
            errors.DELETE_BLOCKED(path=f"{entity.alias}.{column} = {one}", children=_children(references, named))
            for one, references in blocked.items()
        ]
        # Not explained by a direct reference (a cascade into a restricted grandchild): nothing more to say.
        raise errors.ApiError(found or [errors.DELETE_BLOCKED(path=entity.alias, children=OTHER_ROWS)])


def _children(references: Sequence[Reference], child_alias: Callable[[str], str | None]) -> str:
    for reference in references:
        alias = child_alias(reference.table) if reference.schema is None else None
        if alias is not None:
            return f"Child entity: `{alias}`."
    return OTHER_ROWS
