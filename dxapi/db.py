"""Database engines: one async engine per process, with the per-backend session settings dxapi relies on.

Fed by ``Settings.database_url`` (a plain SQLAlchemy URL such as ``postgresql://…``); feeds the registry
(configuration and reflection) and the executor. Dialect differences that matter at connect time live here:
SQLite gets foreign keys, WAL and a busy timeout; MariaDB/MySQL gets strict mode (no silent truncation), UTC
and utf8mb4.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import LRUCache
from sqlalchemy.util.concurrency import await_

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


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the database may take, enforced on its side where it can (seconds; None: no bound).

    ``statement`` is also the client's bound on any one call (plus ``CLIENT_MARGIN``, so the database's own
    cancel normally comes first): a database that stopped answering altogether cannot cancel anything.
    """

    connect: float = 3.0
    statement: float | None = 10.0
    lock: float | None = 5.0

    @classmethod
    def of(cls, settings: Any) -> Timeouts:
        return cls(settings.connect_timeout, settings.statement_timeout, settings.lock_timeout)


CLIENT_MARGIN = 0.5  # seconds the client waits beyond the server-side statement timeout
# Commands (`dxapi init`, `config import`) may install a change capture over a large table: no statement bound.
UNBOUNDED = Timeouts(statement=None, lock=None)


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    pool_timeout: float = 3.0,
    timeouts: Timeouts = UNBOUNDED,
    pgbouncer: bool = False,
) -> AsyncEngine:
    """``pgbouncer``: ``url`` names a PgBouncer in transaction mode (PostgreSQL; see ``_pgbouncer_args``)."""
    target = async_url(url)
    backend = target.get_backend_name()
    pooled = pgbouncer and backend == "postgresql"
    connect_args = _pgbouncer_args(timeouts) if pooled else _connect_args(backend, timeouts)
    options: dict[str, Any] = {"connect_args": connect_args}
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
    _install_session_settings(engine, backend, timeouts)
    if backend == "postgresql" and not pooled:
        event.listen(engine.sync_engine, "connect", _bound_large_statements)
    if pooled:
        _limit_each_transaction(engine, timeouts)
    return engine


def _connect_args(backend: str, timeouts: Timeouts) -> dict[str, Any]:
    if backend == "postgresql":
        return {"timeout": timeouts.connect, **_pg_limits(timeouts)}
    if backend == "mysql":
        return {"connect_timeout": timeouts.connect}
    return {}


def _pg_limits(timeouts: Timeouts) -> dict[str, Any]:
    """asyncpg's connect arguments for the statement and lock bounds: the server's settings, and the client's
    own bound on every call (``command_timeout``)."""
    settings = {}
    if timeouts.statement is not None:
        settings["statement_timeout"] = str(int(timeouts.statement * 1000))
    if timeouts.lock is not None:
        # PostgreSQL bounds each lock wait, and a writer queued behind another one for a row waits twice (for
        # the row's tuple lock, then for the holder's transaction): half each keeps the whole wait within it.
        settings["lock_timeout"] = str(int(timeouts.lock * 500))
    found: dict[str, Any] = {"server_settings": settings} if settings else {}
    if timeouts.statement is not None:
        found["command_timeout"] = timeouts.statement + CLIENT_MARGIN
    return found


def _pgbouncer_args(timeouts: Timeouts) -> dict[str, Any]:
    """asyncpg behind PgBouncer in transaction mode, where consecutive transactions of one client connection
    may run on different server connections (Debian's PgBouncer 1.18 tracks no prepared statements).

    No statement is kept prepared, neither by asyncpg nor by SQLAlchemy's dialect: asyncpg then parses every
    statement as the unnamed one, sent again with its execution, so nothing is left behind on a server
    connection that another client would meet. No ``server_settings``: PgBouncer refuses unknown startup
    parameters, and would not carry them to the server connections it hands out anyway; the bounds are set
    per transaction instead (``_limit_each_transaction``). The client's own bound stays."""
    found: dict[str, Any] = {"timeout": timeouts.connect, "statement_cache_size": 0, "prepared_statement_cache_size": 0}
    if timeouts.statement is not None:
        found["command_timeout"] = timeouts.statement + CLIENT_MARGIN
    return found


def _limit_each_transaction(engine: AsyncEngine, timeouts: Timeouts) -> None:
    """Behind PgBouncer: the statement and lock bounds as ``SET LOCAL`` at the start of every transaction (one
    statement for both), so they hold on whichever server connection the transaction runs."""
    settings = _pg_limits(timeouts).get("server_settings", {})
    if not settings:
        return
    statement = "SELECT " + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in settings.items())

    @event.listens_for(engine.sync_engine, "begin")
    def _set_local(conn: Any) -> None:
        conn.exec_driver_sql(statement)


