"""``Idempotency-Key``: a retried write is answered from the record of its first execution (DESIGN §4b).

Keys are scoped to the principal. The first request with a key executes; the transaction that commits its
writes also inserts its answer (status, body, the headers that matter) into ``dx_idempotency``, so a crash
leaves both or neither. A retry of the same request (method, path, query, body and the headers that change
its meaning) is answered from the record, byte for byte, with ``Idempotency-Replayed: true``; the same key
with another request is 422 (6102); the same key while the first is still running is 409 (6103) with
``Retry-After``.

Every transaction of a keyed write begins with ``Keeper.enter``: one statement that takes the key's lock
without waiting and looks the record up. The lock makes a concurrent retry answer 6103 at once instead of
executing too. Correctness does not rest on it: the record's primary key does. Should two executions race
past the check (the lookup's snapshot can predate the other's commit), the second one's record insert fails,
its transaction — writes included — rolls back, and it answers the first one's record.

* PostgreSQL: ``pg_try_advisory_xact_lock``, released with the transaction (also when the server dies).
* MariaDB/MySQL: ``GET_LOCK(name, 0)``, a session lock released after the transaction (``Keeper.leave``)
  or with the connection.
* SQLite: no lock; a writer holds the database's write lock from ``BEGIN IMMEDIATE``, so keyed writes run one
  after the other and a retry finds the record.

What is recorded: every answer of a request whose write began executing (2xx, and 4xx such as 1303, 1309,
412, per-item mixed answers), not answers refused before any write (request syntax, validation, auth — the
retry gets the same refusal anyway, or a success once the configuration allows it), and never a transient one
(409 conflicts, 429, 5xx): nothing was committed, so the retry runs again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from sqlalchemy import BigInteger, bindparam, delete, func, insert, literal, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from dxapi import errors
from dxapi.dberrors import database_errors
from dxapi.execute.transaction import transaction
from dxapi.registry.tables import dx_idempotency
from dxapi.responses import BASE_HEADERS, render_errors

log = logging.getLogger("dxapi.idempotency")

T = TypeVar("T")  # what a write path's execution returns (WriteOutcome, or None for a delete)

HEADER = "idempotency-key"
REPLAYED = "Idempotency-Replayed"
RETRY_AFTER = "1"  # seconds: keyed writes are batches of at most a few seconds
# The request headers that change what a write does: part of what "the same request" means.
MEANINGFUL_HEADERS = ("x-is-transactional", "if-match", "if-none-match")
# The answer headers a replay repeats; the ones every answer carries (BASE_HEADERS) are added anyway.
RECORDED_HEADERS = ("content-type", "etag", "x-dxapi-error-code")
TRANSIENT = frozenset({408, 409, 425, 429})


class Replayed(Exception):
    """The key's answer is recorded: answer it instead of executing."""

    def __init__(self, response: Response) -> None:
        super().__init__("replayed")
        self.response = response


class KeyTaken(Exception):
    """Another execution recorded the key between this one's check and its record (this one rolls back)."""


def recordable(status: int) -> bool:
    return status < 500 and status not in TRANSIENT


@dataclass(slots=True)
class Keeper:
    """One keyed request: its key's scope and fingerprint, and what its execution did with them.

    ``answer`` turns the write path's outcome into the response (set by the endpoint before executing);
    ``executed``: a write transaction began (the answer is the request's own, to be recorded); ``response``:
    the answer recorded with the writes.
    """

    scope: str
    fingerprint: str
    answer: Callable[[Any], Response] | None = None
    executed: bool = False
    response: Response | None = None
    _held: bool = False  # MariaDB: this connection holds the key's session lock

    async def enter(self, conn: AsyncConnection) -> None:
        """First statement of a write transaction: lock the key, replay or refuse what is recorded."""
        backend = conn.dialect.name
        row = (await conn.execute(_CHECKS[backend], self.check_parameters(backend))).first()
        locked, found = (True, row) if backend == "sqlite" else (bool(row and row[0]), row and row[1:])
        self._held = backend == "mysql" and locked
        self.checked(locked, found)

    def check_parameters(self, backend: str) -> dict[str, Any]:
        return {"scope": self.scope, "lock": self.lock(backend)}

    def checked(self, locked: bool, found: Any) -> None:
        """What the check found: the key's lock taken or not, and its record (fingerprint, status, headers,
        body) or None. Replays (``Replayed``) or refuses (6102, 6103) the request, or lets it write."""
        self.executed = False  # until this transaction may write
        if found and found[0] is not None:
            fingerprint, status, headers, body = found
            if fingerprint != self.fingerprint:
                raise errors.IDEMPOTENCY_KEY_REUSED.error()
            raise Replayed(_replay(status, orjson.loads(headers), bytes(body)))
        if not locked:
            raise errors.ApiError([errors.IDEMPOTENCY_KEY_IN_USE()], {"Retry-After": RETRY_AFTER})
        self.executed = True

    async def commit(self, conn: AsyncConnection, outcome: Any) -> None:
        """Last statement of a write transaction that commits: record the answer of ``outcome`` with it."""
        assert self.answer is not None, "the endpoint sets the answer before executing"
        response = self.answer(outcome)
        if recordable(response.status_code):
            await self._record(conn, response)
        self.response = response

    async def leave(self, conn: AsyncConnection) -> None:
        """After the transaction (committed or not): release MariaDB's session lock on this connection."""
        if self._held:
            self._held = False
            if conn.invalidated:  # dropped (transaction.drop_connection): the lock went with it
                return
            try:
                await conn.execute(select(func.release_lock(literal(self.lock("mysql")))))
            except sa_exc.DBAPIError:  # the connection is gone, and the lock with it
                log.info("could not release the lock of an idempotency key; its connection is gone")

    async def _record(self, conn: AsyncConnection, response: Response) -> None:
        try:
            await conn.execute(_RECORD, self.record_of(response))
        except sa_exc.IntegrityError:
            raise KeyTaken() from None

    def record_of(self, response: Response) -> dict[str, Any]:
        """The row of ``dx_idempotency`` that records ``response`` for this key."""
        headers = {name: response.headers[name] for name in RECORDED_HEADERS if name in response.headers}
        return {
            "scope": self.scope,
            "fingerprint": self.fingerprint,
            "status": response.status_code,
            "headers": orjson.dumps(headers).decode(),
            "body": bytes(response.body),
            "created_at": int(time.time() * 1000),
        }

    def lock(self, backend: str) -> Any:
        if backend == "postgresql":
            return int.from_bytes(bytes.fromhex(self.scope[:16]), "big", signed=True)
        return f"dxapi-idempotency-{self.scope[:40]}"


