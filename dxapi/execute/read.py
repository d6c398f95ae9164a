"""Executing reads: a read plan's root rows and included children on one connection, rendered once at the end.

Fed by plans (``plan``) and statements (``sql``); feeds ``responses``. Driver failures are translated by
``dberrors`` (``read_errors`` around each attempt, ``database_errors`` around the request).

The root query of a request is the hot path of every integration. Every statement (the root rows, and the
children of each include level) is built and compiled once per *shape* and kept in the entity snapshot's
``read_statements``. One driver path serves the whole request:

* PostgreSQL: the compiled SQL goes straight to a connection of the asyncpg pool (``db.create_driver_pool``),
  as a hand-written server would do, skipping SQLAlchemy's checkout and per-execution machinery (asyncpg
  returns the same Python values). Children bind their parent keys as one array (``= ANY($1)``), so one
  prepared statement serves any number of keys.
* SQLite, MariaDB: the statement goes to a SQLAlchemy connection (its expanding ``IN`` is expanded per
  execution from one compiled form).

A keyset page (``page[cursor]``) fetches one root row more than its limit: that row only tells whether a next
page exists (no COUNT), and is dropped before the includes are fetched.

One acquire per request, one fetch for the root rows, one per include level (per 2000 parent keys). Rows stay
as the driver returned them until the end: children are attached by the raw key values, then
``EntitySnapshot.render_row`` turns each row into its API object once.

With ``fields[...]`` a level's rows hold only the fields its plan selects (``_Form``); the ones selected only to
attach children or make the next cursor are dropped from the answer as each row is rendered. ``Prefer:
count=…`` adds the count on the same connection, in one read-only snapshot with the page on PostgreSQL
(MariaDB's implicit transaction gives the same), so ``meta.total`` and the page agree; both under the one
statement timeout of the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from dxapi import errors
from dxapi.dberrors import StaleConnection, database_errors, read_errors
from dxapi.plan.types import Condition, IncludePlan, ReadPlan
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot
from dxapi.sql.build import (
    Explain,
    build_children,
    build_count,
    build_estimate,
    build_read,
    children_parameters,
    children_shape,
    condition_parameters,
    conditions_shape,
    read_parameters,
    read_shape,
)

log = logging.getLogger("dxapi.execute")

# Parent keys per child query; bounded so every backend's bind-parameter limit holds (an expanding IN binds
# each key), and so no single statement grows without bound on PostgreSQL either.
CHILD_KEYS_PER_QUERY = 2000

Row = Sequence[Any]  # an asyncpg Record or a SQLAlchemy Row, columns in ``EntitySnapshot.columns`` order


@dataclass(frozen=True, slots=True)
class CachedRead:
    statement: Select[Any] | Explain
    sql: str | None  # compiled text for asyncpg (PostgreSQL), else None
    names: tuple[str, ...]  # bind names in the order of asyncpg's positional parameters


@dataclass(frozen=True, slots=True)
class _Form:
    """How the rows of one level are laid out (``names``: their columns) and answered (``render``)."""

    names: tuple[str, ...]
    render: Callable[[Row], dict[str, Any]]
    whole: Callable[[Row], dict[str, Any]]  # ``render`` with the fields selected but not answered


def _form(entity: EntitySnapshot, fields: tuple[FieldSnapshot, ...] | None, hidden: tuple[str, ...]) -> _Form:
    if fields is None and not hidden:
        return _Form(entity.names, entity.render_row, entity.render_row)
    names = entity.names if fields is None else tuple(f.name for f in fields)
    selected = [(name, render) for name, render in entity.renderers if name in names]
    answered = [(name, render) for name, render in selected if name not in hidden]
    render_fields = entity.render_fields

    def render(row: Row) -> dict[str, Any]:
        item = render_fields(row, names, answered)
        for name in hidden:
            del item[name]
        return item

    return _Form(names, render, lambda row: render_fields(row, names, selected))


@dataclass(frozen=True, slots=True)
class _Children:
    """The rows of one include for all parents of the level above, grouped by the raw key value they share."""

    include: IncludePlan
    form: _Form
    parent_at: int  # where the relation's parent field sits in a parent row
    by_key: dict[Any, list[Row]]
    nested: tuple[_Children, ...]


@dataclass(frozen=True, slots=True)
class Page:
    """The rows of a list page; ``more``: a keyset page (``page[cursor]``) has a next one (else always False)."""

    items: list[dict[str, Any]]
    more: bool
    # The last item with every field selected, those not answered too (the next cursor's and a row's ETag's
    # values); None on an empty page.
    last: dict[str, Any] | None = None
    total: int | None = None  # Prefer: count=… (None: not asked for)
    estimated: bool = False  # ``total`` is the planner's estimate


@dataclass(frozen=True, slots=True)
class _Total:
    value: int
    estimated: bool


class _Session(Protocol):
    async def fetch(self, cached: CachedRead, params: dict[str, Any]) -> Sequence[Row]: ...


async def execute_read(engine: AsyncEngine, plan: ReadPlan, pool: Any | None = None) -> list[dict[str, Any]]:
    """Rows of the plan's page with their included children; for ``single`` plans, [] or [one].

    ``pool`` is the asyncpg pool of ``db.create_driver_pool`` (PostgreSQL), else None.
    """
    return (await execute_page(engine, plan, pool)).items


async def execute_page(engine: AsyncEngine, plan: ReadPlan, pool: Any | None = None) -> Page:
    """:func:`execute_read`, and whether a keyset page has a next one."""
    async with database_errors():
        try:
            return await _read(engine, pool, plan)
        except StaleConnection:
            # A pooled connection died (database restarted) and was dropped; reads are safe to repeat once.
            return await _read(engine, pool, plan)


async def _read(engine: AsyncEngine, pool: Any | None, plan: ReadPlan) -> Page:
    """One attempt: every statement of the plan on one connection, released before rendering."""
    form = _form(plan.entity, plan.fields, plan.hidden)
    with read_errors():
        if pool is not None:
            async with pool.acquire() as connection:
                if plan.count is None:
                    rows, more, children, total = await _fetch(_DriverSession(connection), engine.dialect, plan, form)
                else:
                    # The total and the page of one snapshot: a write between them would make them disagree.
                    async with connection.transaction(isolation="repeatable_read", readonly=True):
                        rows, more, children, total = await _fetch(
                            _DriverSession(connection), engine.dialect, plan, form
                        )
        else:
            async with engine.connect() as conn:
                rows, more, children, total = await _fetch(_EngineSession(conn), engine.dialect, plan, form)
    items = _render(form, rows, children)
    last = None if not rows else items[-1] if not plan.hidden else form.whole(rows[-1])
    if total is None:
        return Page(items, more, last)
    return Page(items, more, last, total.value, total.estimated)


async def _fetch(
    session: _Session, dialect: Dialect, plan: ReadPlan, form: _Form
) -> tuple[Sequence[Row], bool, tuple[_Children, ...], _Total | None]:
    rows = _identified(plan, form, await session.fetch(_root_statement(dialect, plan), read_parameters(plan)))
    more = plan.cursor is not None and len(rows) > plan.limit
    if more:
        rows = rows[: plan.limit]  # the row to spare only said that a next page exists
    children = [await _fetch_children(session, dialect, include, form.names, rows) for include in plan.includes]
    total = None if plan.count is None else await _count(session, dialect, plan)
    return rows, more, tuple(children), total


async def _count(session: _Session, dialect: Dialect, plan: ReadPlan) -> _Total:
    """``meta.total``: the planner's estimate when asked for one and it is large enough to trust, else exact.

    An estimate below ``exact_below`` is counted exactly: small totals are cheap to count and an estimate is
    most often wrong in proportion there (a filter matching 3 rows estimated as 40).
    """
    assert plan.count is not None
    params = condition_parameters(plan.conditions)
    if plan.count.estimated and dialect.name in ("postgresql", "mysql", "mariadb"):
        estimate = _estimated_rows(dialect.name, await session.fetch(_estimate_statement(dialect, plan), params))
        if estimate is not None and estimate >= plan.count.exact_below:
            return _Total(estimate, True)
    rows = await session.fetch(_count_statement(dialect, plan), params)
    return _Total(int(rows[0][0]), False)


def _estimated_rows(dialect_name: str, rows: Sequence[Row]) -> int | None:
    """The row estimate of an EXPLAIN's answer, or None when the planner gave none."""
    if not rows:
        return None
    if dialect_name == "postgresql":
        document = rows[0][0]
        plans = orjson.loads(document) if isinstance(document, (str, bytes)) else document
        found = plans[0]["Plan"].get("Plan Rows")
    else:
        # MariaDB: one row per table read, here one; `rows` is NULL when the WHERE is known to match nothing.
        found = getattr(rows[0], "_mapping", {}).get("rows")
    return None if found is None else int(found)


