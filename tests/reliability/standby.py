"""A streaming replica of the suite's cluster: ``pg_basebackup -R`` into a second cluster of its own port.

Feeds ``test_replicas``. ``Standby.create`` makes a cluster with ``pg_createcluster`` (for its configuration
and its place in ``pg_lsclusters``, named like the suite's others so a run killed before its cleanup has it
dropped by ``drop_stale_clusters``), replaces its data directory with a base backup of the primary and
starts it as a hot standby that streams from the primary. The primary is never reconfigured: PostgreSQL 15's
defaults (``wal_level = replica``, ten WAL senders, Debian's replication lines in ``pg_hba.conf``) suffice.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import time
from pathlib import Path

from tests.conftest import _free_port
from tests.reliability.cluster import PG_ETC, PREFIX, SETTINGS, Cluster, ClusterError, Session, _run

# A standby refuses to start with fewer connections than its primary allows (SETTINGS: 200).
STANDBY_SETTINGS = SETTINGS + "hot_standby = on\n"


class Standby(Cluster):
    """A hot standby of ``primary``; ``drop`` removes it with its data."""

    @classmethod
    def of(cls, primary: Cluster) -> Standby:
        standby = cls(primary.version, f"{PREFIX}_{os.getpid()}_{secrets.token_hex(3)}", _free_port())
        command = ["pg_createcluster", "--start-conf=manual", "--port", str(standby.port), standby.version]
        _run([*command, standby.name, "--", "--auth=trust"])
        try:
            (PG_ETC / standby.version / standby.name / "conf.d" / "reliability.conf").write_text(STANDBY_SETTINGS)
            shutil.rmtree(standby.data_dir)
            backup = ["pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"]
            _run([*backup, "-D", str(standby.data_dir), "-R", "-X", "stream", "-c", "fast"])
            _run(["chown", "-R", "postgres:postgres", str(standby.data_dir)])
            standby.data_dir.chmod(0o700)
            standby.start()
            standby.wait_streaming()
        except BaseException:
            standby.drop()
            raise
        return standby

    def session(self, database: str) -> Session:
        return Session(self.url(database))

    def wait_streaming(self, timeout: float = 30) -> None:
        """Until it is a standby whose WAL receiver streams from the primary."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.session("postgres") as session:
                    if session.value("SELECT status FROM pg_stat_wal_receiver") == "streaming":
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise ClusterError(f"standby {self.name} is not streaming after {timeout} s")

    def set(self, setting: str, value: str) -> None:
        """A reloadable setting (``recovery_min_apply_delay`` …) changed on the running standby."""
        with self.session("postgres") as session:
            session.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
            session.execute("SELECT pg_reload_conf()")

    @property
    def log_path(self) -> Path:
        return Path(f"/var/log/postgresql/postgresql-{self.version}-{self.name}.log")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def logged_statements(self, since: int, containing: str) -> int:
        """Statements the standby logged (``log_statement = 'all'``) after byte ``since`` of its log."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        return sum(1 for line in lines if "execute" in line and containing in line)

    def kill(self) -> None:
        """SIGKILL to the postmaster by its PID, then until it and its children are gone (a start before that
        would find their shared memory attached, or the socket's lock file naming a live PID)."""
        pid = self.postmaster_pid()
        if pid is None:
            raise ClusterError(f"standby {self.name} is not running")
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_exists(child) for child in [pid, *children]):
            if time.monotonic() > deadline:
                raise ClusterError(f"standby {self.name} left processes behind after SIGKILL")
            time.sleep(0.02)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _exists(pid: int) -> bool:
    """Running, or dead but not yet reaped: a new postmaster takes a zombie's PID in the socket's lock file for a
    live one."""
    return Path(f"/proc/{pid}").exists()
