"""Randomized convergence of the change feed (issue 11, "Must show" 1), on every backend.

For ``SECONDS`` (20 s; ``DXAPI_FEED_RANDOM_SECONDS`` changes it) two API writers send random batches (POST,
collection PATCH, PUT by id and collection upserts, DELETE by id and by filter) on random keys, existing or
not, while one direct-SQL writer — another application, on its own engine — inserts, updates, moves
identifiers and deletes in transactions it keeps open a while, so that commits land out of the order in which
their change numbers were taken; sometimes it rolls back. Meanwhile a connector follows ``_changes`` from the
beginning with small random pages (and once goes back to a cursor it saved earlier: a replay) and applies each
op to an in-memory copy. When the writers have stopped and the connector has caught up (``hasMore: false`` on
a request made after the last commit), the copy must equal the table — read through the API's list and
straight by SQL: 0 lost, 0 stale, 0 ghost rows.

SQLite serialises writers, so it is exact by construction; there the SQL writer keeps its transactions short
(a long one would stall the API writers past the busy timeout). PostgreSQL and MariaDB are where positions
taken before another transaction's commit must not be overtaken.

``DXAPI_FEED_RANDOM_SEED`` picks the seed (default: one per run, printed). Threads interleave as the machine
schedules them, so a seed fixes each thread's choices, not the run; a failure prints the seed and the counts.
Run with ``pytest -s`` to see the counts of a passing run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dxapi.db import create_engine
from dxapi.dberrors import CONFLICT, UNIQUE, classify
from tests.conftest import Backend, config_field, serving

SECONDS = float(os.environ.get("DXAPI_FEED_RANDOM_SECONDS") or 20)
SEED = int(os.environ.get("DXAPI_FEED_RANDOM_SEED") or random.SystemRandom().randrange(1_000_000))
CATCH_UP_SECONDS = 30.0  # after the writers stop, the feed must report caught up within this
API_WRITERS = 2
SQL_SESSIONS = 3  # the SQL writer's concurrent transactions on PostgreSQL and MariaDB
MIN_WRITES = 25  # successful requests / transactions each writer must have made for the run to count (a loaded
# 2-core machine still makes 60+; below 25 the run exercised too little to mean anything)
KEYS = 300  # identifiers are drawn from 1..KEYS, so writes hit existing and missing rows alike
INITIAL_ROWS = 120
LIST_LIMIT = 500  # the test server's max_page_limit

PREFIX = "/dynamic-entity"
ALIAS = "fr-items"
FIELDS = {"id", "label", "qty", "amount"}
META = sa.MetaData()
ITEMS = sa.Table(
    "fr_item",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("label", sa.String(40), nullable=True),
    sa.Column("qty", sa.Integer, nullable=False, server_default="0"),
    sa.Column("amount", sa.Numeric(10, 2), nullable=True),
    sa.Column("origin", sa.String(10), nullable=True),  # in the table, never configured: never in the feed
)


def _config() -> list[dict[str, Any]]:
    definition = {
        "identifier": "id",
        "isDeletable": True,
        "changeFeed": True,
        "fields": [
            config_field("id", "integer", isEditable=False),
            config_field("label", "string"),
            config_field("qty", "integer"),
            config_field("amount", "decimal"),
        ],
    }
    return [{"tableName": "fr_item", "tableAlias": ALIAS, "isActive": True, "definition": definition}]


@pytest.fixture(scope="module")
def feed(backend: Backend) -> Iterator[Backend]:
    with serving(backend, META, _config()):
        yield backend


# --- random values -------------------------------------------------------------------------------------------------


def _label(rng: random.Random) -> str | None:
    if rng.random() < 0.25:
        return None
    return rng.choice(["", "a", "b c", "été", "x" * 37, "ünï"]) + str(rng.randrange(1000))


def _amount(rng: random.Random) -> str | None:
    return None if rng.random() < 0.25 else f"{Decimal(rng.randrange(-99_999, 10_000_000)) / 100:.2f}"


def _values(rng: random.Random) -> dict[str, Any]:
    return {"label": _label(rng), "qty": rng.randrange(0, 100_000), "amount": _amount(rng)}


def _some(rng: random.Random, values: dict[str, Any]) -> dict[str, Any]:
    """A non-empty random subset of ``values`` (a PATCH sends only what it changes)."""
    names = rng.sample(sorted(values), rng.randint(1, len(values)))
    return {name: values[name] for name in names}


def _keys(rng: random.Random, low: int, high: int) -> list[int]:
    return rng.sample(range(1, KEYS + 1), rng.randint(low, high))


# --- API writers ---------------------------------------------------------------------------------------------------

Request = tuple[str, str, dict[str, Any]]  # method, path, httpx keyword arguments


def _batch_headers(rng: random.Random) -> dict[str, str]:
    # All or nothing fails as soon as one random key is taken or gone; item by item saves the others.
    return {"X-Is-Transactional": "false"} if rng.random() < 0.6 else {}


def _post(rng: random.Random) -> Request:
    items = [{"id": key, **_values(rng)} for key in _keys(rng, 1, 20)]
    return "POST", f"/{ALIAS}", {"json": {"data": items}, "headers": _batch_headers(rng)}


def _patch_many(rng: random.Random) -> Request:
    items = [{"id": key, **_some(rng, _values(rng))} for key in _keys(rng, 1, 10)]
    return "PATCH", f"/{ALIAS}", {"json": {"data": items}, "headers": _batch_headers(rng)}


def _put_one(rng: random.Random) -> Request:
    return "PUT", f"/{ALIAS}/{rng.randint(1, KEYS)}", {"json": {"data": _values(rng)}}


def _put_many(rng: random.Random) -> Request:
    items = [{"id": key, **_values(rng)} for key in _keys(rng, 1, 10)]
    return "PUT", f"/{ALIAS}", {"json": {"data": items}, "headers": _batch_headers(rng)}


def _delete_one(rng: random.Random) -> Request:
    return "DELETE", f"/{ALIAS}/{rng.randint(1, KEYS)}", {}


def _delete_many(rng: random.Random) -> Request:
    if rng.random() < 0.5:
        condition: dict[str, Any] = {"in": _keys(rng, 1, 5)}
    else:
        low = rng.randint(1, KEYS)
        condition = {"gte": low, "lte": low + rng.randint(0, 4)}
    return "DELETE", f"/{ALIAS}", {"params": {f"filter[{ALIAS}.id]": json.dumps(condition)}}


API_WRITES: dict[str, tuple[Callable[[random.Random], Request], int]] = {
    "post": (_post, 3),
    "patch": (_patch_many, 3),
    "put-one": (_put_one, 2),
    "put-many": (_put_many, 2),
    "delete-one": (_delete_one, 3),
    "delete-filter": (_delete_many, 2),
}


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The error items of an answer: its body (an error array), or a per-item answer's ``errors``."""
    if response.status_code == 204:
        return []
    body = response.json()
    found: list[dict[str, Any]] = body.get("errors", []) if isinstance(body, dict) else body
    return found


