"""A row locked for 8 s by another transaction while 8 clients PATCH it: bounded waits, a healthy worker.

A transaction of the test's own, straight on the cluster, holds ``SELECT … FOR UPDATE`` on one product for 8 s.
Eight clients PATCH that product over and over meanwhile. Each PATCH is answered within the lock timeout + 1 s
(the default ``DXAPI_LOCK_TIMEOUT``, 5 s): 409 ``3005`` with ``Retry-After`` while the lock is held, after it
was waited for; 200 once it is released. Meanwhile requests that need no row — a bad parameter, an unknown
alias — answer 400 and 404 in under 1.5 s, and ``/health/ready`` stays 200: eight waiting requests are not a
dead database, and their connections are not the ones readiness, reloads and principal checks use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.reliability.traffic import Answer, Shop, Window, call, client, serve, summary
from tests.reload.processes import API, running

LOCKED_ID = 300
LOCK_TIMEOUT = 5.0  # the default DXAPI_LOCK_TIMEOUT
HELD_FOR = 8.0
CLIENTS = 8
FAST = 1.5  # seconds a request that needs no locked row may take meanwhile
PROBES: dict[str, tuple[str, int]] = {
    "bad-parameter": (f"{API}/products?page[limit]=many", 400),
    "unknown-alias": (f"{API}/no-such-entity", 404),
    "ready": ("/health/ready", 200),
}


def _repeat(until: threading.Event, work: Callable[[], list[Answer]], into: list[Answer]) -> threading.Thread:
    def run() -> None:
        while not until.is_set():
            into.extend(work())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _patch(http: httpx.Client, number: int) -> Callable[[], list[Answer]]:
    def send() -> list[Answer]:
        body = {"data": {"name": f"locked row, client {number} at {time.monotonic():.3f}"}}
        return [call(http, "patch", "PATCH", f"{API}/products/{LOCKED_ID}", json=body)]

    return send


def _probe(http: httpx.Client) -> Callable[[], list[Answer]]:
    def send() -> list[Answer]:
        return [call(http, kind, "GET", path) for kind, (path, _status) in PROBES.items()]

    return send


def _patch_problems(patches: list[Answer], window: Window) -> list[str]:
    problems = [f"slow: {a.describe()}" for a in patches if a.error or a.took > LOCK_TIMEOUT + 1]
    while_held = [a for a in patches if a.ended < window["released"]]
    for answer in while_held:
        if not (answer.status == 409 and answer.code == "3005" and answer.retry_after and answer.json):
            problems.append(f"not a 409 3005 with Retry-After while the lock was held: {answer.describe()}")
        elif answer.took < LOCK_TIMEOUT / 2 - 0.5:
            # PostgreSQL bounds each lock wait; a writer queued behind another waits twice (the tuple lock,
            # then the holder's transaction), so each wait gets half of DXAPI_LOCK_TIMEOUT (db._pg_limits).
            problems.append(f"409 before half the lock timeout: {answer.describe()}")
    if len(while_held) < CLIENTS:
        problems.append(f"only {len(while_held)} PATCHes were answered while the lock was held")
    problems += [
        f"after the release: {a.describe()}" for a in patches if a.started > window["released"] and a.status != 200
    ]
    return problems


def _probe_problems(probes: list[Answer], window: Window) -> list[str]:
    during = [a for a in probes if a.ended < window["released"]]
    problems = [
        f"{a.describe()} (expected {PROBES[a.kind][1]} in < {FAST}s)"
        for a in during
        if a.status != PROBES[a.kind][1] or a.took >= FAST
    ]
    for kind in PROBES:
        if sum(1 for a in during if a.kind == kind) < 10:
            problems.append(f"fewer than 10 `{kind}` probes while the lock was held")
    return problems


@pytest.mark.timeout(120)
def test_locked_row(shop: Shop, tmp_path: Path) -> None:
    server = serve(shop, tmp_path, "locked")
    with running([server]), shop.session() as holder:
        token = server.token(shop.database)
        https = [client(server, shop, token=token) for _ in range(CLIENTS + 1)]
        try:
            window = Window()
            stop = threading.Event()
            patches: list[Answer] = []
            probes: list[Answer] = []
            holder.execute("BEGIN")
            holder.execute("SELECT id_product FROM shop_product WHERE id_product = $1 FOR UPDATE", LOCKED_ID)
            window.mark("locked")
            threads = [_repeat(stop, _patch(https[n], n), patches) for n in range(CLIENTS)]
            threads.append(_repeat(stop, _probe(https[-1]), probes))
            time.sleep(HELD_FOR)
            holder.execute("ROLLBACK")
            window.mark("released")
            time.sleep(1.0)
            stop.set()
            for thread in threads:
                thread.join(timeout=LOCK_TIMEOUT + 5)
        finally:
            for http in https:
                http.close()
        problems = _patch_problems(patches, window) + _probe_problems(probes, window)
        assert not problems, "\n".join([f"PATCH answers: {summary(patches)}", *problems[:30], server.log_tail()])
        name = holder.value("SELECT name FROM shop_product WHERE id_product = $1", LOCKED_ID)
        assert name.startswith("locked row, client"), name  # written once the lock was gone
