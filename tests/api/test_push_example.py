"""examples/push_products.py run as a user runs it: a subprocess against the test server, on every backend.

The script pushes a JSON Lines file into this module's own table in keyed batches. The table has no unique
column besides its generated identifier, so a batch written twice would show as duplicate rows: every test
compares the table with the file, row for row and count for count. Shown here: a push lands once and a second
run of it is answered by replays and writes nothing; a push killed (SIGKILL) after a batch committed but
before its answer arrived, run again, writes every row once; answers lost on the way back (connection closed,
read timeout), a 503 and a 401 are retried with the very same bytes and key; a key still running (409 6103)
is waited for; a refused batch stops the push with dxapi's code; `--upsert` replaces and creates by PUT;
another `--key-prefix` pushes the same rows anew; a line that is not an object, and wrong credentials, end the
run with one line. The misbehaving network is a small proxy thread in front of the test server. Each test
uses a key prefix of its own, since the keys of a file would otherwise still be recorded from an earlier test.
About 11 s per backend (SQLite, MariaDB), 13 s (PostgreSQL); 5 s of it are the lost-answers test's waits.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import http.client
import http.server
import importlib.util
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from types import ModuleType
from typing import Any

import jwt
import pytest
import sqlalchemy as sa

from dxapi import errors
from dxapi.auth.principals import add_client
from dxapi.idempotency import Keeper
from tests.conftest import ROOT, Backend, config_field, fetch_token, serving

SCRIPT = ROOT / "examples" / "push_products.py"
ALIAS = "push-items"
ROWS = 2000
META = sa.MetaData()
ITEMS = sa.Table(
    "push_item",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sku", sa.String(40), nullable=False),  # not unique: a batch written twice would be seen
    sa.Column("name", sa.String(80), nullable=True),
    sa.Column("qty", sa.Integer, nullable=True),
    sa.Column("price", sa.Numeric(10, 2), nullable=True),
)
CONFIG = [
    {
        "tableName": "push_item",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [
                config_field("id", "integer", isEditable=False),  # creatable: PUT may create a row by its id
                config_field("sku", validation={"isRequired": True}),
                config_field("name"),
                config_field("qty", "integer", validation={"min": 0}),
                config_field("price", "decimal"),
            ],
        },
    }
]
UNAVAILABLE = json.dumps([errors.DATABASE_UNAVAILABLE().as_dict()]).encode()
SUMMARY = re.compile(
    rf"^{ALIAS}: (\d+) rows in (\d+) batches sent by (POST|PUT); (\d+) replayed \((\d+) rows written before\); "
    r"(\d+) rows written$"
)


def products(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"sku": f"P-{i:05d}", "name": f"product {i}", "qty": i % 50, "price": f"{i % 1000}.{i % 100:02d}", **extra}
        for i in range(start, start + n)
    ]


@dataclass
class Summary:
    rows: int
    batches: int
    method: str
    replayed: int
    replayed_rows: int
    written: int


@pytest.fixture(scope="module")
def served(backend: Backend) -> Iterator[tuple[Backend, str, str]]:
    """The module's table and a client that may write it and nothing else."""
    with serving(backend, META, CONFIG):

        async def writer(engine: Any) -> tuple[str, str]:
            return await add_client(engine, "push example", frozenset({f"{ALIAS}:write"}))

        client_id, secret = backend.with_engine(writer)
        yield backend, client_id, secret


