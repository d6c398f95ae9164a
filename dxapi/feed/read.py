"""Reading the change feed: ``GET /{alias}/_changes?since=<cursor>`` → one page of changes and the next cursor.

A page lists change-table entries after the cursor's position, in position order, each joined with the live
row as it is now (gone: ``{"op": "delete"}``). One entry per key, so a key appears at most once per page.

Only positions that no running transaction can still undercut are handed out — else a transaction that took
its number first but commits last would land behind a cursor the client already holds:

- PostgreSQL: entries of transactions older than the oldest running one (``pg_snapshot_xmin``), ordered by
  ``(xid, seq)``. Every transaction below that horizon has ended, so nothing can appear there later.
- MariaDB: entries numbered before the oldest running writer started (``information_schema.innodb_trx``,
  which InnoDB refreshes every 0.1 s, hence a second of margin) and before the first entry numbered after
  that moment. A writer's numbers are all taken after it started, and the sequence only grows.
- SQLite: one writer at a time; everything committed is final.

``hasMore`` is true while anything committed lies after the page — including entries held back behind a
transaction still running — so ``hasMore: false`` means caught up with every commit before the request.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    MetaData,
    Numeric,
    Table,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Text, TypeEngine, UserDefinedType

from dxapi import errors
from dxapi.dberrors import database_errors
from dxapi.registry.capture import CAPTURE_VERSION, CaptureState, capture_names, capture_state
from dxapi.registry.snapshot import EntitySnapshot
from dxapi.registry.tables import dx_change_feed
from dxapi.sql.build import selected

CURSOR_FORMAT = 1
HEAD = "now"
# MariaDB: InnoDB's transaction list is a copy refreshed at most every 0.1 s, and its start times are whole
# seconds; entries younger than this are held back for a later page.
MARIADB_MARGIN_SECONDS = 1


class XID8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client stands: ``xid`` is 0 except on PostgreSQL; ``seq`` -1 means "before any seq of xid"."""

    xid: int
    seq: int


START = Position(0, -1)


@dataclass(frozen=True, slots=True)
class Cursor:
    """``position``: everything up to it was handed out. ``load_until``: set on a first load (no ``since``),
    the head when it began: tombstones up to there are of rows the client never received, so they are left
    out instead of shipping a retention period's worth of deletes to an empty copy."""

    position: Position
    load_until: Position | None = None


def encode_cursor(generation: str, cursor: Cursor) -> str:
    until = cursor.load_until
    raw = [CURSOR_FORMAT, generation, cursor.position.xid, cursor.position.seq]
    if until is not None:
        raw += [until.xid, until.seq]
    return base64.urlsafe_b64encode(orjson.dumps(raw)).rstrip(b"=").decode()


def decode_cursor(value: str, state: CaptureState) -> Cursor:
    """A cursor handed out by this capture, or 400 (not a cursor) / 410 (a cursor this feed can no longer
    continue: of an earlier capture, or older than a pruned tombstone it has not passed)."""
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        valid = isinstance(raw, list) and len(raw) in (4, 6) and raw[0] == CURSOR_FORMAT and isinstance(raw[1], str)
        valid = valid and all(isinstance(n, int) and not isinstance(n, bool) for n in raw[2:])
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise errors.CHANGES_CURSOR_INVALID.error(value=value[:40])
    if raw[1] != state.generation:
        raise errors.CHANGES_CURSOR_EXPIRED.error()
    cursor = Cursor(Position(raw[2], raw[3]), Position(raw[4], raw[5]) if len(raw) == 6 else None)
    if state.pruned_seq is not None:
        pruned = Position(state.pruned_xid or 0, state.pruned_seq)
        # A first load skips tombstones up to its start anyway; past that, a pruned one may have been missed.
        skipped = cursor.load_until is not None and not before(cursor.load_until, pruned)
        if before(cursor.position, pruned) and not skipped:
            raise errors.CHANGES_CURSOR_EXPIRED.error()
    return cursor


def before(a: Position, b: Position) -> bool:
    return (a.xid, a.seq) < (b.xid, b.seq)


