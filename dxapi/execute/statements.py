"""The statements of one relation level of a write: look rows up, insert, update, read back.

Fed by ``execute.write`` (decided actions) and ``execute.delete`` (lookups); feeds them rows in item order, or
the items the database refused, as values (``Refused``): a driver error of one row becomes its catalogued error
at the item's path (``dberrors.item_error``); a batch statement that fails raises, and the caller replays it
row by row to name each failing item. Checks that depend on what the database returned are small guards after
the query (``_matched``: a PATCH whose UPDATE matched nothing is 1303), never a call back into planning.

Statements are built once per entity snapshot and shape (``_remember``, the snapshot's ``write_statements``)
so SQLAlchemy skips re-keying them. The columns dxapi stamps with the database clock (``autoValue``) are fixed
per entity snapshot, so the shape of a statement is its kind and the columns the items send.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from dxapi import errors
from dxapi.dberrors import REQUEST_KINDS, classify, item_error
from dxapi.errors import ErrorItem
from dxapi.execute.references import KEYS_PER_QUERY
from dxapi.plan.decide import missing_row
from dxapi.plan.types import INSERT, Action, ItemPlan
from dxapi.preconditions import row_tag
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot
from dxapi.sql.build import build_existing, build_insert, build_select_by_keys, build_update, selected
from dxapi.sql.clock import stamp_values

Rows = dict[int, Any]  # item position → raw row
Refused = tuple[ErrorItem, ...]  # the items the database refused (empty: none)


async def load_existing(
    conn: AsyncConnection, entity: EntitySnapshot, keys: Sequence[Any], covered: FieldSnapshot | None
) -> dict[Any, Any]:
    """identifier → parent-key value (or True) of the rows that exist among ``keys``."""
    found: dict[Any, Any] = {}
    unique = list(dict.fromkeys(keys))
    extra = covered.column if covered is not None else None
    for start in range(0, len(unique), KEYS_PER_QUERY):
        result = await conn.execute(build_existing(entity, unique[start : start + KEYS_PER_QUERY], extra))
        for row in result:
            found[row[0]] = row[1] if extra is not None else True
    return found


async def check_preconditions(conn: AsyncConnection, entity: EntitySnapshot, items: Sequence[ItemPlan]) -> Refused:
    """The items whose row fails their precondition (412 each)."""
    keys = [i.key for i in items if i.precondition is not None and i.key is not None]
    tags = await current_tags(conn, entity, keys)
    refused = []
    for item in items:
        reason = item.precondition.failure(tags.get(item.key)) if item.precondition is not None else None
        if reason is not None:
            refused.append(errors.PRECONDITION_FAILED(path=item.path, reason=reason))
    return tuple(refused)


async def current_tags(conn: AsyncConnection, entity: EntitySnapshot, keys: Sequence[Any]) -> dict[Any, str]:
    """identifier → current tag of the rows among ``keys``, read under a row lock that the write keeps: no
    other write can change a row between its check and the statement that writes it. (SQLite: a write
    transaction holds the database's write lock already.)"""
    unique = list(dict.fromkeys(keys))
    tags: dict[Any, str] = {}
    at = entity.columns.index(entity.identifier.column)
    for start in range(0, len(unique), KEYS_PER_QUERY):
        statement = build_select_by_keys(entity, unique[start : start + KEYS_PER_QUERY]).with_for_update()
        for row in await conn.execute(statement):
            tags[row[at]] = row_tag(entity, entity.render_row(row))
    return tags


async def execute_inserts(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    actions: Sequence[Action],
    items: Sequence[ItemPlan],
    precise: bool,
) -> tuple[Rows, Refused]:
    """The insert actions, one multi-row INSERT … RETURNING per run of items sending the same columns.

    Runs keep request order, so generated identifiers follow request order too. ``precise``: one row at a time
    under a savepoint, every failing item named.
    """
    rows: Rows = {}
    for positions in _runs(actions):
        params = [actions[p].values for p in positions]
        if precise and len(positions) > 1:
            refused = await _insert_alone(conn, entity, positions, params, items, rows)
        else:
            refused = await _insert_run(conn, entity, positions, params, items, rows)
        if refused:
            return rows, refused
    return rows, ()


def _runs(actions: Sequence[Action]) -> list[list[int]]:
    runs: list[tuple[tuple[str, ...], list[int]]] = []
    for position, action in enumerate(actions):
        if action.kind == INSERT:
            columns = tuple(action.values)
            if runs and runs[-1][0] == columns:
                runs[-1][1].append(position)
            else:
                runs.append((columns, [position]))
    return [positions for _, positions in runs]


async def _insert_run(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    positions: list[int],
    params: list[Any],
    items: Sequence[ItemPlan],
    rows: Rows,
) -> Refused:
    identifier = entity.identifier.column
    # Generated integer keys grow in VALUES order, so sorting by them restores request order; that spares
    # the database SQLAlchemy's order-preserving INSERT … SELECT form (about 5x slower here).
    generated = entity.serial_identifier and identifier.name not in params[0] and len(positions) > 1
    result, refused = await _run(
        conn, _insert_statement(entity, ordered=not generated), params, entity, [items[p] for p in positions]
    )
    if refused:
        return refused
    at = entity.columns.index(identifier)
    returned = sorted(result.all(), key=lambda row: row[at]) if generated else result.all()
    rows.update(zip(positions, returned, strict=True))
    return ()


async def _insert_alone(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    positions: list[int],
    params: list[Any],
    items: Sequence[ItemPlan],
    rows: Rows,
) -> Refused:
    statement = _insert_statement(entity, ordered=True)
    refused: Refused = ()
    for position, one in zip(positions, params, strict=True):
        result, problems = await _run_alone(conn, statement, one, entity, items[position])
        refused += problems
        rows[position] = result.first() if result is not None else None
    return refused


async def execute_updates(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    actions: Sequence[Action],
    items: Sequence[ItemPlan],
    precise: bool,
) -> tuple[Rows, Refused]:
    """The update actions, one executemany UPDATE per group of items sending the same columns, then one SELECT
    to read the rows back — or, for a lone row where the backend can, one UPDATE … RETURNING."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for position, action in enumerate(actions):
        if action.kind != INSERT:
            groups.setdefault(tuple(action.values), []).append(position)
    returned: Rows = {}
    for columns, positions in groups.items():
        # Nothing to set is no statement — unless an `updatedAt` field moves: every update dxapi makes does.
        if columns or entity.update_stamps:
            refused = await _update_group(conn, entity, columns, positions, actions, items, precise, returned)
            if refused:
                return {}, refused
    refused = _matched(entity, returned, items)
    if refused:
        return {}, refused
    rest = [p for group in groups.values() for p in group if p not in returned]
    rows, refused = await _read_back(conn, entity, rest, actions, items) if rest else ({}, ())
    return {**returned, **rows}, refused


async def _update_group(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    columns: tuple[str, ...],
    positions: list[int],
    actions: Sequence[Action],
    items: Sequence[ItemPlan],
    precise: bool,
    returned: Rows,
) -> Refused:
    params = [
        {"key": actions[p].key, **{f"v{i}": actions[p].values[c] for i, c in enumerate(columns)}} for p in positions
    ]
    if precise and len(positions) > 1:
        statement = update_statement(entity, columns, returning=False)
        refused: Refused = ()
        for position, one in zip(positions, params, strict=True):
            refused += (await _run_alone(conn, statement, one, entity, items[position]))[1]
        return refused
    if len(positions) == 1 and conn.dialect.update_returning:
        # The common single-row PATCH: one round trip instead of UPDATE + SELECT.
        statement = update_statement(entity, columns, returning=True)
        result, refused = await _run(conn, statement, params, entity, [items[positions[0]]])
        if not refused:
            returned[positions[0]] = result.first()
        return refused
    statement = update_statement(entity, columns, returning=False)
    return (await _run(conn, statement, params, entity, [items[p] for p in positions]))[1]


def _matched(entity: EntitySnapshot, returned: Rows, items: Sequence[ItemPlan]) -> Refused:
    """Guard after UPDATE … RETURNING: no row back means no row matched (a PATCH of a missing row, 1303)."""
    for position, row in returned.items():
        if row is None:
            return (missing_row(entity, items[position]),)
    return ()


async def _read_back(
    conn: AsyncConnection,
    entity: EntitySnapshot,
    positions: list[int],
    actions: Sequence[Action],
    items: Sequence[ItemPlan],
) -> tuple[Rows, Refused]:
    """The updated rows, by key; a row not found was never there (PATCH) or deleted since we looked (PUT)."""
    keys = [actions[p].key for p in positions]
    by_key: dict[Any, Any] = {}
    identifier_at = entity.columns.index(entity.identifier.column)
    for start in range(0, len(keys), KEYS_PER_QUERY):
        result = await conn.execute(build_select_by_keys(entity, keys[start : start + KEYS_PER_QUERY]))
        for row in result:
            by_key[row[identifier_at]] = row
    rows = {position: by_key.get(key) for position, key in zip(positions, keys, strict=True)}
    refused = tuple(missing_row(entity, items[p]) for p, row in rows.items() if row is None)
    return rows, refused


async def _run(
    conn: AsyncConnection,
    statement: Any,
    params: list[dict[str, Any]],
    entity: EntitySnapshot,
    items: Sequence[ItemPlan],
) -> tuple[Any, Refused]:
    """Run one statement; a refusal of a single item's row is that item's error (the caller stops and rolls
    back). A statement for several items raises: the caller replays them to name each one."""
    try:
        return await conn.execute(statement, params if len(params) > 1 else params[0]), ()
    except sa_exc.DBAPIError as exc:
        problem = classify(exc)
        if len(items) == 1 and problem.kind not in REQUEST_KINDS:
            return None, (item_error(problem, entity, items[0].path),)
        raise


async def _run_alone(
    conn: AsyncConnection, statement: Any, params: dict[str, Any], entity: EntitySnapshot, item: ItemPlan
) -> tuple[Any, Refused]:
    """One row under a savepoint: a refusal is undone alone, so the rows after it are still tried and every
    failing item of the group is named."""
    async with conn.begin_nested() as savepoint:
        result, refused = await _run(conn, statement, [params], entity, [item])
        if refused:
            await savepoint.rollback()
    return result, refused


def _insert_statement(entity: EntitySnapshot, *, ordered: bool) -> Any:
    def build() -> Any:
        built = build_insert(entity, ordered=ordered)
        # Every `autoValue` field from the database clock, in the statement: the same for each row.
        return built.values(stamp_values(entity.insert_stamps)) if entity.insert_stamps else built

    return _remember(entity, ("insert", ordered), build)


def update_statement(entity: EntitySnapshot, columns: tuple[str, ...], *, returning: bool) -> Any:
    def build() -> Any:
        built = build_update(entity, columns)
        if entity.update_stamps:  # `updatedAt` fields, also when ``columns`` is empty
            built = built.values(stamp_values(entity.update_stamps))
        return built.returning(*selected(entity)) if returning else built

    return _remember(entity, ("update", columns, returning), build)


def _remember(entity: EntitySnapshot, shape: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The statement of this shape for this entity snapshot, built on first use (the one place that touches
    the entity's write statement cache)."""
    statement = entity.write_statements.get(shape)
    if statement is None:
        statement = entity.write_statements.remember(shape, build())
    return statement
