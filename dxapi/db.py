"""Database engines: one async engine per process, with the per-backend session settings dxapi relies on.

Fed by ``Settings.database_url`` (a plain SQLAlchemy URL such as ``postgresql://…``); feeds the registry
(configuration and reflection) and the executor. Dialect differences that matter at connect time live here:
SQLite gets foreign keys, WAL and a busy timeout; MariaDB/MySQL gets strict mode (no silent truncation), UTC
and utf8mb4.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "asyncmy", "mariadb": "asyncmy"}

MYSQL_SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"


def async_url(url: str | URL) -> URL:
    """Map a plain URL to dxapi's async driver: ``postgresql://h/db`` → ``postgresql+asyncpg://h/db``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"unsupported database `{backend}`; use sqlite, postgresql or mysql/mariadb")
    if backend == "mariadb":
        # asyncmy is registered under the mysql dialect; MariaDB speaks the same protocol.
        parsed = parsed.set(drivername="mysql")
        backend = "mysql"
    parsed = parsed.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}")
    if backend == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def backend_name(url: str | URL) -> str:
    name = make_url(url).get_backend_name()
    return "mysql" if name == "mariadb" else name


def create_engine(url: str | URL, *, pool_size: int = 10, pool_timeout: float = 3.0) -> AsyncEngine:
    target = async_url(url)
    backend = target.get_backend_name()
    options: dict[str, Any] = {}
    if backend == "sqlite":
        # A file database is cheap to open and aiosqlite runs one thread per connection; NullPool avoids
        # holding idle threads and keeps writers from starving each other on the file lock.
        database = target.database or ""
        if database in ("", ":memory:"):
            raise ValueError("dxapi needs a SQLite file database, not an in-memory one")
        options["poolclass"] = NullPool
    else:
        # No pre-ping: it would cost a round trip per request. A connection that died is detected on use,
        # the pool is invalidated, and reads retry once (execute.read).
        options.update(pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout, pool_recycle=1800)
    # JSON columns arrive as their text, on every path: the json codec's renderer decodes them (and answers
    # null for text that is no JSON). A driver- or SQLAlchemy-side decoder would hand it a decoded string, which
    # it could not tell from JSON text: "[1, 2]" stored as a string would be answered as a list.
    engine = create_async_engine(target, json_deserializer=_json_text, **options)
    _install_session_settings(engine, backend)
    return engine


def _json_text(text: str) -> str:
    return text


async def create_driver_pool(url: str | URL, *, size: int, timeout: float) -> Any | None:
    """PostgreSQL only: a plain asyncpg pool for every read (``execute.read``: a request's root rows and its
    includes, on one connection); None elsewhere.

    SQLAlchemy's pool checkout costs about as much as the query itself at a few thousand requests per
    second; asyncpg's own pool is the one a hand-written server would use.
    """
    target = make_url(url)
    if target.get_backend_name() != "postgresql":
        return None
    import asyncpg

    return await asyncpg.create_pool(
        host=target.host,
        port=target.port,
        user=target.username,
        password=target.password,
        database=target.database,
        min_size=0,
        max_size=size,
        timeout=timeout,
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
    )


async def _keep_session(connection: Any) -> None:
    """The read pool only ever runs SELECTs in autocommit: no session state to undo, so the default reset
    (``RESET ALL; UNLISTEN *; …``, one more round trip per request) is skipped."""


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same pool for reads without BEGIN/ROLLBACK round trips around every SELECT.

    At READ COMMITTED (the default of PostgreSQL) each statement sees its own snapshot inside a transaction
    too, so autocommit changes nothing a reader could notice. MariaDB keeps transactions: switching
    autocommit there costs a round trip of its own, and SQLite sends its own BEGIN (see below).
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


IMMEDIATE = "dxapi_immediate"


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same pool for transactions that write.

    SQLite: they BEGIN IMMEDIATE, taking the write lock first and waiting for it (busy timeout). A deferred
    transaction that reads first cannot take the lock once another writer committed after its read began
    (`SQLITE_BUSY_SNAPSHOT`): it failed at once, answered 409, instead of waiting its turn.
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{IMMEDIATE: True})
    return engine


def _install_session_settings(engine: AsyncEngine, backend: str) -> None:
    if backend == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # The driver's own transaction handling starts transactions late (at the first write) and not
            # at all for SAVEPOINT, so a released savepoint would commit: SQLAlchemy's documented recipe
            # switches it off and sends BEGIN itself (below).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; commits skip an fsync
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(IMMEDIATE) else "BEGIN")

    elif backend == "mysql":

        @event.listens_for(engine.sync_engine, "connect")
        def _mysql_session(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute(f"SET SESSION sql_mode='{MYSQL_SQL_MODE}'")
            cursor.execute("SET SESSION time_zone='+00:00'")
            cursor.close()
