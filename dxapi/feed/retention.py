"""Retention: tombstones older than ``DXAPI_CHANGE_RETENTION`` are pruned; live rows' entries never are. The
same background loop prunes idempotency records older than ``DXAPI_IDEMPOTENCY_TTL`` (``idempotency.prune``)
and ended rate-limit windows (``limits.counters``).

Each prune records the newest position it removed. A cursor before it may have missed one of those deletes,
so ``feed.read`` answers it 410 ("resync from the start") — exactly those cursors, no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Text,
    and_,
    cast,
    delete,
    func,
    literal,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from dxapi import idempotency
from dxapi.feed.read import XID8, Position, before, change_table
from dxapi.limits.counters import Counters
from dxapi.registry.capture import capture_state
from dxapi.registry.reload import Registry
from dxapi.registry.snapshot import EntitySnapshot
from dxapi.registry.tables import dx_change_feed

log = logging.getLogger("dxapi.feed")


def prune_tombstones(conn: Connection, entity: EntitySnapshot, retention: float) -> int:
    """Delete ``entity``'s tombstones older than ``retention`` seconds; returns how many. One transaction."""
    dialect = conn.dialect.name
    changes = change_table(entity, dialect)
    xid: ColumnElement[Any] = literal(0)
    if dialect == "postgresql":
        cutoff = changes.c.changed_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention)
        order = [changes.c.xid.desc(), changes.c.seq.desc()]
        xid = cast(cast(changes.c.xid, Text), BigInteger)
    elif dialect == "mysql":
        # SQLAlchemy's MySQL compiler renders func.sysdate(…) as SYSDATE(), whole seconds: spell the precision.
        cutoff = changes.c.changed_at < func.unix_timestamp(literal_column("SYSDATE(6)")) - retention
        order = [changes.c.seq.desc()]
    else:
        cutoff = changes.c.changed_at < func.julianday("now") - retention / 86400
        order = [changes.c.seq.desc()]
    old = and_(changes.c.deleted == True, cutoff)  # noqa: E712  (SQL, not Python truthiness)
    newest = conn.execute(select(xid, changes.c.seq).where(old).order_by(*order).limit(1)).first()
    if newest is None:
        return 0
    upto = Position(int(newest[0]), int(newest[1]))
    if dialect == "postgresql":
        bound = tuple_(changes.c.xid, changes.c.seq) <= tuple_(cast(literal(str(upto.xid)), XID8()), upto.seq)
    else:
        bound = changes.c.seq <= upto.seq
    removed = conn.execute(delete(changes).where(old, bound)).rowcount
    state = capture_state(conn, entity.table.name)
    if state is not None and (
        state.pruned_seq is None or before(Position(state.pruned_xid or 0, state.pruned_seq), upto)
    ):
        conn.execute(
            update(dx_change_feed)
            .where(dx_change_feed.c.table_name == entity.table.name)
            .values(pruned_xid=upto.xid, pruned_seq=upto.seq)
        )
    return int(removed)


async def prune_all(engine: AsyncEngine, registry: Registry, retention: float) -> None:
    for entity in registry.current().entities.values():
        if not entity.config.change_feed:
            continue
        async with engine.begin() as conn:
            removed = await conn.run_sync(prune_tombstones, entity, retention)
        if removed:
            log.info("pruned %d tombstones of `%s` older than %s s", removed, entity.alias, retention)


async def prune_forever(
    engine: AsyncEngine,
    registry: Registry,
    retention: float,
    interval: float,
    idempotency_ttl: float,
    counters: Counters,
    stop: asyncio.Event,
) -> None:
    """The worker's background pruning — tombstones, then expired idempotency records and rate-limit windows;
    several workers pruning at once only repeat each other's work. Returns once ``stop`` is set, between two
    rounds."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
            return
        await _guarded("tombstones", prune_all(engine, registry, retention))
        await _guarded("idempotency records", _prune_records(engine, idempotency_ttl))
        await _guarded("rate-limit counters", _prune_counters(counters))


async def _guarded(what: str, pruning: Coroutine[Any, Any, None]) -> None:
    try:
        await pruning
    except (SQLAlchemyError, OSError) as exc:  # the database is away: try again next time
        log.warning("pruning %s failed: %s", what, exc)
    except Exception:  # a bug: reported, and the loop lives on
        log.exception("pruning %s failed", what)


async def _prune_records(engine: AsyncEngine, ttl: float) -> None:
    removed = await idempotency.prune(engine, ttl)
    if removed:
        log.info("pruned %d idempotency records older than %s s", removed, ttl)


async def _prune_counters(counters: Counters) -> None:
    removed = await counters.prune()
    if removed:
        log.info("pruned %d ended rate-limit windows", removed)
