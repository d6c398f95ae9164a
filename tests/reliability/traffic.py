"""The demo shop on the suite's cluster, dxapi servers in front of the fault proxy, and timed requests.

Feeds every reliability test. ``prepare_shop`` creates one database on the suite's cluster with ``dxapi init``
and the demo shop (``tests.conftest._prepare``: 300 products, the awkward tables, a client allowed everything).
``serve`` starts a real ``dxapi serve`` process (forked from the session's fork server) whose database URL
names the fault proxy's port. ``Answer`` is
one timed request and what came back (or which transport error); ``Load`` keeps a mix of reads and writes
running from a few threads and records every answer, for the tests that break the database under load.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import _prepare
from tests.reliability.cluster import Cluster, Session
from tests.reliability.faultproxy import FaultProxy
from tests.reload.processes import API, Database, ServerProcess, error_code

ROOT_DIR = Path(__file__).resolve().parents[2]
SHOP_DATABASE = "dxrel_shop"
# Product ids each test may change, so that no test sees another one's writes (the shop has ids 1..300).
LOAD_IDS = range(101, 141)  # PATCHed by the load of the database-down and hung tests
TIMED_OUT_CODES = {"5002", "5005", "5006", "5007"}  # 503s a broken or slow database may cause


@dataclass
class Shop:
    """The demo shop database: reached directly by the tests, through the proxy by dxapi."""

    name: str
    direct_url: str
    proxied_url: str
    client_id: str
    client_secret: str

    @property
    def database(self) -> Database:  # what ServerProcess.token wants
        return Database("postgresql", self.proxied_url, self.client_id, self.client_secret)

    def session(self) -> Session:
        return Session(self.direct_url)


def prepare_shop(cluster: Cluster, proxy: FaultProxy, directory: Path) -> Shop:
    with Session(cluster.url("postgres")) as admin:
        admin.execute(f"CREATE DATABASE {SHOP_DATABASE}")
    url = cluster.url(SHOP_DATABASE)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DXAPI_")}
    environment["DXAPI_JWT_SECRET"] = secrets.token_urlsafe(48)  # init writes no secret file then
    done = subprocess.run(
        [sys.executable, "-m", "dxapi.cli", "--database-url", url, "init"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=directory,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"dxapi init failed: {done.stdout}{done.stderr}"
    client_id, client_secret = asyncio.run(_prepare(url))
    return Shop(SHOP_DATABASE, url, cluster.url(SHOP_DATABASE, proxy.port), client_id, client_secret)


def serve(
    shop: Shop,
    directory: Path,
    name: str,
    env: dict[str, str] | None = None,
    secret: str | None = None,
) -> ServerProcess:
    """A one-worker ``dxapi serve`` of the shop through the proxy, forked from the session's fork server, which
    saves the imports of each start-up (``ServerProcess``). ``secret``: the token signing secret (a successor of
    a killed server accepts its tokens)."""
    secret = secret or secrets.token_urlsafe(48)
    return ServerProcess(name, shop.proxied_url, secret, directory, env=env, forked=True)


def client(server: ServerProcess, shop: Shop, timeout: float = 30, token: str | None = None) -> httpx.Client:
    """A client of ``server`` with ``token`` or a fresh one (``/token`` allows 10 a minute per client)."""
    headers = {"Authorization": f"Bearer {token or server.token(shop.database)}"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=timeout)


# --- answers ------------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One request: when it started and ended (monotonic seconds), and the status or transport error."""

    kind: str
    started: float
    ended: float
    status: int | None = None
    code: Any = None
    retry_after: str | None = None
    json: bool = False
    error: str | None = None
    text: str = ""

    @property
    def took(self) -> float:
        return self.ended - self.started

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        got = self.error or f"{self.status} code={self.code} Retry-After={self.retry_after} {self.text[:120]!r}"
        return f"{self.kind}: {got} in {self.took:.2f}s"