def api_writer(
    base_url: str, headers: dict[str, str], rng: random.Random, stop: threading.Event, server_errors: list[str]
) -> Counter[str]:
    """Random writes until ``stop``; counts ``kind`` per 2xx and ``kind status/codes`` per refusal. A 5xx —
    the answer's or an item's of a per-item answer — is noted in ``server_errors`` (the test fails on it once
    the copy has been compared) and the run goes on."""
    tally: Counter[str] = Counter()
    kinds = list(API_WRITES)
    weights = [API_WRITES[kind][1] for kind in kinds]
    with httpx.Client(base_url=base_url + PREFIX, headers=headers, timeout=30) as client:
        while not stop.is_set():
            [kind] = rng.choices(kinds, weights)
            method, path, options = API_WRITES[kind][0](rng)
            response = client.request(method, path, **options)
            found = _errors(response)
            if response.status_code >= 500 or any(item["status"] >= 500 for item in found):
                sent = json.dumps(options.get("json") or options.get("params"))
                server_errors.append(f"{method} {path} {sent} {options.get('headers')}: {response.text}")
            codes = ",".join(sorted({item["code"] for item in found}))
            tally[kind if response.is_success else f"{kind} {response.status_code}/{codes}"] += 1
            tally["per-item errors"] += len(found) if response.is_success else 0
    return tally


