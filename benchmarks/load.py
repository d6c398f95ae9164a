"""HTTP load driver for the benchmarks: `run_load(...)` → `Result` (requests/s, p50/p99, errors).

Uses `wrk` with `wrk.lua` (installing it with apt-get when missing and running as root); otherwise, or when
`DXAPI_BENCH_LOAD=python`, a small asyncio HTTP/1.1 client on raw streams. The load generator shares the
machine's cores with the server under test, so `run` gives both servers the same settings; compare ratios,
not absolute numbers, and never compare a wrk run with a Python-client run.

Placeholders let one call produce varied requests:
    url   "http://127.0.0.1:8101/dynamic-entity/products/{id}"  → a random id in 1..id_max per request;
          or a list of URLs on one host → a random one per request
    body  '{"data":[{"sku":"B-{uniq}-1",…}]}'                    → {uniq} unique per request and per run,
          made of [A-Z0-9] only
    headers {"Idempotency-Key": "bench-{uniq}"}                  → the same {uniq} as the request's body
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
LOAD_ENV = "DXAPI_BENCH_LOAD"  # "wrk", "python" or unset (= wrk when available)


@dataclass(frozen=True, slots=True)
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect/read/write errors and timeouts
    non_2xx: int  # answers with a status outside 200-299
    requests: int = 0
    duration_s: float = 0.0
    tool: str = ""

    @property
    def ok_per_s(self) -> float:
        """Successful (2xx) requests per second."""
        if not self.requests:
            return 0.0
        return self.requests_per_s * max(0, self.requests - self.non_2xx) / self.requests


_wrk_checked: str | None = None


def find_wrk() -> str | None:
    """Path of wrk; installs the Debian package once if it is missing and we may (root + apt-get)."""
    global _wrk_checked
    if _wrk_checked is not None:
        return _wrk_checked or None
    path = shutil.which("wrk")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            # a fresh container has no package lists yet
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        path = shutil.which("wrk")
    _wrk_checked = path or ""
    return path


def run_load(
    url: str | Sequence[str],
    method: str = "GET",
    body: str | bytes | None = None,
    duration: float = 10.0,
    connections: int = 16,
    *,
    headers: Mapping[str, str] | None = None,
    id_max: int = 100_000,
    threads: int = 1,
    timeout: float = 30.0,
) -> Result:
    """Drive `connections` keep-alive connections at `url` for `duration` seconds and measure."""
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("no URL to load")
    body_bytes = body.encode() if isinstance(body, str) else body
    # unique per call: two runs against the same table must never produce the same {uniq}
    # upper-case hex so {uniq} also fits patterns such as the demo config's sku rule ^[A-Z0-9-]+$
    nonce = secrets.token_hex(4).upper()
    tool = os.environ.get(LOAD_ENV, "")
    wrk = None if tool == "python" else find_wrk()
    if tool == "wrk" and wrk is None:
        raise RuntimeError("DXAPI_BENCH_LOAD=wrk but wrk is not installed")
    if wrk:
        return _run_wrk(
            wrk,
            urls,
            method,
            body_bytes,
            duration,
            connections,
            headers or {},
            id_max,
            threads,
            timeout,
            nonce,
        )
    return asyncio.run(
        _run_python(urls, method, body_bytes, duration, connections, headers or {}, id_max, timeout, nonce)
    )


def _split(url: str) -> tuple[str, str, int, str]:
    """'http://h:8101/p?q' → ('http://h:8101', 'h', 8101, '/p?q')."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only plain http URLs are supported: {url}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    port = parts.port or 80
    return f"http://{parts.hostname}:{port}", parts.hostname, port, path