def change_table(entity: EntitySnapshot, dialect: str) -> Table:
    """The change table as SQLAlchemy sees it, keyed like the entity's identifier column: one object per
    entity snapshot, so SQLAlchemy's compiled-statement cache serves every page after the first."""
    shape = ("change-table", dialect)
    found: Table | None = entity.read_statements.get(shape)
    if found is None:
        found = entity.read_statements.remember(shape, _change_table(entity, dialect))
    return found


def _change_table(entity: EntitySnapshot, dialect: str) -> Table:
    key = entity.identifier.column
    columns: list[Column[Any]] = [Column("k", key.type, primary_key=True), Column("seq", BigInteger)]
    if dialect == "postgresql":
        columns.append(Column("xid", XID8()))
    moment: TypeEngine[Any] = Float()
    if dialect == "postgresql":
        moment = DateTime(timezone=True)
    elif dialect == "mysql":
        moment = Numeric(17, 6)
    columns += [Column("deleted", Boolean), Column("changed_at", moment)]
    return Table(capture_names(entity.table.name).table, MetaData(), *columns)


@dataclass(frozen=True, slots=True)
class ChangePage:
    data: list[dict[str, Any]]
    cursor: str
    has_more: bool
    lag: float = 0.0  # seconds: the age of the last change handed out while more are pending (metrics)


def read_changes(conn: Connection, entity: EntitySnapshot, since: str | None, limit: int) -> ChangePage:
    """One page of ``entity``'s feed after ``since`` (None: from the beginning; ``now``: the head, no data).

    ``conn`` must be in autocommit mode (on PostgreSQL, READ COMMITTED does as well): each statement sees what
    was committed when it began, so MariaDB's horizon is taken before the page's snapshot (a writer that
    committed in between is seen, not skipped).
    """
    state = capture_state(conn, entity.table.name)
    if state is None or state.capture_version != CAPTURE_VERSION or state.key_column != entity.identifier.column.name:
        raise errors.CHANGES_NOT_INSTALLED.error(alias=entity.alias)
    dialect = conn.dialect.name
    changes = change_table(entity, dialect)
    # Taken once, before any page statement's snapshot: a writer that commits after it is seen, not skipped.
    horizon = _mariadb_horizon(conn) if dialect == "mysql" else None
    if since == HEAD:
        return ChangePage([], encode_cursor(state.generation, Cursor(_head(conn, changes, entity, horizon))), False)
    cursor = Cursor(START, _head(conn, changes, entity, horizon)) if not since else decode_cursor(since, state)
    rows = conn.execute(_page(changes, entity, dialect, horizon, cursor, limit)).all()
    last = cursor.position
    data = []
    identifier = entity.identifier.name
    at = 3 + entity.columns.index(entity.identifier.column)  # the live row's identifier: None when it is gone
    for row in rows:
        last = Position(row.xid if dialect == "postgresql" else 0, row.seq)
        values = row[3:-1]
        if row[at] is None:
            data.append({"op": "delete", "id": _render_key(entity, row.k)})
        else:
            item = entity.render_row(values)
            data.append({"op": "upsert", "id": item[identifier], "data": item})
    after = Cursor(last, cursor.load_until)
    more = bool(conn.execute(select(exists().where(*_pending(changes, dialect, after)))).scalar())
    lag = _age(rows[-1][-1], dialect) if more and rows else 0.0
    return ChangePage(data, encode_cursor(state.generation, after), more, lag)


UNIX_EPOCH_JULIAN_DAY = 2440587.5


def _age(changed_at: Any, dialect: str) -> float:
    """Seconds since a change was captured, from the capture table's clock value (a timestamp on PostgreSQL,
    Unix seconds on MariaDB, a Julian day on SQLite)."""
    if dialect == "postgresql":
        return time.time() - float(changed_at.timestamp())
    if dialect == "mysql":
        return time.time() - float(changed_at)
    return time.time() - (float(changed_at) - UNIX_EPOCH_JULIAN_DAY) * 86400


def _render_key(entity: EntitySnapshot, raw: Any) -> Any:
    for name, render in entity.renderers:
        if name == entity.identifier.name:
            return render(raw)
    return raw


