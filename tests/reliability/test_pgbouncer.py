"""dxapi through a real PgBouncer in transaction mode (``pgbouncer.PgBouncer``, Debian's 1.18).

One ``dxapi serve`` with ``DXAPI_PGBOUNCER=true`` reaches a demo shop of its own only through PgBouncer, which
holds at most ``SERVER_POOL`` server connections for the ``POOL_SIZE`` client connections dxapi opens, so
consecutive transactions of one client connection run on different server connections. The configuration
listener connects directly (``DXAPI_LISTEN_URL``); the polling interval is long, so only it can explain a
reload within a second.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dxapi.db import create_engine
from dxapi.registry.store import parse_import, save_entities
from tests.conftest import fetch_token, shop_config
from tests.reliability.cluster import Cluster, Session
from tests.reliability.pgbouncer import PgBouncer, PgBouncerError
from tests.reliability.shopdb import ShopDatabase, shop_database
from tests.reliability.traffic import wait_until
from tests.reload.processes import API, ServerProcess, error_code

SERVER_POOL = 3
POOL_SIZE = 6
THREADS = 6
ROUNDS = 8


@dataclass
class Pooled:
    shop: ShopDatabase
    bouncer: PgBouncer
    server: ServerProcess
    api: httpx.Client


@pytest.fixture(scope="module")
def pooled(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pooled]:
    with shop_database(cluster, "dxbnc") as shop:
        try:
            bouncer = PgBouncer(cluster.port, shop.name, SERVER_POOL)
        except PgBouncerError as exc:
            pytest.fail(f"the PgBouncer tests cannot start PgBouncer: {exc}", pytrace=False)
        try:
            env = {
                "DXAPI_PGBOUNCER": "true",
                "DXAPI_LISTEN_URL": shop.url,
                "DXAPI_RELOAD_INTERVAL": "30",
                "DXAPI_POOL_SIZE": str(POOL_SIZE),
                "DXAPI_LOCK_TIMEOUT": "1",
            }
            directory: Path = tmp_path_factory.mktemp("pgbouncer")
            secret = secrets.token_urlsafe(48)
            server = ServerProcess("pgbouncer", bouncer.url(), secret, directory, env=env, forked=True)
            try:
                server.wait_ready()
                token = fetch_token(server.base_url, *shop.writer)
                headers = {"Authorization": f"Bearer {token}"}
                with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as api:
                    yield Pooled(shop, bouncer, server, api)
            finally:
                server.stop()
        finally:
            bouncer.stop()


def _product(sku: str) -> dict[str, object]:
    return {"sku": sku, "name": f"pooled {sku}", "fkCategory": 1, "fkTaxRate": 1, "price": "9.50", "isActive": True}


def _round(api: httpx.Client, thread: int, n: int) -> list[str]:
    """A representative slice: reads (row, page with includes, count, export), a batch create, PATCH, PUT,
    DELETE, a change-feed page; → what was not answered as expected."""
    problems = []

    def expect(response: httpx.Response, status: int) -> httpx.Response:
        if response.status_code != status:
            problems.append(
                f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:200]}"
            )
        return response

    key = 1 + (thread * ROUNDS + n) % 300
    expect(api.get(f"{API}/products/{key}"), 200)
    expect(api.get(f"{API}/products", params={"include": "productStocks", "page[limit]": 5, "page[offset]": key}), 200)
    expect(api.get(f"{API}/products", params={"page[limit]": 1}, headers={"Prefer": "count=exact"}), 200)
    expect(
        api.get(f"{API}/products", params={"filter[p.idProduct]": '{"lte": 50}'}, headers={"Accept": "text/csv"}), 200
    )
    skus = [f"PB-{thread}-{n}-{i}-{secrets.token_hex(2).upper()}" for i in range(3)]
    created = expect(api.post(f"{API}/products", json={"data": [_product(s) for s in skus]}), 201)
    if created.status_code == 201:
        ids = [row["idProduct"] for row in created.json()["data"]]
        expect(api.patch(f"{API}/products/{ids[0]}", json={"data": {"name": "patched"}}), 200)
        expect(api.put(f"{API}/products/{ids[1]}", json={"data": _product(skus[1])}), 200)
        for made in ids:
            expect(api.delete(f"{API}/products/{made}"), 204)
    expect(api.get(f"{API}/products/_changes", params={"page[limit]": 20}), 200)
    return problems


def test_crud_batches_reads_and_the_feed_work_through_pgbouncer(pooled: Pooled) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        rounds = [pool.submit(_round, pooled.api, t, n) for t in range(THREADS) for n in range(ROUNDS)]
        problems = [problem for done in rounds for problem in done.result()]
    assert not problems, problems[:10]
    # The statements ran on more than one server connection, each shared by dxapi's client connections.
    servers = pooled.bouncer.show("SERVERS")
    clients = [row for row in pooled.bouncer.show("CLIENTS") if row[0] == "C"]
    assert 2 <= len(servers) <= SERVER_POOL, servers
    assert len(clients) > len(servers), clients


def test_the_change_feed_follows_writes_through_pgbouncer(pooled: Pooled) -> None:
    head = pooled.api.get(f"{API}/products/_changes", params={"since": "now"}).json()["meta"]["cursor"]
    response = pooled.api.patch(f"{API}/products/11", json={"data": {"name": f"feed {secrets.token_hex(3)}"}})
    assert response.status_code == 200, response.text
    page = pooled.api.get(f"{API}/products/_changes", params={"since": head})
    assert page.status_code == 200, page.text
    assert [entry["id"] for entry in page.json()["data"]] == [11]


def test_a_configuration_change_reaches_the_worker_through_the_direct_listener(pooled: Pooled) -> None:
    assert pooled.api.get("/health/ready").json()["listening"] is True

    async def set_countries(active: bool) -> None:
        countries = next(e for e in shop_config() if e["tableAlias"] == "countries")
        engine = create_engine(pooled.shop.url)
        try:
            await save_entities(
                engine, parse_import([{**countries, "isActive": active}]), actor="test", action="import"
            )
        finally:
            await engine.dispose()

    assert pooled.api.get(f"{API}/countries").status_code == 200
    try:
        asyncio.run(set_countries(False))
        changed = time.monotonic()
        assert wait_until(lambda: pooled.api.get(f"{API}/countries").status_code == 404, 5)
        assert time.monotonic() - changed < 2  # the poll would take up to 30 s
    finally:
        asyncio.run(set_countries(True))
    assert wait_until(lambda: pooled.api.get(f"{API}/countries").status_code == 200, 5)


def test_the_lock_timeout_holds_on_whichever_server_connection(pooled: Pooled) -> None:
    with Session(pooled.shop.url) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM shop_product WHERE id_product = 12 FOR UPDATE")
        try:
            started = time.monotonic()
            response = pooled.api.patch(f"{API}/products/12", json={"data": {"name": "waits"}})
            took = time.monotonic() - started
        finally:
            holder.execute("ROLLBACK")
    # DXAPI_LOCK_TIMEOUT=1 (SET LOCAL per transaction): without it the PATCH would wait for the lock until the
    # client's own bound, past the statement timeout of 10 s.
    assert response.status_code == 409 and error_code(response) == "3005", response.text
    assert took < 4, took


def test_the_command_line_works_through_pgbouncer(pooled: Pooled, tmp_path: Path) -> None:
    """``config export``, ``import`` and ``check`` with ``DXAPI_PGBOUNCER``: several transactions on whichever
    server connections, the same statements again and again."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DXAPI_")}
    environment["DXAPI_PGBOUNCER"] = "true"
    exported = tmp_path / "configuration.json"

    def dxapi(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dxapi.cli", "--database-url", pooled.bouncer.url(), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120, check=False)
        assert done.returncode == 0, f"{arguments}: {done.stdout}{done.stderr}"
        return done

    dxapi("config", "export", "--output", str(exported))
    assert "products" in exported.read_text()
    assert "imported" in dxapi("config", "import", str(exported)).stdout
    assert "no problems" in dxapi("config", "check").stdout
