"""Driver exceptions → what went wrong, in one place, for all three backends (shared by every stage).

``classify`` turns a SQLAlchemy ``DBAPIError`` into a :class:`DbProblem` (unique, foreign key, not null, bad
value, conflict, unavailable, unknown) with the columns involved where the driver says so.
``database_errors`` maps the kinds that concern the whole request (database down, pool exhausted,
unexpected) to catalogued errors; ``item_error`` maps the per-item kinds of a write to 1309/3001/3002/3003 at
the item's path (deletes map theirs to 1317 in ``execute.delete``).
No driver text ever reaches a client: it goes to the log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc

from dxapi import errors

if TYPE_CHECKING:  # the snapshot is only read here; dberrors stays importable by every stage
    from dxapi.registry.snapshot import EntitySnapshot

log = logging.getLogger("dxapi.execute")

RETRY_AFTER_SECONDS = "2"

UNIQUE, FOREIGN_KEY, REFERENCED, NOT_NULL, VALUE = "unique", "foreign_key", "referenced", "not_null", "value"
CONFLICT, UNAVAILABLE, UNKNOWN = "conflict", "unavailable", "unknown"
SCHEMA = "schema"  # a table or column the snapshot knows is gone: the next reload will notice
TIMEOUT = "timeout"  # the statement ran past DXAPI_STATEMENT_TIMEOUT and the database cancelled it
LOCK_TIMEOUT = "lock_timeout"  # it waited past DXAPI_LOCK_TIMEOUT for a lock
# The kinds that concern the whole request, never one item of a write: the write stops and answers them.
REQUEST_KINDS = frozenset({CONFLICT, UNAVAILABLE, SCHEMA, TIMEOUT, LOCK_TIMEOUT})


@dataclass(frozen=True, slots=True)
class DbProblem:
    kind: str
    columns: tuple[str, ...] = ()
    constraint: str | None = None


_PG_KINDS = {
    "23505": UNIQUE,
    "23503": FOREIGN_KEY,
    "23502": NOT_NULL,
    "23514": VALUE,
    "22001": VALUE,
    "22003": VALUE,
    "22P02": VALUE,
    "22007": VALUE,
    "22008": VALUE,
    "22021": VALUE,
    "40001": CONFLICT,
    "40P01": CONFLICT,
    "55P03": LOCK_TIMEOUT,  # lock_not_available: lock_timeout ran out
    "57014": TIMEOUT,  # query_canceled: statement_timeout ran out
    "42P01": SCHEMA,
    "42703": SCHEMA,
}
_MYSQL_KINDS = {
    1062: UNIQUE,
    1452: FOREIGN_KEY,
    1451: REFERENCED,
    1048: NOT_NULL,
    1364: NOT_NULL,
    1406: VALUE,
    1264: VALUE,
    1366: VALUE,
    1292: VALUE,
    3819: VALUE,
    1265: VALUE,
    1213: CONFLICT,
    1205: LOCK_TIMEOUT,  # innodb_lock_wait_timeout
    1969: TIMEOUT,  # MariaDB's max_statement_time
    3024: TIMEOUT,  # MySQL's max_execution_time
    2002: UNAVAILABLE,
    2003: UNAVAILABLE,
    2006: UNAVAILABLE,
    2013: UNAVAILABLE,
    1040: UNAVAILABLE,  # too many connections: the server's max_connections
    1203: UNAVAILABLE,  # the user's max_user_connections
    1146: SCHEMA,
    1054: SCHEMA,
}
_PG_KEY_COLUMNS = re.compile(r"Key \((.+?)\)=")


def classify(exc: sa_exc.DBAPIError) -> DbProblem:
    orig = exc.orig
    if exc.connection_invalidated:
        return DbProblem(UNAVAILABLE)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # MariaDB/MySQL: (errno, message)
        return _classify_mysql(args[0], str(args[1]) if len(args) > 1 else "")
    cause = getattr(orig, "__cause__", None)
    if sqlstate and cause is not None and hasattr(cause, "sqlstate"):  # PostgreSQL via asyncpg
        return classify_postgresql(str(sqlstate), cause)
    message = str(args[0]) if args else str(orig)
    return _classify_sqlite(message, exc)


def conflict_behind(exc: BaseException) -> sa_exc.DBAPIError | None:
    """The deadlock that ``exc`` was raised over, if any.

    InnoDB undoes a deadlock victim's whole transaction, savepoints included: leaving the savepoint the
    statement ran in then fails ("SAVEPOINT … does not exist", 1305) over the deadlock, which is the error that
    counts."""
    cause: BaseException | None = exc.__context__
    while cause is not None:
        if isinstance(cause, sa_exc.DBAPIError) and classify(cause).kind == CONFLICT:
            return cause
        cause = cause.__context__
    return None


def classify_postgresql(sqlstate: str, cause: object) -> DbProblem:
    # Classes 08 (connection), 57P (shutdown) and 53 (insufficient resources: too many connections, out of
    # memory or disk) are the server's state, not the request's: 503, try again.
    kind = _PG_KINDS.get(sqlstate, UNAVAILABLE if sqlstate.startswith(("08", "57P", "53")) else UNKNOWN)
    detail = str(getattr(cause, "detail", "") or "")
    constraint = getattr(cause, "constraint_name", None)
    message = str(cause)
    if kind == FOREIGN_KEY and message.startswith("update or delete"):
        return DbProblem(REFERENCED, constraint=constraint)
    if kind == NOT_NULL:
        column = getattr(cause, "column_name", None)
        return DbProblem(kind, (column,) if column else ())
    found = _PG_KEY_COLUMNS.search(detail)
    columns = tuple(c.strip().strip('"') for c in found.group(1).split(",")) if found else ()
    return DbProblem(kind, columns, constraint)


def _classify_mysql(errno: int, message: str) -> DbProblem:
    kind = _MYSQL_KINDS.get(errno, UNKNOWN)
    if kind == UNIQUE:
        key = re.search(r"for key '([^']+)'", message)
        # MariaDB may prefix the key with the table name (`table.key`).
        return DbProblem(kind, constraint=key.group(1).rsplit(".", 1)[-1] if key else None)
    if kind == FOREIGN_KEY:
        column = re.search(r"FOREIGN KEY \(`([^`]+)`\)", message)
        return DbProblem(kind, (column.group(1),) if column else ())
    if kind in (NOT_NULL, VALUE):
        column = re.search(r"[Cc]olumn '([^']+)'|Field '([^']+)'", message)
        name = (column.group(1) or column.group(2)) if column else None
        return DbProblem(kind, (name,) if name else ())
    return DbProblem(kind)


def _classify_sqlite(message: str, exc: sa_exc.DBAPIError) -> DbProblem:
    def columns() -> tuple[str, ...]:
        _, _, listed = message.partition(": ")
        return tuple(part.strip().rsplit(".", 1)[-1] for part in listed.split(",") if part.strip())

    if message.startswith("UNIQUE constraint failed") or message.startswith("PRIMARY KEY"):
        return DbProblem(UNIQUE, columns())
    if message.startswith("FOREIGN KEY constraint failed"):
        return DbProblem(FOREIGN_KEY)  # SQLite does not say which; the caller knows insert vs delete
    if message.startswith("NOT NULL constraint failed"):
        return DbProblem(NOT_NULL, columns())
    if message.startswith("CHECK constraint failed") or isinstance(exc, sa_exc.DataError):
        return DbProblem(VALUE)
    if "database is locked" in message or "database is busy" in message:
        return DbProblem(LOCK_TIMEOUT)  # the busy timeout (DXAPI_LOCK_TIMEOUT) ran out
    if message == "interrupted":  # the progress handler (db.py): DXAPI_STATEMENT_TIMEOUT ran out
        return DbProblem(TIMEOUT)
    if message.startswith(("no such table", "no such column")):
        return DbProblem(SCHEMA)
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) and not isinstance(exc, sa_exc.IntegrityError):
        return DbProblem(UNAVAILABLE)
    return DbProblem(UNKNOWN)


def item_error(problem: DbProblem, entity: EntitySnapshot, path: str) -> errors.ErrorItem:
    """A refused row of a write → its catalogued error at the item's path, with the fields involved where the
    driver names them (``products[2].sku``): unique 1309, foreign key 3002, not null 3001, bad value 3003."""
    columns = problem.columns or (entity.unique_keys.get(problem.constraint or "", ()))
    names = [entity.by_column[c].name for c in columns if c in entity.by_column]
    where = f"{path}.{','.join(names)}" if names else path
    if problem.kind == UNIQUE:
        return errors.DUPLICATE_ENTRY(path=where)
    if problem.kind == FOREIGN_KEY:
        return errors.REFERENCE_NOT_FOUND(path=where)
    if problem.kind == NOT_NULL:
        return errors.NOT_NULLABLE(path=where)
    if problem.kind == VALUE:
        return errors.VALUE_REJECTED(path=where)
    log.error("unexpected database error writing `%s`: %s", path, problem)
    return errors.PERSISTENCE_FAILED(path=path)


def retry_later(spec: errors.ErrorSpec) -> errors.ApiError:
    """A transient refusal: nothing was done (or, 5006, nothing is known), the client retries after a pause."""
    return errors.ApiError([spec()], {"Retry-After": RETRY_AFTER_SECONDS})


def unavailable() -> errors.ApiError:
    return retry_later(errors.DATABASE_UNAVAILABLE)


def pool_exhausted() -> errors.ApiError:
    log.warning("connection pool exhausted")
    return retry_later(errors.POOL_EXHAUSTED)


class OutcomeUnknown(Exception):
    """The commit was sent and no answer came back: the writes may have been saved or not (503 ``5006``)."""


# Who to tell when a request meets a table or column that is gone: set by ``Registry.current`` in the task of
# the request it serves, so the registry reflects the tables again at once instead of at the next version move.
schema_watcher: ContextVar[Callable[[], None] | None] = ContextVar("dxapi_schema_watcher", default=None)


def schema_changed() -> errors.ApiError:
    log.warning("a configured table or column is gone; answering 503 until the configuration reloads")
    watcher = schema_watcher.get()
    if watcher is not None:
        watcher()
    return errors.ApiError([errors.SCHEMA_CHANGED()], {"Retry-After": "1"})


@asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    """Translate failures that concern the whole request: database down, pool exhausted, the unexpected."""
    try:
        yield
    except sa_exc.TimeoutError:
        raise pool_exhausted() from None
    except OutcomeUnknown as exc:
        log.warning("outcome of a commit unknown: %s", exc)
        raise retry_later(errors.OUTCOME_UNKNOWN) from None
    except sa_exc.DBAPIError as exc:
        raise request_error(classify(exc), exc.orig) from None
    except (OSError, StaleConnection) as exc:  # no socket at all, or a read met a dead connection twice
        log.warning("database unreachable: %s", exc)
        raise unavailable() from None


def request_error(problem: DbProblem, orig: object) -> errors.ApiError:
    """The catalogued error of a problem that concerns the whole request (any kind a write does not name)."""
    if problem.kind == UNAVAILABLE:
        log.warning("database unavailable: %s", orig)
        return unavailable()
    if problem.kind == CONFLICT:
        log.warning("write conflict: %s", orig)
        return errors.WRITE_CONFLICT.error()
    if problem.kind == LOCK_TIMEOUT:
        log.warning("lock wait timed out: %s", orig)
        return retry_later(errors.LOCK_TIMEOUT)
    if problem.kind == TIMEOUT:
        log.warning("statement timed out: %s", orig)
        return retry_later(errors.STATEMENT_TIMEOUT)
    if problem.kind == SCHEMA:
        return schema_changed()
    log.error("unexpected database error: %s", orig, exc_info=True)
    return errors.INTERNAL_ERROR.error()


# --- asyncpg, used directly by the PostgreSQL read path -------------------------------------------------------


class StaleConnection(Exception):
    """A pooled connection died under a read (the database restarted) and was dropped: the read may be repeated
    once on a fresh one. Escaping :func:`database_errors` (the second time) it becomes 503 ``5002``."""


def read_errors() -> _ReadErrors:
    """Around one attempt of a read, on either driver: a dead connection → :class:`StaleConnection`; asyncpg's
    own exceptions → the same kinds (``_PG_KINDS``) and catalogued errors SQLAlchemy's get from
    :func:`database_errors`, which the caller wraps around every attempt. A plain ``with``: the hot path pays
    no generator for it."""
    return _READ_ERRORS


class _ReadErrors:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if exc is not None and (translated := _read_failure(exc)) is not None:
            raise translated from (exc if isinstance(translated, StaleConnection) else None)


_READ_ERRORS = _ReadErrors()


def _read_failure(exc: BaseException) -> Exception | None:
    """What an exception of a read attempt becomes; None: it passes on unchanged."""
    if isinstance(exc, sa_exc.DBAPIError):  # database_errors translates the others
        return StaleConnection(str(exc.orig)) if exc.connection_invalidated else None
    if isinstance(exc, TimeoutError):  # asyncpg's pool.acquire; SQLAlchemy's pool raises its own
        return pool_exhausted()
    if isinstance(exc, OSError):  # asyncpg's pool drops a closed connection by itself
        return StaleConnection(str(exc))
    if isinstance(exc, _asyncpg_errors()):
        return _from_asyncpg(exc)
    return None


def _asyncpg_errors() -> tuple[type[Exception], ...]:
    # Looked up only when an exception passes; a process that never loaded asyncpg (SQLite, MariaDB) cannot
    # have met one, and need not import it.
    driver = sys.modules.get("asyncpg")
    return () if driver is None else (driver.PostgresError, driver.InterfaceError, driver.InternalClientError)


def _from_asyncpg(exc: BaseException) -> Exception:
    driver = sys.modules["asyncpg"]
    if isinstance(exc, driver.DataError):  # a value the driver cannot encode: a planning bug, never the client's
        log.error("read parameters rejected by the driver: %s", exc, exc_info=True)
        return errors.INTERNAL_ERROR.error()
    # "connection is closed" and the like; a reply cut off mid-message when the server died under the read
    if isinstance(exc, (driver.InterfaceError, driver.InternalClientError)):
        return StaleConnection(str(exc))
    problem = classify_postgresql(str(getattr(exc, "sqlstate", "")), exc)
    if problem.kind == UNAVAILABLE:  # class 08 (connection), 57P (shutdown): the connection is gone
        return StaleConnection(str(exc))
    return request_error(problem, exc)
