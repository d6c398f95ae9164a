"""The counter stores themselves, against the real Redis and every real database: exact counts, windows that
end and restart, concurrent hits counted exactly once each, take-backs, pruning, and the fail-open guard."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from dxapi.db import create_driver_pool, create_engine
from dxapi.limits.counters import Counters, DatabaseCounters, Hit, RedisCounters, open_counters
from dxapi.registry.tables import dx_rate_counter
from dxapi.settings import Settings
from tests.conftest import Backend, _free_port, only_on
from tests.limits.conftest import REDIS_URL, redis_keys

STORES = ["database", "database-driver-pool", "redis"]


@pytest.fixture(params=STORES)
def counters(request: pytest.FixtureRequest, backend: Backend) -> Iterator[Counters]:
    """The store to test, opened as a server opens it: ``database`` on the backend's database through the
    engine, ``database-driver-pool`` with the asyncpg pool too (PostgreSQL; elsewhere there is none), or
    ``redis``."""
    settings = Settings(database_url=backend.url)
    engine = create_engine(backend.url)
    pool = None
    if request.param == "redis":
        prefix: str = request.getfixturevalue("redis_prefix")
        settings = Settings(database_url=backend.url, redis_url=REDIS_URL, redis_prefix=prefix)
    elif request.param == "database-driver-pool":
        pool = backend.run(create_driver_pool(backend.url, size=5, timeout=3))
    store = open_counters(settings, engine, pool)
    assert isinstance(store, RedisCounters if request.param == "redis" else DatabaseCounters)
    yield store
    backend.run(store.close())
    if pool is not None:
        backend.run(pool.close())
    backend.run(engine.dispose())


def _key() -> str:
    return f"test:{secrets.token_hex(8)}"


def _hit(backend: Backend, counters: Counters, key: str, window: int, cost: int = 1) -> Hit:
    found = backend.run(counters.hit(key, window, cost))
    assert isinstance(found, Hit), found
    return found


def test_hits_count_up_in_one_window_then_restart(backend: Backend, counters: Counters) -> None:
    key = _key()
    first = _hit(backend, counters, key, 1)
    assert first.count == 1 and 0.5 < first.resets_in <= 1.0, first
    assert [_hit(backend, counters, key, 1).count for _ in range(3)] == [2, 3, 4]
    assert _hit(backend, counters, _key(), 1).count == 1  # another key counts on its own
    time.sleep(first.resets_in + 0.05)
    again = _hit(backend, counters, key, 1)
    assert again.count == 1 and again.resets_in > 0.5, again  # a new window, starting with this hit


def test_a_window_is_the_one_of_its_first_hit(backend: Backend, counters: Counters) -> None:
    key = _key()
    assert _hit(backend, counters, key, 60).resets_in > 59
    time.sleep(1.1)
    later = _hit(backend, counters, key, 60)
    assert later.count == 2 and 57.5 < later.resets_in < 59, later  # the window did not move with the hit


def test_cost_and_take_back(backend: Backend, counters: Counters) -> None:
    key = _key()
    assert _hit(backend, counters, key, 60, cost=5).count == 5
    backend.run(counters.take_back(key))
    backend.run(counters.take_back(key, 2))
    assert _hit(backend, counters, key, 60).count == 3
    fresh = _key()
    backend.run(counters.take_back(fresh))  # nothing to take back: no counter appears, none goes below 0
    assert _hit(backend, counters, fresh, 60).count == 1


def test_concurrent_hits_are_each_counted_once(backend: Backend, counters: Counters) -> None:
    key = _key()

    async def burst() -> list[Hit | None]:
        return await asyncio.gather(*(counters.hit(key, 60) for _ in range(60)))

    hits = backend.run(burst())
    assert sorted(h.count for h in hits if h is not None) == list(range(1, 61))


def test_long_keys_are_stored_as_digests(backend: Backend, counters: Counters) -> None:
    key = f"entity:client:{secrets.token_hex(4)}:" + "a" * 300
    assert [_hit(backend, counters, key, 60).count for _ in range(2)] == [1, 2]
    assert _hit(backend, counters, key[:-1] + "b", 60).count == 1


def test_redis_keys_live_under_the_prefix_and_expire(backend: Backend, redis_prefix: str) -> None:
    store = RedisCounters(REDIS_URL, redis_prefix)
    try:
        _hit(backend, store, "principal:client:one", 2)
        _hit(backend, store, "principal:client:one", 2)
        assert redis_keys(redis_prefix) == {f"{redis_prefix}principal:client:one": 2}
        time.sleep(2.1)
        assert redis_keys(redis_prefix) == {}  # expired by Redis itself: nothing to prune
    finally:
        backend.run(store.close())


def test_the_database_store_prunes_ended_windows_only(backend: Backend) -> None:
    engine = create_engine(backend.url)
    store = open_counters(Settings(database_url=backend.url), engine)
    try:
        ended, live = _key(), _key()
        _hit(backend, store, ended, 1)
        _hit(backend, store, live, 60)
        time.sleep(1.1)
        assert backend.run(store.prune()) >= 1
        names = {row[0] for row in backend.sql(sa.select(dx_rate_counter.c.name))}
        assert live in names and ended not in names
    finally:
        backend.run(engine.dispose())


@only_on("postgresql")
def test_the_counters_skip_the_write_ahead_log_on_postgresql(backend: Backend) -> None:
    rows = backend.sql("SELECT relpersistence::text FROM pg_class WHERE relname = 'dx_rate_counter'")
    assert [row[0] for row in rows] == ["u"]


def test_a_store_that_fails_admits_and_warns_once_per_pause(
    backend: Backend, caplog: pytest.LogCaptureFixture, redis_prefix: str
) -> None:
    """Redis on a closed port: the hit is not counted (None: the request is admitted), one warning; during the
    pause after the failure the store is not asked again."""
    store = RedisCounters(f"redis://127.0.0.1:{_free_port()}/0", redis_prefix)
    try:
        with caplog.at_level(logging.WARNING, logger="dxapi.limits"):
            assert backend.run(store.hit("principal:x", 60)) is None
            started = time.monotonic()
            assert backend.run(store.hit("principal:x", 60)) is None
            assert time.monotonic() - started < 0.01
            backend.run(store.take_back("principal:x"))
        warnings: list[Any] = [r for r in caplog.records if r.name == "dxapi.limits"]
        assert [r.levelno for r in warnings] == [logging.WARNING], warnings
        assert "rate-limit counters (redis) unavailable, requests are admitted uncounted" in warnings[0].getMessage()
    finally:
        backend.run(store.close())
