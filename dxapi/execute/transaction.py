"""The write transaction every write runs in: begun, checked against its ``Idempotency-Key``, committed.

Fed by ``execute.write``, ``execute.delete`` and ``idempotency``. A transaction is committed at the end unless
the caller rolled it back (refusals are values, not exceptions); an exception rolls it back. With a keeper it
begins with the key's check and releases the key's lock after it ended (``idempotency.Keeper``).

A commit whose answer never arrives (the connection died, the database stopped answering) may or may not
have taken effect: it raises :class:`dberrors.OutcomeUnknown` (503 ``5006``), never the "not written" of a
failure before the commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from dxapi.db import drop_connection
from dxapi.dberrors import UNAVAILABLE, OutcomeUnknown, classify

if TYPE_CHECKING:  # idempotency runs its own transactions through this module
    from dxapi.idempotency import Keeper


@asynccontextmanager
async def transaction(
    engine: AsyncEngine, keeper: Keeper | None
) -> AsyncIterator[tuple[AsyncConnection, AsyncTransaction]]:
    async with engine.connect() as conn:
        try:
            writing = await conn.begin()
            try:
                if keeper is not None:
                    await keeper.enter(conn)
                yield conn, writing
            except BaseException as exc:
                if _connection_lost(exc):
                    # The database stopped answering (no reply within the command timeout) or the socket
                    # broke: a ROLLBACK on this connection would wait as long again. Dropping it ends the
                    # transaction on the server (whenever it notices) and frees the request at once.
                    await drop_connection(conn)
                elif writing.is_active:
                    await writing.rollback()
                raise
            if writing.is_active:
                try:
                    await _commit(writing)
                except OutcomeUnknown:
                    await drop_connection(conn)  # as above: no ROLLBACK on a connection that did not answer
                    raise
        finally:
            if keeper is not None:
                await keeper.leave(conn)


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, OSError):  # TimeoutError included
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc.orig, OSError) or classify(exc).kind == UNAVAILABLE
    return False


async def _commit(writing: AsyncTransaction) -> None:
    try:
        await writing.commit()
    except sa_exc.DBAPIError as exc:
        if classify(exc).kind == UNAVAILABLE:
            raise OutcomeUnknown(str(exc.orig)) from exc
        raise  # refused for a reason the database gave: nothing was committed
    except OSError as exc:  # the socket, or no answer within the command timeout
        raise OutcomeUnknown(str(exc) or type(exc).__name__) from exc
