"""Read replicas: which PostgreSQL server answers a read, and when a replica may.

Fed by ``Settings.read_replica_urls`` (``open_replicas``, from ``app._lifespan``); feeds ``endpoints``, whose
reads (pages, rows with their includes, exports, the change feed) run through :meth:`Replicas.read` and whose
writes report to :meth:`Replicas.wrote`. Writes, and every read inside a write (its own lookups, RETURNING,
idempotency records, preconditions), never come here: they run on the primary's pools as before. So do
configuration loads, principal checks and LISTEN.

* **Health.** Every ``POLL_SECONDS`` one task asks the primary for its WAL flush position and each replica for
  its replay position (one cheap query each, never one per read). A replica is in while it answers, is a
  standby and lags at most ``DXAPI_REPLICA_MAX_LAG``: the lag is how long ago the primary was first seen past
  the position the replica has replayed (0 when it has replayed all the primary had), so an idle primary
  shows no lag; a replica behind the oldest position the worker saw is out (at start-up: until it gets
  there). A replica that fails a poll is out until a poll finds it well again.
* **Read-your-writes.** After a principal's write the primary's WAL insert position is taken (a query after the
  commit: one read inside the write would precede the commit record, which a replica may still be holding
  back) and kept per principal, per worker (at most ``PRINCIPALS_KEPT``, the oldest forgotten first). That
  principal's reads go to a replica that has replayed past it; else they wait for the next polls, up to
  ``DXAPI_REPLICA_WAIT``, then the primary answers. Other principals read from any replica in.
* **Failover.** A read that finds its replica unreachable (after the read path's own retry on a fresh
  connection) is answered by the primary; so is one a replica refused for a conflict with its recovery (40001)
  or for want of a free connection. A read is always safe to repeat. Only the poll takes a replica out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi import errors
from dxapi.db import DriverPool, Timeouts, create_driver_pool, create_engine, reader
from dxapi.settings import Settings

log = logging.getLogger("dxapi.replicas")

T = TypeVar("T")
Read = Callable[[AsyncEngine, DriverPool | None], Awaitable[T]]

POLL_SECONDS = 0.1
POLL_TIMEOUT_SECONDS = 1.0  # a replica that takes longer to say where it stands is out
PRINCIPALS_KEPT = 10_000  # principals whose last write position a worker remembers
UNKNOWN = 2**63 - 1  # a write's position could not be taken: taken again at the principal's next read
# What a replica may answer that the primary would not, for the same read.
RETRIED_CODES = frozenset({errors.DATABASE_UNAVAILABLE.code, errors.POOL_EXHAUSTED.code, errors.WRITE_CONFLICT.code})

INSERT_POSITION = "SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint"
FLUSH_POSITION = "SELECT (pg_current_wal_flush_lsn() - '0/0')::bigint"
REPLAY_POSITION = "SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint"


@dataclass(eq=False, slots=True)
class Replica:
    name: str  # host:port, for the log
    reader: AsyncEngine
    pool: DriverPool | None
    healthy: bool = False
    replayed: int = 0  # WAL position replayed, in bytes
    problem: str = "not polled yet"


@dataclass(eq=False, slots=True)
class Replicas:
    """The replicas of one worker, their poller, and the principals' last write positions."""

    primary_reader: AsyncEngine  # reads the replicas cannot answer
    primary_pool: DriverPool | None
    control: AsyncEngine  # the primary's small pool: its WAL position for the poll
    writer: AsyncEngine  # a write's position, when there is no driver pool
    replicas: list[Replica]
    wait: float
    max_lag: float
    _written: dict[str, int] = field(default_factory=dict)
    _samples: deque[tuple[float, int]] = field(default_factory=deque)  # (loop time, primary's flush position)
    _polled: asyncio.Event = field(default_factory=asyncio.Event)  # set when a poll round ends, then replaced
    _next: int = 0
    _poller: asyncio.Task[None] | None = None

    async def read(self, subject: str, run: Read[T]) -> T:
        replica = await self._choose(subject)
        if replica is None:
            return await run(self.primary_reader, self.primary_pool)
        try:
            return await run(replica.reader, replica.pool)
        except errors.ApiError as exc:
            code = exc.items[0].code if exc.items else None
            if code not in RETRIED_CODES:
                raise
            # Not taken out here: a pooled connection that died with a restart fails a read too, and the poll
            # tells a dead replica from that within a round.
            log.info("replica %s could not answer a read (%s); the primary answers it", replica.name, code)
            return await run(self.primary_reader, self.primary_pool)

    async def wrote(self, subject: str) -> None:
        """After a write of ``subject`` was answered: its reads wait for the primary's position now."""
        position = await self._position()
        written = self._written
        # Writes of one principal run concurrently: a later answer may carry an earlier position.
        written[subject] = max(position, written.pop(subject, 0))
        if len(written) > PRINCIPALS_KEPT:
            del written[next(iter(written))]

    async def _position(self) -> int:
        # Taken after the commit, any later moment is as good: it can only be further.
        try:
            async with asyncio.timeout(POLL_TIMEOUT_SECONDS):
                if self.primary_pool is not None:
                    async with self.primary_pool.acquire() as connection:
                        return int(await connection.fetchval(INSERT_POSITION))
                return int(await _scalar(self.writer, INSERT_POSITION))
        except Exception as exc:  # the write is answered already: its reads go to the primary meanwhile
            log.warning("the primary's WAL position after a write could not be read: %s", exc)
            return UNKNOWN

    async def _choose(self, subject: str) -> Replica | None:
        need = self._written.get(subject, 0)
        if need == UNKNOWN:  # any position taken now is past every write answered before this read
            position = await self._position()
            current = self._written.get(subject, 0)
            need = self._written[subject] = position if current == UNKNOWN else max(position, current)
        found = self._pick(need)
        if found is not None or need == 0 or need == UNKNOWN:
            return found
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while found is None and any(r.healthy for r in self.replicas):
            left = deadline - loop.time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._polled.wait()
            found = self._pick(need)
        return found

    def _pick(self, need: int) -> Replica | None:
        """The next replica in turn that is in and has replayed ``need``."""
        replicas = self.replicas
        count = len(replicas)
        for step in range(count):
            at = (self._next + step) % count
            replica = replicas[at]
            if replica.healthy and replica.replayed >= need:
                self._next = (at + 1) % count
                return replica
        return None

    def _take_out(self, replica: Replica, why: str) -> None:
        if replica.healthy:
            log.warning("replica %s taken out: %s", replica.name, why)
        replica.healthy = False
        replica.problem = why

    # --- polling -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        for replica in self.replicas:
            if replica.pool is not None:
                await replica.pool.close()
            await replica.reader.dispose()

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.poll()
            await asyncio.sleep(max(0.0, POLL_SECONDS - (loop.time() - started)))

    async def poll(self) -> None:
        """One round: the primary's position, then every replica's, all at once; waiting reads look again."""
        await asyncio.gather(self._sample_primary(), *[self._poll_replica(r) for r in self.replicas])
        polled, self._polled = self._polled, asyncio.Event()
        polled.set()

    async def _sample_primary(self) -> None:
        try:
            async with asyncio.timeout(POLL_TIMEOUT_SECONDS):
                position = await _scalar(self.control, FLUSH_POSITION)
        except Exception as exc:  # the primary down or slow: the replicas are measured against what was seen
            log.debug("primary's WAL position not read: %s", exc)
            return
        now = asyncio.get_running_loop().time()
        samples = self._samples
        if not samples or samples[-1][1] != position:
            samples.append((now, position))
        while len(samples) > 1 and samples[1][0] < now - self.max_lag - 1:
            samples.popleft()  # one older than the window stays: the lag of a replica behind it is beyond bound

    async def _poll_replica(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(POLL_TIMEOUT_SECONDS):
                if replica.pool is not None:
                    async with replica.pool.acquire() as connection:
                        replayed = await connection.fetchval(REPLAY_POSITION)
                else:
                    replayed = await _scalar(replica.reader, REPLAY_POSITION)
        except Exception as exc:  # unreachable, refusing or slow, whatever the driver calls it: out
            self._take_out(replica, f"poll failed ({type(exc).__name__})")
            return
        if replayed is None:
            self._take_out(replica, "not a standby (no WAL replay)")
            return
        replica.replayed = int(replayed)
        lag = self._lag(replica.replayed)
        if lag > self.max_lag:
            behind = "behind the primary" if lag == math.inf else f"{lag:.1f} s behind the primary"
            self._take_out(replica, behind)
            return
        if not replica.healthy:
            log.info("replica %s in: answering reads", replica.name)
        replica.healthy = True
        replica.problem = ""

    def _lag(self, replayed: int) -> float:
        """Seconds since the primary was first seen past ``replayed`` (0: nothing seen beyond it); infinite
        when even the oldest position seen is beyond it, as for a replica far behind when the worker starts."""
        for at, (seen, position) in enumerate(self._samples):
            if position > replayed:
                return math.inf if at == 0 else asyncio.get_running_loop().time() - seen
        return 0.0


async def _scalar(engine: AsyncEngine, statement: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql(statement)).scalar()


async def open_replicas(
    settings: Settings,
    timeouts: Timeouts,
    *,
    primary_reader: AsyncEngine,
    primary_pool: DriverPool | None,
    control: AsyncEngine,
    writer: AsyncEngine,
) -> Replicas | None:
    """The worker's replicas, polled once (so that the first reads may use them) and polled on; None without
    ``DXAPI_READ_REPLICA_URLS``."""
    if not settings.read_replica_urls:
        return None
    replicas = []
    for url in settings.read_replica_urls:
        engine = create_engine(
            url,
            pool_size=settings.pool_size,
            pool_timeout=settings.pool_timeout,
            timeouts=timeouts,
            pgbouncer=settings.pgbouncer,
        )
        pool = None
        if not settings.pgbouncer:
            pool = await create_driver_pool(
                url, size=settings.pool_size, timeout=settings.pool_timeout, timeouts=timeouts
            )
        parsed = make_url(url)
        name = f"{parsed.host}:{parsed.port or 5432}"
        replicas.append(Replica(name, reader(engine, pgbouncer=settings.pgbouncer), pool))
    found = Replicas(
        primary_reader,
        primary_pool,
        control,
        writer,
        replicas,
        wait=settings.replica_wait,
        max_lag=settings.replica_max_lag,
    )
    await found.poll()
    for replica in found.replicas:
        if not replica.healthy:
            log.warning("replica %s out at start-up: %s", replica.name, replica.problem)
    found.start()
    return found