def _identified(plan: ReadPlan, form: _Form, rows: Sequence[Row]) -> Sequence[Row]:
    """For ``single`` plans, the row the identifier names exactly; the others as they came."""
    if not plan.single:
        return rows
    # A case-insensitive collation (MariaDB) finds `K1` for `k1`; an identifier names exactly one row, the way
    # writes look rows up.
    identifier = plan.conditions[-1]
    assert isinstance(identifier, Condition)  # plan.build appends the identifier's `eq` last
    key = identifier.value
    at = form.names.index(plan.entity.identifier.name)
    rows = [row for row in rows if row[at] == key]
    if len(rows) > 1:
        log.error("identifier of `%s` is not unique; refusing to pick one row", plan.entity.alias)
        raise errors.INTERNAL_ERROR.error()
    return rows


async def _fetch_children(
    session: _Session, dialect: Dialect, include: IncludePlan, parent_names: tuple[str, ...], parents: Sequence[Row]
) -> _Children:
    """One include level for all ``parents`` (their columns: ``parent_names``; one query per chunk of keys),
    then its own includes."""
    relation = include.relation
    form = _form(include.entity, include.fields, include.hidden)
    parent_at = parent_names.index(relation.parent_field.name)
    child_at = form.names.index(relation.child_field.name)
    keys = list(dict.fromkeys(row[parent_at] for row in parents if row[parent_at] is not None))
    cached = _children_statement(dialect, include)
    filtered = children_parameters(include)
    rows: list[Row] = []
    for start in range(0, len(keys), CHILD_KEYS_PER_QUERY):
        rows.extend(await session.fetch(cached, {**filtered, "keys": keys[start : start + CHILD_KEYS_PER_QUERY]}))
    by_key: dict[Any, list[Row]] = {}
    for row in rows:
        by_key.setdefault(row[child_at], []).append(row)
    nested = [await _fetch_children(session, dialect, deeper, form.names, rows) for deeper in include.includes]
    return _Children(include, form, parent_at, by_key, tuple(nested))


