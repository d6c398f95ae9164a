"""A write that is one statement, on PostgreSQL: compiled once per shape and sent straight to the asyncpg pool.

Fed by ``execute.write`` for a single POST or PATCH item without children, precondition or ``Idempotency-Key``:
one ``INSERT … RETURNING`` or ``UPDATE … RETURNING``, atomic on its own in autocommit. Reads take the same
path (``execute.read``). Through SQLAlchemy a lone PATCH cost twice the CPU of the reference server's, most
of it in the checkout and per-execution machinery around one round trip.

POST batches take the general way (``execute.write``): a one-statement array INSERT on the driver said
"not written" of committed rows when every connection was reset mid-batch
(``tests/reliability/test_batch_kills.py``), so it was taken out until it can tell.

The statement is the one ``execute.statements`` runs for the row (same build, same ``autoValue`` stamps),
compiled for the asyncpg dialect with its parameters' bind processors, so every value reaches the driver as
SQLAlchemy would hand it over (JSON as text, …). The row returned is a driver record in ``entity.columns``
order, rendered like a read's.

What the database says maps as on the other path: a refusal of the row is the item's error (1309, 3002 …), a
request-wide problem its catalogued error. A statement that got no answer — the socket broke, nothing within
the command timeout — may have committed: 503 ``5006``, and the connection is closed, never reused.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from dxapi.db import DriverPool
from dxapi.dberrors import (
    CONFLICT,
    REQUEST_KINDS,
    OutcomeUnknown,
    classify_postgresql,
    item_error,
    read_errors,
    request_error,
)
from dxapi.errors import ErrorItem
from dxapi.execute.outcome import WriteOutcome
from dxapi.execute.statements import update_statement
from dxapi.idempotency import CHECK_POSTGRESQL, Keeper, KeyTaken, recordable
from dxapi.plan.decide import missing_row
from dxapi.plan.types import INSERT, Action, ItemPlan, WritePlan
from dxapi.registry.snapshot import EntitySnapshot
from dxapi.sql.build import build_insert
from dxapi.sql.clock import stamp_values

log = logging.getLogger("dxapi.execute")


class Conflict(Exception):
    """A deadlock or serialization failure: nothing was written, the caller may try once more."""


@dataclass(frozen=True, slots=True)
class DriverStatement:
    sql: str
    names: tuple[str, ...]  # bind names in the order of asyncpg's positional parameters
    processors: tuple[Callable[[Any], Any] | None, ...]  # each parameter's bind processor, as SQLAlchemy's

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        return [
            value if process is None or value is None else process(value)
            for value, process in zip((params[name] for name in self.names), self.processors, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class Written:
    """The saved row rendered, or the item's refusal."""

    row: dict[str, Any] | None
    refused: tuple[ErrorItem, ...] = ()


async def write_one(pool: DriverPool, dialect: Dialect, plan: WritePlan) -> Written:
    """The plan's one item written in one statement (the plan has no problems; see ``execute.write``)."""
    entity, item = plan.entity, plan.items[0]
    statement, arguments = _prepared(dialect, plan)
    with read_errors():  # what acquiring meets (pool exhausted, database unreachable): nothing was sent
        async with pool.acquire() as connection:
            try:
                record = await connection.fetchrow(statement.sql, *arguments)
            except BaseException as exc:
                if _unanswered(exc):
                    connection.terminate()  # it may still be busy with the statement: never reused
                return Written(None, _refusal(exc, entity, item))
    if record is None:  # UPDATE matched nothing: a PATCH of a missing row
        return Written(None, (missing_row(entity, item),))
    return Written(entity.render_row(record))


async def write_one_keyed(pool: DriverPool, dialect: Dialect, plan: WritePlan, keeper: Keeper) -> Written:
    """:func:`write_one` under an ``Idempotency-Key``: the key's check, the statement and the answer's record
    in one transaction (``idempotency`` has the rules), in four round trips — the record and the COMMIT go
    together. Raises what ``Keeper.checked`` raises (a replay, 6102, 6103) and ``KeyTaken``."""
    entity, item = plan.entity, plan.items[0]
    statement, arguments = _prepared(dialect, plan)
    check = _check_statement(dialect)
    with read_errors():  # what acquiring meets (pool exhausted, database unreachable): nothing was sent
        async with pool.acquire() as connection:
            try:
                await connection.execute("BEGIN")
                found = await connection.fetchrow(check.sql, *check.arguments(keeper.check_parameters("postgresql")))
                keeper.checked(bool(found[0]), found[1:])
                try:
                    record = await connection.fetchrow(statement.sql, *arguments)
                except BaseException as exc:
                    if not _unanswered(exc):
                        await connection.execute("ROLLBACK")
                    raise _Refused(_refusal(exc, entity, item)) from exc
                if record is None:
                    await connection.execute("ROLLBACK")
                    return Written(None, (missing_row(entity, item),))
                row = entity.render_row(record)
                await _commit(connection, keeper, row)
                return Written(row)
            except _Refused as refused:
                return Written(None, refused.items)
            except BaseException as exc:
                await _end(connection, exc)
                raise


class _Refused(Exception):
    def __init__(self, items: tuple[ErrorItem, ...]) -> None:
        super().__init__("refused")
        self.items = items


