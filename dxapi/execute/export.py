"""Executing exports: every row of a list read, in its order, as batches of rendered rows while the database
produces them.

Fed by plans (``plan``) and statements (``sql.build.build_export``); feeds ``streaming``, which writes each
batch as NDJSON or CSV and sends it before the next one is fetched. A batch is ``BATCH_ROWS`` rows, rendered
by the same code as a page (``execute.read._render``: includes, value types, and whatever the plan selects),
so memory stays one batch deep however many rows match.

* PostgreSQL: a cursor of the asyncpg pool's connection inside a read-only transaction, ``FETCH``-ed one batch
  at a time. Each fetch is a statement of its own, so ``statement_timeout`` bounds each fetch, not the export.
* MariaDB: SQLAlchemy's server-side cursor (asyncmy's unbuffered ``SSCursor``), read a batch at a time. The
  server cannot bound a fetch, and ``max_statement_time`` would count the whole export (the time a slow
  client takes to read included), so the export's statement runs without it. An unbuffered result holds its
  connection until it is read to the end: included rows come from a second connection, and an export that
  ends early drops its connection instead of draining the rest of the result.
* SQLite: the same chunked fetch, in one read transaction. The interrupt that enforces the statement timeout
  (``db._interrupt_after``) is restarted for every batch: the bound is per fetch here too.

An export that ends before its last row (the client went away, or the database failed) releases its
connection when the generator is closed: ``streaming`` closes it at once, never leaving it to the collector.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi.db import STATEMENT_LIMIT, DriverPool, drop_connection
from dxapi.execute.read import (
    CachedRead,
    Row,
    _compiled,
    _DriverSession,
    _EngineSession,
    _fetch_children,
    _render,
    _Session,
)
from dxapi.plan.types import ReadPlan
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
    return _engine(engine, plan)


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


async def _engine(engine: AsyncEngine, plan: ReadPlan) -> AsyncGenerator[Batch, None]:
    dialect = engine.dialect
    mysql = dialect.name == "mysql"
    cached = _statement(dialect, plan)
    async with AsyncExitStack() as stack:
        conn = await stack.enter_async_context(engine.connect())
        limit = conn.info.get(STATEMENT_LIMIT) if mysql else None
        if limit is not None:
            await conn.exec_driver_sql("SET SESSION max_statement_time = 0")
        # An unbuffered MariaDB result allows no other statement on its connection until it is read through.
        children = await stack.enter_async_context(engine.connect()) if mysql and plan.includes else conn
        async with _dropped_unless_finished(conn, mysql):
            result = await conn.stream(cached.statement, read_parameters(plan))
            session = _EngineSession(children)
            while True:
                _restart_interrupt_clock(conn)
                rows = await result.fetchmany(BATCH_ROWS)
                yield await _rendered(session, dialect, plan, rows)
                if len(rows) < BATCH_ROWS:
                    break
            await result.close()
        if limit is not None:
            await conn.exec_driver_sql(f"SET SESSION {limit}")


@asynccontextmanager
async def _dropped_unless_finished(conn: AsyncConnection, drop: bool) -> AsyncIterator[None]:
    """On MariaDB, a result not read to its end is dropped with its connection: closing it would read (and
    the server send) every remaining row first; the server ends the query when it finds the socket closed."""
    try:
        yield
    except BaseException:
        if drop:
            await drop_connection(conn)
        raise


def _restart_interrupt_clock(conn: AsyncConnection) -> None:
    started = conn.info.get("dxapi_statement_started")  # SQLite only (db._interrupt_after)
    if started is not None and started[0]:
        started[0] = time.monotonic()


async def _rendered(session: _Session, dialect: Dialect, plan: ReadPlan, rows: list[Row]) -> Batch:
    children = [await _fetch_children(session, dialect, include, plan.entity, rows) for include in plan.includes]
    return _render(plan.entity, rows, tuple(children))


def _statement(dialect: Dialect, plan: ReadPlan) -> CachedRead:
    statements = plan.entity.read_statements
    shape = export_shape(plan)
    cached: CachedRead | None = statements.get(shape)
    if cached is None:
        cached = statements.remember(shape, _compiled(dialect, build_export(plan)))
    return cached
