"""A database that dies or is restarted under a running dxapi: fast 503s, then recovery without a restart.

``test_killed_under_load``: six clients keep reading (by id, pages, includes) and patching while the suite's
cluster is stopped with ``pg_ctlcluster stop -m immediate`` (every backend dies on the spot; the fault proxy
refuses new connections meanwhile, as the server's closed port would) and started again 4 s later. Every
request is answered within ``DXAPI_CONNECT_TIMEOUT`` (3 s, the default): 200 while the database answers, 503 +
``Retry-After`` with a database code while it does not, never a hang or a 500; and within 10 s after the
cluster answers again everything is 200, with the same dxapi process. The warnings of the outage are
throttled: far fewer log lines than failed requests.

``test_restart``: the same server through a clean stop (``-m fast``) and start, step by step: readiness turns
503 within seconds and says so, data requests and ``POST /token`` fail fast with 503, ``/health/live`` stays
200, and both recover on their own.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from dxapi.settings import Settings
from tests.reliability.cluster import Cluster
from tests.reliability.faultproxy import FaultProxy, Mode
from tests.reliability.traffic import Load, Shop, Window, between, client, is_fast_503, log_lines, serve, summary
from tests.reload.processes import API, error_code, running

CONNECT_TIMEOUT = 3.0  # the default DXAPI_CONNECT_TIMEOUT: the bound of every answer while the database is down
RECOVER_WITHIN = 10.0  # seconds after the cluster answers again until every request succeeds
DOWN_FOR = 4.0
MAX_OUTAGE_LOG_LINES = 40  # one summary per kind of warning and interval, not one line per failed request


def _check_outage(load: Load, window: Window) -> list[str]:
    """Every answer bounded; while the database was down, every data answer a fast 503."""
    problems = [
        f"slow or no answer: {a.describe()}" for a in load.answers + load.probes if a.error or a.took > CONNECT_TIMEOUT
    ]
    problems += [
        f"failure that is not a fast 503: {a.describe()}"
        for a in load.answers
        if not a.ok and not a.error and not is_fast_503(a, CONNECT_TIMEOUT)
    ]
    down = between(load.answers, window["down"], window["start"])
    problems += [f"answered while the database was down: {a.describe()}" for a in down if a.ok]
    if len(down) < 50:
        problems.append(f"only {len(down)} requests were answered while the database was down")
    down_probes = between(load.probes, window["down"], window["start"])
    problems += [f"readiness while down: {a.describe()}" for a in down_probes if a.status != 503]
    return problems


def _recovery(load: Load, window: Window) -> tuple[float, list[str]]:
    """Seconds from "the cluster answers" to the end of the last failed answer, and what is missing after it."""
    after = [a for a in list(load.answers) if a.ended >= window["up"]]
    failed = [a for a in after if not a.ok]
    recovered = max((a.ended for a in failed), default=window["up"]) - window["up"]
    problems = []
    for kind in {a.kind for a in load.answers}:
        if not any(a.ok and a.kind == kind and a.started >= window["up"] + recovered for a in after):
            problems.append(f"no successful {kind} after the recovery")
    return recovered, problems


def _wait_recovered(load: Load, window: Window) -> None:
    """Until every kind of request has succeeded for a second after the last failure (at most the bound + 1 s)."""
    deadline = window["up"] + RECOVER_WITHIN + 1
    while time.monotonic() < deadline:
        recovered, missing = _recovery(load, window)
        if not missing and time.monotonic() > window["up"] + recovered + 1:
            return
        time.sleep(0.2)


@pytest.mark.timeout(120)
def test_killed_under_load(cluster: Cluster, proxy: FaultProxy, shop: Shop, tmp_path: Path) -> None:
    server = serve(shop, tmp_path, "killed")
    with running([server]):
        window = Window()
        with Load(server, shop) as load:
            time.sleep(1.0)
            outage_log_from = len(log_lines(server))
            cluster.stop("immediate")
            # The proxy's port closed as the server's is: new connections are refused, not reset after an accept.
            proxy.set_mode(Mode.REFUSE)
            window.mark("down")
            time.sleep(DOWN_FOR)
            window.mark("start")
            proxy.set_mode(Mode.PASS)
            cluster.start_in_background()
            cluster.wait_answers()
            window.mark("up")
            outage_log_to = len(log_lines(server))
            _wait_recovered(load, window)
        cluster.finish_start()
        recovered, missing = _recovery(load, window)
        problems = _check_outage(load, window) + missing
        assert not problems, "\n".join(
            [f"{len(problems)} problems; answers: {summary(load.answers)}", *problems[:30], server.log_tail()]
        )
        assert recovered <= RECOVER_WITHIN, f"recovered {recovered:.1f}s after the cluster was back"
        assert server.process.poll() is None, "dxapi must ride out the outage without restarting"
        failed = sum(1 for a in load.answers if not a.ok)
        lines = outage_log_to - outage_log_from
        assert lines <= MAX_OUTAGE_LOG_LINES, (
            f"{lines} log lines for {failed} failed requests in the outage: warnings are not throttled",
            "\n".join(log_lines(server)[outage_log_from : outage_log_from + 20]),
        )


# --- a clean restart, step by step (moved here from tests/reload/test_health.py) ---------------------------------

FAIL_FAST = 3.0  # seconds a data request may take while the database is down
NOTICE_WITHIN = 5.0  # seconds until readiness reports the outage
RECOVER_RESTART_WITHIN = 20.0  # seconds until everything answers again after the cluster is back
PRINCIPAL_CACHE = Settings().principal_cache_seconds  # the default, which the server process uses


def _timed_get(http: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = http.get(path)
    return response, time.monotonic() - started


def _wait_ready_status(http: httpx.Client, status: int, within: float) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    while True:
        response = http.get("/health/ready")
        waited = time.monotonic() - started
        if response.status_code == status or waited > within:
            return response, waited
        time.sleep(0.1)


def _answers_while_down(http: httpx.Client, shop: Shop, base_url: str) -> list[str]:
    down: list[str] = []
    # Right away, and again once the worker's cache of active principals (2 s) has expired, so that
    # authentication itself needs the database.
    for pause in (0.0, PRINCIPAL_CACHE + 0.5):
        time.sleep(pause)
        for path in (f"{API}/products?page[limit]=5", f"{API}/products/1", f"{API}/countries"):
            response, took = _timed_get(http, path)
            if not (
                response.status_code == 503
                and error_code(response) == "5002"
                and response.headers.get("retry-after")
                and took < FAIL_FAST
            ):
                down.append(
                    f"after {pause}s {path}: {response.status_code} {response.text[:160]!r} "
                    f"Retry-After={response.headers.get('retry-after')} in {took:.2f}s"
                )
    # A connector fetching a new token meanwhile is told to come back, not "server error".
    form = {"grant_type": "client_credentials", "client_id": shop.client_id, "client_secret": shop.client_secret}
    started = time.monotonic()
    token = httpx.post(f"{base_url}/token", data=form, timeout=10)
    took = time.monotonic() - started
    if token.status_code != 503 or took >= FAIL_FAST:
        down.append(f"POST /token: {token.status_code} {token.text[:160]!r} in {took:.2f}s")
    live, took = _timed_get(http, "/health/live")
    if live.status_code != 200 or took >= FAIL_FAST:
        down.append(f"/health/live: {live.status_code} in {took:.2f}s")
    return down


@pytest.mark.timeout(120)
def test_restart(cluster: Cluster, shop: Shop, tmp_path: Path) -> None:
    server = serve(shop, tmp_path, "restart")
    with running([server]), client(server, shop, timeout=10) as http:
        assert http.get(f"{API}/products?page[limit]=2").status_code == 200
        version = http.get("/health/ready").json()["snapshotVersion"]
        try:
            cluster.stop("fast")
            ready, waited = _wait_ready_status(http, 503, NOTICE_WITHIN)
            assert ready.status_code == 503, (f"still {ready.status_code} after {waited:.1f}s", ready.text)
            document = ready.json()
            assert document["status"] == "unavailable" and document["problemCount"] >= 1, document
            # Credentials that need the database to be checked get the anonymous answer meanwhile.
            assert any("database" in p for p in document.get("problems", ["database"])), document
            assert document["snapshotVersion"] == version, document  # the old snapshot keeps serving
            down = _answers_while_down(http, shop, server.base_url)
        finally:
            cluster.ensure_running()
        ready, waited = _wait_ready_status(http, 200, RECOVER_RESTART_WITHIN)
        assert ready.status_code == 200, (f"not ready {waited:.1f}s after the restart", ready.text, server.log_tail())
        deadline = time.monotonic() + RECOVER_RESTART_WITHIN
        while (back := http.get(f"{API}/products?page[limit]=5")).status_code != 200:
            assert time.monotonic() < deadline, (back.status_code, back.text, server.log_tail())
            time.sleep(0.1)
        assert len(back.json()["data"]) == 5
        assert http.get(f"{API}/products/1").status_code == 200
        assert server.process.poll() is None, "dxapi must ride out the restart without restarting"
        assert not down, "\n".join(["answers while the database was down:", *down, f"(server log: {server.log_path})"])
