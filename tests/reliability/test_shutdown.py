"""SIGTERM while batches run: what finishes in time is answered, what does not gets a JSON 503, nothing is
partly written, and the process is gone within ``DXAPI_SHUTDOWN_TIMEOUT`` + 2 s.

Two PATCH batches are held up by row locks of the test's own transactions, straight on the cluster: a long one
(40 rows, the 25th locked) and a short one (9 rows, the 5th locked). Lock and statement timeouts are far beyond
the shutdown timeout (2 s here), so only the shutdown can end the long one. With both waiting on their locks
the server gets SIGTERM; the short batch's lock is released 1 s later, so it finishes inside the timeout and is
answered 200 with every row written. The long one is cut: 503 ``5008`` as a JSON error array, and once its lock
is released too, none of its 40 rows carries its value.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.reliability.cluster import Session
from tests.reliability.traffic import Answer, Shop, call, client, serve, wait_until
from tests.reload.processes import API

SHUTDOWN_TIMEOUT = 2.0
EXIT_WITHIN = SHUTDOWN_TIMEOUT + 2.0
SHORT_RELEASED_AFTER = 1.0  # seconds after SIGTERM: inside the shutdown timeout
SETTINGS = {
    "DXAPI_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
    "DXAPI_LOCK_TIMEOUT": "60",
    "DXAPI_STATEMENT_TIMEOUT": "60",
}
WAITING = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
WRITING = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_xid IS NOT NULL AND pid <> $2"


@dataclass
class Held:
    """A PATCH batch of ``ids`` that waits for the lock on ``locked`` held by ``holder``."""

    name: str
    ids: range
    locked: int
    holder: Session

    @property
    def value(self) -> str:
        return f"shutdown {self.name}"

    def lock(self) -> None:
        self.holder.execute("BEGIN")
        self.holder.execute("SELECT id_product FROM shop_product WHERE id_product = $1 FOR UPDATE", self.locked)

    def release(self) -> None:
        self.holder.execute("ROLLBACK")

    def send(self, http: httpx.Client, into: list[Answer]) -> threading.Thread:
        body = {"data": [{"idProduct": i, "name": self.value} for i in self.ids]}
        thread = threading.Thread(
            target=lambda: into.append(call(http, self.name, "PATCH", f"{API}/products", json=body)), daemon=True
        )
        thread.start()
        return thread

    def written(self, session: Session) -> int:
        ids = list(self.ids)
        return int(
            session.value("SELECT count(*) FROM shop_product WHERE id_product = ANY($1) AND name = $2", ids, self.value)
        )


def test_sigterm_during_batches(shop: Shop, tmp_path: Path) -> None:
    server = serve(shop, tmp_path, "shutdown", env=SETTINGS)
    with shop.session() as one, shop.session() as two, shop.session() as watcher:
        long = Held("long", range(251, 291), 275, one)
        short = Held("short", range(291, 300), 295, two)
        try:
            server.wait_ready()
            answers: list[Answer] = []
            token = server.token(shop.database)
            with client(server, shop, token=token) as http_long, client(server, shop, token=token) as http_short:
                long.lock()
                short.lock()
                threads = [long.send(http_long, answers), short.send(http_short, answers)]
                assert wait_until(lambda: watcher.value(WAITING, shop.name) >= 2, 10), "the batches never waited"
                server.process.terminate()
                signalled = time.monotonic()
                time.sleep(SHORT_RELEASED_AFTER)
                short.release()
                exited = wait_until(lambda: server.process.poll() is not None, EXIT_WITHIN + 10, 0.02)
                took = time.monotonic() - signalled
                long.release()
                for thread in threads:
                    thread.join(timeout=10)
        finally:
            server.stop()
        assert wait_until(lambda: watcher.value(WRITING, shop.name, watcher.pid()) == 0, 10), "a batch lingers"
        by_name = {a.kind: a for a in answers}
        written = {held.name: held.written(watcher) for held in (long, short)}
    assert exited and took <= EXIT_WITHIN, f"exit {took:.1f}s after SIGTERM (at most {EXIT_WITHIN}s)"
    cut = by_name["long"]
    assert cut.status == 503 and cut.json and cut.code == "5008", cut.describe()
    assert written["long"] == 0, f"{written['long']} of {len(long.ids)} rows of the cut batch were written"
    finished = by_name["short"]
    assert finished.status == 200, f"a batch that finished within the timeout: {finished.describe()}"
    assert written["short"] == len(short.ids), written