def call(http: httpx.Client, kind: str, method: str, path: str, **options: Any) -> Answer:
    started = time.monotonic()
    try:
        response = http.request(method, path, **options)
    except httpx.TransportError as exc:
        return Answer(kind, started, time.monotonic(), error=f"{type(exc).__name__}: {exc}")
    ended = time.monotonic()
    return Answer(
        kind,
        started,
        ended,
        status=response.status_code,
        code=error_code(response),
        retry_after=response.headers.get("retry-after"),
        json=response.headers.get("content-type", "").startswith("application/json"),
        text=response.text[:300],
    )


def is_fast_503(answer: Answer, within: float) -> bool:
    """The answer a failing database must give: 503, JSON, ``Retry-After``, in time."""
    return (
        answer.status == 503
        and answer.json
        and bool(answer.retry_after)
        and answer.code in TIMED_OUT_CODES
        and answer.took <= within
    )


def between(answers: Iterable[Answer], start: float, end: float) -> list[Answer]:
    """The answers to requests sent at or after ``start`` and answered before ``end``."""
    return [a for a in answers if a.started >= start and a.ended <= end]


# --- load ---------------------------------------------------------------------------------------------------------

Request = Callable[[httpx.Client, random.Random], Answer]


def read_one(http: httpx.Client, rng: random.Random) -> Answer:
    return call(http, "read-one", "GET", f"{API}/products/{rng.randint(1, 300)}")


def read_page(http: httpx.Client, rng: random.Random) -> Answer:
    return call(
        http, "read-page", "GET", f"{API}/products", params={"page[limit]": 20, "page[offset]": rng.randint(0, 200)}
    )


def read_include(http: httpx.Client, rng: random.Random) -> Answer:
    params = {"include": "productStocks", "page[limit]": 5, "page[offset]": rng.randint(0, 200)}
    return call(http, "read-include", "GET", f"{API}/products", params=params)


def patch_one(http: httpx.Client, rng: random.Random) -> Answer:
    body = {"data": {"name": f"load {rng.random():.6f}"}}
    return call(http, "patch-one", "PATCH", f"{API}/products/{rng.choice(LOAD_IDS)}", json=body)


MIX: tuple[Request, ...] = (read_one, read_page, read_include, patch_one)


@dataclass
class Load:
    """``threads`` clients sending ``MIX`` back to back (plus a readiness probe every 0.2 s) until ``stop``."""

    server: ServerProcess
    shop: Shop
    threads: int = 6
    mix: Sequence[Request] = MIX
    answers: list[Answer] = field(default_factory=list)
    probes: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _token: str = ""

    def __enter__(self) -> Load:
        self._token = self.server.token(self.shop.database)
        for index in range(self.threads):
            self._workers.append(threading.Thread(target=self._send, args=(index,), daemon=True))
        self._workers.append(threading.Thread(target=self._probe, daemon=True))
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self._token}"}
        # The client's own timeout is far beyond every bound the tests assert: a hang shows up as a slow answer.
        return httpx.Client(base_url=self.server.base_url, headers=headers, timeout=60)

    def _send(self, index: int) -> None:
        rng = random.Random(index)
        with self._client() as http:
            while not self._stop.is_set():
                for request in self.mix:
                    self.answers.append(request(http, rng))

    def _probe(self) -> None:
        with self._client() as http:
            while not self._stop.is_set():
                self.probes.append(call(http, "ready", "GET", "/health/ready"))
                self._stop.wait(0.2)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def ready_now(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.base_url}/health/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def log_lines(server: ServerProcess) -> list[str]:
    try:
        return server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []


@dataclass
class Window:
    """Monotonic instants a test marks as it breaks and repairs things."""

    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = time.monotonic()
        return self.marks[name]

    def __getitem__(self, name: str) -> float:
        return self.marks[name]


def summary(answers: Sequence[Answer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        key = answer.error.split(":")[0] if answer.error else f"{answer.status}/{answer.code}"
        counts[key] = counts.get(key, 0) + 1
    return counts
