"""Keeping each worker's snapshot current without restarts.

A request calls :meth:`Registry.current` and uses that one snapshot to the end. ``current`` never waits: at
most every ``interval`` seconds it starts one background check of ``dx_config_version`` (never two at a
time); only when the version moved is the snapshot rebuilt, off the request path, and swapped in with a
single assignment. A failed check or rebuild keeps the previous snapshot and is kept in ``last_error`` for
the readiness endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.registry.snapshot import EMPTY, Snapshot, load_snapshot
from dxapi.registry.store import read_version

log = logging.getLogger("dxapi.reload")


class Registry:
    def __init__(self, engine: AsyncEngine, *, interval: float, deny: Iterable[str] = ()) -> None:
        self._engine = engine
        self._interval = interval
        self._deny = tuple(deny)
        self._snapshot: Snapshot = EMPTY
        self._next_check = 0.0
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def loaded(self) -> bool:
        return self._snapshot is not EMPTY

    def current(self) -> Snapshot:
        now = time.monotonic()
        if now >= self._next_check and (self._task is None or self._task.done()):
            self._next_check = now + self._interval
            self._task = asyncio.get_running_loop().create_task(self._check())
        return self._snapshot

    async def refresh(self) -> Snapshot:
        """Rebuild now, whatever the version says (startup, tests, the CLI)."""
        self._snapshot = await load_snapshot(self._engine, self._deny)
        self.last_error = None
        return self._snapshot

    async def _check(self) -> None:
        try:
            async with self._engine.connect() as conn:
                version = await read_version(conn)
            if version != self._snapshot.version:
                await self.refresh()
                log.info("configuration version %s loaded", version)
            else:
                self.last_error = None
        except Exception as exc:  # keep serving the previous snapshot; readiness reports the failure
            self.last_error = f"{type(exc).__name__}: configuration could not be loaded"
            log.warning("configuration reload failed: %s", exc)

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
