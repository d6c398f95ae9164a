"""The counter store behind rate limits and throttles: shared by every worker and host that uses the same one.

``hit(key, window_seconds, cost)`` adds ``cost`` to the key's counter atomically and returns the count and the
seconds until its window ends. A window starts with the first hit after the previous one ended (not at a
clock boundary): a burst is counted in one window, never split over two, so "at most N per window" holds for
every burst and a test never straddles a boundary. ``take_back`` undoes a hit (a throttle's "forgive").

Two stores: ``DatabaseCounters`` (default) — one upsert statement per hit on the table ``dx_rate_counter``, its
result read back by the same statement (``RETURNING``: PostgreSQL, SQLite, MariaDB ≥ 10.5); ``RedisCounters``
when ``DXAPI_REDIS_URL`` is set — one Lua script per hit (atomic in Redis). Hosts compare windows by their own
clocks: keep them in sync (NTP).

An outage of the store (Redis down, a database error) must not fail requests: a hit that cannot be counted
returns None and the request is admitted (fail-open), with a warning (repeats are collapsed by ``dxapi.logs``);
for one second after a failure the store is not asked at all, so an unreachable host costs no request its
connect timeout. Fed by ``quota`` and ``auth.throttle``; pruned by ``feed.retention.prune_forever``.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, Table, bindparam, case, delete, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.db import DriverPool, reader, writer
from dxapi.registry.tables import dx_rate_counter

if TYPE_CHECKING:  # settings import the rate parser of this package
    from dxapi.settings import Settings

log = logging.getLogger("dxapi.limits")

PAUSE_AFTER_FAILURE = 1.0  # seconds the store is left alone after a failure
KEY_CHARS = 200  # longer keys (a long alias) are stored as their digest: fits the column and Redis alike


@dataclass(frozen=True, slots=True)
class Hit:
    count: int  # the key's count in its window, this hit included
    resets_in: float  # seconds until the window ends


def _stored(key: str) -> str:
    if len(key) <= KEY_CHARS:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class Counters(abc.ABC):
    """What both stores share: the fail-open guard around their ``_hit`` and ``_take_back``."""

    name = "counters"
    failures: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self) -> None:
        self._paused_until = 0.0

    async def hit(self, key: str, window: int, cost: int = 1) -> Hit | None:
        """Count ``cost`` on ``key`` in its window of ``window`` seconds; None if the store failed."""
        if self._paused_until and time.monotonic() < self._paused_until:
            return None
        try:
            return await self._hit(_stored(key), window * 1000, cost)
        except self.failures as exc:
            self._failed(exc)
            return None

    async def take_back(self, key: str, cost: int = 1) -> None:
        """Undo a hit on ``key`` in its current window (if the window ended since, there is nothing to undo)."""
        if self._paused_until and time.monotonic() < self._paused_until:
            return
        try:
            await self._take_back(_stored(key), cost)
        except self.failures as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
        log.warning("rate-limit counters (%s) unavailable, requests are admitted uncounted: %s", self.name, exc)

    @abc.abstractmethod
    async def _hit(self, key: str, window_ms: int, cost: int) -> Hit: ...

    @abc.abstractmethod
    async def _take_back(self, key: str, cost: int) -> None: ...

    async def prune(self) -> int:
        """Remove ended windows; returns how many (a store whose keys expire by themselves has none)."""
        return 0

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store's connections."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class DatabaseCounters(Counters):
    """Counters in ``dx_rate_counter`` of the served database, on the worker's own pools: on PostgreSQL the hit
    runs on the asyncpg pool when there is one (``db.DriverPool``: SQLAlchemy's checkout would cost about as
    much as the statement), everything else on the engine."""

    name = "database"
    failures: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)

    def __init__(self, engine: AsyncEngine, driver_pool: DriverPool | None = None) -> None:
        super().__init__()
        self._engine = engine
        self._upsert = _upsert(dx_rate_counter, engine.dialect.name)
        self._driver_pool = driver_pool
        if driver_pool is not None:
            import asyncpg
            from sqlalchemy.dialects.postgresql import asyncpg as on_asyncpg

            compiled = self._upsert.compile(dialect=on_asyncpg.dialect())  # type: ignore[no-untyped-call]
            self._driver_upsert = (compiled.string, tuple(compiled.positiontup or ()))
            # Waiting for a free connection past DXAPI_POOL_TIMEOUT is a TimeoutError.
            self.failures = (*self.failures, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
        table = dx_rate_counter
        self._take_back_statement = (
            update(table)
            .where(table.c.name == bindparam("key"), table.c.hits >= bindparam("cost"))
            .where(table.c.expires_at > bindparam("now"))
            .values(hits=table.c.hits - bindparam("cost"))
        )

    async def _hit(self, key: str, window_ms: int, cost: int) -> Hit:
        now = _now_ms()
        values = {"key": key, "cost": cost, "now": now, "expires": now + window_ms}
        if self._driver_pool is not None:  # autocommit: the statement is its own transaction
            statement, order = self._driver_upsert
            async with self._driver_pool.acquire() as connection:
                count, expires_at = await connection.fetchrow(statement, *(values[name] for name in order))
        else:  # on PostgreSQL the engine is in autocommit too (db.reader)
            async with self._engine.begin() as conn:
                count, expires_at = (await conn.execute(self._upsert, values)).one()
        return Hit(int(count), max(0.0, (int(expires_at) - now) / 1000))

    async def _take_back(self, key: str, cost: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(self._take_back_statement, {"key": key, "cost": cost, "now": _now_ms()})

    async def close(self) -> None:
        """Nothing of its own: the engine is the worker's, disposed with it."""

    async def prune(self) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(dx_rate_counter).where(dx_rate_counter.c.expires_at <= _now_ms()))
        return int(result.rowcount)