async def drop_connection(conn: AsyncConnection) -> None:
    """Discard a connection whose database stopped answering, at once (see ``_close_at_once``)."""
    if conn.invalidated:
        return
    _close_at_once(conn.dialect.name, (await conn.get_raw_connection()).driver_connection)
    await conn.invalidate()


def _close_at_once(backend: str, driver: Any) -> None:
    """Close a driver connection sending nothing. SQLAlchemy's invalidation first says goodbye to the server
    and waits for it — asyncpg up to 2 s, asyncmy without a bound — which a hung database never acknowledges;
    after this it finds the connection closed and only forgets it. (aiosqlite has no server to wait for.)"""
    if driver is None:
        return
    if backend == "postgresql":
        driver.terminate()
    elif backend == "mysql":
        driver.close()


def _drop_on_silence(context: ExceptionContext) -> None:
    """A statement, commit or rollback that got no answer in time (the client's command timeout), met a
    broken socket, or was cancelled mid-way leaves the connection in an unknown state: drop it now.

    Left to SQLAlchemy, a timed-out statement (not a DBAPI error) keeps its connection, which is then rolled
    back — another wait as long on a database that hangs — and only then invalidated, politely. Only this
    connection goes: one slow answer says nothing about the others in the pool."""
    original = context.original_exception
    silent = isinstance(original, OSError) or not isinstance(original, Exception)
    conn = context.connection
    if not (silent or context.is_disconnect) or conn is None or conn.invalidated:
        return
    _close_at_once(context.dialect.name, conn.connection.driver_connection)
    context.is_disconnect = True
    if isinstance(original, OSError):
        context.invalidate_pool_on_disconnect = False


def _json_text(text: str) -> str:
    return text


async def create_driver_pool(
    url: str | URL, *, size: int, timeout: float, timeouts: Timeouts = UNBOUNDED
) -> DriverPool | None:
    """PostgreSQL only: a plain asyncpg pool for every read (``execute.read``: a request's root rows and its
    includes, on one connection) and for writes that are one statement (``execute.one_statement``); None
    elsewhere.

    SQLAlchemy's pool checkout costs about as much as the query itself at a few thousand requests per
    second; asyncpg's own pool is the one a hand-written server would use.
    """
    target = make_url(url)
    if target.get_backend_name() != "postgresql":
        return None
    import asyncpg

    pool = await asyncpg.create_pool(
        host=target.host,
        port=target.port,
        user=target.username,
        password=target.password,
        database=target.database,
        min_size=0,
        max_size=size,
        timeout=timeouts.connect,
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
        **_pg_limits(timeouts),
    )
    return DriverPool(pool, timeout)


@dataclass(frozen=True, slots=True)
class DriverPool:
    """The asyncpg pool, acquired with the request's bound (``DXAPI_POOL_TIMEOUT``: waiting for a free
    connection and opening one) like SQLAlchemy's pool is; asyncpg's own default is to wait forever."""

    pool: Any  # asyncpg.Pool
    acquire_timeout: float

    def acquire(self) -> Any:
        return self.pool.acquire(timeout=self.acquire_timeout)

    async def close(self) -> None:
        await self.pool.close()


async def _keep_session(connection: Any) -> None:
    """The driver pool only ever runs statements in autocommit (the counts' read-only transactions end with
    their block): no session state to undo, so the default reset
    (``RESET ALL; UNLISTEN *; …``, one more round trip per request) is skipped."""


def reader(engine: AsyncEngine, *, pgbouncer: bool = False) -> AsyncEngine:
    """The same pool for reads without BEGIN/ROLLBACK round trips around every SELECT.

    At READ COMMITTED (the default of PostgreSQL) each statement sees its own snapshot inside a transaction
    too, so autocommit changes nothing a reader could notice. MariaDB keeps transactions: switching
    autocommit there costs a round trip of its own, and SQLite sends its own BEGIN (see below). Behind
    PgBouncer reads keep their transactions too: the timeouts are set at their start (``_limit_each_transaction``).
    """
    if engine.dialect.name == "postgresql" and not pgbouncer:
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


