"""Capture: the triggers that record every change to a feed-enabled table, whoever makes it.

Per captured table dxapi keeps one change table ``dx_changes_<table>`` with **one entry per key** (the
identifier's value): the position of the key's latest change, whether the row is gone (a tombstone), and
when it changed. Storage is rows + recent tombstones, never one entry per change; the feed reads the row's
state at read time by joining the live table, so an entry needs no copy of the data.

Positions come from a sequence taken in the trigger, that is before commit, so a transaction can commit with
a smaller position than one already committed. ``feed.read`` only hands out positions that can no longer be
overtaken; what each backend stores for that:

- PostgreSQL: the writing transaction's id (``pg_current_xact_id()``) before the sequence number; positions
  order by ``(xid, seq)``. Statement-level triggers with transition tables: one INSERT … SELECT per statement.
- MariaDB: a ``SEQUENCE`` number and the moment it was taken (``SYSDATE(6)`` as epoch seconds, so another
  application's session time zone cannot shift it). Row triggers (MariaDB has no others).
- SQLite: one writer at a time, so a counter in ``dx_change_feed`` (``last_seq``) is commit order already.

Installing is idempotent and fills the change table with every existing row, so a feed starts with the
whole table. PostgreSQL installs in one transaction that holds writers off until the backfill is done;
MariaDB's DDL commits on its own, so its triggers go in first and the backfill (``INSERT IGNORE``) keeps
whatever a trigger recorded meanwhile.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Column, Connection, MetaData, Table, delete, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

from dxapi.db import unbounded_statements
from dxapi.registry.model import EntityConfig
from dxapi.registry.tables import dx_change_feed

# Bump when the triggers or change tables change shape: `config check` reports older captures as outdated
# and installing replaces them (a new generation: cursors of the old capture answer 410).
CAPTURE_VERSION = 1


@dataclass(frozen=True, slots=True)
class CaptureNames:
    table: str  # the change table
    sequence: str
    position_index: str
    tombstone_index: str
    trigger_stem: str  # triggers and PostgreSQL functions: stem + _ins/_upd/_del/_trunc


def capture_names(table_name: str) -> CaptureNames:
    """Names derived from the captured table's, short enough for every backend (63 characters on PostgreSQL,
    64 on MariaDB); a long table name is cut and made unique again with a digest."""
    stem = f"dx_changes_{table_name}"
    if len(stem) > 48:
        stem = f"dx_changes_{table_name[:28]}_{hashlib.sha256(table_name.encode()).hexdigest()[:8]}"
    return CaptureNames(stem, stem + "_seq", stem + "_pos", stem + "_gone", stem)


@dataclass(frozen=True, slots=True)
class CaptureState:
    key_column: str
    capture_version: int
    generation: str
    pruned_xid: int | None
    pruned_seq: int | None


def capture_state(conn: Connection, table_name: str) -> CaptureState | None:
    row = conn.execute(select(dx_change_feed).where(dx_change_feed.c.table_name == table_name)).mappings().first()
    if row is None:
        return None
    return CaptureState(
        row["key_column"], row["capture_version"], row["generation"], row["pruned_xid"], row["pruned_seq"]
    )


def capture_problem(conn: Connection, table_name: str, key_column: str) -> str | None:
    """Why the capture of ``table_name`` cannot serve its feed, or None (for `config check`)."""
    problem = _installed_problem(conn, table_name, key_column)
    if problem is None and conn.dialect.name == "mysql":
        try:  # feed.read's horizon needs the list of running transactions
            conn.execute(text("SELECT trx_id FROM information_schema.innodb_trx LIMIT 0"))
        except DBAPIError:
            return "reading it needs the PROCESS privilege (information_schema.innodb_trx)"
    return problem


def _installed_problem(conn: Connection, table_name: str, key_column: str) -> str | None:
    """Why the installed capture is not what this version installs, or None."""
    state = capture_state(conn, table_name)
    if state is None:
        return "its change capture is not installed (run `dxapi init`)"
    if state.key_column != key_column:
        return f"its change capture keys on `{state.key_column}`, not the identifier `{key_column}` (run `dxapi init`)"
    if state.capture_version != CAPTURE_VERSION:
        return f"its change capture is outdated (version {state.capture_version}; run `dxapi init`)"
    names = capture_names(table_name)
    if not inspect(conn).has_table(names.table):
        return f"its change table `{names.table}` is missing (run `dxapi init`)"
    missing = _missing_triggers(conn, table_name, names)
    if missing:
        return f"its capture trigger(s) {', '.join(missing)} are missing (run `dxapi init`)"
    return None


def install_capture(conn: Connection, table: Table, key_column: str) -> bool:
    """Make ``table``'s capture current: install it, or replace one of another version or key. Returns
    whether anything was (re)installed. Runs in the caller's transaction (PostgreSQL: all of it atomic)."""
    names = capture_names(table.name)
    if _installed_problem(conn, table.name, key_column) is None:
        return False
    remove_capture(conn, table.name)
    conn.execute(
        insert(dx_change_feed).values(
            table_name=table.name,
            key_column=key_column,
            capture_version=CAPTURE_VERSION,
            generation=secrets.token_hex(8),
            enabled_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
            last_seq=0,
        )
    )
    key = table.c[key_column]
    dialect = conn.dialect.name
    if dialect == "postgresql":
        _install_postgresql(conn, table, key, names)
    elif dialect == "mysql":
        _install_mariadb(conn, table, key, names)
    else:
        _install_sqlite(conn, table, key, names)
    return True


