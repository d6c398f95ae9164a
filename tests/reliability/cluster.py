"""A PostgreSQL cluster of the suite's own, made with Debian's ``pg_createcluster`` and driven by ``pg_ctlcluster``.

Feeds the reliability tests: they stop it, kill it and lock its rows, which must never happen to the shared
server on 5432. A cluster is named ``dxrel_<pid>_<random>`` (the pid of the pytest process that made it), listens
on 127.0.0.1 only on a free port with trust authentication, and is dropped with ``pg_dropcluster --stop``.
Clusters left behind by a run that was itself killed are recognised by their dead pid and dropped first.

``Session`` is one direct connection (asyncpg, no proxy in between) used synchronously from one thread: the
tests use it to create the database, hold row locks and read what a batch left behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

from tests.conftest import _free_port

PREFIX = "dxrel"
PG_LIB = Path("/usr/lib/postgresql")
PG_ETC = Path("/etc/postgresql")
# fsync off: the tests kill processes, never the machine, so what reached the kernel survives a kill.
SETTINGS = """\
listen_addresses = '127.0.0.1'
fsync = off
ssl = off
max_connections = 200
restart_after_crash = on
"""


class ClusterError(Exception):
    """The cluster could not be created, started or stopped (the command's output is the message)."""


def newest_version() -> str:
    """The newest PostgreSQL major version installed (``/usr/lib/postgresql/<v>/bin/postgres``)."""
    versions = [p.name for p in PG_LIB.glob("*") if (p / "bin" / "postgres").is_file()] if PG_LIB.is_dir() else []
    if not versions:
        raise ClusterError(f"no PostgreSQL server binaries under {PG_LIB}")
    return max(versions, key=lambda v: [int(part) for part in re.findall(r"\d+", v)])


def _run(command: list[str], timeout: float = 120) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise ClusterError(f"`{' '.join(command)}` failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_stale_clusters() -> list[str]:
    """Drop the suite's clusters whose creating process is gone (a run killed before its cleanup)."""
    dropped = []
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        version, name = fields[0], fields[1]
        found = re.fullmatch(rf"{PREFIX}_(\d+)_[0-9a-f]+", name)
        if found and not _alive(int(found.group(1))):
            subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=120, check=False)
            dropped.append(name)
    return dropped


class Cluster:
    """One cluster of the suite; ``create`` makes and starts it, ``drop`` removes it with its data."""

    def __init__(self, version: str, name: str, port: int) -> None:
        self.version = version
        self.name = name
        self.port = port
        self.data_dir = Path(f"/var/lib/postgresql/{version}/{name}")
        self._starter: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> Cluster:
        cluster = cls(newest_version(), f"{PREFIX}_{os.getpid()}_{secrets.token_hex(3)}", _free_port())
        _run(
            [
                "pg_createcluster",
                "--start-conf=manual",
                "--port",
                str(cluster.port),
                cluster.version,
                cluster.name,
                "--",
                "--auth=trust",
            ]
        )
        try:
            (PG_ETC / cluster.version / cluster.name / "conf.d" / "reliability.conf").write_text(SETTINGS)
            cluster.start_in_background()
            cluster.wait_answers()
        except BaseException:
            cluster.drop()  # made but not started: never leave it behind
            raise
        return cluster

    def url(self, database: str, port: int | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{port or self.port}/{database}"

    def _ctl(self, *action: str) -> None:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *action])

    def answers(self) -> bool:
        done = subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True, timeout=10, check=False
        )
        return done.returncode == 0

    def wait_answers(self, timeout: float = 30) -> float:
        """Until the cluster accepts connections; → seconds waited."""
        started = time.monotonic()
        while not self.answers():
            if time.monotonic() - started > timeout:
                raise ClusterError(f"cluster {self.name} does not answer after {timeout} s")
            time.sleep(0.02)
        return time.monotonic() - started

    def start(self) -> None:
        self.finish_start()
        self._ctl("start")
        self.wait_answers()

    def start_in_background(self) -> None:
        """``pg_ctlcluster start`` without waiting for it: the wrapper polls at 0.5 s steps and returns seconds
        after the server is up. ``wait_answers`` says when it is; ``finish_start`` collects the wrapper."""
        self.finish_start()
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, "start"]
        self._starter = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish_start(self) -> None:
        starter, self._starter = self._starter, None
        if starter is not None:
            _out, err = starter.communicate(timeout=60)
            if starter.returncode != 0:
                raise ClusterError(f"pg_ctlcluster start failed ({starter.returncode}): {err.decode(errors='replace')}")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctlcluster stop -m fast|immediate`` (immediate: every process quits at once, no checkpoint)."""
        self.finish_start()
        self._ctl("stop", "-m", mode)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def quit_immediately(self) -> None:
        """SIGQUIT to the postmaster, which is what ``stop -m immediate`` sends, without the wrapper's ~0.2 s of
        start-up: every backend quits on the spot, nothing in flight commits. Returns once it is gone."""
        self.finish_start()
        pid = self.postmaster_pid()
        if pid is None:
            raise ClusterError(f"cluster {self.name} is not running")
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 30
        while (self.data_dir / "postmaster.pid").exists():
            if time.monotonic() > deadline:
                raise ClusterError(f"cluster {self.name} did not quit within 30 s")
            time.sleep(0.005)

    def ensure_running(self) -> None:
        """Whatever a test did to it: running and answering afterwards."""
        self.finish_start()
        if not self.answers():
            if self.postmaster_pid() is None:
                self._ctl("start")
            self.wait_answers(60)

    def drop(self) -> None:
        try:
            self.finish_start()
        finally:
            _run(["pg_dropcluster", "--stop", self.version, self.name])


class Session:
    """One direct connection to a database of the cluster, used synchronously from the thread that made it."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._conn: asyncpg.Connection = self._loop.run_until_complete(asyncpg.connect(dsn, timeout=10))
        except BaseException:
            self._loop.close()
            raise

    def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = self._loop.run_until_complete(self._conn.fetch(query, *args, timeout=30))
        return rows

    def value(self, query: str, *args: Any) -> Any:
        return self._loop.run_until_complete(self._conn.fetchval(query, *args, timeout=30))

    def execute(self, query: str, *args: Any) -> None:
        self._loop.run_until_complete(self._conn.execute(query, *args, timeout=30))

    def pid(self) -> int:
        return int(self._conn.get_server_pid())

    def close(self) -> None:
        try:
            if not self._conn.is_closed():
                # A dead server (killed by the test) cannot take a polite goodbye: drop the socket.
                try:
                    self._loop.run_until_complete(asyncio.wait_for(self._conn.close(), 2))
                except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
                    self._conn.terminate()
        finally:
            self._loop.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
