"""Executing exports: every row of a list read, in its order, as batches of rendered rows while the database
produces them.

Fed by plans (``plan``) and statements (``sql.build.build_export``); feeds ``streaming``, which writes each
batch as NDJSON or CSV and sends it before the next one is fetched. A batch is ``BATCH_ROWS`` rows, rendered
by the same code as a page (``execute.read._render``: includes, value types, and whatever the plan selects),
so memory stays one batch deep however many rows match.

* PostgreSQL: a cursor of the asyncpg pool's connection inside a read-only transaction, ``FETCH``-ed one batch
  at a time. Each fetch is a statement of its own, so ``statement_timeout`` bounds each fetch, not the export.
* MariaDB: one keyset query per batch (the rows after the previous batch's last row in the plan's order, as
  ``page[cursor]`` pages), in one transaction: InnoDB's repeatable read gives every batch the snapshot of the
  first. Not a server-side cursor: asyncmy reads an unbuffered result into its own buffer as fast as the server
  sends it, with no flow control, so memory would grow with the result. Each batch is a statement of its own,
  bounded by ``max_statement_time``. (A sort on a column without an index costs a sort per batch.)
* SQLite: SQLAlchemy's streamed result (the statement steps as rows are fetched), in one read transaction.
  The interrupt that enforces the statement timeout (``db._interrupt_after``) is restarted for every batch:
  the bound is per fetch here too.

An export that ends before its last row (the client went away, or the database failed) releases its
connection when the generator is closed: ``streaming`` closes it at once, never leaving it to the collector.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi.db import DriverPool
from dxapi.execute.read import (
    CachedRead,
    Row,
    _DriverSession,
    _EngineSession,
    _fetch_children,
    _form,
    _render,
    _root_statement,
    _Session,
    cached_read,
)
from dxapi.plan.types import CursorPlan, ReadPlan
from dxapi.sql.build import build_export, export_shape, read_parameters

# Rows per fetch: large enough that a round trip per batch costs little against rendering it, small enough
# that a batch (its rows, their rendered objects and bytes: about 1 MB for wide rows) keeps memory flat.
BATCH_ROWS = 1000

Batch = list[dict[str, Any]]


def export_batches(engine: AsyncEngine, plan: ReadPlan, pool: DriverPool | None) -> AsyncGenerator[Batch, None]:
    """The plan's rows, rendered, ``BATCH_ROWS`` at a time (the last batch may be shorter, or empty).

    Driver exceptions pass unchanged: the caller translates them per batch (``dberrors``).
    """
    if pool is not None:
        return _postgresql(pool, engine.dialect, plan)
    if engine.dialect.name == "mysql":
        return _mariadb(engine, plan)
    return _sqlite(engine, plan)


async def _postgresql(pool: DriverPool, dialect: Dialect, plan: ReadPlan) -> AsyncGenerator[Batch, None]:
    cached = _statement(dialect, plan)
    params = read_parameters(plan)
    async with pool.acquire() as connection, connection.transaction(readonly=True):
        cursor = await connection.cursor(cached.sql, *[params[name] for name in cached.names])
        session = _DriverSession(connection)
        while True:
            rows = await cursor.fetch(BATCH_ROWS)
            yield await _rendered(session, dialect, plan, rows)
            if len(rows) < BATCH_ROWS:
                return


async def _sqlite(engine: AsyncEngine, plan: ReadPlan) -> AsyncGenerator[Batch, None]:
    dialect = engine.dialect
    cached = _statement(dialect, plan)
    async with engine.connect() as conn:
        result = await conn.stream(cached.statement, read_parameters(plan))
        session = _EngineSession(conn)
        while True:
            _restart_interrupt_clock(conn)
            rows = await result.fetchmany(BATCH_ROWS)
            yield await _rendered(session, dialect, plan, rows)
            if len(rows) < BATCH_ROWS:
                break
        await result.close()


async def _mariadb(engine: AsyncEngine, plan: ReadPlan) -> AsyncGenerator[Batch, None]:
    dialect = engine.dialect
    # The order keys are selected whatever `fields[...]` shows (plan.build): a batch starts after the last row.
    names = _form(plan.entity, plan.fields, plan.hidden).names
    keys = [names.index(key.field.name) for key in plan.order]
    # A keyset page reads one row more than its limit (execute.read): a limit one short fetches one batch.
    batch = replace(plan, limit=BATCH_ROWS - 1, cursor=CursorPlan(None, ""))
    async with engine.connect() as conn:
        session = _EngineSession(conn)
        while True:
            rows = list(await session.fetch(_root_statement(dialect, batch), read_parameters(batch)))
            yield await _rendered(session, dialect, plan, rows)
            if len(rows) < BATCH_ROWS:
                return
            last = rows[-1]
            batch = replace(batch, cursor=CursorPlan(tuple(last[at] for at in keys), ""))


def _restart_interrupt_clock(conn: AsyncConnection) -> None:
    started = conn.info.get("dxapi_statement_started")  # SQLite only (db._interrupt_after)
    if started is not None and started[0]:
        started[0] = time.monotonic()


async def _rendered(session: _Session, dialect: Dialect, plan: ReadPlan, rows: Sequence[Row]) -> Batch:
    form = _form(plan.entity, plan.fields, plan.hidden)
    children = [await _fetch_children(session, dialect, include, form.names, rows) for include in plan.includes]
    return _render(form, rows, tuple(children))


def _statement(dialect: Dialect, plan: ReadPlan) -> CachedRead:
    return cached_read(dialect, plan.entity, export_shape(plan), lambda: build_export(plan))
