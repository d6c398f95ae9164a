"""A write that is one statement, on PostgreSQL: compiled once per shape and sent straight to the asyncpg pool.

Fed by ``execute.write`` for a single POST or PATCH item without children, precondition or ``Idempotency-Key``:
one ``INSERT … RETURNING`` or ``UPDATE … RETURNING``, atomic on its own in autocommit. Reads take the same
path (``execute.read``). Through SQLAlchemy a lone PATCH cost twice the CPU of the reference server's, most
of it in the checkout and per-execution machinery around one round trip.

A POST batch of plain rows (same fields, generated keys, no children) is one statement too:
``INSERT … SELECT unnest($1::type[], …) RETURNING …``, one array per column, so the statement is the same for
any number of rows and the driver encodes each column in one go. SQLAlchemy's multi-row VALUES cost a fifth
of a 1,000-row batch in building parameters. It runs between its own BEGIN and COMMIT although one statement
is atomic in autocommit: there, a statement that died after the database committed it (a reset, a backend
terminated before its last reply) looked like one refused, and the batch was answered "not written" with its
rows saved (``tests/reliability/test_batch_kills.py``). In a transaction nothing is saved before the COMMIT, so
a failure of the INSERT is "not written" for certain; only a COMMIT without an answer is unknown (``5006``). A
refusal of a row wrote nothing: the batch goes the general way, which names every failing item.

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

from sqlalchemy import bindparam, cast, func, insert, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
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
    unavailable,
)
from dxapi.errors import ErrorItem
from dxapi.execute.outcome import WriteOutcome
from dxapi.execute.statements import update_statement
from dxapi.idempotency import CHECK_POSTGRESQL, Keeper, KeyTaken, recordable
from dxapi.plan.decide import missing_row
from dxapi.plan.types import INSERT, POST, Action, ItemPlan, WritePlan
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


async def write_many(
    pool: DriverPool, dialect: Dialect, plan: WritePlan, keeper: Keeper | None = None
) -> tuple[dict[str, Any], ...] | None:
    """The plan's inserts (see ``many_rows``) in one statement and a transaction of its own → the saved rows
    in item order; None when the database refused a row (nothing was written) or the columns' types have no
    array form. Under an ``Idempotency-Key`` the key's check opens the transaction and the answer's record goes
    with the COMMIT, as for one row (:func:`write_one_keyed`)."""
    entity, first = plan.entity, plan.items[0]
    values = [decision.action.values for decision in plan.decisions if decision.action is not None]
    columns = tuple(values[0])
    statement = _many_statement(dialect, entity, columns)
    if statement is None:
        return None
    arguments = [  # one array per column
        [row[name] if process is None or row[name] is None else process(row[name]) for row in values]
        for name, process in zip(columns, statement.processors, strict=True)
    ]
    rows: tuple[dict[str, Any], ...] = ()  # set once the COMMIT is answered
    try:
        with read_errors():  # what acquiring meets (pool exhausted, database unreachable): nothing was sent
            async with pool.acquire() as connection:
                records = await _insert_many(connection, statement, arguments, entity, first, dialect, keeper)
                if records is None:
                    return None
                try:
                    # Generated keys grow in array order: sorted by them, the rows are in request order.
                    at = entity.columns.index(entity.identifier.column)
                    saved = tuple(entity.render_row(record) for record in sorted(records, key=lambda r: r[at]))
                    if keeper is not None:
                        await _commit(connection, keeper, saved)
                    elif not await _commit_many(connection, entity, first):
                        return None
                except BaseException as exc:
                    await _end(connection, exc)  # no transaction left open on a pooled connection
                    raise
                rows = saved
    except Exception:
        if not rows:
            raise
        # The COMMIT was answered: a connection that broke on its way back to the pool changes nothing about
        # that, and "not written" would be false.
        log.warning("connection lost after a batch insert into `%s` was committed", entity.alias)
    return rows


async def _insert_many(
    connection: Any,
    statement: DriverStatement,
    arguments: list[Any],
    entity: EntitySnapshot,
    first: ItemPlan,
    dialect: Dialect,
    keeper: Keeper | None,
) -> list[Any] | None:
    """BEGIN, the key's check and the INSERT: its records, or None for a refused row. Nothing is saved yet,
    whatever fails; what ``Keeper.checked`` raises (a replay, 6102, 6103) passes on after the ROLLBACK."""
    try:
        await connection.execute("BEGIN")
        if keeper is not None:
            check = _check_statement(dialect)
            found = await connection.fetchrow(check.sql, *check.arguments(keeper.check_parameters("postgresql")))
            keeper.checked(bool(found[0]), found[1:])
        records: list[Any] = await connection.fetch(statement.sql, *arguments)
        return records
    except BaseException as exc:
        if _unanswered(exc):
            connection.terminate()  # it may still be busy with the statement: never reused
            if not isinstance(exc, Exception):  # cancelled: the request is gone
                raise
            raise unavailable() from None  # the transaction dies with its connection: not written
        await connection.execute("ROLLBACK")
        if isinstance(exc, sys.modules["asyncpg"].exceptions._base.DataError):
            return None  # a value the driver could not encode as an array element
        _refusal(exc, entity, first)  # raises for the whole request (or a conflict), and what is no refusal
        return None


async def _commit_many(connection: Any, entity: EntitySnapshot, first: ItemPlan) -> bool:
    """The COMMIT → True; False when the database refused it (a deferred constraint: rolled back, the general
    way names the items). Without an answer, or with the server going away, the rows may be saved or not: 5006."""
    try:
        await connection.execute("COMMIT")
    except BaseException as exc:
        if isinstance(exc, sys.modules["asyncpg"].PostgresError) and str(exc.sqlstate)[:2] in ("23", "40"):
            _refusal(exc, entity, first)  # a serialization failure raises Conflict: tried once more
            return False
        connection.terminate()
        if not isinstance(exc, Exception):
            raise
        raise OutcomeUnknown(str(exc) or type(exc).__name__) from exc
    return True


def many_rows(plan: WritePlan) -> bool:
    """A POST batch that ``write_many`` can take: plain rows sending the same fields, keys the database makes."""
    entity = plan.entity
    if plan.method != POST or not plan.transactional or len(plan.items) < 2 or plan.has_problems:
        return False
    if not entity.serial_identifier:
        return False
    first = plan.decisions[0].action
    if first is None or first.kind != INSERT or not first.values:
        return False
    columns = tuple(first.values)
    return entity.identifier.column.name not in first.values and all(
        not item.children
        and item.precondition is None
        and decision.action is not None
        and decision.action.kind == INSERT
        and tuple(decision.action.values) == columns
        for item, decision in zip(plan.items, plan.decisions, strict=True)
    )


def _many_statement(dialect: Dialect, entity: EntitySnapshot, columns: tuple[str, ...]) -> DriverStatement | None:
    shape = ("driver-insert-many", columns)
    cached = entity.write_statements.get(shape)
    if cached is None:
        built: DriverStatement | bool
        try:
            compiled = _compiled(dialect, _insert_many_statement(dialect, entity, columns))
        except Exception:  # a type without an array form (or unknown to SQLAlchemy): the general path
            log.info("no array insert for `%s` (%s); batches take the general path", entity.alias, columns)
            built = False
        else:
            # The arrays' elements are bound as the column's own values would be (JSON as text, …).
            processors = tuple(
                entity.table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
            )
            built = DriverStatement(compiled.sql, compiled.names, processors)
        cached = entity.write_statements.remember(shape, built)
    return cached if isinstance(cached, DriverStatement) else None


def _insert_many_statement(dialect: Dialect, entity: EntitySnapshot, columns: tuple[str, ...]) -> Any:
    table = entity.table
    targets: list[Any] = [table.c[name] for name in columns]
    sources: list[Any] = []
    for i, column in enumerate(targets):
        array = ARRAY(column.type)
        sources.append(func.unnest(cast(bindparam(f"v{i}", type_=array), array)))
    for column, value in stamp_values(entity.insert_stamps).items():
        targets.append(column)
        # As SQL text: the clock expression names its column (for its type), which would put the table in
        # the SELECT's FROM and multiply the rows.
        clock = value.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        sources.append(literal_column(str(clock), type_=column.type))
    return insert(table).from_select(targets, select(*sources)).returning(*entity.columns)


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
                await _commit(connection, keeper, (row,))
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


async def _commit(connection: Any, keeper: Keeper, rows: tuple[dict[str, Any], ...]) -> None:
    """The answer recorded and the transaction committed, in one round trip (a simple query of two
    statements: the INSERT's values are inlined as hexadecimal digits and integers only). A database error
    other than the key's is translated by the caller's ``read_errors``, as for any statement here."""
    assert keeper.answer is not None, "the endpoint sets the answer before executing"
    response = keeper.answer(WriteOutcome(rows, ()))
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
