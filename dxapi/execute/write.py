"""Executing writes: a ``WritePlan`` → saved rows or refused items (``WriteOutcome``), all or nothing by default.

Fed by ``plan.write``; feeds ``endpoints`` the outcome, errors as values (the endpoint answers them). Per
relation level: look up which rows exist (PUT; PATCH children), let ``plan.decide`` decide every item, run the
statements (``execute.statements``: one multi-row ``INSERT … RETURNING`` per run of items sending the same
columns, one executemany ``UPDATE`` per group, one ``SELECT`` to read the updated rows back). Children are
written after their parents with the parent-key column taken from the saved parent row.

Transactional (default): the whole request is one transaction; any problem → rollback and every error of
every item is returned. When the database refuses the batch (unique key, foreign key …) the batch is replayed
item by item under savepoints — still rolled back — only to name each failing item precisely; the replay writes
each row alone (``precise``), so a refused nested child is named at its own path.

Per item (``X-Is-Transactional: false``): valid items are first written together in one transaction; if
that fails, each root item is written in its own savepoint, and the outcome lists what was saved and what was
not. A deadlock or serialization failure is retried once, then answered 409.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi import errors
from dxapi.db import DriverPool
from dxapi.dberrors import CONFLICT, REQUEST_KINDS, classify, conflict_behind, database_errors, item_error
from dxapi.errors import ErrorItem
from dxapi.execute.one_statement import Conflict, many_rows, write_many, write_one, write_one_keyed
from dxapi.execute.outcome import WriteOutcome
from dxapi.execute.statements import Refused, check_preconditions, execute_inserts, execute_updates, load_existing
from dxapi.execute.transaction import transaction
from dxapi.idempotency import Keeper
from dxapi.plan.decide import decide_level
from dxapi.plan.types import INSERT, PATCH, POST, PUT, Action, Decision, ItemPlan, WritePlan
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot

log = logging.getLogger("dxapi.execute")


@dataclass(frozen=True, slots=True)
class _Written:
    """One level (and its children) written: the rows in item order, or what refused it (then: roll back)."""

    rows: tuple[dict[str, Any], ...] = ()
    refused: Refused = ()


class _Retry(Exception):
    pass


async def execute_write(
    engine: AsyncEngine, plan: WritePlan, pool: DriverPool | None = None, keeper: Keeper | None = None
) -> WriteOutcome:
    """``pool`` (the asyncpg pool, PostgreSQL) serves writes that are one statement — a single item without
    children, POST or PATCH — which are atomic on their own (``execute.one_statement``). ``keeper``
    (``Idempotency-Key``): every transaction checks the key first and records the answer with its writes."""
    one_statement = pool is not None and _one_statement(plan)
    async with database_errors():
        for attempt in (1, 2):
            try:
                if one_statement:
                    assert pool is not None
                    if keeper is None:
                        written = await write_one(pool, engine.dialect, plan)
                    else:
                        written = await write_one_keyed(pool, engine.dialect, plan, keeper)
                    saved = () if written.row is None else (written.row,)
                    return WriteOutcome(saved, written.refused)
                if pool is not None and many_rows(plan):
                    rows = await write_many(pool, engine.dialect, plan, keeper)
                    if rows is not None:
                        return WriteOutcome(rows, ())
                if plan.transactional:
                    return await _transactional(engine, plan, keeper)
                return await _per_item(engine, plan, keeper)
            except (_Retry, Conflict):
                if attempt == 2:
                    raise errors.WRITE_CONFLICT.error() from None
                log.info("write conflict on `%s`; retrying once", plan.entity.alias)
    raise AssertionError("unreachable")


def _one_statement(plan: WritePlan) -> bool:
    if plan.method not in (POST, PATCH) or not plan.transactional or len(plan.items) != 1 or plan.has_problems:
        return False  # with problems, the other path adds what the database knows to them
    item, action = plan.items[0], plan.decisions[0].action
    return (
        not item.children
        and item.precondition is None  # checked under a row lock: a transaction
        # A statement to run: some values, or the `updatedAt` stamps every update moves (else a read).
        and action is not None
        and bool(action.values or (action.kind != INSERT and plan.entity.update_stamps))
    )


async def _transactional(engine: AsyncEngine, plan: WritePlan, keeper: Keeper | None) -> WriteOutcome:
    if plan.has_problems:
        # The body already has problems: add what only the database can tell about the other items (missing
        # rows, PUT-create rules) so the client gets every error at once, then stop — nothing is written.
        async with engine.connect() as conn:
            found = await _root_problems(conn, plan)
        return WriteOutcome((), tuple(e for problems in found for e in problems))
    for _attempt in range(2):
        try:
            async with transaction(engine, keeper) as (conn, writing):
                written = await _write_level(conn, plan.entity, plan.method, plan.items, plan.decisions)
                outcome = WriteOutcome(written.rows, written.refused)
                if written.refused:
                    await writing.rollback()
                elif keeper is not None:
                    await keeper.commit(conn, outcome)
            return outcome
        except sa_exc.DBAPIError as exc:
            _reraise_if_global(exc)
        # The database refused the batch: replay item by item, rolled back, to name every failing item.
        async with transaction(engine, None) as (conn, replaying):
            replayed = [await _write_item(conn, plan, item) for item in plan.items]
            await replaying.rollback()
        refused = tuple(e for one in replayed for e in one.refused)
        if refused:
            return WriteOutcome((), refused)
        # Replayed, every item went through: another transaction committed in between (a key this batch
        # looked up as missing and then met in its INSERT). Once more as a whole, from what is there now.
    log.warning("a batch of `%s` met concurrent commits twice; answered as a conflict", plan.entity.alias)
    return WriteOutcome((), (errors.WRITE_CONFLICT(),))


async def _per_item(engine: AsyncEngine, plan: WritePlan, keeper: Keeper | None) -> WriteOutcome:
    valid = [item for item in plan.items if not plan.problems[item.index]]
    if not valid:
        return _item_outcome(plan, valid, [])
    together = await _write_together(engine, plan, valid, keeper)
    if together is not None:
        return together
    # Each root item with its children on its own: a savepoint each, so a failing item is undone alone; one
    # commit at the end, so a crash half-way leaves nothing the client was not told of.
    async with transaction(engine, keeper) as (conn, _):
        outcome = _item_outcome(plan, valid, [await _write_item(conn, plan, item) for item in valid])
        if keeper is not None:
            await keeper.commit(conn, outcome)
    return outcome


async def _write_together(
    engine: AsyncEngine, plan: WritePlan, valid: Sequence[ItemPlan], keeper: Keeper | None
) -> WriteOutcome | None:
    """All valid items in one transaction: the outcome, or None when anything refused them (nothing kept)."""
    try:
        async with transaction(engine, keeper) as (conn, writing):
            decided = [plan.decisions[item.index] for item in valid]
            written = await _write_level(conn, plan.entity, plan.method, valid, decided)
            if written.refused:
                await writing.rollback()
                return None
            outcome = _item_outcome(plan, valid, [_Written((row,)) for row in written.rows])
            if keeper is not None:
                await keeper.commit(conn, outcome)
        return outcome
    except sa_exc.DBAPIError as exc:
        _reraise_if_global(exc)
        return None


def _item_outcome(plan: WritePlan, valid: Sequence[ItemPlan], alone: Sequence[_Written]) -> WriteOutcome:
    """Per-item mode: the rows of the items saved, and the problems of the others, in item order."""
    outcome = {item.index: one for item, one in zip(valid, alone, strict=True)}
    saved = tuple(one.rows[0] for one in alone if not one.refused)
    refused = (plan.problems[i] or outcome[i].refused for i in range(len(plan.items)))
    return WriteOutcome(saved, tuple(e for problems in refused for e in problems))


async def _write_item(conn: AsyncConnection, plan: WritePlan, item: ItemPlan) -> _Written:
    """Write one root item under a savepoint: its saved row, or its problems (undone alone).

    The items that worked stay in the (outer) transaction, so a later item duplicating an earlier one of the
    same batch is found too.
    """
    try:
        async with conn.begin_nested() as savepoint:
            decided = [plan.decisions[item.index]]
            written = await _write_level(conn, plan.entity, plan.method, [item], decided, precise=True)
            if written.refused:
                await savepoint.rollback()
        return written
    except sa_exc.DBAPIError as exc:
        # A deadlock undid the items before this one too (``conflict_behind``): retry it all.
        deadlock = conflict_behind(exc)
        if deadlock is not None:
            raise _Retry() from deadlock
        _reraise_if_global(exc)
        return _Written(refused=(item_error(classify(exc), plan.entity, item.path),))


def _reraise_if_global(exc: sa_exc.DBAPIError) -> None:
    kind = classify(exc).kind
    if kind == CONFLICT:
        raise _Retry() from exc
    if kind in REQUEST_KINDS:  # down, timed out, schema gone: the whole request stops
        raise exc


# --- one relation level ---------------------------------------------------------------------------------------


async def _root_problems(conn: AsyncConnection, plan: WritePlan) -> list[tuple[ErrorItem, ...]]:
    """Per root item: its plan problems, or, for an item without any, what the rows that exist add."""
    valid = [item for item in plan.items if not plan.problems[item.index]]
    found = list(plan.problems)
    if plan.method in (PATCH, PUT) and valid:
        existing = await load_existing(conn, plan.entity, [i.key for i in valid if i.key is not None], None)
        for item, decision in zip(valid, decide_level(plan.entity, plan.method, valid, existing), strict=True):
            found[item.index] = decision.errors
    return found


async def _write_level(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    method: str,
    items: Sequence[ItemPlan],
    decided: Sequence[Decision] | None,
    covered: FieldSnapshot | None = None,
    parent_values: Sequence[Any] | None = None,
    *,
    precise: bool = False,
) -> _Written:
    """Write ``items`` of one entity (and then their children); the saved rows in item order, or the refusals.

    ``precise`` (replaying a refused write): rows that would share a statement are written one by one, each
    under a savepoint, so a database refusal is reported at the item that caused it — a nested child's own
    path — rather than at its whole group, and the rows after it are still tried. ``decided``: the items'
    decisions made without the database (the plan's, for a root level; None: decide them here), final unless
    rows are looked up.
    """
    if covered is None and any(item.precondition is not None for item in items):
        refused = await check_preconditions(conn, entity, items)
        if refused:
            return _Written(refused=refused)
    existing = None
    # A root PATCH needs no lookup: updating a missing row changes nothing, and reading the rows back (or
    # RETURNING) tells which were missing. Children must also belong to their parent.
    if method == PUT or (method == PATCH and covered is not None):
        existing = await load_existing(conn, entity, [i.key for i in items if i.key is not None], covered)
    if existing is not None or decided is None:
        decided = decide_level(entity, method, items, existing, parent_values, covered)
    decisions = decided
    refused = tuple(e for decision in decisions for e in decision.errors)
    if refused:
        return _Written(refused=refused)
    actions = [_decided(decision.action) for decision in decisions]
    inserted, refused = await execute_inserts(conn, entity, actions, items, precise)
    if refused:
        return _Written(refused=refused)
    updated, refused = await execute_updates(conn, entity, actions, items, precise)
    if refused:
        return _Written(refused=refused)
    raw_rows = [inserted[p] if p in inserted else updated[p] for p in range(len(items))]
    rows = tuple(entity.render_row(row) for row in raw_rows)
    for name in _relation_names(items):
        refused = await _write_children(conn, entity, method, name, items, raw_rows, rows, precise)
        if refused:
            return _Written(refused=refused)
    return _Written(rows)


def _decided(action: Action | None) -> Action:
    if action is None:  # with the rows looked up, every item gets an action or an error
        raise AssertionError("undecided write item")
    return action


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
    raw_rows: Sequence[Any],
    rows: Sequence[dict[str, Any]],
    precise: bool,
) -> Refused:
    """The children under relation ``name`` of every item of the level, as one level, each with the parent
    key from its saved parent row; their rows are attached under ``name`` (``rows`` are this level's own)."""
    relation = entity.relations[name]
    parent_at = entity.columns.index(relation.parent_field.column)
    owners = [
        (position, child)
        for position, item in enumerate(items)
        for children in item.children
        if children.relation.name == name
        for child in children.items
    ]
    for row in rows:
        row[name] = []
    if not owners:
        return ()
    child_entity = next(c.entity for item in items for c in item.children if c.relation.name == name)
    # Children are decided only now: their actions carry the parent key of the saved parent row.
    written = await _write_level(
        conn,
        child_entity,
        method,
        [child for _, child in owners],
        None,
        relation.child_field,
        [raw_rows[position][parent_at] for position, _ in owners],
        precise=precise,
    )
    if written.refused:
        return written.refused
    for (owner, _), row in zip(owners, written.rows, strict=True):
        rows[owner][name].append(row)
    return ()