def keeper_for(request: Request, subject: str, body: bytes) -> Keeper | None:
    """The keeper of a request that sent ``Idempotency-Key``; None without one; 6101 for a malformed one."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(" " <= c <= "~" for c in key):
        raise errors.IDEMPOTENCY_KEY_INVALID.error()
    scope = hashlib.sha256(f"{subject}\0{key}".encode()).hexdigest()
    return Keeper(scope, fingerprint(request, body))


def fingerprint(request: Request, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, request.url.query):
        digest.update(part.encode() + b"\0")
    for name in MEANINGFUL_HEADERS:
        digest.update((request.headers.get(name) or "").encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


async def answered(
    engine: AsyncEngine, keeper: Keeper | None, execute: Callable[[], Awaitable[T]], answer: Callable[[T], Response]
) -> Response:
    """A write endpoint's execution and its answer, under its key: the recorded answer of an earlier execution,
    or this execution's answer, recorded when it is one (see the module's docstring). A keyed write records
    its answer inside its own transaction (``Keeper.commit``), so ``answer`` runs there and is not run twice."""
    if keeper is None:
        return answer(await execute())
    keeper.answer = answer
    try:
        try:
            outcome = await execute()
            response = keeper.response if keeper.response is not None else answer(outcome)
        except errors.ApiError as error:
            response = render_errors(error)
        if keeper.response is None and keeper.executed and recordable(response.status_code):
            await _record_alone(engine, keeper, response)
        return response
    except Replayed as replay:
        return replay.response
    except KeyTaken:
        log.info("two executions of one idempotency key raced; the later one was rolled back")
        return await _recorded(engine, keeper)


async def _record_alone(engine: AsyncEngine, keeper: Keeper, response: Response) -> None:
    """The answer of a write that wrote nothing (refused), recorded in a transaction of its own."""
    keeper.answer = lambda _: response
    try:
        async with database_errors(), transaction(engine, keeper) as (conn, _):
            await keeper.commit(conn, None)
    except errors.ApiError:
        log.info("an idempotency key was taken by a retry meanwhile; this refusal goes unrecorded")


async def _recorded(engine: AsyncEngine, keeper: Keeper) -> Response:
    """The answer another execution of the key recorded (after this one lost the race to record)."""
    try:
        async with database_errors(), transaction(engine, keeper):
            pass  # the check replays the record, or refuses the key
    except Replayed as replay:
        return replay.response
    except errors.ApiError as error:
        return render_errors(error)
    return render_errors(errors.ApiError([errors.IDEMPOTENCY_KEY_IN_USE()], {"Retry-After": RETRY_AFTER}))


def _replay(status: int, headers: Mapping[str, str], body: bytes) -> Response:
    return Response(body, status_code=status, headers={**BASE_HEADERS, **headers, REPLAYED: "true"})


async def prune(engine: AsyncEngine, ttl: float) -> int:
    """Delete the records older than ``ttl`` seconds; returns how many."""
    cutoff = int((time.time() - ttl) * 1000)
    async with engine.begin() as conn:
        result = await conn.execute(delete(dx_idempotency).where(dx_idempotency.c.created_at < cutoff))
    return int(result.rowcount)


def _checks() -> dict[str, Any]:
    """Per backend, the statement of ``Keeper.enter``: lock (PostgreSQL, MariaDB) and record, in one round trip."""
    record = [dx_idempotency.c.fingerprint, dx_idempotency.c.status, dx_idempotency.c.headers, dx_idempotency.c.body]
    by_scope = dx_idempotency.c.scope == bindparam("scope")
    checks: dict[str, Any] = {"sqlite": select(*record).where(by_scope)}
    for backend, locked in (
        ("postgresql", func.pg_try_advisory_xact_lock(bindparam("lock", type_=BigInteger()))),
        ("mysql", func.get_lock(bindparam("lock"), 0) == 1),
    ):
        lock = select(locked.label("locked")).subquery("lock")
        checks[backend] = select(lock.c.locked, *record).select_from(lock.outerjoin(dx_idempotency, by_scope))
    return checks


_CHECKS = _checks()
CHECK_POSTGRESQL = _CHECKS["postgresql"]  # also run on the asyncpg pool (execute.one_statement)
# One statement object for every record: building it per request cost more than running it.
_RECORD = insert(dx_idempotency)
