"""examples/sync_products.py run as a user runs it: a subprocess against the test server, on every backend.

The script copies a feed-enabled entity into a SQLite state file; after each run the copy must equal the
table, whoever wrote it (the API or SQL behind dxapi's back), deletes included. The entity here is a table of
this module's own (``--alias``), read by a client that holds nothing but its read scope.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import sqlalchemy as sa

from dxapi import errors
from dxapi.feed.retention import prune_tombstones
from dxapi.registry.snapshot import load_snapshot
from tests.conftest import ROOT, Backend, add_client, only_on, serving

SCRIPT = ROOT / "examples" / "sync_products.py"
PREFIX = "/dynamic-entity"
ALIAS = "sync-items"
META = sa.MetaData()
ITEMS = sa.Table(
    "sync_item",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sku", sa.String(40), nullable=False, unique=True),
    sa.Column("name", sa.String(80), nullable=True),
    sa.Column("price", sa.Numeric(10, 2), nullable=True),
    sa.Column("secret", sa.String(40), nullable=True),  # in the table, never configured: never copied
)
CONFIG = [
    {
        "tableName": "sync_item",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "changeFeed": True,
            "fields": [
                {"fieldName": n, "fieldVisibleName": n, "type": t, "isCreatable": n != "id", "isEditable": n != "id"}
                for n, t in [("id", "integer"), ("sku", "string"), ("name", "string"), ("price", "decimal")]
            ],
        },
    }
]
SUMMARY = re.compile(
    r"^sync-items: (\d+) changes applied \((\d+) upserts, (\d+) deletes\)(.*); (\d+) rows in the copy$"
)


def command(base_url: str, state: Path, *extra: str) -> list[str]:
    args = ["--base-url", base_url, "--alias", ALIAS, "--state", str(state), "--page-limit", "4"]
    return [sys.executable, str(SCRIPT), *args, *extra]


def environment(client_id: str, secret: str) -> dict[str, str]:
    """The credentials come from the environment, as the script's docstring recommends."""
    return {**os.environ, "DXAPI_CLIENT_ID": client_id, "DXAPI_CLIENT_SECRET": secret}


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def served(backend: Backend) -> Iterator[tuple[Backend, str, str]]:
    """The module's table, served with its feed, and a client allowed to read it and nothing else."""
    with serving(backend, META, CONFIG):

        async def reader(engine: Any) -> tuple[str, str]:
            return await add_client(engine, "sync example", [f"{ALIAS}:read"])

        client_id, secret = backend.with_engine(reader)
        yield backend, client_id, secret


