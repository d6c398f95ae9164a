"""``Idempotency-Key`` across real ``dxapi serve`` processes: races, abandoned requests and crashes (issue 12).

On SQLite, PostgreSQL and MariaDB, against this module's own table ``ikp_batch_row`` (a ``batch`` marker column,
no unique key: a duplicated execution would show as twice the rows, not as a refusal), always judged from the
database at the end:

* **Race.** 8 identical keyed POSTs of 200 rows, 4 to each of two server processes, released at one instant:
  exactly 200 rows; every answer is the executed 201 byte for byte (replays say ``Idempotency-Replayed: true``)
  or 409 6103 with ``Retry-After`` — never on SQLite, whose keyed writes wait for the write lock and replay.
  Retrying each 409 as ``Retry-After`` says ends in the same 201.
* **Abandoned.** 5 times a 2,000-row keyed POST whose client gives up after a few milliseconds, then retries
  the key until it gets a 201: every batch exists exactly once, and the 201 lists exactly its rows.
* **Crash.** 10 times a keyed 2,000-row POST whose server is SIGKILLed at a random moment of it (stratified
  over the batch's measured duration); once the dead server's transaction is over (the key's lock is free),
  the batch has 0 or 2,000 rows and its answer is recorded exactly when the rows are there. A new process on
  the same database then answers the retry: a replay exactly when the rows were there, an execution otherwise,
  exactly 2,000 rows either way. How many kills landed before and after the commit is printed. Random moments
  rarely hit the case a retry exists for — committed, answer lost with the server — so 3 more kills come the
  moment the key's record is visible: the retry must replay.

The two long-lived servers must log no ERROR (checked after each test and when they stop); so must every
crash server up to its kill. The "restarted" processes — new ones on the same database, none of which saw
the killed request — are all started before the first kill (no start-up competes with a victim for the CPU),
forked from a fork server that has imported dxapi (``ServerProcess(forked=True)``: the ``serve`` command line
run by ``dxapi.cli.main``), so that ten restarts do not cost ten interpreter start-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import sqlalchemy as sa

from dxapi import errors
from dxapi.db import create_engine
from dxapi.idempotency import Keeper, Replayed
from dxapi.registry.store import parse_import, save_entities
from dxapi.registry.tables import dx_idempotency
from tests.conftest import BACKENDS, config_field
from tests.reload.processes import API, Database, ServerProcess, error_code, running, throwaway_database

TABLE, ALIAS = "ikp_batch_row", "ikp-batch-rows"
PATH = f"{API}/{ALIAS}"
RACERS_PER_SERVER = 4
RACE_ROWS = 200
BIG_ROWS = 2000
ABANDONED = 5
CRASHES = 10
COMMIT_KILLS = 3
GIVE_UP_AFTER = 0.005  # seconds: the abandoning client's read timeout
RETRY_FOR = 30.0  # seconds a client keeps retrying a 409 before the test calls it stuck
SETTLE_FOR = 15.0  # seconds the database may take to end a killed server's transaction

META = sa.MetaData()
ROWS = sa.Table(
    TABLE,
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch", sa.String(40), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("label", sa.String(80), nullable=True),
)
CONFIG = {
    "tableName": TABLE,
    "tableAlias": ALIAS,
    "isActive": True,
    "definition": {
        "identifier": "id",
        "isDeletable": False,
        "fields": [
            config_field("id", "integer", isCreatable=False, isEditable=False),
            config_field("batch", validation={"isRequired": True}),
            config_field("seq", "integer", validation={"isRequired": True}),
            config_field("label"),
        ],
    },
}


@dataclass
class Rig:
    """One backend's throw-away database with the batch table, two running servers (A, B) and a token."""

    database: Database
    servers: Sequence[ServerProcess]
    jwt_secret: str
    headers: dict[str, str]
    subject: str
    engine: Any
    run: Callable[[Any], Any]
    log_dir: Path

    @property
    def backend(self) -> str:
        return self.database.backend

    def batch(self, marker: str) -> list[tuple[int, int]]:
        """(id, seq) of every row of a batch, by id."""
        query = sa.select(ROWS.c.id, ROWS.c.seq).where(ROWS.c.batch == marker).order_by(ROWS.c.id)
        return [(int(row[0]), int(row[1])) for row in self._rows(query)]

    def recorded(self, key: str) -> int:
        """How many answers ``dx_idempotency`` holds for this client's ``key`` (the primary key allows one)."""
        query = sa.select(sa.func.count()).select_from(dx_idempotency).where(dx_idempotency.c.scope == scope(self, key))
        return int(self._rows(query)[0][0])

    def settle(self, key: str) -> None:
        """Until no transaction of ``key`` is open any more: a killed server's ends when its database session
        does, and only then are its rows final (a COMMIT sent just before the kill still lands)."""
        self.run(_settle(self.engine, scope(self, key)))

    def _rows(self, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
        async def go() -> list[tuple[Any, ...]]:
            async with self.engine.connect() as conn:
                return [tuple(row) for row in (await conn.execute(query)).all()]

        rows: list[tuple[Any, ...]] = self.run(go())
        return rows

    def assert_no_errors_logged(self) -> None:
        for server in self.servers:
            assert not server.logged_errors(), (server.name, server.log_tail())


def scope(rig: Rig, key: str) -> str:
    """The record's key as the server computes it: keys belong to their principal (``dxapi.idempotency``)."""
    return hashlib.sha256(f"{rig.subject}\0{key}".encode()).hexdigest()


async def _settle(engine: Any, scoped: str) -> None:
    # The key's own check: it answers 6103 while another transaction holds the key's lock (PostgreSQL,
    # MariaDB), and takes the lock otherwise, so no execution of the key can commit after it has passed.
    keeper = Keeper(scoped, "settle")
    deadline = time.monotonic() + SETTLE_FOR
    while True:
        async with engine.connect() as conn:
            await conn.begin()
            try:
                await keeper.enter(conn)
                return
            except Replayed:
                return
            except errors.ApiError as error:
                if error.items[0].code != "6103":  # 6102: recorded (by another fingerprint than "settle")
                    return
            finally:
                await conn.rollback()
                await keeper.leave(conn)
        assert time.monotonic() < deadline, f"the key's transaction still runs {SETTLE_FOR}s after the kill"
        await asyncio.sleep(0.02)


def payload(marker: str, n: int) -> bytes:
    """One request body, serialized once: every retry sends the very same bytes."""
    return orjson.dumps({"data": [{"batch": marker, "seq": i, "label": f"{marker}/{i}"} for i in range(n)]})


def post(client: httpx.Client, body: bytes, key: str) -> httpx.Response:
    return client.post(PATH, content=body, headers={"Idempotency-Key": key, "Content-Type": "application/json"})


def is_busy(response: httpx.Response) -> bool:
    """409 6103 (the key is running elsewhere) with a usable ``Retry-After``."""
    if response.status_code != 409:
        return False
    assert error_code(response) == "6103", response.text
    assert int(response.headers["retry-after"]) >= 1, response.headers
    return True


def retry_until_answered(client: httpx.Client, body: bytes, key: str) -> tuple[httpx.Response, int]:
    """Send until the answer is not 409 6103, waiting as ``Retry-After`` says; the answer and how many 409s."""
    deadline = time.monotonic() + RETRY_FOR
    busy = 0
    while True:
        response = post(client, body, key)
        if not is_busy(response):
            return response, busy
        busy += 1
        assert time.monotonic() < deadline, f"key {key} still 409 after {RETRY_FOR}s"
        time.sleep(float(response.headers["retry-after"]))


def replayed(response: httpx.Response) -> bool:
    value: str | None = response.headers.get("idempotency-replayed")
    assert value in (None, "true"), value
    return value == "true"


def assert_exactly_once(rig: Rig, marker: str, n: int, answer: httpx.Response) -> None:
    """The batch is in the table once and whole, and the 201 lists exactly those rows."""
    rows = rig.batch(marker)
    assert len(rows) == n, f"batch {marker}: {len(rows)} rows, expected {n}"
    assert sorted(seq for _, seq in rows) == list(range(n)), f"batch {marker}: duplicated or missing items"
    assert answer.status_code == 201, answer.text[:500]
    data = answer.json()["data"]
    assert sorted(item["id"] for item in data) == [row_id for row_id, _ in rows], f"batch {marker}: answer ≠ rows"
    assert {item["batch"] for item in data} == {marker}


def client_for(rig: Rig, server: ServerProcess, **options: Any) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=rig.headers, timeout=options.pop("timeout", 30), **options)