def remove_capture(conn: Connection, table_name: str) -> None:
    """Drop triggers, functions, sequence and change table of ``table_name``, if any (idempotent)."""
    names = capture_names(table_name)
    q = conn.dialect.identifier_preparer.quote
    dialect = conn.dialect.name
    for suffix in ("_ins", "_upd", "_del", "_trunc"):
        trigger = q(names.trigger_stem + suffix)
        if dialect == "postgresql":
            if inspect(conn).has_table(table_name):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger} ON {q(table_name)}")
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {trigger}()")
        elif suffix != "_trunc":
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {q(names.table)}")
    if dialect in ("postgresql", "mysql"):
        conn.exec_driver_sql(f"DROP SEQUENCE IF EXISTS {q(names.sequence)}")
    conn.execute(delete(dx_change_feed).where(dx_change_feed.c.table_name == table_name))


def _missing_triggers(conn: Connection, table_name: str, names: CaptureNames) -> list[str]:
    wanted = [names.trigger_stem + s for s in ("_ins", "_upd", "_del")]
    dialect = conn.dialect.name
    if dialect == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:t) AND NOT tgisinternal"
        table_name = conn.dialect.identifier_preparer.quote(table_name)
    elif dialect == "mysql":
        query = (
            "SELECT trigger_name FROM information_schema.triggers "
            "WHERE event_object_schema = DATABASE() AND event_object_table = :t"
        )
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"
    found = set(conn.execute(text(query), {"t": table_name}).scalars())
    return [name for name in wanted if name not in found]


def _key_type(conn: Connection, key: Column[object]) -> str:
    return key.type.compile(dialect=conn.dialect)


# Names in the DDL below are dxapi's own (derived from a configured, reflected table name and quoted);
# no request value ever reaches them.


