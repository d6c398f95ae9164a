"""A PgBouncer of a test's own (Debian's package, ``make pgbouncer``) in transaction mode on a free port.

Feeds ``test_pgbouncer``. The configuration is generated into a private directory: one database entry for the
suite's cluster, trust authentication for ``postgres`` (the cluster trusts it too), a small server pool so that
client connections outnumber server connections. It runs in the foreground as ``postgres`` (PgBouncer refuses
to run as root) and is stopped by its PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import _free_port
from tests.reload.processes import end_process

BINARY = Path("/usr/sbin/pgbouncer")

CONFIG = """\
[databases]
{database} = host=127.0.0.1 port={target} dbname={database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 200
logfile = {directory}/pgbouncer.log
"""


class PgBouncerError(Exception):
    pass


class PgBouncer:
    def __init__(self, target_port: int, database: str, pool_size: int) -> None:
        if not BINARY.is_file():
            raise PgBouncerError(f"{BINARY} is missing: run `make pgbouncer` (as root) first")
        self.port = _free_port()
        self.database = database
        self.directory = Path(tempfile.mkdtemp(prefix="dxapi-pgbouncer-"))
        self.directory.chmod(0o755)  # read and written by the `postgres` user it runs as
        config = CONFIG.format(
            database=database, target=target_port, port=self.port, pool_size=pool_size, directory=self.directory
        )
        (self.directory / "pgbouncer.ini").write_text(config)
        (self.directory / "users.txt").write_text('"postgres" ""\n')
        shutil.chown(self.directory, "postgres")
        command = [str(BINARY), "-u", "postgres", str(self.directory / "pgbouncer.ini")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PgBouncerError(f"pgbouncer exited with {self.process.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise PgBouncerError(f"pgbouncer does not listen after {timeout} s: {self.log()}")

    def log(self) -> str:
        try:
            return (self.directory / "pgbouncer.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def show(self, what: str) -> list[list[str]]:
        """A ``SHOW`` of the admin console (which speaks the simple query protocol only: psql)."""
        console = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-At", "-F", "|", "pgbouncer"]
        done = subprocess.run(
            [*console, "-c", f"SHOW {what}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return [line.split("|") for line in done.stdout.splitlines() if line]

    def stop(self) -> None:
        end_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)
