"""Thirty kills in the middle of multi-hundred-row batches: no batch is ever partly written.

A ``dxapi serve`` takes transactional batches in turn: 200 new products with two nested stocks each
(600 rows), 500 new plain products, and a PATCH of 250 existing products. While a batch runs — the test waits
until the batch's transaction has written a first row (its backend has a transaction id in
``pg_stat_activity``), then a random part of a batch's duration more — it is cut by one of:

- ``worker``: SIGKILL of the dxapi worker (a new one is started), 12 times;
- ``backend``: SIGKILL of the PostgreSQL backend running the batch (the postmaster then resets every
  connection and recovers), 6 times;
- ``postmaster``: an immediate stop of the whole cluster (SIGQUIT to the postmaster, what ``pg_ctlcluster stop
  -m immediate`` sends), then a start, 6 times;
- ``reset``: every connection between dxapi and the database reset by the fault proxy, 6 times.

A kill that lands after the batch was answered is not one: the test sends another batch until 30 kills have
landed mid-batch. Asserted from the database after each one, once the batch's transaction has ended: each
batch's rows are all there or none is (products and their stocks alike), a 2xx answer means all are there, and a
503 other than "outcome unknown" (``5006``) means none is. Every answer dxapi gives is 2xx or a JSON 503 with
``Retry-After``; only a killed worker may leave the client without one.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.cluster import Cluster, Session
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.traffic import Answer, Shop, call, ready_now, serve, wait_until
from tests.reload.processes import API, ServerProcess

KILLS = ("worker", "backend", "worker", "postmaster", "reset") * 6
MAX_ATTEMPTS = 60  # batches sent at most to land 30 kills mid-batch
PATCHED_IDS = range(1, 251)
NESTED_PRODUCTS, STOCKS_EACH, PLAIN_PRODUCTS = 200, 2, 500
RECOVER_WITHIN = 30.0
WRITING = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"


@dataclass
class Batch:
    kind: str
    marker: str
    method: str
    body: dict[str, Any]
    rows: int  # rows the batch writes


def _batch(kind: str, number: int, category: int) -> Batch:
    marker = f"KB{number:03d}"
    if kind == "nested":
        items = [_product(marker, i, category, stocks=STOCKS_EACH) for i in range(NESTED_PRODUCTS)]
        return Batch(kind, marker, "POST", {"data": items}, NESTED_PRODUCTS * (1 + STOCKS_EACH))
    if kind == "plain":
        items = [_product(marker, i, category) for i in range(PLAIN_PRODUCTS)]
        return Batch(kind, marker, "POST", {"data": items}, PLAIN_PRODUCTS)
    items = [{"idProduct": i, "name": f"{marker} patched"} for i in PATCHED_IDS]
    return Batch(kind, marker, "PATCH", {"data": items}, len(PATCHED_IDS))


def _product(marker: str, index: int, category: int, stocks: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sku": f"{marker}-{index:04d}",
        "name": f"batch {marker} item {index}",
        "fkCategory": category,
        "price": "9.99",
    }
    if stocks:
        item["productStocks"] = [{"warehouse": f"{marker}-W{n}", "quantity": n} for n in range(stocks)]
    return item


def _written(session: Session, batch: Batch) -> int:
    """Rows of the batch in the database (products, plus stocks for the nested kind)."""
    if batch.kind == "patch":
        return int(session.value("SELECT count(*) FROM shop_product WHERE name = $1", f"{batch.marker} patched"))
    products = int(session.value("SELECT count(*) FROM shop_product WHERE sku LIKE $1", f"{batch.marker}-%"))
    stocks = int(session.value("SELECT count(*) FROM shop_stock WHERE warehouse LIKE $1", f"{batch.marker}-W%"))
    return products + stocks


class Scene:
    """The server, the cluster and the proxy, with one way to cut a running batch per kill kind.

    The server has one worker, forked from the session's fork server: a killed one is replaced by a new
    process with the same signing secret within a second or two (a supervisor's spawned workers re-import
    everything, several seconds each on two busy cores)."""

    def __init__(self, cluster: Cluster, proxy: FaultProxy, shop: Shop, directory: Path) -> None:
        self.cluster, self.proxy, self.shop, self.directory = cluster, proxy, shop, directory
        self.secret = secrets.token_urlsafe(48)
        self.servers: list[ServerProcess] = []
        self.server = self._start()
        self.token = self.server.token(shop.database)  # valid on every successor: same secret
        self.journal: list[str] = []  # one line per batch, written to the test's directory

    def _start(self) -> ServerProcess:
        server = serve(self.shop, self.directory, f"kills-{len(self.servers)}", secret=self.secret)
        self.servers.append(server)
        server.wait_ready()
        return server

    def http(self, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.server.base_url, headers=headers, timeout=timeout)

    def kill(self, kind: str, backend: int) -> None:
        if kind == "worker":
            self.server.kill()
        elif kind == "backend":
            os.kill(backend, signal.SIGKILL)
        elif kind == "postmaster":
            self.cluster.quit_immediately()
            self.cluster.start_in_background()
        else:
            self.proxy.reset_all()

    def recover(self, kind: str) -> None:
        """Until the cluster answers, a server runs and writes through dxapi succeed again."""
        self.cluster.wait_answers(RECOVER_WITHIN)
        if kind == "worker":
            self.server = self._start()
        assert wait_until(lambda: ready_now(self.server), RECOVER_WITHIN), self.server.log_tail()
        # A pooled connection that died answers one 503 when it is next used: two writes in a row succeed
        # once the pool holds fresh ones.
        successes = [0]

        def writes() -> bool:
            with self.http(timeout=10) as http:
                ok = http.patch(f"{API}/products/299", json={"data": {"name": "after a kill"}}).status_code == 200
            successes[0] = successes[0] + 1 if ok else 0
            return successes[0] >= 2

        assert wait_until(writes, RECOVER_WITHIN, 0.05), self.server.log_tail()
        if kind == "postmaster":
            self.cluster.finish_start()  # the start wrapper returns seconds after the server is up

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def _send(http: httpx.Client, batch: Batch, into: list[Answer]) -> threading.Thread:
    path = f"{API}/products"
    thread = threading.Thread(
        target=lambda: into.append(call(http, batch.kind, batch.method, path, json=batch.body)), daemon=True
    )
    thread.start()
    return thread


def _first_write(watch: Callable[[], list[int]], sending: threading.Thread) -> int | None:
    """The backend of the batch once its transaction has written, or None if the batch ended first."""
    while sending.is_alive():
        found = watch()
        if found:
            return found[0]
        time.sleep(0.002)
    return None


def _transactions_over(shop: Shop) -> None:
    """Wait until no transaction of dxapi's holds written rows (the cut batch rolled back or committed)."""
    with shop.session() as session:
        assert wait_until(lambda: not session.fetch(WRITING, shop.name), 20), "a batch transaction lingers"