def _install_postgresql(conn: Connection, table: Table, key: Column[object], names: CaptureNames) -> None:
    q = conn.dialect.identifier_preparer.quote
    c, t, k, seq = q(names.table), q(table.name), q(key.name), q(names.sequence)
    conn.exec_driver_sql(
        f"CREATE TABLE {c} (k {_key_type(conn, key)} PRIMARY KEY, seq bigint NOT NULL, xid xid8 NOT NULL, "
        "deleted boolean NOT NULL, changed_at timestamptz NOT NULL)"
    )
    conn.exec_driver_sql(f"CREATE INDEX {q(names.position_index)} ON {c} (xid, seq)")
    conn.exec_driver_sql(f"CREATE INDEX {q(names.tombstone_index)} ON {c} (changed_at) WHERE deleted")
    conn.exec_driver_sql(f"CREATE SEQUENCE {seq}")
    # Another application's role writes the change table through these functions without grants of its own;
    # a fixed search path keeps a definer's function from resolving names in the caller's schemas.
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    definer = f"SECURITY DEFINER SET search_path = {q(schema)}, pg_temp"
    record = (
        f"INSERT INTO {c} (k, seq, xid, deleted, changed_at) "
        f"SELECT k, nextval('{seq}'), pg_current_xact_id(), gone, clock_timestamp() FROM ({{rows}}) AS changed "
        "ON CONFLICT (k) DO UPDATE SET seq = EXCLUDED.seq, xid = EXCLUDED.xid, deleted = EXCLUDED.deleted, "
        "changed_at = EXCLUDED.changed_at"
    )
    bodies = {
        # A key an UPDATE moved away from is gone, unless another row of the same statement took it.
        "_upd": (
            "UPDATE",
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
            f"SELECT {k} AS k, false AS gone FROM new_rows UNION ALL "
            f"SELECT o.{k}, true FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.{k} = o.{k})",
        ),
        "_ins": ("INSERT", "REFERENCING NEW TABLE AS new_rows", f"SELECT {k} AS k, false AS gone FROM new_rows"),
        "_del": ("DELETE", "REFERENCING OLD TABLE AS old_rows", f"SELECT {k} AS k, true AS gone FROM old_rows"),
    }
    for suffix, (event, referencing, rows) in bodies.items():
        function = q(names.trigger_stem + suffix)
        conn.exec_driver_sql(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql {definer} AS $$ BEGIN "
            f"{record.format(rows=rows)}; RETURN NULL; END $$"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER {function} AFTER {event} ON {t} {referencing} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {function}()"
        )
    # TRUNCATE fires no row or transition-table trigger: every live key becomes a tombstone.
    truncate = q(names.trigger_stem + "_trunc")
    conn.exec_driver_sql(
        f"CREATE FUNCTION {truncate}() RETURNS trigger LANGUAGE plpgsql {definer} AS $$ BEGIN "
        f"UPDATE {c} SET seq = nextval('{seq}'), xid = pg_current_xact_id(), deleted = true, "
        "changed_at = clock_timestamp() WHERE NOT deleted; RETURN NULL; END $$"
    )
    conn.exec_driver_sql(
        f"CREATE TRIGGER {truncate} AFTER TRUNCATE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {truncate}()"
    )
    conn.exec_driver_sql(record.format(rows=f"SELECT {k} AS k, false AS gone FROM {t}"))


def _install_mariadb(conn: Connection, table: Table, key: Column[object], names: CaptureNames) -> None:
    q = conn.dialect.identifier_preparer.quote
    c, t, k, seq = q(names.table), q(table.name), q(key.name), q(names.sequence)
    conn.exec_driver_sql(
        f"CREATE TABLE {c} (k {_key_type(conn, key)} NOT NULL PRIMARY KEY, seq BIGINT NOT NULL, "
        "deleted BOOL NOT NULL, changed_at DECIMAL(17,6) NOT NULL, "
        f"KEY {q(names.position_index)} (seq), KEY {q(names.tombstone_index)} (changed_at)) ENGINE=InnoDB"
    )
    conn.exec_driver_sql(f"CREATE SEQUENCE {seq}")

    def record(value: str, gone: int) -> str:
        # SYSDATE(6), not NOW(6): the moment the number is taken, not the start of a long statement.
        return (
            f"INSERT INTO {c} (k, seq, deleted, changed_at) "
            f"VALUES ({value}, NEXT VALUE FOR {seq}, {gone}, UNIX_TIMESTAMP(SYSDATE(6))) "
            "ON DUPLICATE KEY UPDATE seq = VALUES(seq), deleted = VALUES(deleted), changed_at = VALUES(changed_at)"
        )

    stem = names.trigger_stem
    conn.exec_driver_sql(f"CREATE TRIGGER {q(stem + '_ins')} AFTER INSERT ON {t} FOR EACH ROW {record('NEW.' + k, 0)}")
    conn.exec_driver_sql(
        f"CREATE TRIGGER {q(stem + '_upd')} AFTER UPDATE ON {t} FOR EACH ROW BEGIN "
        f"IF NOT (OLD.{k} <=> NEW.{k}) THEN {record('OLD.' + k, 1)}; END IF; {record('NEW.' + k, 0)}; END"
    )
    conn.exec_driver_sql(f"CREATE TRIGGER {q(stem + '_del')} AFTER DELETE ON {t} FOR EACH ROW {record('OLD.' + k, 1)}")
    conn.exec_driver_sql(
        f"INSERT IGNORE INTO {c} (k, seq, deleted, changed_at) "
        f"SELECT {k}, NEXT VALUE FOR {seq}, 0, UNIX_TIMESTAMP(SYSDATE(6)) FROM {t}"
    )


