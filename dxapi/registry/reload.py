"""Keeping each worker's snapshot current without restarts.

A request calls :meth:`Registry.current` and uses that one snapshot to the end; ``current`` is an attribute
read (and one context-variable set, see below), nothing else on the hot path. In the background each worker

* checks ``dx_config_version`` every ``interval`` seconds (one cheap query; never two checks at a time), and
* on PostgreSQL also LISTENs on ``dxapi_config``: ``store.save_entities`` sends a NOTIFY in the transaction
  that bumps the version, so workers wake at once. The listener reconnects with backoff and re-checks after
  each reconnect, because notifications sent while it was away are lost. It connects to ``DXAPI_LISTEN_URL``
  (or the database URL): behind PgBouncer in transaction mode a LISTEN needs a direct connection.

A wake-up waits a few milliseconds so that a burst of changes becomes one rebuild. Only when the version
moved is the snapshot rebuilt (off the request path) and swapped in with a single assignment. A failed check
or rebuild keeps the previous snapshot and is kept in ``last_error`` for the readiness endpoint.

A table or column can also vanish behind dxapi's back, without a version move. The first request that meets
it (503 ``5004``) tells the registry through ``dberrors.schema_watcher``, and the registry rebuilds from a
fresh reflection at once: the entity turns unavailable (``5003``) for every later request and for readiness,
which waits for that rebuild (``settle``). An entity found that way is reflected again after 1 s, 2 s, 4 s …
(at most ``DRIFT_RECHECK_MAX_SECONDS`` apart) until it fits again, so it also comes back without a version
move. Each snapshot asks for one such rebuild at most, and after one that found nothing new the next waits
``DRIFT_RECHECK_SECONDS``: a failure the reflection cannot see never turns into a rebuild per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.dberrors import schema_watcher
from dxapi.registry.model import ConfigError
from dxapi.registry.snapshot import EMPTY, Snapshot, load_snapshot
from dxapi.registry.store import NOTIFY_CHANNEL, read_version

log = logging.getLogger("dxapi.reload")

DEBOUNCE_SECONDS = 0.03
# Readiness calls the configuration stale when no version check reached the database for this long.
STALE_AFTER_SECONDS = 5.0
LISTEN_PING_SECONDS = 5.0
DRIFT_RECHECK_SECONDS = 1.0
DRIFT_RECHECK_MAX_SECONDS = 30.0
# How long ``close`` lets a check in progress finish before it cancels it.
CLOSE_WITHIN_SECONDS = 2.0
# What a version check or rebuild meets while serving, as the request path (``dberrors``) sees it: the database
# down, restarting or a table dropped mid-reflection (SQLAlchemy's errors, the pool timeout among them), a
# connection refused, reset or timed out before the driver could say more (OSError, TimeoutError among them),
# and a stored configuration the store refuses as a whole (ConfigError). Each keeps the previous snapshot.
RELOAD_FAILURES: tuple[type[Exception], ...] = (SQLAlchemyError, OSError, ConfigError)


class Registry:
    def __init__(
        self, engine: AsyncEngine, *, interval: float, deny: Iterable[str] = (), listen_url: str | None = None
    ) -> None:
        """``listen_url``: the PostgreSQL server to LISTEN on, directly (never through PgBouncer in transaction
        mode, which would hand the LISTEN to a server connection other clients share); None: polling only."""
        self._engine = engine
        self._listen_url = listen_url
        self._interval = interval
        self._deny = tuple(deny)
        self._snapshot: Snapshot = EMPTY
        self._watcher: Callable[[], None] = functools.partial(self._schema_changed, EMPTY)
        self._stale: Snapshot | None = None  # a request found this snapshot's tables changed
        self._drifted: frozenset[str] = frozenset()  # unavailable since a table changed behind dxapi's back
        self._drift_delay = DRIFT_RECHECK_SECONDS
        self._next_drift_check = 0.0  # time.monotonic() values
        self._quiet_until = 0.0
        self._checking = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.last_error: str | None = None
        self.listening = False
        self.checked_at = 0.0  # time.monotonic() of the last check that reached the database (0: none yet)
        self.reloads = 0  # versions loaded after the first (the metrics' dxapi_config_reloads_total)
        self.reload_failures = 0  # checks that could not load, the first load's included

    @property
    def stale(self) -> bool:
        """No check of the configuration version has succeeded for a while: changes may go unseen."""
        return time.monotonic() - self.checked_at > max(STALE_AFTER_SECONDS, 20 * self._interval)

    @property
    def loaded(self) -> bool:
        return self._snapshot is not EMPTY

    def current(self) -> Snapshot:
        """The snapshot for one request; a vanished table met while serving it is reported back to us."""
        schema_watcher.set(self._watcher)
        return self._snapshot

    async def refresh(self) -> Snapshot:
        """Rebuild now, whatever the version says (startup, tests, the CLI)."""
        snapshot = await load_snapshot(self._engine, self._deny)
        self._snapshot, self._stale = snapshot, None
        self._watcher = functools.partial(self._schema_changed, snapshot)
        self.last_error = None
        self.checked_at = time.monotonic()
        return snapshot

    async def load_first(self) -> None:
        """The start-up load: on a database or configuration failure start with no snapshot anyway;
        readiness says why and the background check retries."""
        try:
            await self.refresh()
        except RELOAD_FAILURES as exc:
            self.last_error = f"{type(exc).__name__}: configuration could not be loaded"
            self.reload_failures += 1
            log.warning("initial configuration load failed: %s", exc)

    async def settle(self) -> None:
        """Finish the rebuild a request asked for, so that readiness never lags behind what requests see."""
        if self._stale is not None:
            async with self._checking:
                await self._check_now()

    def _schema_changed(self, snapshot: Snapshot) -> None:
        if snapshot is self._snapshot and self._stale is None:
            self._stale = snapshot
            self._wake.set()

    def wake(self) -> None:
        """Check the version soon (a NOTIFY arrived, or the listener reconnected)."""
        self._wake.set()

    def start(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._poll()))
        if self._engine.dialect.name == "postgresql" and self._listen_url is not None:
            listener = asyncio.get_running_loop().create_task(self._listen())
            listener.add_done_callback(_listener_done)
            self._tasks.append(listener)

    async def close(self) -> None:
        """Stop the background work. A version check in progress is let finish (up to
        ``CLOSE_WITHIN_SECONDS``): a query cancelled half-way leaves the driver's work running — aiosqlite's
        worker thread then answers an event loop that has closed meanwhile."""
        self._closing = True
        self._wake.set()
        if not self._tasks:
            return
        for task in self._tasks[1:]:  # the listener only waits for notifications: nothing to finish
            task.cancel()
        _, late = await asyncio.wait(self._tasks, timeout=CLOSE_WITHIN_SECONDS)
        for task in late:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _poll(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
                await asyncio.sleep(DEBOUNCE_SECONDS)  # let a burst of notifications arrive
            if self._closing:
                return
            self._wake.clear()
            try:
                await self._check()
            except Exception as exc:
                # A bug, not the database or the configuration (those are RELOAD_FAILURES, handled in
                # _check_now): logged as ERROR with its traceback so it is seen, and the loop carries on,
                # because this loop is what brings every later configuration change and schema repair to the
                # running worker; a dead loop would leave it serving a stale snapshot until restarted.
                self.last_error = f"{type(exc).__name__}: configuration could not be loaded"
                self.reload_failures += 1
                log.error("configuration reload failed unexpectedly", exc_info=exc)

    async def _check(self) -> None:
        async with self._checking:
            await self._check_now()

    def _reflect_again(self) -> bool:
        """Whether to reflect the tables again although the version did not move (see the module doc)."""
        now = time.monotonic()
        if self._stale is self._snapshot and now >= self._quiet_until:
            return True
        return bool(self._drifted & self._snapshot.unavailable.keys()) and now >= self._next_drift_check

    async def _check_now(self) -> None:
        try:
            async with self._engine.connect() as conn:
                version = await read_version(conn)
            moved = version != self._snapshot.version
            if moved or self._reflect_again():
                before = self._snapshot
                asked = self._stale is before
                await self.refresh()
                self._track_drift(before, asked=asked and not moved, forced=not moved)
                if moved:
                    self.reloads += 1
                    log.info("configuration version %s loaded", self._snapshot.version)
            else:
                self.last_error = None
                self.checked_at = time.monotonic()
        except RELOAD_FAILURES as exc:  # keep serving the previous snapshot; readiness reports the failure
            self.last_error = f"{type(exc).__name__}: configuration could not be loaded"
            self.reload_failures += 1
            log.warning("configuration reload failed: %s", exc)

    def _track_drift(self, before: Snapshot, *, asked: bool, forced: bool) -> None:
        unavailable = self._snapshot.unavailable.keys()
        found = unavailable - before.unavailable.keys() if forced else set()
        back = self._drifted - unavailable
        self._drifted = frozenset((self._drifted & unavailable) | found)
        now = time.monotonic()
        if found:
            log.warning("the schema changed under %s: unavailable until it fits again", ", ".join(sorted(found)))
            self._drift_delay = DRIFT_RECHECK_SECONDS
        elif asked:
            self._quiet_until = now + DRIFT_RECHECK_SECONDS
        if back:
            log.info("the schema fits %s again", ", ".join(sorted(back)))
        if not self._drifted:
            self._drift_delay = DRIFT_RECHECK_SECONDS
        elif forced:
            self._next_drift_check = now + self._drift_delay
            self._drift_delay = min(self._drift_delay * 2, DRIFT_RECHECK_MAX_SECONDS)

    async def _listen(self) -> None:
        import asyncpg

        # A LISTEN connection meets what any connection meets: refused, reset or timed out (OSError), the server
        # ending it or shutting down (PostgresError), a connection that is already closed (InterfaceError), a
        # reply cut off mid-message (InternalClientError). Anything else is a bug and ends the listener (logged
        # by ``_listener_done``); polling goes on.
        lost = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
        assert self._listen_url is not None
        url = make_url(self._listen_url)
        delay = 0.5
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(
                    host=url.host,
                    port=url.port,
                    user=url.username,
                    password=url.password,
                    database=url.database,
                    timeout=5,
                )
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self.wake())
                self.listening = True
                self.wake()  # whatever was notified while we were away is found by this check
                delay = 0.5
                while True:  # an idle LISTEN connection notices a dead server only when it talks
                    await asyncio.sleep(LISTEN_PING_SECONDS)
                    await connection.execute("SELECT 1")
            except lost as exc:
                log.info("configuration listener disconnected (%s); reconnecting", type(exc).__name__)
            finally:
                self.listening = False
                if connection is not None:
                    connection.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _listener_done(task: asyncio.Task[None]) -> None:
    """Log the error that ended the listener (a bug: lost connections are retried inside it)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("configuration listener stopped; changes arrive by polling only", exc_info=error)