def _upsert(table: Table, dialect: str) -> Insert:
    """The one statement of a hit: insert the key's row, or add to it — or restart it if its window ended —
    and return the row as it now is. The row lock of the conflicting row makes concurrent hits queue."""
    ended = table.c.expires_at <= bindparam("now")
    values: dict[str, Any] = {"name": bindparam("key"), "hits": bindparam("cost"), "expires_at": bindparam("expires")}
    if dialect == "mysql":
        insert = mysql.insert(table).values(values)
        # MariaDB assigns left to right, each seeing the ones before: `hits` first, while `expires_at` is old.
        merged: Insert = insert.on_duplicate_key_update(
            [
                ("hits", case((ended, insert.inserted.hits), else_=table.c.hits + insert.inserted.hits)),
                ("expires_at", case((ended, insert.inserted.expires_at), else_=table.c.expires_at)),
            ]
        ).returning(table.c.hits, table.c.expires_at)
        return merged
    upsert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(table).values(values)
    upserted: Insert = upsert.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={
            "hits": case((ended, upsert.excluded.hits), else_=table.c.hits + upsert.excluded.hits),
            "expires_at": case((ended, upsert.excluded.expires_at), else_=table.c.expires_at),
        },
    ).returning(table.c.hits, table.c.expires_at)
    return upserted


# KEYS[1] the counter; ARGV[1] the cost, ARGV[2] the window in ms. The first hit of a window sets its expiry;
# a key found without one (left by an interrupted script) gets one too, so no counter lives forever.
_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == tonumber(ARGV[1]) or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""
# Only a live window is decremented: a DECRBY on an ended one would create a key without expiry.
_TAKE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('DECRBY', KEYS[1], ARGV[1])
end
return 0
"""


class RedisCounters(Counters):
    """Counters in Redis (``DXAPI_REDIS_URL``) under ``DXAPI_REDIS_PREFIX``; keys expire with their window."""

    name = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        import redis.asyncio  # only where Redis is configured: the database store needs none of it

        self.failures = (redis.RedisError, OSError)
        # Short timeouts: a hung Redis must cost a request a moment, then the pause after a failure applies.
        self._redis: Any = redis.asyncio.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._prefix = prefix
        self._hit_script = self._redis.register_script(_HIT)
        self._take_back_script = self._redis.register_script(_TAKE_BACK)

    async def _hit(self, key: str, window_ms: int, cost: int) -> Hit:
        count, ttl = await self._hit_script(keys=[self._prefix + key], args=[cost, window_ms])
        return Hit(int(count), int(ttl) / 1000)

    async def _take_back(self, key: str, cost: int) -> None:
        await self._take_back_script(keys=[self._prefix + key], args=[cost])

    async def close(self) -> None:
        await self._redis.aclose()


def open_counters(settings: Settings, engine: AsyncEngine, driver_pool: DriverPool | None = None) -> Counters:
    """Redis when ``DXAPI_REDIS_URL`` is set, else the database ``engine`` serves: on PostgreSQL a hit is one
    statement in autocommit (on ``driver_pool`` if given, else ``db.reader``), elsewhere a short transaction
    of its own (SQLite's takes the write lock first, ``db.writer``)."""
    if settings.redis_url:
        return RedisCounters(settings.redis_url, settings.redis_prefix)
    if engine.dialect.name == "postgresql":
        return DatabaseCounters(reader(engine, pgbouncer=settings.pgbouncer), driver_pool)
    return DatabaseCounters(writer(engine))
