"""100 idle and 50 slow-header connections: the server closes them in time and other clients do not notice.

``slowclients`` (a process of its own) keeps 50 silent connections, 50 idle keep-alive connections and 50
slowloris connections (a request head that never ends, one header line every 0.5 s) open for 7 s, replacing each
one the server closes. With ``DXAPI_HEADER_TIMEOUT`` and ``DXAPI_KEEPALIVE_TIMEOUT`` at 2 s, every connection is
closed within its timeout + 1 s: a slow head is cut however steadily it trickles, an idle one whether it ever sent
a request or not. Meanwhile four clients read products by id; their p99 latency stays within twice what it was
before the slow connections came.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.reliability.traffic import ROOT_DIR, Answer, Shop, call, client, serve
from tests.reload.processes import API, ServerProcess, quantile, running

HEADER_TIMEOUT = 2.0
KEEPALIVE_TIMEOUT = 2.0
SLACK = 1.0
BOUNDS = {  # the longest a connection of each kind may stay open
    "silent": max(HEADER_TIMEOUT, KEEPALIVE_TIMEOUT) + SLACK,  # waiting for a head, or idle: either timeout
    "kept": KEEPALIVE_TIMEOUT + SLACK,
    "slow": HEADER_TIMEOUT + SLACK,
}
ATTACK_FOR = 7.0
MEASURE_FOR = 3.0
CLIENTS = 4
SETTINGS = {"DXAPI_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "DXAPI_KEEPALIVE_TIMEOUT": str(KEEPALIVE_TIMEOUT)}


def _latencies(server: ServerProcess, shop: Shop, token: str, seconds: float) -> list[Answer]:
    """``CLIENTS`` clients on kept-alive connections reading products by id for ``seconds``."""
    answers: list[Answer] = []
    https = [client(server, shop, timeout=10, token=token) for _ in range(CLIENTS)]

    def read(index: int) -> None:
        end = time.monotonic() + seconds
        n = index
        while time.monotonic() < end:
            n = n % 300 + 1
            answers.append(call(https[index], "read-one", "GET", f"{API}/products/{n}"))

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 30)
    finally:
        for http in https:
            http.close()
    return answers


def _attack(server: ServerProcess, report: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.reliability.slowclients", str(server.port), str(ATTACK_FOR), str(report)]
    attacker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT_DIR)
    assert attacker.stdout is not None and attacker.stdout.readline().strip() == "ready", "attacker did not start"
    return attacker


def _connection_problems(records: list[dict[str, object]]) -> list[str]:
    problems = []
    for kind, bound in BOUNDS.items():
        mine = [r for r in records if r["kind"] == kind]
        closed = [float(r["seconds"]) for r in mine if r["closed"]]  # type: ignore[arg-type]
        lingering = [float(r["seconds"]) for r in mine if not r["closed"] and float(r["seconds"]) > bound]  # type: ignore[arg-type]
        if len(closed) < 50:
            problems.append(f"{kind}: only {len(closed)} connections were closed by the server in {ATTACK_FOR}s")
        late = [s for s in closed if s > bound]
        if late or lingering:
            problems.append(
                f"{kind}: {len(late)} closed after more than {bound}s (longest {max(late, default=0):.1f}s), "
                f"{len(lingering)} still open after more than {bound}s"
            )
    return problems


@pytest.mark.timeout(120)
def test_idle_and_slow_connections(shop: Shop, tmp_path: Path) -> None:
    server = serve(shop, tmp_path, "slow-clients", env=SETTINGS)
    with running([server]):
        token = server.token(shop.database)
        _latencies(server, shop, token, 1.0)  # warm up: pools, caches, the first token check
        idle = _latencies(server, shop, token, MEASURE_FOR)
        report = tmp_path / "connections.json"
        attacker = _attack(server, report)
        try:
            busy = _latencies(server, shop, token, MEASURE_FOR)
            attacker.wait(timeout=ATTACK_FOR + 30)
        finally:
            if attacker.poll() is None:
                attacker.kill()
        records = json.loads(report.read_text())
    failed = [a.describe() for a in idle + busy if a.status != 200]
    assert not failed, failed[:10]
    problems = _connection_problems(records)
    assert not problems, "\n".join(problems)
    p99_idle = quantile([a.took for a in idle], 0.99)
    p99_busy = quantile([a.took for a in busy], 0.99)
    print(f"p99 {p99_idle * 1000:.1f} ms idle, {p99_busy * 1000:.1f} ms with slow clients; {len(records)} connections")
    assert p99_busy <= 2 * p99_idle, f"p99 {p99_busy * 1000:.1f} ms with slow clients, {p99_idle * 1000:.1f} ms before"