async def _commit(connection: Any, keeper: Keeper, row: dict[str, Any]) -> None:
    """The answer recorded and the transaction committed, in one round trip (a simple query of two
    statements: the INSERT's values are inlined as hexadecimal digits and integers only). A database error
    other than the key's is translated by the caller's ``read_errors``, as for any statement here."""
    assert keeper.answer is not None, "the endpoint sets the answer before executing"
    response = keeper.answer(WriteOutcome((row,), ()))
    commit = "COMMIT"
    if recordable(response.status_code):
        commit = f"{_record_sql(keeper.record_of(response))}; COMMIT"
    try:
        await connection.execute(commit)
    except sys.modules["asyncpg"].UniqueViolationError:
        await connection.execute("ROLLBACK")
        raise KeyTaken() from None
    except BaseException as exc:
        if _unanswered(exc) and isinstance(exc, Exception):
            raise OutcomeUnknown(str(exc) or type(exc).__name__) from exc
        raise
    keeper.response = response


async def _end(connection: Any, exc: BaseException) -> None:
    """After a failure inside the transaction: roll it back, or close a connection that did not answer."""
    if _unanswered(exc) or isinstance(exc, OutcomeUnknown):
        connection.terminate()
    elif connection.is_in_transaction():
        await connection.execute("ROLLBACK")


def _record_sql(values: dict[str, Any]) -> str:
    scope, fingerprint = str(values["scope"]), str(values["fingerprint"])
    if not all(c in "0123456789abcdef" for c in scope + fingerprint):
        raise ValueError("the digests of an idempotency key are hexadecimal")
    headers = str(values["headers"]).encode().hex()
    body = bytes(values["body"]).hex()
    # Only hexadecimal digits and integers are inlined: nothing a client sent can end the literals.
    return (
        "INSERT INTO dx_idempotency (scope, fingerprint, status, headers, body, created_at) VALUES "  # noqa: S608
        f"('{scope}', '{fingerprint}', {int(values['status'])}, convert_from(decode('{headers}', 'hex'), 'UTF8'), "
        f"decode('{body}', 'hex'), {int(values['created_at'])})"
    )


_CHECK: list[DriverStatement] = []


def _check_statement(dialect: Dialect) -> DriverStatement:
    if not _CHECK:
        _CHECK.append(_compiled(dialect, CHECK_POSTGRESQL))
    return _CHECK[0]


def _prepared(dialect: Dialect, plan: WritePlan) -> tuple[DriverStatement, list[Any]]:
    decision = plan.decisions[0]
    assert decision.action is not None, "a root POST or PATCH item without problems is decided already"
    statement, params = _statement(dialect, plan.entity, decision.action)
    return statement, statement.arguments(params)


def _statement(dialect: Dialect, entity: EntitySnapshot, action: Action) -> tuple[DriverStatement, dict[str, Any]]:
    columns = tuple(action.values)
    params = {f"v{i}": action.values[name] for i, name in enumerate(columns)}
    if action.kind == INSERT:
        shape: tuple[Any, ...] = ("driver-insert", columns)
        cached = entity.write_statements.get(shape)
        if cached is None:
            cached = entity.write_statements.remember(shape, _compiled(dialect, _insert_one(entity, columns)))
    else:
        params["key"] = action.key
        shape = ("driver-update", columns)
        cached = entity.write_statements.get(shape)
        if cached is None:
            statement = update_statement(entity, columns, returning=True)
            cached = entity.write_statements.remember(shape, _compiled(dialect, statement))
    assert isinstance(cached, DriverStatement)
    return cached, params


def _insert_one(entity: EntitySnapshot, columns: tuple[str, ...]) -> Any:
    """One row's INSERT with positional bind names (column names may hold spaces or quotes), stamps included."""
    table = entity.table
    values: dict[Any, Any] = {table.c[name]: bindparam(f"v{i}") for i, name in enumerate(columns)}
    if entity.insert_stamps:
        values.update(stamp_values(entity.insert_stamps))
    return build_insert(entity).values(values)


def _compiled(dialect: Dialect, statement: Any) -> DriverStatement:
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ())
    processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    return DriverStatement(compiled.string, names, processors)


def _unanswered(exc: BaseException) -> bool:
    """No answer to the statement: the socket broke, the command timeout ran out (TimeoutError is an OSError),
    the connection is closed, the reply was cut off mid-message (the driver's ``InternalClientError``), or the
    request was cancelled while waiting."""
    driver = sys.modules["asyncpg"]
    gone = (OSError, driver.InterfaceError, driver.PostgresConnectionError, driver.InternalClientError)
    return isinstance(exc, gone) or not isinstance(exc, Exception)


def _refusal(exc: BaseException, entity: EntitySnapshot, item: ItemPlan) -> tuple[ErrorItem, ...]:
    """The item's error for a refusal of its row; raises for what concerns the whole request."""
    if _unanswered(exc):
        if not isinstance(exc, Exception):  # cancelled: the request is gone (its connection closed above)
            raise exc
        raise OutcomeUnknown(str(exc) or type(exc).__name__) from exc
    if not isinstance(exc, sys.modules["asyncpg"].PostgresError):
        raise exc
    # As ``execute.statements`` does for a lone row; a value the driver could not encode (22000) is unknown,
    # answered 5001 and logged.
    problem = classify_postgresql(str(exc.sqlstate), exc)
    if problem.kind == CONFLICT:
        raise Conflict() from None
    if problem.kind in REQUEST_KINDS:
        raise request_error(problem, exc) from None
    return (item_error(problem, entity, item.path),)