def _install_sqlite(conn: Connection, table: Table, key: Column[object], names: CaptureNames) -> None:
    q = conn.dialect.identifier_preparer.quote
    c, t, k = q(names.table), q(table.name), q(key.name)
    conn.exec_driver_sql(
        f"CREATE TABLE {c} (k {_key_type(conn, key)} NOT NULL PRIMARY KEY, seq INTEGER NOT NULL, "
        "deleted INTEGER NOT NULL, changed_at REAL NOT NULL)"
    )
    conn.exec_driver_sql(f"CREATE INDEX {q(names.position_index)} ON {c} (seq)")
    conn.exec_driver_sql(f"CREATE INDEX {q(names.tombstone_index)} ON {c} (deleted, changed_at)")
    # Table names are quoted as string literals inside the trigger body; a quote in one is doubled.
    literal = "'" + table.name.replace("'", "''") + "'"

    def record(value: str, gone: int, when: str = "true") -> str:
        # SQLite triggers have no IF: `when` guards both statements (the old key of an UPDATE that moved it).
        return (
            f"UPDATE dx_change_feed SET last_seq = last_seq + 1 WHERE {when} AND table_name = {literal}; "
            f"INSERT INTO {c} (k, seq, deleted, changed_at) SELECT {value}, "
            f"(SELECT last_seq FROM dx_change_feed WHERE table_name = {literal}), {gone}, julianday('now') "
            f"WHERE {when} ON CONFLICT (k) DO UPDATE SET seq = excluded.seq, deleted = excluded.deleted, "
            "changed_at = excluded.changed_at;"
        )

    stem = names.trigger_stem
    conn.exec_driver_sql(
        f"CREATE TRIGGER {q(stem + '_ins')} AFTER INSERT ON {t} FOR EACH ROW BEGIN {record('NEW.' + k, 0)} END"
    )
    conn.exec_driver_sql(
        f"CREATE TRIGGER {q(stem + '_upd')} AFTER UPDATE ON {t} FOR EACH ROW BEGIN "
        f"{record('OLD.' + k, 1, f'OLD.{k} IS NOT NEW.{k}')} {record('NEW.' + k, 0)} END"
    )
    conn.exec_driver_sql(
        f"CREATE TRIGGER {q(stem + '_del')} AFTER DELETE ON {t} FOR EACH ROW BEGIN {record('OLD.' + k, 1)} END"
    )
    conn.exec_driver_sql(
        f"INSERT INTO {c} (k, seq, deleted, changed_at) "
        f"SELECT {k}, row_number() OVER (ORDER BY {k}), 0, julianday('now') FROM {t} WHERE true "
        "ON CONFLICT (k) DO NOTHING"
    )
    conn.exec_driver_sql(
        f"UPDATE dx_change_feed SET last_seq = (SELECT coalesce(max(seq), 0) FROM {c}) WHERE table_name = {literal}"
    )


def sync_captures(conn: Connection, configs: Iterable[EntityConfig]) -> list[str]:
    """Make the installed captures match ``configs`` (the whole stored configuration): install or refresh
    those of feed-enabled entities, remove the others. Returns the tables (re)installed."""
    wanted = {c.table_name: c.identifier for c in configs if c.change_feed}
    if not inspect(conn).has_table(dx_change_feed.name):  # a database `dxapi init` of an older version made
        if not wanted:
            return []
        dx_change_feed.create(conn)
    for name in set(conn.execute(select(dx_change_feed.c.table_name)).scalars()) - wanted.keys():
        remove_capture(conn, name)
    installed = []
    for name, key in sorted(wanted.items()):
        if not inspect(conn).has_table(name):
            continue  # a configured table that is gone: its entity is unavailable, `config check` says so
        table = Table(name, MetaData(), autoload_with=conn)
        with unbounded_statements(conn):  # the first entries copy every key of the table
            if install_capture(conn, table, key):
                installed.append(name)
    return installed


def capture_problems(conn: Connection, configs: Iterable[EntityConfig]) -> dict[str, list[str]]:
    """For `config check`: per alias, what is wrong with the capture its definition asks for."""
    found: dict[str, list[str]] = {}
    for config in configs:
        if config.change_feed:
            problem = capture_problem(conn, config.table_name, config.identifier)
            if problem is not None:
                found[config.alias] = [f"`{config.alias}`: change feed: {problem}"]
    return found