def _run_wrk(
    wrk: str,
    urls: list[str],
    method: str,
    body: bytes | None,
    duration: float,
    connections: int,
    headers: Mapping[str, str],
    id_max: int,
    threads: int,
    timeout: float,
    nonce: str,
) -> Result:
    bases = {_split(u)[0] for u in urls}
    if len(bases) != 1:
        raise ValueError("all URLs of one load run must share scheme, host and port")
    base = bases.pop()
    paths = [_split(u)[3] for u in urls]
    with tempfile.TemporaryDirectory(prefix="dxbench-") as tmp:
        if len(paths) == 1:
            target = paths[0]
        else:
            target = "@" + str(Path(tmp, "paths.txt"))
            Path(target[1:]).write_text("\n".join(paths) + "\n")
        body_arg = "-"
        if body is not None:
            body_arg = str(Path(tmp, "body.json"))
            Path(body_arg).write_bytes(body)
        command = [
            wrk,
            f"-t{max(1, min(threads, connections))}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={max(1, round(timeout))}s",
            "-s",
            str(WRK_SCRIPT),
            base,
            "--",
            method,
            target,
            str(id_max),
            body_arg,
            nonce,
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"^DXBENCH (\{.*\})$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout}")
    stats = orjson.loads(match.group(1))
    seconds = stats["duration_us"] / 1e6
    return Result(
        requests_per_s=stats["requests"] / seconds if seconds else 0.0,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        errors=stats["connect"] + stats["read"] + stats["write"] + stats["timeout"],
        non_2xx=stats["status"],
        requests=stats["requests"],
        duration_s=seconds,
        tool="wrk",
    )


class _ResponseError(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response, body included → (status, server wants to close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    if len(status_parts) < 2 or not status_parts[1].isdigit():
        raise _ResponseError(lines[0])
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            fields[name.strip().lower()] = value.strip().lower()
    if "chunked" in fields.get("transfer-encoding", ""):
        # streamed responses (e.g. exports) arrive chunked: size line, data, CRLF … up to a zero-size chunk
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    return int(status_parts[1]), fields.get("connection") == "close"


@dataclass
class _PythonClient:
    """One load run of the asyncio client: how to build its requests, and what it measured."""

    host: str
    port: int
    paths: list[str]
    method: str
    body: bytes | None
    fixed_headers: str
    id_max: int
    timeout: float
    nonce: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    non_2xx: int = 0
    counter: int = 0

    def next_request(self) -> bytes:
        self.counter += 1
        uniq = f"{self.nonce}P{self.counter}"
        path = random.choice(self.paths).replace("{id}", str(random.randint(1, self.id_max)))
        payload = b""
        if self.body is not None:
            payload = self.body.replace(b"{uniq}", uniq.encode())
            payload = payload.replace(b"{id}", str(random.randint(1, self.id_max)).encode())
        head = (
            f"{self.method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"{self.fixed_headers.replace('{uniq}', uniq)}Content-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode("latin-1") + payload

    async def connection(self, deadline: float) -> None:
        """One keep-alive connection sending requests back to back; reconnects after a close or an error."""
        while time.perf_counter() < deadline:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
            except (OSError, TimeoutError):
                self.errors += 1
                await asyncio.sleep(0.01)  # do not spin on a refused connection
                continue
            try:
                await self.send_until(reader, writer, deadline)
            except (
                OSError,
                TimeoutError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
                _ResponseError,
            ):
                self.errors += 1
            finally:
                writer.close()

    async def send_until(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float) -> None:
        """Requests on one open connection until the deadline or until the server closes it."""
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(self.next_request())
            await writer.drain()
            status, closing = await asyncio.wait_for(_read_response(reader), self.timeout)
            self.latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                self.non_2xx += 1
            if closing:
                break


def _percentile(latencies: list[float], fraction: float) -> float:
    """`fraction` percentile of sorted latencies in seconds → milliseconds; 0 without any."""
    if not latencies:
        return 0.0
    return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000


async def _run_python(
    urls: list[str],
    method: str,
    body: bytes | None,
    duration: float,
    connections: int,
    headers: Mapping[str, str],
    id_max: int,
    timeout: float,
    nonce: str,
) -> Result:
    split = [_split(u) for u in urls]
    _, host, port, _ = split[0]
    paths = [s[3] for s in split]
    fixed_headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if body is not None:
        fixed_headers += "Content-Type: application/json\r\n"
    client = _PythonClient(host, port, paths, method, body, fixed_headers, id_max, timeout, nonce)

    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(client.connection(deadline) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies = sorted(client.latencies)
    return Result(
        requests_per_s=len(latencies) / elapsed,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        errors=client.errors,
        non_2xx=client.non_2xx,
        requests=len(latencies),
        duration_s=elapsed,
        tool="python",
    )
