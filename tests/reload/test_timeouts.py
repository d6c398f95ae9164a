"""Statement and lock timeouts on every backend (issue 13), against a real ``dxapi serve`` process.

The server runs with ``DXAPI_STATEMENT_TIMEOUT=2`` and ``DXAPI_LOCK_TIMEOUT=1``, on SQLite, PostgreSQL and
MariaDB, over this module's own table ``to_item``:

* **Statement timeout.** A trigger makes the UPDATE of one row slow (PostgreSQL ``pg_sleep``, MariaDB
  ``SLEEP``, SQLite a recursive count that spins): the PATCH answers 503 ``5005`` with ``Retry-After`` within
  the timeout plus slack, and the row is unchanged — the database (or, on SQLite, dxapi's interrupt) cancelled
  the statement and the transaction rolled back. The next request on the same worker is served normally.
* **Lock timeout.** The test holds the row's lock (``SELECT … FOR UPDATE``; SQLite: the write lock) while
  the API PATCHes it: 409 ``3005`` with ``Retry-After`` within the timeout plus slack, nothing written;
  meanwhile ``/health/ready`` answers 200 (its connection is not the request pool's) and a GET of another
  row is served.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dxapi.db import create_engine, writer
from dxapi.registry.store import parse_import, save_entities
from tests.conftest import BACKENDS, config_field
from tests.reload.processes import API, Database, ServerProcess, error_code, running, throwaway_database

TIMEOUT = 1.0  # seconds: the lock timeout, and the statement timeout of the slow statement
STATEMENT_TIMEOUT = 2.0  # seconds: above the lock timeout, so a lock wait meets its own bound first
SLACK = 1.5  # seconds beyond a bound that an answer may take (MariaDB's lock wait counts whole seconds)
ALIAS = "timeout-items"
PATH = f"{API}/{ALIAS}"
META = sa.MetaData()
ITEMS = sa.Table(
    "to_item",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(40), nullable=False),
)
CONFIG = {
    "tableName": "to_item",
    "tableAlias": ALIAS,
    "isActive": True,
    "definition": {
        "identifier": "id",
        "fields": [config_field("id", "integer", isEditable=False), config_field("name")],
    },
}
# A trigger that makes an UPDATE to the name `slow` take far longer than the timeout.
SLOW_TRIGGER = {
    "postgresql": [
        "CREATE FUNCTION to_item_slow() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.name = 'slow' THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$",
        "CREATE TRIGGER to_item_slow BEFORE UPDATE ON to_item FOR EACH ROW EXECUTE FUNCTION to_item_slow()",
    ],
    "mysql": [
        "CREATE TRIGGER to_item_slow BEFORE UPDATE ON to_item FOR EACH ROW "
        "BEGIN IF NEW.name = 'slow' THEN SET @pause = SLEEP(30); END IF; END",
    ],
    "sqlite": [
        "CREATE TRIGGER to_item_slow BEFORE UPDATE ON to_item FOR EACH ROW WHEN NEW.name = 'slow' BEGIN "
        "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 1000000000) SELECT x FROM c); END",
    ],
}


@dataclass
class Rig:
    database: Database
    server: ServerProcess
    client: httpx.Client
    engine: Any
    run: Any


@pytest.fixture(scope="module", params=BACKENDS)
def rig(
    request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    backend: str = request.param
    log_dir = tmp_path_factory.mktemp(f"timeouts-{backend}")
    with throwaway_database(backend, loop, log_dir, shop=False) as database:
        engine = create_engine(database.url)
        try:
            loop.run_until_complete(_create_table(engine, backend))
            env = {"DXAPI_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT), "DXAPI_LOCK_TIMEOUT": str(TIMEOUT)}
            server = ServerProcess("timeouts", database.url, secrets.token_urlsafe(48), log_dir, env=env)
            with running([server]):
                headers = {"Authorization": f"Bearer {server.token(database)}"}
                with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
                    yield Rig(database, server, client, engine, loop.run_until_complete)
        finally:
            loop.run_until_complete(engine.dispose())


async def _create_table(engine: Any, backend: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(META.create_all)
        await conn.execute(sa.insert(ITEMS), [{"id": i, "name": f"item-{i}"} for i in range(1, 6)])
        for statement in SLOW_TRIGGER[backend]:
            await conn.exec_driver_sql(statement)
    await save_entities(engine, parse_import([CONFIG]), actor="timeouts", action="import")


def name_of(rig: Rig, key: int) -> str:
    async def go() -> str:
        async with rig.engine.connect() as conn:
            return str((await conn.execute(sa.select(ITEMS.c.name).where(ITEMS.c.id == key))).scalar_one())

    result: str = rig.run(go())
    return result


def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_statement_past_the_timeout_is_503_5005_and_rolled_back(rig: Rig) -> None:
    response, took = timed(lambda: rig.client.patch(f"{PATH}/1", json={"data": {"name": "slow"}}))
    assert response.status_code == 503, response.text
    assert error_code(response) == "5005"
    assert response.headers["retry-after"]
    assert STATEMENT_TIMEOUT * 0.8 <= took < STATEMENT_TIMEOUT + SLACK, took
    assert name_of(rig, 1) == "item-1"
    after = rig.client.patch(f"{PATH}/1", json={"data": {"name": "quick"}})
    assert after.status_code == 200, after.text
    assert name_of(rig, 1) == "quick"


def test_a_lock_held_past_the_timeout_is_409_3005_while_the_worker_stays_ready(rig: Rig) -> None:
    holding, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_lock, args=(rig.database, 2, holding, release))
    holder.start()
    try:
        assert holding.wait(10)
        response, took = timed(lambda: rig.client.patch(f"{PATH}/2", json={"data": {"name": "locked"}}))
        ready = rig.client.get("/health/ready")
        other = rig.client.get(f"{PATH}/3")
    finally:
        release.set()
        holder.join(10)
    assert response.status_code == 409, response.text
    assert error_code(response) == "3005"
    assert response.headers["retry-after"]
    assert took < TIMEOUT + SLACK, took
    assert ready.status_code == 200, ready.text
    assert other.status_code == 200, other.text
    assert name_of(rig, 2) == "item-2"


def hold_lock(database: Database, key: int, holding: threading.Event, release: threading.Event) -> None:
    """In a thread of its own (its own loop and engine): lock row ``key`` — on SQLite the whole database's
    write lock — until ``release``."""

    async def go() -> None:
        engine = create_engine(database.url)
        try:
            async with writer(engine).connect() as conn:
                await conn.begin()  # SQLite: BEGIN IMMEDIATE (db.writer), the write lock
                await conn.execute(sa.select(ITEMS.c.id).where(ITEMS.c.id == key).with_for_update())
                holding.set()
                while not release.is_set():
                    await asyncio.sleep(0.02)
                await conn.rollback()
        finally:
            await engine.dispose()

    asyncio.run(go())