def _install_session_settings(engine: AsyncEngine, backend: str, timeouts: Timeouts) -> None:
    event.listen(engine.sync_engine, "handle_error", _drop_on_silence)
    if backend == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
            # The driver's own transaction handling starts transactions late (at the first write) and not
            # at all for SAVEPOINT, so a released savepoint would commit: SQLAlchemy's documented recipe
            # switches it off and sends BEGIN itself (below).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; commits skip an fsync
            # The busy timeout is the lock timeout: how long a writer waits for the database's write lock.
            cursor.execute(f"PRAGMA busy_timeout={int((timeouts.lock or 5.0) * 1000)}")
            cursor.close()
            if timeouts.statement is not None:
                _interrupt_after(dbapi_conn, record, timeouts.statement)

        event.listen(engine.sync_engine, "before_cursor_execute", _note_statement_start)

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(IMMEDIATE) else "BEGIN")

    elif backend == "mysql":

        @event.listens_for(engine.sync_engine, "connect")
        def _mysql_session(dbapi_conn: Any, record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute(f"SET SESSION sql_mode='{MYSQL_SQL_MODE}'")
            cursor.execute("SET SESSION time_zone='+00:00'")
            if timeouts.lock is not None:  # whole seconds, at least 1
                cursor.execute(f"SET SESSION innodb_lock_wait_timeout={max(1, math.ceil(timeouts.lock))}")
            if timeouts.statement is not None:
                cursor.execute("SELECT VERSION()")
                mariadb = "mariadb" in str(cursor.fetchone()[0]).lower()
                if mariadb:
                    cursor.execute(f"SET SESSION max_statement_time={timeouts.statement}")
                    record.info[STATEMENT_LIMIT] = f"max_statement_time={timeouts.statement}"
                else:  # MySQL bounds SELECTs only
                    cursor.execute(f"SET SESSION max_execution_time={int(timeouts.statement * 1000)}")
            cursor.close()


# asyncpg's own statement cache counts a statement longer than this as large (``max_cacheable_statement_size``).
LARGE_STATEMENT = 15 * 1024


class BoundedStatementCache(LRUCache[str, Any]):
    """SQLAlchemy's cache of prepared statements (per asyncpg connection, 100 of them) with one large one at most.

    It keeps every statement whatever its size: a POST of 1000 rows is one INSERT of about 190 KB of SQL whose
    prepared form describes its 9000 parameters (about 0.7 MB in all), and each connection kept one per batch
    size and column set it had run: a worker grew by about 40 MB after twelve batch sizes on four connections,
    and would have gone on growing. Here a connection keeps its last large statement only, so a client that
    repeats its batch size still skips the prepare (about 40 ms for 1000 rows), and the rest is bounded.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._large: str | None = None

    def __setitem__(self, key: str, value: Any) -> None:
        if len(key) > LARGE_STATEMENT:
            if self._large is not None and self._large != key and self._large in self:
                del self[self._large]
            self._large = key
        super().__setitem__(key, value)


def _bound_large_statements(dbapi_conn: Any, record: Any) -> None:
    cache = getattr(dbapi_conn, "_prepared_statement_cache", None)
    if cache is not None:
        dbapi_conn._prepared_statement_cache = BoundedStatementCache(cache.capacity)


def _interrupt_after(dbapi_conn: Any, record: Any, seconds: float) -> None:
    """SQLite has no statement timeout: a progress handler, called every few thousand virtual-machine steps,
    interrupts a statement that has run longer than ``seconds`` ("interrupted", answered 503 ``5005``).

    The handler runs in aiosqlite's thread, where the sqlite3 connection lives; the start of each statement is
    noted on the event loop's side (``_note_statement_start``), in the connection record's ``info``.
    """
    started = record.info["dxapi_statement_started"] = [0.0]  # monotonic start of the running statement

    def handler() -> int:
        return 1 if started[0] and time.monotonic() - started[0] > seconds else 0

    await_(dbapi_conn.driver_connection.set_progress_handler(handler, 10_000))


def _note_statement_start(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
    started = conn.info.get("dxapi_statement_started")
    if started is not None:
        started[0] = 0.0 if conn.info.get(UNBOUNDED_NOW) else time.monotonic()


STATEMENT_LIMIT = "dxapi_statement_limit"  # MariaDB: the session's max_statement_time setting, to restore
UNBOUNDED_NOW = "dxapi_unbounded"  # SQLite: the progress handler lets statements run


@contextlib.contextmanager
def unbounded_statements(conn: Connection) -> Iterator[None]:
    """Statements without ``DXAPI_STATEMENT_TIMEOUT`` (the lock timeout stays): installing a change capture
    copies every key of a table, which may take longer than any request should."""
    backend = conn.dialect.name
    if backend == "postgresql":
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")  # until the transaction ends
        yield
        return
    limit = conn.info.get(STATEMENT_LIMIT)
    if backend == "mysql" and limit is not None:
        conn.exec_driver_sql("SET SESSION max_statement_time = 0")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SET SESSION {limit}")
        return
    conn.info[UNBOUNDED_NOW] = True
    try:
        yield
    finally:
        conn.info.pop(UNBOUNDED_NOW, None)