@dataclass
class Env:
    backend: Backend
    client_id: str
    secret: str
    state: Path

    def command(self, *extra: str) -> list[str]:
        return command(self.backend.base_url, self.state, *extra)

    def environment(self) -> dict[str, str]:
        return environment(self.client_id, self.secret)

    def sync(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return run(self.command(*extra), self.environment())

    def synced(self, *extra: str) -> tuple[int, int, int, str]:
        """A run that must succeed → (changes, upserts, deletes, the rest of its summary line)."""
        done = self.sync(*extra)
        assert done.returncode == 0, done.stderr
        match = SUMMARY.match(done.stdout.strip())
        assert match, done.stdout
        assert int(match[5]) == len(self.copy())
        return int(match[1]), int(match[2]), int(match[3]), match[4]

    def copy(self) -> dict[Any, dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(self.state)) as db:
            return {json.loads(key): json.loads(data) for key, data in db.execute("SELECT id, data FROM items")}

    def wait_for_copy(self, process: subprocess.Popen[str], timeout: float = 20) -> None:
        """Until the copy a running script keeps equals the table."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            with contextlib.suppress(sqlite3.OperationalError):  # not created yet
                if self.state.exists() and self.copy() == self.table():
                    return
            time.sleep(0.1)
        raise AssertionError("the copy never caught up")

    def table(self) -> dict[Any, dict[str, Any]]:
        rows = self.backend.sql(sa.select(ITEMS.c.id, ITEMS.c.sku, ITEMS.c.name, ITEMS.c.price))
        return {
            r.id: {"id": r.id, "sku": r.sku, "name": r.name, "price": None if r.price is None else str(r.price)}
            for r in rows
        }

    def post(self, *items: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.backend.client.post(f"{PREFIX}/{ALIAS}", json={"data": list(items)})
        assert response.status_code == 201, response.text
        created: list[dict[str, Any]] = response.json()["data"]
        return created


@pytest.fixture
def env(served: tuple[Backend, str, str], tmp_path: Path) -> Env:
    backend, client_id, secret = served
    backend.sql(sa.delete(ITEMS))
    return Env(backend, client_id, secret, tmp_path / "copy.sqlite")


def test_first_full_sync_then_api_and_sql_writes_then_a_resumed_run(env: Env) -> None:
    env.backend.sql(sa.insert(ITEMS), id=9001, sku="sql-1", name="by SQL", price="1.50", secret="s1")
    env.backend.sql(sa.insert(ITEMS), id=9002, sku="sql-2", secret="s2")
    env.post(*({"sku": f"api-{i}", "price": f"{i}.25"} for i in range(9)))
    _, upserts, _, _ = env.synced()
    assert upserts == 11  # pages of 4: every row once
    assert env.copy() == env.table()  # exactly the configured fields: no `secret`

    created = env.post({"sku": "new-1"}, {"sku": "new-2", "name": "doomed"})
    api = env.backend.client
    assert api.patch(f"{PREFIX}/{ALIAS}/9001", json={"data": {"name": "renamed"}}).status_code == 200
    assert api.delete(f"{PREFIX}/{ALIAS}/9002").status_code == 204
    env.backend.sql("UPDATE sync_item SET price = 9.99 WHERE sku = 'api-3'")  # another application
    env.backend.sql("INSERT INTO sync_item (id, sku) VALUES (9100, 'sql-3')")
    env.backend.sql(f"DELETE FROM sync_item WHERE id = {created[1]['id']}")
    changes, upserts, deletes, _ = env.synced()
    # Resumed from the stored cursor: one entry per key changed since, not a second full load.
    assert (changes, upserts, deletes) == (6, 4, 2)
    assert env.copy() == env.table()
    assert 9002 not in env.copy() and created[1]["id"] not in env.copy()

    done = run([*env.command(), "--alias", "products"], env.environment())
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"sync_products: error: {env.state} holds a copy of `{ALIAS}`, not of `products`: use another --state file"
    ]


def _prune(backend: Backend, retention: float) -> int:
    async def go(engine: Any) -> int:
        snapshot = await load_snapshot(engine)
        async with engine.begin() as conn:
            removed: int = await conn.run_sync(prune_tombstones, snapshot.entities[ALIAS], retention)
            return removed

    removed: int = backend.with_engine(go)
    return removed


def test_a_cursor_older_than_pruned_tombstones_loads_the_copy_again(env: Env) -> None:
    created = env.post({"sku": "p-1"}, {"sku": "p-2"}, {"sku": "p-3"})
    env.synced()
    env.backend.sql(f"DELETE FROM sync_item WHERE id = {created[0]['id']}")
    time.sleep(1.1)
    assert _prune(env.backend, 1.0) >= 1  # the stored cursor is from before this delete: it is gone
    _, upserts, deletes, rest = env.synced()
    assert rest == ", loaded again from the start 1x" and deletes == 0 and upserts == 2
    # The copy was cleared: the row whose delete was pruned is not left behind as a ghost.
    assert env.copy() == env.table() and created[0]["id"] not in env.copy()


def test_bad_credentials_and_missing_scopes_fail_with_one_line(env: Env) -> None:
    done = run(env.command(), environment(env.client_id, "dxs_wrong"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == ["sync_products: error: POST /token: HTTP 401: invalid_client"]
    assert not env.state.exists()  # the token comes first: nothing is left behind

    async def writer(engine: Any) -> tuple[str, str]:
        return await add_client(engine, "sync example, write only", [f"{ALIAS}:write"])

    done = run(env.command(), environment(*env.backend.with_engine(writer)))
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("sync_products: error: HTTP 403 (4003): "), line


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_changes_held_back_by_an_open_transaction_are_waited_for_never_forever(env: Env) -> None:
    """PostgreSQL and MariaDB hold back what committed after a transaction that is still open (SQLite has one
    writer at a time): the script waits on `Retry-After`, gives up after `--max-wait`, and finishes once the
    transaction ends."""
    env.post({"sku": "before"})

    async def open_writer(engine: Any) -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.insert(ITEMS).values(sku="held"))  # open, uncommitted: holds the feed back
            env.post({"sku": "committed-behind-it"})
            started = time.monotonic()
            done = env.sync("--max-wait", "1")
            assert done.returncode == 75, done.stderr
            assert time.monotonic() - started >= 1.0  # it waited, as Retry-After asked, before giving up
            [line] = done.stderr.splitlines()
            assert "held back on the server" in line and "run again later" in line
            assert "committed-behind-it" not in {row["sku"] for row in env.copy().values()}
            waiting = subprocess.Popen(env.command(), env=env.environment(), stdout=PIPE, stderr=PIPE, text=True)
            try:
                time.sleep(0.8)
                assert waiting.poll() is None  # still waiting for the transaction
                await conn.commit()
                out, err = waiting.communicate(timeout=30)
            finally:
                if waiting.poll() is None:
                    waiting.kill()
                    waiting.communicate()
        assert waiting.returncode == 0 and SUMMARY.match(out.strip()), err

    env.backend.with_engine(open_writer)
    assert env.copy() == env.table()
    assert {row["sku"] for row in env.copy().values()} == {"before", "held", "committed-behind-it"}


@only_on("sqlite")  # the script's loop is the same on every backend; its waits are tested above
def test_follow_keeps_the_copy_current_until_terminated(env: Env) -> None:
    env.post({"sku": "f-1"}, {"sku": "f-2"})
    process = subprocess.Popen(
        env.command("--follow", "--interval", "0.2"), env=env.environment(), stdout=PIPE, stderr=PIPE, text=True
    )
    try:
        env.wait_for_copy(process)
        env.post({"sku": "f-3"})
        env.backend.sql("DELETE FROM sync_item WHERE sku = 'f-1'")
        env.wait_for_copy(process)
        assert sorted(row["sku"] for row in env.copy().values()) == ["f-2", "f-3"]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130 and out == ""
    assert err.splitlines() == ["sync_products: interrupted; the copy is consistent up to the stored cursor"]


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """A server that is always briefly unavailable, as dxapi is while its database is away."""

    requests: list[str] = []

    def do_POST(self) -> None:
        self.requests.append(self.path)
        body = json.dumps([errors.DATABASE_UNAVAILABLE().as_dict()]).encode()
        self.send_response(503)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unreached(tmp_path: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    return run([*command(base_url, tmp_path / "copy.sqlite"), "--retries", "1"], environment("dxc_x", "dxs_x"))


def test_a_refused_connection_is_retried_a_bounded_number_of_times(tmp_path: Path) -> None:
    started = time.monotonic()
    done = _unreached(tmp_path, f"http://127.0.0.1:{_free_port()}")
    assert time.monotonic() - started < 10
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 2, done.stderr
    assert "cannot reach" in lines[0] and "retrying in 0.5 s" in lines[0]
    assert lines[1].startswith("sync_products: error: cannot reach") and "gave up after 2 attempts" in lines[1]


def test_a_5xx_answer_is_retried_then_reported_in_one_line(tmp_path: Path) -> None:
    _Unavailable.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        done = _unreached(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert _Unavailable.requests == ["/token"] * 2  # the first try and one retry, as --retries 1 asks
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "sync_products: error: POST /token: HTTP 503 (5002): The database is not reachable. Please retry later. "
        "(gave up after 2 attempts)"
    )
