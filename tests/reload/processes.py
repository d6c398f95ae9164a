"""Real ``dxapi serve`` processes and throw-away databases for the process-level reload tests.

Fed by ``tests.conftest`` (server URLs, database creation, the demo shop); feeds every module of this folder.
A ``ServerProcess`` is the command an operator runs — ``python -m dxapi.cli --database-url URL serve …`` — in
a subprocess with its own port and log file; it is stopped by its PID only. ``Database`` is a fresh database
per test (a temp file for SQLite, ``dxapi_test_<random>`` on the servers) holding the demo shop, configured
from ``examples/shop-config.json`` plus the awkward tables of the shared harness (or, on request, nothing but
dxapi's own tables), and an OAuth client allowed everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.process
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dxapi.auth.principals import add_client
from dxapi.db import create_engine
from dxapi.registry.store import ensure_schema
from tests.conftest import ALL_SCOPES, _create_database, _drop_database, _free_port, _prepare, fetch_token

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "reload"  # git-ignored: measured delays and schemathesis reports
API = "/dynamic-entity"
START_TIMEOUT = 30.0
JSON_ERROR = '"level":"ERROR"'  # an ERROR line of DXAPI_LOG_FORMAT=json


@dataclass
class Database:
    backend: str
    url: str
    client_id: str
    client_secret: str


@contextlib.contextmanager
def throwaway_database(
    backend: str, loop: asyncio.AbstractEventLoop, directory: Path, *, shop: bool = True
) -> Iterator[Database]:
    """A fresh database with the demo shop and its configuration (``shop=False``: only dxapi's own tables, for
    a test that brings its own and starts many servers — each one starts faster); dropped (server backends)
    afterwards."""
    url = (
        f"sqlite:///{directory / 'shop.db'}"
        if backend == "sqlite"
        else loop.run_until_complete(_create_database(backend))
    )
    try:
        client_id, client_secret = loop.run_until_complete(_prepare(url) if shop else _prepare_bare(url))
        yield Database(backend, url, client_id, client_secret)
    finally:
        if backend != "sqlite":
            loop.run_until_complete(_drop_database(backend, url))


async def _prepare_bare(url: str) -> tuple[str, str]:
    engine = create_engine(url)
    try:
        await ensure_schema(engine)
        return await add_client(engine, "test suite", ALL_SCOPES)
    finally:
        await engine.dispose()


def end_process(process: Any) -> None:
    """SIGTERM to a process this test started, SIGKILL if it has not exited within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class ServerProcess:
    """One ``dxapi serve`` subprocess (one worker unless told otherwise); its output goes to ``log_path``.

    ``forked``: the same command line run by ``dxapi.cli.main`` in a process forked from a fork server that has
    imported dxapi already — for a test that needs many fresh processes: it saves the ~1.5 CPU-seconds of
    imports each start-up costs, and nothing of the server's own state exists before ``main`` runs.
    """

    def __init__(
        self,
        name: str,
        database_url: str,
        jwt_secret: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        *,
        forked: bool = False,
        workers: int = 1,
    ) -> None:
        self.name = name
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{name}.log"
        # Only what the test decides: no DXAPI_* from the caller's shell (DXAPI_RELOAD_INTERVAL stays default).
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DXAPI_")}
        environment.update({"DXAPI_JWT_SECRET": jwt_secret, "DXAPI_LOG_LEVEL": "warning", **(env or {})})
        arguments = [
            "--database-url",
            database_url,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.process: subprocess.Popen[bytes] | _Forked
        if forked:
            self.process = _Forked.start(arguments, environment, self.log_path, log_dir)
            return
        command = [sys.executable, "-m", "dxapi.cli", *arguments]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=log_dir)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until ``/health/ready`` says 200; fails with the server's log if it exits or never gets there."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server {self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.base_url}/health/ready", timeout=2)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.TransportError as exc:
                last = type(exc).__name__
            time.sleep(0.05)
        raise AssertionError(f"server {self.name} not ready within {timeout}s ({last}):\n{self.log_tail()}")

    def token(self, database: Database) -> str:
        return fetch_token(self.base_url, database.client_id, database.client_secret)

    def logged_errors(self) -> list[str]:
        """Tracebacks and ERROR lines in the server's log: each one is a 500 or a failure after a commit."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if line.startswith(("ERROR", "Traceback")) or JSON_ERROR in line]

    def kill(self) -> None:
        """SIGKILL by this process's own PID, as a crash: no shutdown, no rollback or cleanup of its own."""
        self.process.kill()
        self.process.wait(timeout=5)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL if it lingers; always by this process's own PID.

        Fails the test if the server logged an error, unless the test is already failing for its own reason.
        """
        end_process(self.process)
        errors = self.logged_errors()
        if errors and sys.exc_info()[0] is None:
            raise AssertionError(
                f"server {self.name} logged errors:\n" + "\n".join(errors[:20]) + f"\n{self.log_tail()}"
            )


# What the fork server imports once, before it forks: dxapi's command line and app, and this module (the
# forked function's home).
_PRELOAD = ["dxapi.cli", "dxapi.app", "uvicorn", __name__]


class _Forked:
    """A forked ``dxapi.cli.main`` process behind the part of ``Popen`` that ``ServerProcess`` uses."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @classmethod
    def start(cls, arguments: list[str], environment: dict[str, str], log_path: Path, cwd: Path) -> _Forked:
        # The fork server starts with the first process and serves the whole session. Each forked process also
        # re-imports the session's ``__main__`` as ``__mp_main__``: pytest's entry point, which runs nothing then.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        # Daemonic: should a test leave one running, multiprocessing ends it when the test session exits.
        process = context.Process(target=_serve, args=(arguments, environment, str(log_path), str(cwd)), daemon=True)
        process.start()
        return cls(process)

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("dxapi serve (forked)", timeout or 0)
        return self._process.exitcode


def _serve(arguments: list[str], environment: dict[str, str], log_path: str, cwd: str) -> None:
    """In the forked process: what ``python -m dxapi.cli …`` does once its imports are done."""
    from dxapi import cli

    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environment)
    sys.exit(cli.main(arguments))


@contextlib.contextmanager
def running(servers: Sequence[ServerProcess]) -> Iterator[Sequence[ServerProcess]]:
    """Wait until every server is ready; stop them all afterwards, whatever happened."""
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1): with 20 samples p99 is the largest one."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 1)))
    return ordered[int(rank) - 1]


def error_code(response: httpx.Response) -> Any:
    """The ``code`` of the first item of a dxapi error array (None when the body is something else)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body[0].get("code") if isinstance(body, list) and body and isinstance(body[0], dict) else None