def _render(form: _Form, rows: Sequence[Row], children: tuple[_Children, ...]) -> list[dict[str, Any]]:
    """API objects, each with its children under the relation names (a key shared by parents renders once)."""
    render = form.render
    if not children:
        return [render(row) for row in rows]
    rendered: list[dict[Any, list[dict[str, Any]]]] = [{} for _ in children]
    items = []
    for row in rows:
        item = render(row)
        for level, done in zip(children, rendered, strict=True):
            key = row[level.parent_at]
            found = done.get(key)
            if found is None:
                found = done[key] = _render(level.form, level.by_key.get(key, ()), level.nested)
            item[level.include.relation.name] = found
        items.append(item)
    return items


# --- statements, per shape ------------------------------------------------------------------------------------


def _root_statement(dialect: Dialect, plan: ReadPlan) -> CachedRead:
    return cached_read(dialect, plan.entity, read_shape(plan), lambda: build_read(plan))


def _count_statement(dialect: Dialect, plan: ReadPlan) -> CachedRead:
    shape = ("count", conditions_shape(plan.conditions))
    return cached_read(dialect, plan.entity, shape, lambda: build_count(plan))


def _estimate_statement(dialect: Dialect, plan: ReadPlan) -> CachedRead:
    shape = ("estimate", conditions_shape(plan.conditions))
    return cached_read(dialect, plan.entity, shape, lambda: build_estimate(plan, dialect.name))


def _children_statement(dialect: Dialect, include: IncludePlan) -> CachedRead:
    key_array = dialect.name == "postgresql"
    shape = children_shape(include)
    return cached_read(dialect, include.entity, shape, lambda: build_children(include, key_array=key_array))


def cached_read(
    dialect: Dialect, entity: EntitySnapshot, shape: tuple[Any, ...], build: Callable[[], Select[Any] | Explain]
) -> CachedRead:
    """The entity's compiled statement of this shape, built and compiled on first use."""
    statements = entity.read_statements
    cached: CachedRead | None = statements.get(shape)
    if cached is None:
        cached = statements.remember(shape, _compiled(dialect, build()))
    return cached


def _compiled(dialect: Dialect, statement: Select[Any] | Explain) -> CachedRead:
    if dialect.name != "postgresql":
        return CachedRead(statement, None, ())
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)  # an Explain compiles as the statement it wraps
    return CachedRead(statement, compiled.string, tuple(compiled.positiontup or ()))


# --- the two drivers ------------------------------------------------------------------------------------------


class _DriverSession:
    """PostgreSQL: one connection of the asyncpg pool, given each statement's compiled SQL."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def fetch(self, cached: CachedRead, params: dict[str, Any]) -> Sequence[Row]:
        rows: Sequence[Row] = await self._connection.fetch(cached.sql, *[params[name] for name in cached.names])
        return rows


class _EngineSession:
    """SQLite, MariaDB: one SQLAlchemy connection, given the statement (SQLAlchemy caches its compiled form)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def fetch(self, cached: CachedRead, params: dict[str, Any]) -> Sequence[Row]:
        rows: Sequence[Row] = (await self._conn.execute(cached.statement, params)).all()
        return rows