@dataclass
class Env:
    backend: Backend
    client_id: str
    secret: str
    tmp: Path
    prefix: str  # the keys of one test are not those of another: each test pushes as if for the first time

    def file(self, rows: list[dict[str, Any]], name: str = "push.jsonl") -> Path:
        path = self.tmp / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    def command(self, file: Path, *extra: str, base_url: str | None = None) -> list[str]:
        args = ["--base-url", base_url or self.backend.base_url, "--alias", ALIAS, "--key-prefix", self.prefix]
        args.append(str(file))
        return [sys.executable, str(SCRIPT), *args, *extra]

    def environment(self, secret: str | None = None) -> dict[str, str]:
        """The credentials come from the environment, as the script's docstring recommends."""
        return {**os.environ, "DXAPI_CLIENT_ID": self.client_id, "DXAPI_CLIENT_SECRET": secret or self.secret}

    def push(self, file: Path, *extra: str, base_url: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = self.command(file, *extra, base_url=base_url)
        return subprocess.run(argv, env=self.environment(), capture_output=True, text=True, timeout=60, check=False)

    def pushed(self, file: Path, *extra: str, base_url: str | None = None) -> tuple[Summary, list[str]]:
        """A run that must succeed → its summary and its stderr lines."""
        done = self.push(file, *extra, base_url=base_url)
        assert done.returncode == 0, done.stderr
        match = SUMMARY.match(done.stdout.strip())
        assert match, done.stdout
        method = match[3]
        rows, batches, replayed, replayed_rows, written = (int(match[i]) for i in (1, 2, 4, 5, 6))
        return Summary(rows, batches, method, replayed, replayed_rows, written), done.stderr.splitlines()

    def table(self) -> collections.Counter[tuple[Any, ...]]:
        """Every row of the table as (sku, name, qty, price), counted: a duplicate counts 2."""
        rows = self.backend.sql(sa.select(ITEMS.c.sku, ITEMS.c.name, ITEMS.c.qty, ITEMS.c.price))
        return collections.Counter((r.sku, r.name, r.qty, None if r.price is None else str(r.price)) for r in rows)

    def ids(self) -> list[int]:
        return sorted(r.id for r in self.backend.sql(sa.select(ITEMS.c.id)))

    def assert_exactly_once(self, rows: list[dict[str, Any]]) -> None:
        expected = collections.Counter((r["sku"], r["name"], r["qty"], r["price"]) for r in rows)
        found = self.table()
        assert sum(found.values()) == len(rows) and found == expected


@pytest.fixture
def env(served: tuple[Backend, str, str], tmp_path: Path) -> Env:
    backend, client_id, secret = served
    backend.sql(sa.delete(ITEMS))
    return Env(backend, client_id, secret, tmp_path, secrets.token_hex(8))


class Proxy:
    """A proxy thread in front of the test server that misbehaves on the first attempt of chosen batches.

    ``first_attempts`` maps a batch's index (the order in which its key first arrives) to what happens to
    that first attempt; later attempts pass through. ``drop``: forwarded and answered (the write commits),
    then the connection is closed without the answer. ``stall``: the same, but the proxy sits on the answer
    until the client gives up (its read timeout). ``hold``: the same, until the test ends (the test kills the
    script meanwhile). ``spoil``: forwarded with an invalid token (a real 401). ``unavailable``: answered 503
    by the proxy itself, not forwarded.
    """

    def __init__(self, upstream: str, first_attempts: dict[int, str]) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.first_attempts = first_attempts
        self.attempts: list[tuple[str, bytes]] = []  # (Idempotency-Key, body) of every keyed request
        self.tokens = 0
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"proxy": self}))
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def action(self, key: str, body: bytes) -> str:
        with self.lock:
            keys = list(dict.fromkeys(k for k, _ in self.attempts))
            self.attempts.append((key, body))
        return "pass" if key in keys else self.first_attempts.get(len(keys), "pass")

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """The test server's whole answer: it has finished (and committed) before anything else happens."""
        connection = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port, timeout=30)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _Handler.HOP_BY_HOP}
            return response.status, kept, response.read()
        finally:
            connection.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    proxy: Proxy
    HOP_BY_HOP = frozenset({"connection", "transfer-encoding", "content-length", "date", "server", "host"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = self.headers.get("Idempotency-Key")
        action = "pass" if key is None else self.proxy.action(key, body)
        if self.path == "/token":
            self.proxy.tokens += 1
        if action == "unavailable":
            return self.answer(503, {"Retry-After": "0"}, UNAVAILABLE)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self.HOP_BY_HOP}
        if action == "spoil":
            headers["Authorization"] = "Bearer spoiled"
        status, answer_headers, answer = self.proxy.forward(self.command, self.path, headers, body)
        if action == "stall":
            select.select([self.connection], [], [], 30)  # readable once the client has closed its end
        elif action == "hold":
            self.proxy.held.set()
            self.proxy.release.wait(30)
        if action in ("drop", "stall", "hold"):
            return None  # no answer: the connection closes when the handler returns
        return self.answer(status, answer_headers, answer)

    do_PUT = do_POST

    def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_push_lands_once_and_the_same_push_again_writes_nothing(env: Env) -> None:
    rows = products(ROWS)
    file = env.file(rows)
    first, _ = env.pushed(file)  # the default batch size: 500
    assert first == Summary(ROWS, 4, "POST", 0, 0, ROWS)
    env.assert_exactly_once(rows)
    ids = env.ids()

    again, _ = env.pushed(file)
    assert again == Summary(ROWS, 4, "POST", 4, ROWS, 0)  # every batch answered by its record
    env.assert_exactly_once(rows)
    assert env.ids() == ids  # not even deleted and written anew

    env.prefix += "-again"  # other keys: the same rows pushed again on purpose
    anew, _ = env.pushed(file)
    assert anew == Summary(ROWS, 4, "POST", 0, 0, ROWS)
    env.assert_exactly_once(rows + rows)


def test_a_push_killed_after_a_commit_and_run_again_writes_every_row_once(env: Env) -> None:
    rows = products(ROWS)
    file = env.file(rows)
    with Proxy(env.backend.base_url, {3: "hold"}) as proxy:
        process = subprocess.Popen(
            env.command(file, "--batch-size", "250", base_url=proxy.base_url),
            env=env.environment(),
            stdout=PIPE,
            stderr=PIPE,
            text=True,
        )
        try:
            assert proxy.held.wait(30), process.communicate()
            # The fourth batch is committed; the script still waits for its answer when it dies.
            assert sum(env.table().values()) == 1000
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == -signal.SIGKILL

    summary, _ = env.pushed(file, "--batch-size", "250")
    assert summary == Summary(ROWS, 8, "POST", 4, 1000, 1000)
    env.assert_exactly_once(rows)


def test_lost_answers_a_503_and_a_401_are_retried_with_the_same_bytes_and_key(env: Env) -> None:
    rows = products(ROWS)
    file = env.file(rows)
    lost = {0: "drop", 1: "stall", 2: "unavailable", 3: "spoil"}
    with Proxy(env.backend.base_url, lost) as proxy:
        summary, stderr = env.pushed(file, "--batch-size", "250", "--timeout", "3", base_url=proxy.base_url)
    # The first two batches were written by their first attempt, whose answer never arrived: the retries were
    # answered by replays. The 503 and the 401 wrote nothing: their retries executed.
    assert summary == Summary(ROWS, 8, "POST", 2, 500, 1500)
    env.assert_exactly_once(rows)
    keys = [key for key, _ in proxy.attempts]
    batches = list(dict.fromkeys(keys))
    assert len(batches) == 8 and keys == [k for k in batches[:4] for _ in (1, 2)] + batches[4:]
    bodies: dict[str, set[bytes]] = collections.defaultdict(set)
    for key, body in proxy.attempts:
        bodies[key].add(body)
    assert all(len(sent) == 1 for sent in bodies.values())  # every retry resent the very same bytes
    assert proxy.tokens == 2  # one fresh token after the 401, then the same request again
    retried = [line for line in stderr if "retrying in" in line]
    assert len(retried) == 3 and len(stderr) == 3, stderr
    assert "Remote end closed connection without response" in retried[0]
    assert "timed out" in retried[1]
    assert "HTTP 503 (5002)" in retried[2]


def _script() -> ModuleType:
    """The script as a module, to compute the key of a batch as it does."""
    spec = importlib.util.spec_from_file_location("push_products", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# SQLite runs keyed writes one after the other (the write lock): a retry waits there and never sees 6103.
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_a_key_still_running_is_asked_again_after_retry_after(env: Env) -> None:
    """A transaction of the test holds the first batch's key, as a first attempt still running would."""
    rows = products(10)
    file = env.file(rows)
    key = next(_script().batches(file, 500)).key(env.prefix, ALIAS, "POST")
    token = fetch_token(env.backend.base_url, env.client_id, env.secret)
    subject = jwt.decode(token, options={"verify_signature": False})["sub"]
    keeper = Keeper(hashlib.sha256(f"{subject}\0{key}".encode()).hexdigest(), "held")

    started: list[subprocess.Popen[str]] = []

    async def hold(engine: Any) -> tuple[str, int]:
        """→ the script's first line on stderr, and the rows in the table meanwhile."""
        async with engine.connect() as conn:
            await conn.begin()
            await keeper.enter(conn)
            try:
                argv = env.command(file, "--max-wait", "10")
                started.append(subprocess.Popen(argv, env=env.environment(), stdout=PIPE, stderr=PIPE, text=True))
                stderr = started[0].stderr
                assert stderr is not None
                line: str = await asyncio.get_running_loop().run_in_executor(None, stderr.readline)
                async with engine.connect() as other:
                    written = int(await other.scalar(sa.select(sa.func.count()).select_from(ITEMS)))
            finally:
                await conn.rollback()
                await keeper.leave(conn)
        return line, written

    try:
        line, written = env.backend.with_engine(hold)
        out, err = started[0].communicate(timeout=30)
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert "HTTP 409 (6103)" in line and "asking again in 1.0 s" in line, line
    assert written == 0  # it waited instead of executing alongside
    assert started[0].returncode == 0, err
    assert SUMMARY.match(out.strip()) and out.strip().endswith("; 10 rows written")
    env.assert_exactly_once(rows)


def test_a_refused_batch_stops_the_push_with_its_code_and_a_fixed_file_completes_it(env: Env) -> None:
    rows = products(ROWS)
    rows[1233]["qty"] = -1  # line 1234: in the third batch of 500
    file = env.file(rows)
    done = env.push(file)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("push_products: error: batch 3 (lines 1001-1500): HTTP 400 (1306): "), line
    assert f"{ALIAS}[233]" in line
    env.assert_exactly_once(rows[:1000])  # the batches before it, and nothing of it or after it

    rows[1233]["qty"] = 0
    summary, _ = env.pushed(env.file(rows))
    assert summary == Summary(ROWS, 4, "POST", 2, 1000, 1000)
    env.assert_exactly_once(rows)


def test_upsert_replaces_and_creates_by_put_and_replays_too(env: Env) -> None:
    ids = 1_000_000  # above whatever POST generated: PUT creates these rows by their identifier
    old = [{"id": ids + i, **row} for i, row in enumerate(products(600))]
    env.pushed(env.file(old), "--upsert", "--batch-size", "200")
    new = [{"id": ids + i, **row} for i, row in enumerate(products(600, 300, name="replaced"), 300)]
    file = env.file(new, "new.jsonl")
    summary, _ = env.pushed(file, "--upsert", "--batch-size", "200")
    assert summary == Summary(600, 3, "PUT", 0, 0, 600)
    env.assert_exactly_once(old[:300] + new)
    assert env.ids() == list(range(ids, ids + 900))

    summary, _ = env.pushed(file, "--upsert", "--batch-size", "200")
    assert summary == Summary(600, 3, "PUT", 3, 600, 0)
    env.assert_exactly_once(old[:300] + new)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # nothing here depends on the backend
def test_a_line_that_is_not_an_object_and_wrong_credentials_fail_with_one_line(env: Env) -> None:
    file = env.tmp / "bad.jsonl"
    file.write_text('{"sku": "a"}\n\n[1, 2]\n')
    done = env.push(file)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"push_products: error: {file}:3: not a JSON object"]
    assert sum(env.table().values()) == 0  # its batch was never sent

    argv = env.command(env.file(products(1)))
    done = subprocess.run(argv, env=env.environment("dxs_wrong"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["push_products: error: POST /token: HTTP 401: invalid_client"]