# --- the direct-SQL writer -----------------------------------------------------------------------------------------


def _sql_statement(rng: random.Random) -> tuple[str, sa.Executable]:
    kind = rng.choices(["insert", "update", "move", "delete"], [3, 4, 1, 2])[0]
    if kind == "insert":
        rows = [{"id": key, **_values(rng), "origin": "sql"} for key in _keys(rng, 1, 3)]
        for row in rows:
            row["amount"] = None if row["amount"] is None else Decimal(row["amount"])
        return kind, sa.insert(ITEMS).values(rows)
    if kind == "update":
        changes = {"qty": ITEMS.c.qty + 1, "origin": "sql"}
        if rng.random() < 0.5:
            changes["label"] = _label(rng)
        return kind, sa.update(ITEMS).where(ITEMS.c.id.in_(_keys(rng, 1, 5))).values(changes)
    if kind == "move":
        old, new = _keys(rng, 2, 2)
        return kind, sa.update(ITEMS).where(ITEMS.c.id == old).values(id=new, origin="moved")
    return kind, sa.delete(ITEMS).where(ITEMS.c.id.in_(_keys(rng, 1, 3)))


async def _sql_transaction(engine: Any, rng: random.Random, pause: tuple[float, float], tally: Counter[str]) -> None:
    """One to three statements with pauses between them and before the end, committed or (one in ten) rolled back.
    A duplicate key or a deadlock rolls it back too (counted); any other database error fails the test."""
    done: list[str] = []
    async with engine.connect() as conn:
        await conn.begin()
        try:
            for _ in range(rng.randint(1, 3)):
                kind, statement = _sql_statement(rng)
                await conn.execute(statement)
                done.append(kind)
                await asyncio.sleep(rng.uniform(*pause))
            await asyncio.sleep(rng.uniform(*pause))
        except sa_exc.DBAPIError as exc:
            problem = classify(exc)
            if problem.kind not in (UNIQUE, CONFLICT):
                raise
            await conn.rollback()
            tally[f"sql {problem.kind}"] += 1
            return
        if rng.random() < 0.1:
            await conn.rollback()
            tally["sql rollback"] += 1
            return
        await conn.commit()
        tally["sql commit"] += 1
        tally.update(f"sql {kind}" for kind in done)


def sql_writer(url: str, rng: random.Random, stop: threading.Event, sqlite: bool) -> Counter[str]:
    """Transactions one after another, on PostgreSQL and MariaDB ``SQL_SESSIONS`` at a time (their pauses
    leave each connection idle most of the time). SQLite has one writer at a time: there a transaction held
    open long would stall the API writers behind it, so it is kept short and followed by a breather."""
    pause, sessions, idle = ((0.005, 0.03), 1, 0.03) if sqlite else ((0.05, 0.3), SQL_SESSIONS, 0.0)
    tally: Counter[str] = Counter()

    async def session(engine: Any, own: random.Random) -> None:
        while not stop.is_set():
            await _sql_transaction(engine, own, pause, tally)
            await asyncio.sleep(idle)  # SQLite: let the API writers have the lock in between

    async def run() -> None:
        engine = create_engine(url)
        try:
            await asyncio.gather(*(session(engine, random.Random(rng.random())) for _ in range(sessions)))
        finally:
            await engine.dispose()

    asyncio.run(run())  # this thread's own loop: an async engine belongs to the loop it was made on
    return tally


# --- the connector -------------------------------------------------------------------------------------------------


def apply_page(copy: dict[int, dict[str, Any]], ops: list[dict[str, Any]]) -> None:
    keys = [op["id"] for op in ops]
    assert len(keys) == len(set(keys)), f"a key twice in one page: {sorted(keys)}"
    for op in ops:
        if op["op"] == "delete":
            assert set(op) == {"op", "id"}, op
            copy.pop(op["id"], None)
        else:
            assert op["op"] == "upsert" and set(op) == {"op", "id", "data"}, op
            assert set(op["data"]) == FIELDS and op["data"]["id"] == op["id"], op
            copy[op["id"]] = op["data"]