def _verdict(batch: Batch, answer: Answer, written: int, kind: str) -> str | None:
    """What is wrong with this outcome, or None."""
    if written not in (0, batch.rows):
        return f"PARTIAL: {written} of {batch.rows} rows"
    if answer.ok and written != batch.rows:
        return f"answered {answer.status} but {written} of {batch.rows} rows are there"
    if answer.error:
        return None if kind == "worker" else f"no answer from dxapi ({answer.error})"
    if answer.ok:
        return None
    if not (answer.status == 503 and answer.json and answer.retry_after):
        return f"not a JSON 503 with Retry-After: {answer.describe()}"
    if answer.code != "5006" and written:
        return f"{answer.code} says not written, yet all {written} rows were committed"
    return None


def _attempt(scene: Scene, batch: Batch, kind: str, delay: float, rng: random.Random) -> tuple[bool, str | None]:
    """One batch, cut by ``kind`` once it writes; → (did the kill land mid-batch, what is wrong)."""
    started = time.monotonic()
    answers: list[Answer] = []
    landed = False
    with scene.http() as http, scene.shop.session() as watcher:
        sending = _send(http, batch, answers)
        backend = _first_write(lambda: [r["pid"] for r in watcher.fetch(WRITING, scene.shop.name)], sending)
        if backend is not None:
            time.sleep(rng.uniform(0, delay))
            landed = sending.is_alive()
            scene.kill(kind, backend)
        sending.join(timeout=60)
    if backend is None:
        scene.journal.append(f"{kind:10} {batch.kind:6} no write seen: {answers[0].describe()}")
        return False, None
    cut = time.monotonic() - started
    scene.recover(kind)
    _transactions_over(scene.shop)
    with scene.shop.session() as session:
        written = _written(session, batch)
    answer = answers[0]
    landed = landed and not answer.ok
    problem = _verdict(batch, answer, written, kind)
    scene.journal.append(
        f"{kind:10} {batch.kind:6} cut after {cut:.3f}s landed={landed} written={written}/{batch.rows} "
        f"{answer.describe()} (over after {time.monotonic() - started:.1f}s)"
    )
    return landed, problem and f"{kind} kill of {batch.kind} {batch.marker}: {problem} ({answer.describe()})"


def _calibrate(scene: Scene, category: int) -> dict[str, float]:
    """Seconds from a batch's first written row to its answer, per kind (one uncut batch each)."""
    took: dict[str, float] = {}
    for number, kind in enumerate(("nested", "plain", "patch"), start=900):
        batch = _batch(kind, number, category)
        answers: list[Answer] = []
        with scene.http() as http, scene.shop.session() as watcher:
            sending = _send(http, batch, answers)
            _first_write(lambda: [r["pid"] for r in watcher.fetch(WRITING, scene.shop.name)], sending)
            seen = time.monotonic()
            sending.join(timeout=60)
        assert answers[0].ok, answers[0].describe()
        took[kind] = answers[0].ended - seen
    return took


@pytest.mark.timeout(300)
def test_kills_mid_batch(cluster: Cluster, proxy: FaultProxy, shop: Shop, tmp_path: Path) -> None:
    scene = Scene(cluster, proxy, shop, tmp_path)
    try:
        with shop.session() as session:
            category = int(session.value("SELECT min(id_category) FROM shop_category"))
        durations = _calibrate(scene, category)
        rng = random.Random(13)
        problems: list[str] = []
        landed: dict[str, int] = {}
        attempts = 0
        for kind in KILLS:
            while True:
                attempts += 1
                if attempts > MAX_ATTEMPTS:
                    (tmp_path / "batches.txt").write_text("\n".join(scene.journal) + "\n")
                    pytest.fail(f"only {sum(landed.values())} kills landed in {attempts} batches")
                batch = _batch(("nested", "plain", "patch")[attempts % 3], attempts, category)
                hit, problem = _attempt(scene, batch, kind, durations[batch.kind], rng)
                if problem:
                    problems.append(problem)
                if hit:
                    landed[kind] = landed.get(kind, 0) + 1
                    break
        (tmp_path / "batches.txt").write_text("\n".join(scene.journal) + "\n")
        print(f"kills landed mid-batch: {landed} in {attempts} batches; batch write seconds {durations}")
        assert not problems, "\n".join([f"{len(problems)} problems in {attempts} batches:", *problems])
    finally:
        scene.stop()
