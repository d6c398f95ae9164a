"""Read replicas against a real streaming replica (``standby.Standby``: ``pg_basebackup -R`` of the suite's cluster).

One ``dxapi serve`` reads from the replica (``DXAPI_READ_REPLICA_URLS``) of a demo shop of its own on the suite's
cluster. Two clients: the *writer*, and a *reader* that never writes (no read-your-writes wait of its own), so
what it sees is whatever the server chose to read from.

The proof that the replica answers (``replica_answers``): with the replica's replay paused, a row changed
directly on the primary keeps its old value through the API (page, row, NDJSON export, change feed), and shows
the new one once replay resumes. The primary answers every read that must not wait for that.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import fetch_token
from tests.reliability.cluster import Cluster, Session
from tests.reliability.shopdb import shop_database
from tests.reliability.standby import Standby
from tests.reliability.traffic import Answer, call, log_lines, wait_until
from tests.reload.processes import API, ServerProcess

PROOF_ID = 7  # the product the proofs change behind the server's back
MAX_LAG = 3.0  # DXAPI_REPLICA_MAX_LAG of the server: the proofs read well within it
PAIRS = 200
PAIR_THREADS = 10


@dataclass
class Replicated:
    primary: Session  # direct, to the shop on the primary
    standby: Standby
    database: str
    server: ServerProcess
    writer: httpx.Client
    reader: httpx.Client
    start: Callable[[str], ServerProcess]  # another server of the same shop, replica and signing secret

    def standby_session(self) -> Session:
        return self.standby.session(self.database)

    def replica_state(self, http: httpx.Client | None = None) -> str:
        """What readiness tells an operator about the replica: ``in``, or why it is out."""
        document = (http or self.writer).get("/health/ready").json()
        states = list(document["replicas"].values())
        assert len(states) == 1, document
        return str(states[0])

    def wait_replica_in(self, timeout: float = 30, http: httpx.Client | None = None) -> None:
        assert wait_until(lambda: self.replica_state(http) == "in", timeout), self.replica_state(http)


@pytest.fixture(scope="module")
def replicated(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    with shop_database(cluster, "dxrep") as shop:
        standby = Standby.of(cluster)
        try:
            env = {
                "DXAPI_READ_REPLICA_URLS": standby.url(shop.name),
                "DXAPI_REPLICA_MAX_LAG": str(MAX_LAG),
                "DXAPI_POOL_SIZE": "4",
            }
            directory: Path = tmp_path_factory.mktemp("replicas")
            secret = secrets.token_urlsafe(48)

            def start(name: str) -> ServerProcess:
                return ServerProcess(name, shop.url, secret, directory, env=env, forked=True)

            server = start("replicas")
            try:
                server.wait_ready()
                clients = [
                    httpx.Client(
                        base_url=server.base_url,
                        headers={"Authorization": f"Bearer {fetch_token(server.base_url, *credentials)}"},
                        timeout=30,
                    )
                    for credentials in (shop.writer, shop.reader)
                ]
                with Session(shop.url) as primary:
                    yield Replicated(primary, standby, shop.name, server, *clients, start)
                for http in clients:
                    http.close()
            finally:
                server.stop()
        finally:
            standby.drop()


@pytest.fixture
def env(replicated: Replicated) -> Replicated:
    """The replica in, replaying at once, before every test."""
    replicated.standby.ensure_running()
    with replicated.standby_session() as standby:
        if standby.value("SELECT pg_is_wal_replay_paused()"):
            standby.execute("SELECT pg_wal_replay_resume()")
    replicated.wait_replica_in()
    return replicated


def name_of(http: httpx.Client, key: int) -> str:
    response = http.get(f"{API}/products/{key}")
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["name"])


def exported_name(http: httpx.Client, key: int) -> str:
    response = http.get(f"{API}/products", headers={"Accept": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    rows = [orjson.loads(line) for line in response.content.splitlines()]
    return str(next(row["name"] for row in rows if row["idProduct"] == key))


def changed_keys(http: httpx.Client, cursor: str) -> list[Any]:
    response = http.get(f"{API}/products/_changes", params={"since": cursor})
    assert response.status_code == 200, response.text
    return [entry["id"] for entry in response.json()["data"]]


def feed_head(http: httpx.Client) -> str:
    response = http.get(f"{API}/products/_changes", params={"since": "now"})
    assert response.status_code == 200, response.text
    return str(response.json()["meta"]["cursor"])


def replica_answers(h: Replicated) -> None:
    """The proof that the reader's row, export and change-feed reads come from the replica (module docstring)."""
    marker = f"paused {secrets.token_hex(4)}"
    cursor = feed_head(h.reader)
    with h.standby_session() as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            h.primary.execute("UPDATE shop_product SET name = $1 WHERE id_product = $2", marker, PROOF_ID)
            assert name_of(h.reader, PROOF_ID) != marker
            assert exported_name(h.reader, PROOF_ID) != marker
            assert PROOF_ID not in changed_keys(h.reader, cursor)
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
    assert wait_until(lambda: name_of(h.reader, PROOF_ID) == marker, 10)
    assert exported_name(h.reader, PROOF_ID) == marker
    assert PROOF_ID in changed_keys(h.reader, cursor)


