"""Server processes under test: start in their own process group, wait until they answer, stop by group, and
sample their memory from /proc.

Fed by the commands `run` builds; feeds `run` with base URLs and peak RSS figures. Nothing here touches a
process it did not start.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.scenarios import PRODUCTS_PATH

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fetch(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        sent = dict(headers or {})
        if body is not None and not any(name.lower() == "content-type" for name in sent):
            sent["Content-Type"] = "application/json"
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Server:
    label: str
    command: list[str]
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    problem: str | None = None  # why this server cannot be measured, if it cannot

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as output:
            # a session of its own: stop() signals the whole group (uvicorn's worker processes included)
            # and nothing else
            self.process = subprocess.Popen(
                self.command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until any HTTP answer below 500 on a product URL (401 counts: the server is up)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.problem = f"exited with {self.process.returncode}: {self.log_tail()}"
                return False
            try:
                status, _ = fetch("GET", f"{self.base}{PRODUCTS_PATH}/1", timeout=2)
                if status < 500:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        self.problem = f"did not answer within {timeout:.0f} s: {self.log_tail()}"
        return False

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break  # the whole group is gone
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                continue
            if not group_alive(pgid):
                break
        self.process = None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc (uvicorn workers are children of the supervisor)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: fields start after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def named(pids: Iterable[int], name: str) -> list[int]:
    """Those of `pids` that are processes of this machine whose command line mentions `name`.

    PostgreSQL reports its backends' process ids as it sees them: on another machine or in another PID
    namespace they are not these, and must not be mistaken for whatever process has the number here.
    """
    found = []
    for pid in pids:
        try:
            if name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(pid)
        except OSError:
            continue
    return found


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (processes that are gone are left out)."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command name: state is field 3 of stat(5), utime 14 and stime 15
        found[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def tree_rss(root: int) -> tuple[int, int, int]:
    """(summed resident set size, largest single process's RSS, number of processes) of `root`'s tree."""
    total = largest = count = 0
    for pid in process_tree(root):
        try:
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        total += rss
        largest = max(largest, rss)
        count += 1
    return total, largest, count


@contextmanager
def peak_rss(root: int, interval: float = 0.2) -> Iterator[dict[str, int]]:
    """Sample the tree's RSS in a thread while the body runs.

    Yields {"bytes": peak of the sum, "largest": peak of one process (a worker), "processes": n}.
    """
    peak = {"bytes": 0, "largest": 0, "processes": 0}
    stop = threading.Event()

    def sample_loop() -> None:
        while True:
            total, largest, count = tree_rss(root)
            peak["largest"] = max(peak["largest"], largest)
            if total > peak["bytes"]:
                peak.update(bytes=total, processes=count)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=sample_loop, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
