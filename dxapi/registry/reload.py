"""Keeping each worker's snapshot current without restarts.

A request calls :meth:`Registry.current` and uses that one snapshot to the end; ``current`` is a plain
attribute read, nothing on the hot path. In the background each worker

* checks ``dx_config_version`` every ``interval`` seconds (one cheap query; never two checks at a time), and
* on PostgreSQL also LISTENs on ``dxapi_config``: ``store.save_entities`` sends a NOTIFY in the transaction
  that bumps the version, so workers wake at once. The listener reconnects with backoff and re-checks after
  each reconnect, because notifications sent while it was away are lost.

A wake-up waits a few milliseconds so that a burst of changes becomes one rebuild. Only when the version
moved is the snapshot rebuilt (off the request path) and swapped in with a single assignment. A failed check
or rebuild keeps the previous snapshot and is kept in ``last_error`` for the readiness endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.registry.snapshot import EMPTY, Snapshot, load_snapshot
from dxapi.registry.store import NOTIFY_CHANNEL, read_version

log = logging.getLogger("dxapi.reload")

DEBOUNCE_SECONDS = 0.03
LISTEN_PING_SECONDS = 5.0


class Registry:
    def __init__(self, engine: AsyncEngine, *, interval: float, deny: Iterable[str] = ()) -> None:
        self._engine = engine
        self._interval = interval
        self._deny = tuple(deny)
        self._snapshot: Snapshot = EMPTY
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.last_error: str | None = None
        self.listening = False

    @property
    def loaded(self) -> bool:
        return self._snapshot is not EMPTY

    def current(self) -> Snapshot:
        return self._snapshot

    async def refresh(self) -> Snapshot:
        """Rebuild now, whatever the version says (startup, tests, the CLI)."""
        self._snapshot = await load_snapshot(self._engine, self._deny)
        self.last_error = None
        return self._snapshot

    def wake(self) -> None:
        """Check the version soon (a NOTIFY arrived, or the listener reconnected)."""
        self._wake.set()

    def start(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._poll()))
        if self._engine.dialect.name == "postgresql":
            self._tasks.append(asyncio.get_running_loop().create_task(self._listen()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
                await asyncio.sleep(DEBOUNCE_SECONDS)  # let a burst of notifications arrive
            self._wake.clear()
            await self._check()

    async def _check(self) -> None:
        try:
            async with self._engine.connect() as conn:
                version = await read_version(conn)
            if version != self._snapshot.version:
                await self.refresh()
                log.info("configuration version %s loaded", self._snapshot.version)
            else:
                self.last_error = None
        except Exception as exc:  # keep serving the previous snapshot; readiness reports the failure
            self.last_error = f"{type(exc).__name__}: configuration could not be loaded"
            log.warning("configuration reload failed: %s", exc)

    async def _listen(self) -> None:
        import asyncpg

        url = self._engine.url
        delay = 0.5
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(
                    host=url.host, port=url.port, user=url.username, password=url.password, database=url.database,
                    timeout=5,
                )
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self.wake())
                self.listening = True
                self.wake()  # whatever was notified while we were away is found by this check
                delay = 0.5
                while True:  # an idle LISTEN connection notices a dead server only when it talks
                    await asyncio.sleep(LISTEN_PING_SECONDS)
                    await connection.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("configuration listener disconnected (%s); reconnecting", type(exc).__name__)
            finally:
                self.listening = False
                if connection is not None:
                    connection.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
