"""THE must-show: one rate limit held by three real ``dxapi serve`` processes together (issue 16).

PostgreSQL, ``DXAPI_RATE_LIMIT=200/hour``, three servers (``tests.reload.processes``); one client sends 600
requests at once, spread round-robin over the three ports (at most 60 in flight). Exactly 200 are answered
200 and the other 400 are 429 ``4291`` — once with the counters in the database, once in the real Redis — and
the store holds 600 counted requests. The window starts with the first request (``limits.counters``), so the
burst is never split over two windows. Bounded: well under 30 s per store.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from dxapi.db import create_engine
from dxapi.registry.tables import dx_rate_counter
from tests.limits.conftest import REDIS_URL, redis_keys
from tests.reload.processes import API, ServerProcess, error_code, running, throwaway_database

LIMIT = 200
REQUESTS = 600
IN_FLIGHT = 60
SERVERS = 3


async def _burst(base_urls: list[str], token: str) -> list[httpx.Response]:
    gate = asyncio.Semaphore(IN_FLIGHT)
    limits = httpx.Limits(max_connections=IN_FLIGHT)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers={"Authorization": f"Bearer {token}"}) as http:

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await http.get(f"{base_urls[i % len(base_urls)]}{API}/products/{i % 50 + 1}")

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


async def _counted(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(dx_rate_counter.c.name, dx_rate_counter.c.hits))
            return {name: int(hits) for name, hits in rows}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("store", ["database", "redis"])
def test_one_limit_across_three_processes(
    store: str, loop: asyncio.AbstractEventLoop, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Small pools: 3 servers x (pool + driver pool + control pool) stay far below the shared PostgreSQL's
    # max_connections while other tests run beside this one.
    env = {"DXAPI_RATE_LIMIT": f"{LIMIT}/hour", "DXAPI_POOL_SIZE": "4"}
    prefix = ""
    if store == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        env |= {"DXAPI_REDIS_URL": REDIS_URL, "DXAPI_REDIS_PREFIX": prefix}
    with throwaway_database("postgresql", loop, tmp_path) as database:
        jwt_secret = secrets.token_urlsafe(48)
        servers = [
            ServerProcess(name, database.url, jwt_secret, tmp_path, env, forked=True) for name in ("A", "B", "C")
        ]
        with running(servers):
            token = servers[0].token(database)
            started = time.monotonic()
            answers = loop.run_until_complete(_burst([s.base_url for s in servers], token))
            elapsed = time.monotonic() - started
            statuses = Counter(a.status_code for a in answers)
            print(f"\n{store}: {dict(statuses)} in {elapsed:.2f} s over {SERVERS} processes")
            assert statuses == {200: LIMIT, 429: REQUESTS - LIMIT}, statuses
            assert {error_code(a) for a in answers if a.status_code == 429} == {"4291"}
            admitted_by = Counter(a.url.port for a in answers if a.status_code == 200)
            assert len(admitted_by) == SERVERS, admitted_by  # every process admitted some: the limit is shared
            assert elapsed < 30
        subject = f"principal:client:{database.client_id}"
        if store == "redis":
            assert redis_keys(prefix)[f"{prefix}{subject}"] == REQUESTS
        else:
            assert loop.run_until_complete(_counted(database.url))[subject] == REQUESTS
