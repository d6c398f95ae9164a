"""What a read attempt's driver exceptions become (``dberrors.read_errors``), without a database.

Both drivers of the read path end in the same kinds: a dead connection is ``StaleConnection`` (the read is
repeated once, ``execute.read``), a vanished table or column 503 ``5004``, a full pool or an unreachable
database 503 ``5002``, anything else 500 ``5001``; catalogued errors pass unchanged. The PostgreSQL restart
itself is ``tests/reload/test_health.py::test_database_restart``.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from dxapi import errors
from dxapi.dberrors import StaleConnection, conflict_behind, database_errors, read_errors
from tests.conftest import SERVER_ERRORS


def _raised(exc: BaseException) -> BaseException:
    try:
        with read_errors():
            raise exc
    except BaseException as translated:  # whatever came out is what the test looks at
        return translated
    raise AssertionError("read_errors swallowed an exception")


def _code(exc: BaseException) -> str:
    assert isinstance(exc, errors.ApiError), repr(exc)
    return exc.items[0].code


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.InterfaceError("cannot perform operation: connection is closed"),
        ConnectionResetError("reset by peer"),
        sa_exc.DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True),
    ],
    ids=["asyncpg-closed", "asyncpg-shutdown", "asyncpg-interface", "socket", "sqlalchemy-invalidated"],
)
def test_a_dead_connection_is_stale_on_either_driver(exc: BaseException) -> None:
    assert isinstance(_raised(exc), StaleConnection)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
        asyncpg.exceptions.UndefinedColumnError("column does not exist"),
    ],
    ids=["table", "column"],
)
def test_asyncpg_schema_change_is_5004(exc: BaseException) -> None:
    assert _code(_raised(exc)) == errors.SCHEMA_CHANGED.code


def test_asyncpg_pool_exhausted_is_5007() -> None:
    """``DriverPool.acquire`` waited ``DXAPI_POOL_TIMEOUT``: the server is busy, the database may be fine."""
    translated = _raised(TimeoutError())
    assert _code(translated) == errors.POOL_EXHAUSTED.code
    assert isinstance(translated, errors.ApiError) and "Retry-After" in translated.headers


@pytest.mark.parametrize(
    ("exc", "spec"),
    [
        (
            asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
            errors.STATEMENT_TIMEOUT,
        ),
        (asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"), errors.LOCK_TIMEOUT),
    ],
    ids=["statement-timeout", "lock-timeout"],
)
def test_asyncpg_timeouts_have_their_own_codes(exc: BaseException, spec: errors.ErrorSpec) -> None:
    translated = _raised(exc)
    assert _code(translated) == spec.code
    assert isinstance(translated, errors.ApiError) and "Retry-After" in translated.headers


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.DataError("invalid input for query argument $1"),
        asyncpg.exceptions.DivisionByZeroError("division by zero"),
    ],
    ids=["unencodable-value", "unexpected"],
)
def test_asyncpg_anything_else_is_5001_and_logged(exc: BaseException) -> None:
    assert _code(_raised(exc)) == errors.INTERNAL_ERROR.code
    assert SERVER_ERRORS.take(), "an unexpected database error must reach the log as ERROR"


@pytest.mark.parametrize(
    "exc",
    [errors.INTERNAL_ERROR.error(), sa_exc.DBAPIError("SELECT 1", None, Exception("locked"))],
    ids=["api-error", "sqlalchemy-other"],
)
def test_the_rest_passes_unchanged(exc: BaseException) -> None:
    assert _raised(exc) is exc


def test_stale_twice_is_5002() -> None:
    async def read_twice() -> None:
        async with database_errors():
            raise StaleConnection("connection is closed")

    with pytest.raises(errors.ApiError) as raised:
        asyncio.run(read_twice())
    assert _code(raised.value) == errors.DATABASE_UNAVAILABLE.code


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.OutOfMemoryError("out of memory"),
    ],
    ids=["too-many-connections", "out-of-memory"],
)
def test_a_server_out_of_resources_is_unavailable_not_a_bug(exc: BaseException) -> None:
    """Class 53 is the server's state: the read is tried once more, then answered 503 ``5002``, never 500."""
    assert isinstance(_raised(exc), StaleConnection)
    assert not SERVER_ERRORS.take()


@pytest.mark.parametrize("errno", [1040, 1203])
def test_mariadb_out_of_connections_is_unavailable(errno: int) -> None:
    refused = sa_exc.DBAPIError("SELECT 1", None, Exception(errno, "Too many connections"))

    async def attempt() -> None:
        async with database_errors():
            raise refused

    with pytest.raises(errors.ApiError) as caught:
        asyncio.run(attempt())
    assert _code(caught.value) == errors.DATABASE_UNAVAILABLE.code
    assert caught.value.headers.get("Retry-After")


def test_a_savepoint_lost_to_a_deadlock_answers_the_deadlock() -> None:
    """InnoDB undoes a deadlock victim's whole transaction: leaving its savepoint then fails with 1305 over the
    deadlock. The deadlock is what counts — 409 ``3004``, which a client retries — never 500 for the 1305."""
    deadlock = sa_exc.DBAPIError("DELETE …", None, Exception(1213, "Deadlock found when trying to get lock"))
    lost = sa_exc.DBAPIError("ROLLBACK TO SAVEPOINT sa_savepoint_1", None, Exception(1305, "SAVEPOINT does not exist"))
    lost.__context__ = deadlock
    assert conflict_behind(lost) is deadlock
    assert conflict_behind(deadlock) is None

    async def attempt() -> None:
        async with database_errors():
            raise conflict_behind(lost) or lost

    with pytest.raises(errors.ApiError) as caught:
        asyncio.run(attempt())
    assert _code(caught.value) == errors.WRITE_CONFLICT.code


def test_a_write_whose_reply_was_cut_off_mid_message_has_no_known_outcome() -> None:
    """asyncpg's ``InternalClientError`` is a reply cut off mid-message: the statement may have committed, so a
    write must answer 5006 (outcome unknown), never 5002 (not written). Found by
    ``tests/reliability/test_batch_kills.py``: a reset 500-row batch answered 5002 with every row committed."""
    from dxapi.execute.one_statement import _unanswered

    assert _unanswered(asyncpg.exceptions.InternalClientError("unexpected end of the reply"))
    assert not _unanswered(asyncpg.exceptions.UniqueViolationError("duplicate key"))
