"""Executing deletes: a ``DeletePlan`` → the rows gone, or nothing deleted at all.

Fed by ``plan.delete``; feeds ``endpoints`` (204, or the catalogued errors raised here). One transaction: the
keys of the rows (by key, or all matching the conditions, at most ``max_rows``), one ``DELETE … WHERE id IN``
per chunk under a savepoint. When the database refuses it because other rows reference some of them,
``execute.references`` tells which keys are blocked, and each one is answered 1317 — never naming a table,
nor an entity the caller may not know of.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi import errors
from dxapi.dberrors import FOREIGN_KEY, REFERENCED, classify, conflict_behind, database_errors
from dxapi.errors import ErrorItem
from dxapi.execute.references import KEYS_PER_QUERY, Reference, blocked_keys
from dxapi.execute.statements import current_tags, load_existing
from dxapi.execute.transaction import transaction
from dxapi.idempotency import Keeper
from dxapi.plan.types import DeletePlan
from dxapi.sql.build import build_delete, build_matching_keys, condition_parameters

OTHER_ROWS = "Other rows reference it."  # 1317 without naming a table or an entity the caller may not know

ChildAlias = Callable[[str], str | None]  # table → the entity a 1317 may name for it (None: say nothing)


async def execute_delete(
    engine: AsyncEngine,
    plan: DeletePlan,
    child_alias: ChildAlias = lambda table: None,
    keeper: Keeper | None = None,
) -> None:
    """Delete the plan's rows; nothing at all if any row is blocked (1317), none matches (1303), more than
    ``plan.max_rows`` match (2013) or the row fails the plan's precondition (412). ``keeper``: the key's
    check first, and its answer recorded with the delete."""
    entity = plan.entity
    async with database_errors(), transaction(engine, keeper) as (conn, _):
        keys = await _keys(conn, plan)
        if not keys:
            raise errors.ENTITY_NOT_FOUND.error(path=entity.alias)
        try:
            async with conn.begin_nested():
                for start in range(0, len(keys), KEYS_PER_QUERY):
                    await conn.execute(build_delete(entity, keys[start : start + KEYS_PER_QUERY]))
            if keeper is not None:
                await keeper.commit(conn, None)
            return
        except sa_exc.DBAPIError as exc:
            deadlock = conflict_behind(exc)
            if deadlock is not None:  # 409 over the deadlock, not 500 over the savepoint it took with it
                raise deadlock from None
            if classify(exc).kind not in (REFERENCED, FOREIGN_KEY):
                raise
        raise errors.ApiError(await _blocked(conn, plan, keys, child_alias))


async def _keys(conn: AsyncConnection, plan: DeletePlan) -> list[object]:
    if plan.key is not None and plan.precondition is not None:
        reason = plan.precondition.failure((await current_tags(conn, plan.entity, [plan.key])).get(plan.key))
        if reason is not None:
            raise errors.PRECONDITION_FAILED.error(path=plan.entity.alias, reason=reason)
        return [plan.key]
    if plan.key is not None:
        return [plan.key] if await load_existing(conn, plan.entity, [plan.key], None) else []
    statement = build_matching_keys(plan.entity, plan.conditions, plan.max_rows + 1)
    keys = [row[0] for row in await conn.execute(statement, condition_parameters(plan.conditions))]
    if len(keys) > plan.max_rows:
        raise errors.TOO_MANY_ITEMS.error(count=f"more than {plan.max_rows}", maximum=plan.max_rows)
    return keys


async def _blocked(
    conn: AsyncConnection, plan: DeletePlan, keys: Sequence[object], child_alias: ChildAlias
) -> list[ErrorItem]:
    """One 1317 per blocked key. One query per referencing foreign key, not one savepoint per row: the write
    lock (SQLite) is held only as long as the refused DELETE itself."""
    entity = plan.entity
    blocked = await blocked_keys(conn, entity, keys)
    column = entity.identifier.column.name
    named = functools.cache(child_alias)  # a few tables, up to max_rows keys
    found = [
        errors.DELETE_BLOCKED(path=f"{entity.alias}.{column} = {one}", children=_children(references, named))
        for one, references in blocked.items()
    ]
    # Not explained by a direct reference (a cascade into a restricted grandchild): nothing more to say.
    return found or [errors.DELETE_BLOCKED(path=entity.alias, children=OTHER_ROWS)]


def _children(references: Sequence[Reference], child_alias: ChildAlias) -> str:
    for reference in references:
        alias = child_alias(reference.table) if reference.schema is None else None
        if alias is not None:
            return f"Child entity: `{alias}`."
    return OTHER_ROWS