def _after(changes: Table, dialect: str, position: Position) -> ColumnElement[bool]:
    if dialect == "postgresql":
        xid = cast(cast(literal(str(position.xid)), Text), XID8())
        return tuple_(changes.c.xid, changes.c.seq) > tuple_(xid, literal(position.seq))
    return changes.c.seq > position.seq


def _page(changes: Table, entity: EntitySnapshot, dialect: str, horizon: Any, cursor: Cursor, limit: int) -> Any:
    key = entity.identifier.column
    order: list[ColumnElement[Any]] = [changes.c.seq]
    if dialect == "postgresql":
        xid: ColumnElement[Any] = cast(cast(changes.c.xid, Text), BigInteger).label("xid")
        order = [changes.c.xid, changes.c.seq]
    else:
        xid = literal(0).label("xid")
    statement = (
        select(changes.c.k, xid, changes.c.seq, *selected(entity), changes.c.changed_at)
        .select_from(changes.outerjoin(entity.table, key == changes.c.k))
        .where(*_pending(changes, dialect, cursor), _final(changes, dialect, horizon))
        .order_by(*order)
        .limit(limit)
    )
    return statement


def _pending(changes: Table, dialect: str, cursor: Cursor) -> list[ColumnElement[bool]]:
    """The entries still to hand out after ``cursor`` (a first load's old tombstones are not)."""
    pending = [_after(changes, dialect, cursor.position)]
    if cursor.load_until is not None and before(cursor.position, cursor.load_until):
        pending.append(or_(changes.c.deleted == false(), _after(changes, dialect, cursor.load_until)))
    return pending


def _final(changes: Table, dialect: str, horizon: Any) -> ColumnElement[bool]:
    """Entries no running transaction can undercut any more (see the module docstring)."""
    if dialect == "postgresql":
        return changes.c.xid < func.pg_snapshot_xmin(func.pg_current_snapshot(), type_=XID8())
    if dialect == "mysql":
        later = select(func.min(changes.c.seq)).where(changes.c.changed_at >= horizon).scalar_subquery()
        return and_(changes.c.changed_at < horizon, func.coalesce(changes.c.seq < later, true()))
    return true()


def _mariadb_horizon(conn: Connection) -> Any:
    # InnoDB reports start times in the server's own time zone, which is not the session's (UTC for dxapi):
    # read them in it for this one statement.
    found = conn.execute(
        text(
            "SET STATEMENT time_zone = 'SYSTEM' FOR SELECT LEAST("
            "COALESCE((SELECT UNIX_TIMESTAMP(MIN(trx_started)) FROM information_schema.innodb_trx "
            "WHERE trx_rows_modified > 0), UNIX_TIMESTAMP(SYSDATE(6))), UNIX_TIMESTAMP(SYSDATE(6))"
            ") - :margin"
        ),
        {"margin": MARIADB_MARGIN_SECONDS},
    ).scalar()
    return found


def _head(conn: Connection, changes: Table, entity: EntitySnapshot, horizon: Any) -> Position:
    """The position after everything final now: nothing committed later can land at or before it."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        xmin = conn.execute(select(cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)))
        return Position(int(xmin.scalar_one()), -1)
    if dialect == "mysql":
        later = conn.execute(select(func.min(changes.c.seq)).where(changes.c.changed_at >= horizon)).scalar()
        if later is not None:
            return Position(0, later - 1)
        return Position(0, conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar_one())
    counter = select(dx_change_feed.c.last_seq).where(dx_change_feed.c.table_name == entity.table.name)
    return Position(0, conn.execute(counter).scalar_one())


async def changes_page(engine: AsyncEngine, entity: EntitySnapshot, since: str | None, limit: int) -> ChangePage:
    """:func:`read_changes` on its own autocommit connection, database failures catalogued (503 …).

    PostgreSQL keeps the engine's own mode: autocommit already (``db.reader``), or behind PgBouncer a READ
    COMMITTED transaction, whose statements each see what was committed when they began all the same."""
    async with database_errors(), engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return await conn.run_sync(lambda sync: read_changes(sync, entity, since, limit))
