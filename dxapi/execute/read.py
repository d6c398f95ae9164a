"""Executing reads: run the statements of a read plan on one connection and shape rows into API objects.

Fed by plans (``plan``) and statements (``sql``); feeds ``responses``. Database failures are translated by
``dberrors``.

The root query of a request is the hot path of every integration. Its statement is built and compiled once
per request *shape* (``sql.build.read_shape``) and kept in the entity's snapshot; on PostgreSQL the compiled
SQL then goes straight to an asyncpg pool (``db.create_driver_pool``), as a hand-written server would do,
skipping SQLAlchemy's checkout and per-execution machinery (asyncpg returns the same Python values).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi import errors
from dxapi.dberrors import database_errors, schema_changed, unavailable
from dxapi.plan.types import IncludePlan, ReadPlan
from dxapi.sql.build import build_children, build_read, read_parameters, read_shape

log = logging.getLogger("dxapi.execute")

# Parent keys per child query; bounded so every backend's bind-parameter limit holds.
CHILD_KEYS_PER_QUERY = 2000
# Distinct request shapes remembered per entity; past it the cache starts over (a client looping over
# ever new filter combinations must not grow memory).
STATEMENTS_PER_ENTITY = 256


@dataclass(frozen=True, slots=True)
class CachedRead:
    statement: Select[Any]
    sql: str | None  # compiled text for the driver fast path (PostgreSQL), else None
    names: tuple[str, ...]  # bind names in the order of the driver's positional parameters


class _StaleConnection(Exception):
    pass


async def execute_read(engine: AsyncEngine, plan: ReadPlan, pool: Any | None = None) -> list[dict[str, Any]]:
    """Rows of the plan's page with their included children; for ``single`` plans, [] or [one].

    ``pool`` is the asyncpg pool of ``db.create_driver_pool`` (PostgreSQL) for the root query.
    """
    async with database_errors():
        try:
            return await _read(engine, pool, plan)
        except (sa_exc.DBAPIError, _StaleConnection) as exc:
            if isinstance(exc, sa_exc.DBAPIError) and not exc.connection_invalidated:
                raise
            # A pooled connection died (database restarted) and was dropped; reads are safe to repeat once.
            try:
                return await _read(engine, pool, plan)
            except _StaleConnection:
                raise unavailable() from None


async def _read(engine: AsyncEngine, pool: Any | None, plan: ReadPlan) -> list[dict[str, Any]]:
    cached = _cached_read(engine, plan)
    params = read_parameters(plan)
    if pool is not None and cached.sql is not None:
        rows = await _fetch_from_pool(pool, cached.sql, [params[name] for name in cached.names])
        items = _render(plan, rows)
        if plan.includes:
            async with engine.connect() as conn:
                for include in plan.includes:
                    await _attach(conn, include, items)
        return items
    async with engine.connect() as conn:
        items = _render(plan, (await conn.execute(cached.statement, params)).all())
        for include in plan.includes:
            await _attach(conn, include, items)
    return items


def _render(plan: ReadPlan, rows: Any) -> list[dict[str, Any]]:
    if plan.single:
        # A case-insensitive collation (MariaDB) finds `K1` for `k1`; an identifier names exactly one row,
        # the way writes look rows up.
        key = plan.conditions[-1].value
        at = plan.entity.columns.index(plan.entity.identifier.column)
        rows = [row for row in rows if row[at] == key]
    if plan.single and len(rows) > 1:
        log.error("identifier of `%s` is not unique; refusing to pick one row", plan.entity.alias)
        raise errors.INTERNAL_ERROR.error()
    render = plan.entity.render_row
    return [render(row) for row in rows]


def _cached_read(engine: AsyncEngine, plan: ReadPlan) -> CachedRead:
    statements = plan.entity.statements
    shape = read_shape(plan)
    cached: CachedRead | None = statements.get(shape)
    if cached is None:
        statement = build_read(plan)
        sql: str | None = None
        names: tuple[str, ...] = ()
        if engine.dialect.name == "postgresql":
            compiled = statement.compile(dialect=engine.dialect)
            sql, names = compiled.string, tuple(compiled.positiontup or ())
        if len(statements) >= STATEMENTS_PER_ENTITY:
            statements.clear()
        cached = statements[shape] = CachedRead(statement, sql, names)
    return cached


async def _fetch_from_pool(pool: Any, sql: str, args: list[Any]) -> Any:
    import asyncpg

    try:
        async with pool.acquire() as driver:
            return await driver.fetch(sql, *args)
    except TimeoutError:
        log.warning("connection pool exhausted")
        raise unavailable() from None
    except asyncpg.DataError:  # a value the driver cannot encode: a planning bug, never the client's
        log.exception("read parameters rejected by the driver")
        raise errors.INTERNAL_ERROR.error() from None
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        # asyncpg's pool drops a closed connection by itself; the caller retries once on a fresh one.
        raise _StaleConnection() from exc
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        raise schema_changed() from None
    except asyncpg.PostgresError:
        log.exception("unexpected database error on a read")
        raise errors.INTERNAL_ERROR.error() from None


async def _attach(conn: AsyncConnection, include: IncludePlan, parents: list[dict[str, Any]]) -> None:
    """Fill ``parent[relation]`` for every parent with one query per level (chunked for huge pages)."""
    relation = include.relation
    parent_name = relation.parent_field.name
    child_name = relation.child_field.name
    keys = list(dict.fromkeys(p[parent_name] for p in parents if p[parent_name] is not None))
    children: list[dict[str, Any]] = []
    for start in range(0, len(keys), CHILD_KEYS_PER_QUERY):
        chunk = [relation.parent_field.parse(k) if isinstance(k, str) else k
                 for k in keys[start:start + CHILD_KEYS_PER_QUERY]]
        result = await conn.execute(build_children(include, chunk))
        children.extend(include.entity.render_row(row) for row in result)
    by_key: dict[Any, list[dict[str, Any]]] = {}
    for child in children:
        by_key.setdefault(child[child_name], []).append(child)
    for parent in parents:
        parent[relation.name] = by_key.get(parent[parent_name], [])
    for nested in include.includes:
        await _attach(conn, nested, children)
