"""Health endpoints for load balancers, and riding out a database restart without restarting dxapi.

``/health/live`` answers 200 whenever the process does; ``/health/ready`` answers 200 with the loaded
``snapshotVersion`` while the database answers, and 503 with a readable reason while it does not. The restart
test stops the shared PostgreSQL cluster under a dedicated ``dxapi serve`` process: readiness must turn 503
within seconds, data requests must fail fast with 503/5002 and ``Retry-After`` (never hang, never 500), and
after the cluster is back both recover on their own. It is marked ``stops_database`` so ``conftest.py`` runs
it after every other test of the session, and it always starts the cluster again, even when it fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dxapi.settings import Settings
from tests.conftest import BACKENDS, Backend
from tests.reload.processes import API, ServerProcess, error_code, running, throwaway_database

POSTGRES_ETC = Path("/etc/postgresql")
FAIL_FAST = 3.0  # seconds a data request may take while the database is down
NOTICE_WITHIN = 5.0  # seconds until readiness reports the outage
RECOVER_WITHIN = 20.0  # seconds until everything answers again after the cluster is back
PRINCIPAL_CACHE = Settings().principal_cache_seconds  # the default, which the server process uses


def test_live_and_ready(backend: Backend) -> None:
    with httpx.Client(base_url=backend.base_url, timeout=10) as anonymous:  # probes carry no credentials
        live = anonymous.get("/health/live")
        assert live.status_code == 200 and live.json() == {"status": "ok"}, live.text
        ready = anonymous.get("/health/ready")
    assert ready.status_code == 200, ready.text
    document = ready.json()
    assert document["status"] == "ok" and document["problemCount"] == 0, document
    assert isinstance(document["snapshotVersion"], int) and document["snapshotVersion"] >= 1, document
    assert isinstance(document["unavailableEntityCount"], int), document
    # The details are for operators (any valid credentials), see test_health_hardening.py.
    detailed = backend.client.get("/health/ready").json()
    assert detailed["status"] == "ok" and detailed["problems"] == [], detailed
    assert detailed["snapshotVersion"] == document["snapshotVersion"], detailed
    assert isinstance(detailed["unavailableEntities"], dict), detailed
    assert detailed["listening"] is (backend.name == "postgresql"), detailed


# --- database stop and restart ----------------------------------------------------------------------------------


def _cluster() -> list[str]:
    versions = sorted(os.listdir(POSTGRES_ETC)) if POSTGRES_ETC.is_dir() else []
    assert versions and shutil.which("pg_ctlcluster"), "the local PostgreSQL cluster cannot be controlled here"
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _pg_ctl(*action: str) -> None:
    done = subprocess.run([*_cluster(), *action], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"pg_ctlcluster {' '.join(action)} failed: {done.stdout}{done.stderr}"


def _postgres_answers() -> bool:
    done = subprocess.run(["pg_isready", "-h", "127.0.0.1"], capture_output=True, timeout=10, check=False)
    return done.returncode == 0


def _start_postgres_again() -> None:
    """Start the cluster (when it is down) and wait until it accepts connections."""
    if not _postgres_answers():
        subprocess.run([*_cluster(), "start"], capture_output=True, timeout=60, check=False)
    deadline = time.monotonic() + 60
    while not _postgres_answers():
        assert time.monotonic() < deadline, "PostgreSQL did not come back within 60 s"
        time.sleep(0.2)


@pytest.fixture
def postgres_restorer() -> Iterator[None]:
    """Whatever the test does to the cluster, it is running and answering afterwards."""
    try:
        yield
    finally:
        _start_postgres_again()


def _timed_get(client: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


def _wait_ready_status(client: httpx.Client, status: int, within: float) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    while True:
        response = client.get("/health/ready")
        waited = time.monotonic() - started
        if response.status_code == status or waited > within:
            return response, waited
        time.sleep(0.1)


@pytest.mark.stops_database
@pytest.mark.timeout(180)
@pytest.mark.skipif("postgresql" not in BACKENDS, reason="postgresql is not in DXAPI_TEST_BACKENDS")
def test_database_restart(loop: asyncio.AbstractEventLoop, tmp_path: Path, postgres_restorer: None) -> None:
    with throwaway_database("postgresql", loop, tmp_path) as database:
        server = ServerProcess("restart", database.url, secrets.token_urlsafe(48), tmp_path)
        with running([server]):
            headers = {"Authorization": f"Bearer {server.token(database)}"}
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
                assert client.get(f"{API}/products?page[limit]=2").status_code == 200
                version = client.get("/health/ready").json()["snapshotVersion"]

                try:
                    _pg_ctl("stop", "-m", "fast")
                    ready, waited = _wait_ready_status(client, 503, NOTICE_WITHIN)
                    assert ready.status_code == 503, (f"still {ready.status_code} after {waited:.1f}s", ready.text)
                    document = ready.json()
                    assert document["status"] == "unavailable" and document["problemCount"] >= 1, document
                    # Credentials that need the database to be checked get the anonymous answer meanwhile.
                    assert any("database" in p for p in document.get("problems", ["database"])), document
                    assert document["snapshotVersion"] == version, document  # the old snapshot keeps serving

                    down: list[str] = []
                    # Right away, and again once the worker's cache of active principals (2 s) has expired,
                    # so that authentication itself needs the database.
                    for pause in (0.0, PRINCIPAL_CACHE + 0.5):
                        time.sleep(pause)
                        for path in (f"{API}/products?page[limit]=5", f"{API}/products/1", f"{API}/countries"):
                            response, took = _timed_get(client, path)
                            if not (
                                response.status_code == 503
                                and error_code(response) == "5002"
                                and response.headers.get("retry-after")
                                and took < FAIL_FAST
                            ):
                                down.append(
                                    f"after {pause}s {path}: {response.status_code} "
                                    f"{response.text[:160]!r} Retry-After="
                                    f"{response.headers.get('retry-after')} in {took:.2f}s"
                                )
                    # A connector fetching a new token meanwhile is told to come back, not "server error".
                    form = {
                        "grant_type": "client_credentials",
                        "client_id": database.client_id,
                        "client_secret": database.client_secret,
                    }
                    started = time.monotonic()
                    token = httpx.post(f"{server.base_url}/token", data=form, timeout=10)
                    took = time.monotonic() - started
                    if token.status_code != 503 or took >= FAIL_FAST:
                        down.append(f"POST /token: {token.status_code} {token.text[:160]!r} in {took:.2f}s")
                    live, took = _timed_get(client, "/health/live")
                    assert live.status_code == 200 and took < FAIL_FAST, (live.status_code, took)
                finally:
                    _start_postgres_again()

                ready, waited = _wait_ready_status(client, 200, RECOVER_WITHIN)
                assert ready.status_code == 200, (
                    f"not ready {waited:.1f}s after the restart",
                    ready.text,
                    server.log_tail(),
                )
                deadline = time.monotonic() + RECOVER_WITHIN
                while (back := client.get(f"{API}/products?page[limit]=5")).status_code != 200:
                    assert time.monotonic() < deadline, (back.status_code, back.text, server.log_tail())
                    time.sleep(0.1)
                assert len(back.json()["data"]) == 5
                assert client.get(f"{API}/products/1").status_code == 200
                assert server.process.poll() is None, "dxapi must ride out the restart without restarting"
                assert not down, "\n".join(
                    ["answers while the database was down:", *down, f"(server log: {server.log_path})"]
                )