def test_reads_come_from_the_replica_and_writes_go_to_the_primary(env: Replicated) -> None:
    replica_answers(env)
    marker = f"written {secrets.token_hex(4)}"
    with env.standby_session() as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            response = env.writer.patch(f"{API}/products/{PROOF_ID}", json={"data": {"name": marker}})
            assert response.status_code == 200, response.text
            # Written on the primary (the replica could not have taken it, nor shows it while paused) ...
            assert env.primary.value("SELECT name FROM shop_product WHERE id_product = $1", PROOF_ID) == marker
            assert standby.value("SELECT name FROM shop_product WHERE id_product = $1", PROOF_ID) != marker
            # ... and read back by its writer from the primary, after the bounded wait for the paused replica.
            started = time.monotonic()
            assert name_of(env.writer, PROOF_ID) == marker
            assert 0.4 <= time.monotonic() - started < 3
            # Anyone else reads the replica meanwhile.
            assert name_of(env.reader, PROOF_ID) != marker
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")


def test_a_replica_lagging_beyond_the_bound_is_taken_out_until_it_catches_up(env: Replicated) -> None:
    marker = f"lagging {secrets.token_hex(4)}"
    with env.standby_session() as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            env.primary.execute("UPDATE shop_product SET name = $1 WHERE id_product = $2", marker, PROOF_ID)
            assert name_of(env.reader, PROOF_ID) != marker  # within the bound: still the replica's
            # Beyond DXAPI_REPLICA_MAX_LAG the replica is out and the primary answers everyone.
            assert wait_until(lambda: name_of(env.reader, PROOF_ID) == marker, MAX_LAG + 5)
            assert "behind the primary" in env.replica_state()
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
    env.wait_replica_in(10)
    replica_answers(env)


def test_a_worker_starting_beside_a_lagging_replica_reads_the_primary_until_it_catches_up(env: Replicated) -> None:
    marker = f"late {secrets.token_hex(4)}"
    with env.standby_session() as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        resumed = False
        try:
            env.primary.execute("UPDATE shop_product SET name = $1 WHERE id_product = $2", marker, PROOF_ID)
            late = env.start("late")
            try:
                late.wait_ready()
                as_writer = {"Authorization": env.writer.headers["Authorization"]}
                as_reader = {"Authorization": env.reader.headers["Authorization"]}
                with (
                    httpx.Client(base_url=late.base_url, headers=as_writer, timeout=30) as writer,
                    httpx.Client(base_url=late.base_url, headers=as_reader, timeout=30) as reader,
                ):
                    # Behind every position the new worker has seen (by how much is unknown): out.
                    assert env.replica_state(writer) == "behind the primary"
                    assert name_of(reader, PROOF_ID) == marker
                    standby.execute("SELECT pg_wal_replay_resume()")
                    resumed = True
                    env.wait_replica_in(10, writer)
            finally:
                late.stop()
        finally:
            if not resumed:
                standby.execute("SELECT pg_wal_replay_resume()")