@pytest.fixture(scope="module", params=BACKENDS)
def rig(
    request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    log_dir = tmp_path_factory.mktemp(f"idempotency-{request.param}")
    with throwaway_database(request.param, loop, log_dir, shop=False) as database:
        engine = create_engine(database.url)
        try:
            loop.run_until_complete(_create_table(engine))
            jwt_secret = secrets.token_urlsafe(48)
            servers = [ServerProcess(name, database.url, jwt_secret, log_dir) for name in ("A", "B")]
            with running(servers):
                token = servers[0].token(database)
                subject = jwt.decode(token, options={"verify_signature": False})["sub"]
                headers = {"Authorization": f"Bearer {token}"}
                yield Rig(database, servers, jwt_secret, headers, subject, engine, loop.run_until_complete, log_dir)
        finally:
            loop.run_until_complete(engine.dispose())


async def _create_table(engine: Any) -> None:
    """The table and its entity, before any server starts: each one loads them with its first snapshot."""
    async with engine.begin() as conn:
        await conn.run_sync(META.create_all)
    await save_entities(engine, parse_import([CONFIG]), actor="idempotency-processes", action="import")


# --- 1. the race --------------------------------------------------------------------------------------------


def race(rig: Rig, body: bytes, key: str) -> list[tuple[ServerProcess, httpx.Response]]:
    """Every racer sends the same keyed request at one instant (a barrier), half of them to each server."""
    racers = [server for server in rig.servers for _ in range(RACERS_PER_SERVER)]
    clients = [client_for(rig, server) for server in racers]
    for client in clients:
        assert client.get("/health/ready").status_code == 200  # connected before the barrier: no connect skew
    barrier = threading.Barrier(len(racers))
    answers: list[httpx.Response | BaseException | None] = [None] * len(racers)

    def send(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            answers[index] = post(clients[index], body, key)
        except BaseException as exc:  # reported by the main thread
            answers[index] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(racers))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for client in clients:
            client.close()
    results = []
    for server, answer in zip(racers, answers, strict=True):
        assert isinstance(answer, httpx.Response), f"racer on {server.name}: {answer!r}"
        results.append((server, answer))
    return results


@pytest.mark.timeout(90)
def test_concurrent_identical_posts_on_two_processes_write_the_batch_once(rig: Rig) -> None:
    marker, key = f"race-{secrets.token_hex(4)}", f"race-{secrets.token_hex(8)}"
    body = payload(marker, RACE_ROWS)
    results = race(rig, body, key)

    executed = [a for _, a in results if a.status_code == 201 and not replayed(a)]
    assert len(executed) == 1, [(s.name, a.status_code, a.headers.get("idempotency-replayed")) for s, a in results]
    first = executed[0]
    busy = [(server, a) for server, a in results if is_busy(a)]
    for _, answer in results:
        assert answer.status_code in (201, 409), answer.text[:500]
        if answer.status_code == 201:
            assert answer.content == first.content
            assert answer.headers["content-type"] == first.headers["content-type"]
    if rig.backend == "sqlite":
        assert not busy, "SQLite serializes keyed writes: a concurrent retry waits and replays"
    tally = Counter("executed" if a is first else "replayed" if a.status_code == 201 else "409" for _, a in results)
    print(f"\nrace on {rig.backend}: {dict(tally)}")

    for server, _ in busy:
        with client_for(rig, server) as client:
            answer, _ = retry_until_answered(client, body, key)
        assert answer.status_code == 201 and replayed(answer), answer.text[:500]
        assert answer.content == first.content

    assert_exactly_once(rig, marker, RACE_ROWS, first)
    assert rig.recorded(key) == 1
    rig.assert_no_errors_logged()


# --- 2. abandoned requests ----------------------------------------------------------------------------------


def abandon(server: ServerProcess, rig: Rig, body: bytes, key: str) -> bool:
    """Send and give up before the answer; True when the client gave up (the answer did not come in time)."""
    timeout = httpx.Timeout(30, read=GIVE_UP_AFTER)
    with client_for(rig, server, timeout=timeout) as client:
        try:
            post(client, body, key)
        except httpx.ReadTimeout:
            return True
    return False


@pytest.mark.timeout(90)
def test_a_retry_after_an_abandoned_request_finds_the_batch_written_once(rig: Rig) -> None:
    outcomes = []
    for round_ in range(ABANDONED):
        marker, key = f"gone-{round_}-{secrets.token_hex(4)}", f"gone-{secrets.token_hex(8)}"
        body = payload(marker, BIG_ROWS)
        # The retry always goes to A: in even rounds the process that was abandoned, in odd ones the other.
        gave_up = abandon(rig.servers[round_ % 2], rig, body, key)
        with client_for(rig, rig.servers[0]) as client:
            answer, busy = retry_until_answered(client, body, key)
        assert_exactly_once(rig, marker, BIG_ROWS, answer)
        assert rig.recorded(key) == 1
        outcomes.append((gave_up, busy, replayed(answer)))
    print(f"\nabandoned on {rig.backend} (gave up, 409s before the 201, replayed): {outcomes}")
    assert all(gave_up for gave_up, _, _ in outcomes), "the client never gave up: the test abandoned nothing"
    rig.assert_no_errors_logged()


# --- 3. crashes ---------------------------------------------------------------------------------------------


@dataclass
class Kill:
    """One crash: when the server died, what the database held then, and how the retry was answered."""

    after: float  # seconds from sending to the kill
    answered_before_kill: bool
    rows_after_kill: int
    retry_replayed: bool

    @property
    def after_commit(self) -> bool:
        return self.rows_after_kill > 0


def send_and_kill(
    victim: ServerProcess, rig: Rig, body: bytes, key: str, wait: Callable[[], None]
) -> tuple[float, bool]:
    """Send the keyed batch to ``victim``, SIGKILL it once ``wait`` returns; seconds from sending to the kill,
    and whether the 201 reached the client first."""
    sent = threading.Event()
    outcome: list[httpx.Response | BaseException] = []

    def send() -> None:
        with client_for(rig, victim) as client:
            sent.set()
            try:
                outcome.append(post(client, body, key))
            except httpx.TransportError as exc:  # the server died under the request
                outcome.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    sent.wait(timeout=10)
    started = time.monotonic()
    wait()
    victim.kill()
    after = time.monotonic() - started
    thread.join(timeout=30)
    assert outcome, "the request thread did not finish after the kill"
    answer = outcome[0]
    if isinstance(answer, httpx.Response):
        assert answer.status_code == 201, answer.text[:500]
        return after, True
    return after, False


def measure(servers: Sequence[ServerProcess], rig: Rig) -> float:
    """Seconds a keyed 2,000-row POST takes on a warm server: on each one a first batch warms it up for the one it
    will be killed in (statements compiled, connections open), a second one is timed; the median of those."""
    durations = []
    for server in servers:
        with client_for(rig, server) as client:
            for timed in (False, True):
                body, key = payload(f"measure-{secrets.token_hex(4)}", BIG_ROWS), f"measure-{secrets.token_hex(8)}"
                started = time.monotonic()
                assert post(client, body, key).status_code == 201
                if timed:
                    durations.append(time.monotonic() - started)
    return statistics.median(durations)


@contextlib.contextmanager
def started_fleet(rig: Rig, count: int, name: str) -> Iterator[list[ServerProcess]]:
    """``count`` new server processes on the rig's database, ready. Forked from a fork server that imported
    dxapi once: each one still runs ``dxapi.cli.main`` with the ``serve`` command line and builds everything of
    its own (settings, engine, snapshot, token keys), but ten start-ups then cost seconds instead of a minute of
    CPU. Stopping checks every log, a killed server's too: up to its kill nothing may have failed."""
    fleet: list[ServerProcess] = []
    try:
        for i in range(count):
            fleet.append(ServerProcess(f"{name}-{i}", rig.database.url, rig.jwt_secret, rig.log_dir, forked=True))
        for server in fleet:
            server.wait_ready()
        yield fleet
    finally:
        problems = []
        for server in fleet:  # every one stopped, even after one's log failed the test
            try:
                server.stop()
            except AssertionError as exc:
                problems.append(str(exc))
        assert not problems, "\n\n".join(problems)


def crash_once(
    rig: Rig, victim: ServerProcess, successor: ServerProcess, name: str, wait: Callable[[str], None]
) -> Kill:
    """A keyed batch sent to ``victim``, killed once ``wait(key)`` returns; judged from the database once the
    dead server's transaction is over, then retried on ``successor``."""
    marker, key = f"{name}-{secrets.token_hex(4)}", f"{name}-{secrets.token_hex(8)}"
    body = payload(marker, BIG_ROWS)
    after, answered = send_and_kill(victim, rig, body, key, lambda: wait(key))
    rig.settle(key)
    rows = rig.batch(marker)
    recorded = rig.recorded(key)
    assert len(rows) in (0, BIG_ROWS), f"{name}: killed after {after:.3f}s, it left a partial batch: {len(rows)} rows"
    assert recorded == (1 if rows else 0), f"{name}: {len(rows)} rows but {recorded} recorded answers"
    assert rows or not answered, f"{name}: answered 201 before the kill, yet no rows"

    with client_for(rig, successor) as client:
        answer, _ = retry_until_answered(client, body, key)
    assert_exactly_once(rig, marker, BIG_ROWS, answer)
    assert replayed(answer) == bool(rows), f"{name}: rows after the kill {len(rows)}, replayed {replayed(answer)}"
    assert rig.recorded(key) == 1
    return Kill(after, answered, len(rows), replayed(answer))


def sleep_for(delay: float) -> Callable[[str], None]:
    return lambda _key: time.sleep(delay)


def until_recorded(rig: Rig) -> Callable[[str], None]:
    """Wait until the key's answer is committed — the server is sending it now, or about to."""

    def wait(key: str) -> None:
        deadline = time.monotonic() + RETRY_FOR
        while not rig.recorded(key):
            assert time.monotonic() < deadline, f"key {key} never recorded"

    return wait


@pytest.mark.timeout(120)
def test_a_server_killed_during_a_keyed_batch_leaves_it_whole_or_absent_and_the_retry_completes_it(
    rig: Rig,
) -> None:
    # A new process per kill, all ready before the first kill: one starting beside a victim would slow it past
    # its measured duration.
    seed = secrets.randbits(32)
    chance = random.Random(seed)
    began = time.monotonic()
    with started_fleet(rig, CRASHES, "crash") as fleet:
        ready = time.monotonic()
        successors = [*fleet[1:], rig.servers[0]]  # each victim's successor is the next one; the last one's is A
        duration = measure(fleet[:CRASHES], rig)
        # One kill in each tenth of the batch's duration, at a random moment of it, in a random order.
        delays = [duration * (step + chance.random()) / CRASHES for step in range(CRASHES)]
        chance.shuffle(delays)
        kills = [crash_once(rig, fleet[i], successors[i], f"crash-{i}", sleep_for(d)) for i, d in enumerate(delays)]
        done = time.monotonic()

    before = [k for k in kills if not k.after_commit]
    after = [k for k in kills if k.after_commit]
    print(
        f"\ncrashes on {rig.backend} (seed {seed}, batch {duration * 1000:.0f} ms, {CRASHES} processes ready in "
        f"{ready - began:.1f}s, measuring, kills and retries {done - ready:.1f}s): {len(before)} before commit, "
        f"{len(after)} after ({sum(k.answered_before_kill for k in kills)} answered before the kill); killed after "
        + ", ".join(f"{k.after * 1000:.0f}{'+' if k.after_commit else '-'}" for k in sorted(kills, key=by_time))
        + " ms (+: after the commit)"
    )
    assert len(kills) == CRASHES
    rig.assert_no_errors_logged()


def by_time(kill: Kill) -> float:
    return kill.after


@pytest.mark.timeout(60)
def test_a_server_killed_right_after_its_commit_answers_the_retry_by_replay(rig: Rig) -> None:
    """The case a client's retry exists for: the batch is committed, the answer lost with the server. Random
    moments rarely hit it; here the test kills as soon as it sees the key's record."""
    with started_fleet(rig, COMMIT_KILLS, "commit") as fleet:
        measure(fleet, rig)  # warm-up only: the kill's moment is the commit, not a delay
        successors = [*fleet[1:], rig.servers[0]]
        kills = [
            crash_once(rig, victim, successor, f"commit-{i}", until_recorded(rig))
            for i, (victim, successor) in enumerate(zip(fleet, successors, strict=True))
        ]
    assert all(k.after_commit and k.retry_replayed for k in kills)
    lost = sum(not k.answered_before_kill for k in kills)
    print(f"\nkills at the commit on {rig.backend}: {lost} of {len(kills)} before the answer reached the client")
    rig.assert_no_errors_logged()