class Connector:
    """Follows the feed from the beginning into ``copy``; ``run`` returns once caught up after ``writers_done``.

    A quarter into the run it saves its cursor; past the middle it goes back to it once (a replay: the pages
    since then come again, with the rows as they are now, and must leave the copy right)."""

    def __init__(self, base_url: str, headers: dict[str, str], rng: random.Random) -> None:
        self.client = httpx.Client(base_url=base_url + PREFIX, headers=headers, timeout=30)
        self.rng = rng
        self.copy: dict[int, dict[str, Any]] = {}
        self.tally: Counter[str] = Counter()
        self.since: str | None = None
        self.saved: str | None = None
        self.started = time.monotonic()

    def page(self) -> tuple[bool, bool]:
        """One page, applied → (hasMore, whether it carried data)."""
        params: dict[str, Any] = {"page[limit]": self.rng.randint(7, 50)}
        if self.since is not None:
            params["since"] = self.since
        response = self.client.get(f"/{ALIAS}/_changes", params=params)
        assert response.status_code == 200, f"_changes: {response.status_code} {response.text}"
        body = response.json()
        ops, more = body["data"], body["meta"]["hasMore"]
        assert isinstance(more, bool), body["meta"]
        if more and not ops:
            assert response.headers.get("Retry-After") == "1", dict(response.headers)
        apply_page(self.copy, ops)
        self.since = body["meta"]["cursor"]
        self.tally["pages"] += 1
        self.tally["ops"] += len(ops)
        self.tally.update(f"op {op['op']}" for op in ops)
        self.tally["held back" if more else "caught up"] += not ops
        return more, bool(ops)

    def maybe_replay(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.saved is None and elapsed > SECONDS * 0.25:
            self.saved = self.since
        elif self.saved is not None and not self.tally["replays"] and elapsed > SECONDS * 0.6:
            self.since = self.saved
            self.tally["replays"] += 1

    def run(self, writers_done: threading.Event, abort: threading.Event) -> dict[int, dict[str, Any]]:
        deadline: float | None = None
        with self.client:
            while not abort.is_set():
                after_writers = writers_done.is_set()  # read before the request: its answer covers them all
                if after_writers and deadline is None:
                    deadline = time.monotonic() + CATCH_UP_SECONDS
                    self.tally["pages before writers stopped"] = self.tally["pages"]
                assert deadline is None or time.monotonic() < deadline, "the feed never caught up"
                more, carried = self.page()
                if not after_writers:
                    self.maybe_replay()
                if not more and after_writers:
                    return self.copy
                if not more or not carried:
                    # Caught up for now, or the rest is held back (MariaDB's newest second, PostgreSQL's open
                    # transactions): the server says Retry-After 1, a connector in a hurry asks a bit sooner.
                    time.sleep(0.02 if not more else 0.1)
        raise AssertionError("aborted")


# --- the table as it is --------------------------------------------------------------------------------------------


def _rendered(row: sa.Row[Any]) -> dict[str, Any]:
    amount = None if row.amount is None else str(row.amount)
    return {"id": row.id, "label": row.label, "qty": row.qty, "amount": amount}


def table_by_sql(backend: Backend) -> dict[int, dict[str, Any]]:
    rows = backend.sql(sa.select(ITEMS.c.id, ITEMS.c.label, ITEMS.c.qty, ITEMS.c.amount))
    return {row.id: _rendered(row) for row in rows}


def table_by_api(api: httpx.Client) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for offset in range(0, KEYS + LIST_LIMIT, LIST_LIMIT):
        params = {"page[limit]": LIST_LIMIT, "page[offset]": offset}
        response = api.get(f"{PREFIX}/{ALIAS}", params=params)
        assert response.status_code == 200, response.text
        items = response.json()["data"]
        found.update((item["id"], item) for item in items)
        if len(items) < LIST_LIMIT:
            break
    return found


def differences(copy: dict[int, dict[str, Any]], table: dict[int, dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "lost": sorted(table.keys() - copy.keys()),
        "stale": sorted((key, copy[key], table[key]) for key in copy.keys() & table.keys() if copy[key] != table[key]),
        "ghost": sorted(copy.keys() - table.keys()),
    }


# --- the test ------------------------------------------------------------------------------------------------------


def _run(
    feed: Backend, api: httpx.Client, rng: random.Random, server_errors: list[str]
) -> tuple[dict[int, dict[str, Any]], list[Counter[str]]]:
    """Writers for SECONDS with the connector following; → the connector's copy and every thread's counts."""
    headers = {"Authorization": api.headers["Authorization"]}
    stop, writers_done, abort = threading.Event(), threading.Event(), threading.Event()
    connector = Connector(feed.base_url, headers, random.Random(rng.random()))
    with ThreadPoolExecutor(max_workers=API_WRITERS + 2) as pool:
        follower = pool.submit(connector.run, writers_done, abort)
        writers: list[Future[Counter[str]]] = [
            pool.submit(api_writer, feed.base_url, headers, random.Random(rng.random()), stop, server_errors)
            for _ in range(API_WRITERS)
        ]
        writers.append(pool.submit(sql_writer, feed.url, random.Random(rng.random()), stop, feed.name == "sqlite"))
        try:
            finished = time.monotonic() + SECONDS
            threads: list[Future[Any]] = [*writers, follower]
            while time.monotonic() < finished and not any(f.done() for f in threads):
                time.sleep(0.1)  # a thread that failed early ends the run at once
            stop.set()
            tallies = [w.result() for w in writers]
            writers_done.set()
            copy = follower.result(timeout=CATCH_UP_SECONDS + 30)
        finally:
            stop.set()
            abort.set()
    return copy, [*tallies, connector.tally]


def test_a_connector_converges_on_the_table_under_concurrent_writers(feed: Backend, api: httpx.Client) -> None:
    rng = random.Random(SEED)
    initial = [{"id": key, **_values(rng), "origin": "seed"} for key in rng.sample(range(1, KEYS + 1), INITIAL_ROWS)]
    feed.sql(sa.insert(ITEMS).values(initial))
    server_errors: list[str] = []
    copy, tallies = _run(feed, api, rng, server_errors)

    by_sql, by_api = table_by_sql(feed), table_by_api(api)
    via_sql, via_api = differences(copy, by_sql), differences(copy, by_api)
    total = sum(tallies, Counter())
    print(f"\n[feed-random] backend={feed.name} seed={SEED} seconds={SECONDS:g} rows={len(by_sql)}")
    for name, tally in zip(
        [f"api writer {i + 1}" for i in range(API_WRITERS)] + ["sql writer", "connector"], tallies, strict=True
    ):
        print(f"[feed-random]   {name}: {dict(sorted(tally.items()))}")
    counts = {name: len(found) for name, found in via_sql.items()}
    print(f"[feed-random]   vs SQL: {counts}; vs API list: { {k: len(v) for k, v in via_api.items()} }")

    context = f"seed {SEED} on {feed.name}"
    assert by_api == by_sql, f"the API's list and the table disagree ({context})"
    assert via_sql == {"lost": [], "stale": [], "ghost": []}, f"the copy differs from the table ({context})"
    assert via_api == {"lost": [], "stale": [], "ghost": []}, context
    assert not server_errors, f"{len(server_errors)} writes answered 5xx ({context}):\n" + "\n".join(server_errors[:5])
    for i, tally in enumerate(tallies[:API_WRITERS]):
        assert sum(tally[kind] for kind in API_WRITES) > MIN_WRITES, f"api writer {i + 1}: {tally} ({context})"
    assert tallies[API_WRITERS]["sql commit"] > MIN_WRITES, f"sql writer: {tallies[API_WRITERS]} ({context})"
    assert total["replays"] == 1 and total["ops"] > 0, f"connector: {tallies[-1]} ({context})"