class Readers:
    """Reader threads sending GETs (rows, pages with includes) back to back, every answer recorded."""

    def __init__(self, h: Replicated, threads: int = 4) -> None:
        self.h = h
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Readers:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def _read(self, index: int) -> None:
        with httpx.Client(base_url=self.h.server.base_url, headers=self.h.reader.headers, timeout=30) as http:
            key = index
            while not self._stop.is_set():
                key = key % 300 + 1
                self.answers.append(call(http, "row", "GET", f"{API}/products/{key}"))
                params = {"include": "productStocks", "page[limit]": 5, "page[offset]": key % 200}
                self.answers.append(call(http, "page", "GET", f"{API}/products", params=params))


def test_a_killed_replica_fails_no_read_and_serves_again_once_restarted(env: Replicated) -> None:
    with Readers(env) as readers:
        time.sleep(1)
        env.standby.kill()
        killed = time.monotonic()
        time.sleep(1.5)
        assert env.replica_state() != "in"
        env.standby.start()
        env.standby.wait_streaming()
        env.wait_replica_in(15)
        back = time.monotonic()
        time.sleep(1)
    answers = readers.answers
    failed = [a.describe() for a in answers if not a.ok]
    assert not failed, failed[:10]
    during = [a for a in answers if killed <= a.started and a.ended <= back]
    assert len(during) > 20, f"only {len(during)} reads while the replica was down"
    lines = log_lines(env.server)
    assert any("taken out" in line for line in lines), lines[-20:]
    replica_answers(env)


def _pairs(h: Replicated, reader: httpx.Client, pairs: int) -> list[str]:
    """``pairs`` PATCH-then-GET pairs (the writer writes, ``reader`` reads the row back) from ``PAIR_THREADS``
    threads on rows of their own; → the pairs whose read did not see its write."""

    def run(thread: int) -> list[str]:
        missed = []
        for n in range(pairs // PAIR_THREADS):
            key = 1 + thread * 10 + n % 10
            marker = f"pair {thread}-{n} {secrets.token_hex(3)}"
            written = h.writer.patch(f"{API}/products/{key}", json={"data": {"name": marker}})
            assert written.status_code == 200, written.text
            seen = name_of(reader, key)
            if seen != marker:
                missed.append(f"{key}: wrote {marker!r}, read {seen!r}")
        return missed

    with ThreadPoolExecutor(PAIR_THREADS) as pool:
        return [miss for found in pool.map(run, range(PAIR_THREADS)) for miss in found]


def test_every_read_sees_its_write_through_a_delayed_replica(env: Replicated) -> None:
    env.standby.set("recovery_min_apply_delay", "200ms")
    try:
        with env.standby_session() as standby:
            assert standby.value("SHOW recovery_min_apply_delay") == "200ms"
        env.wait_replica_in()
        env.standby.set("log_statement", "all")  # which read-backs the replica answered
        logged_from = env.standby.log_size()
        missed = _pairs(env, env.writer, PAIRS)
        served = env.standby.logged_statements(logged_from, "shop_product")
        env.standby.set("log_statement", "none")
        # Without read-your-writes (another principal reads the row back) the delay shows.
        control = _pairs(env, env.reader, PAIR_THREADS * 2)
    finally:
        env.standby.set("recovery_min_apply_delay", "0")
        env.standby.set("log_statement", "none")
    assert not missed, missed[:10]
    assert served >= PAIRS // 10, f"the replica answered only {served} of {PAIRS} read-backs"
    assert control, "every read of another principal saw the write: the replica was not delayed"
    print(
        f"\nreplica answered {served} of {PAIRS} read-backs; {len(control)} of {PAIR_THREADS * 2} control reads missed"
    )
