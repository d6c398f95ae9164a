"""dxapi's own tables (prefix ``dx_``), created by ``dxapi init`` in the served database.

The configuration is data: one row per entity with its Spryker-format ``definition`` as JSON text (portable
across SQLite, PostgreSQL and MariaDB), one row per relation, a single version row bumped in the same
transaction as every change (workers compare it to notice changes), and an audit trail.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.compiler import DDLCompiler

metadata = MetaData()

dx_entity = Table(
    "dx_entity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_alias", String(255), nullable=False),
    Column("table_name", String(255), nullable=False),
    Column("is_active", Boolean, nullable=False, default=False),
    Column("definition", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(255), nullable=True),
    UniqueConstraint("table_alias", name="uq_dx_entity_alias"),
    UniqueConstraint("table_name", name="uq_dx_entity_table"),
)

# One field mapping per relation: Spryker stores a list but only ever uses its first element.
dx_relation = Table(
    "dx_relation",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("parent_entity_id", Integer, ForeignKey("dx_entity.id", ondelete="CASCADE"), nullable=False),
    Column("child_entity_id", Integer, ForeignKey("dx_entity.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("is_editable", Boolean, nullable=False, default=False),
    Column("parent_field", String(255), nullable=False),
    Column("child_field", String(255), nullable=False),
    UniqueConstraint("parent_entity_id", "name", name="uq_dx_relation_name"),
)

dx_config_version = Table(
    "dx_config_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
    Column("changed_at", DateTime, nullable=False),
)

dx_audit = Table(
    "dx_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(32), nullable=False),
    Column("table_alias", String(255), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
)


# --- principals (auth) ----------------------------------------------------------------------------------------
# Secrets are never stored: passwords, client secrets and API keys as argon2id hashes, refresh tokens as
# SHA-256 digests (they are 256-bit random values, so a fast hash is enough to make a stolen table useless).

dx_user = Table(
    "dx_user",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(255), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    # Tokens issued before this instant are refused (password, role or status changed): epoch milliseconds.
    Column("revoked_before", BigInteger, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("email", name="uq_dx_user_email"),
)

dx_client = Table(
    "dx_client",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("secret_hash", String(255), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("revoked_before", BigInteger, nullable=True),  # secret rotated: older tokens are refused
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # The client's own rate limit (`1200/minute`, `unlimited`); NULL: `DXAPI_RATE_LIMIT` applies (dxapi.limits).
    Column("rate_limit", String(64), nullable=True),
    UniqueConstraint("client_id", name="uq_dx_client_client_id"),
)

dx_api_key = Table(
    "dx_api_key",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("prefix", String(16), nullable=False),  # shown in lists and used to find the row; not secret
    Column("key_hash", String(255), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("expires_at", DateTime, nullable=True),
    Column("revoked_at", DateTime, nullable=True),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("prefix", name="uq_dx_api_key_prefix"),
)

dx_refresh_token = Table(
    "dx_refresh_token",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_digest", String(64), nullable=False),
    Column("family", String(64), nullable=False),
    Column("subject", String(80), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("used_at", DateTime, nullable=True),
    Column("revoked_at", DateTime, nullable=True),
    UniqueConstraint("token_digest", name="uq_dx_refresh_token_digest"),
    # Every refresh and every user token's check asks whether the family holds a revoked token.
    Index("ix_dx_refresh_token_family", "family"),
)

# Back-office sessions: the cookie carries a random id; only its digest is stored, with the CSRF token.
dx_session = Table(
    "dx_session",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("id_digest", String(64), nullable=False),
    Column("user_id", Integer, ForeignKey("dx_user.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("seen_at", DateTime, nullable=False),
    UniqueConstraint("id_digest", name="uq_dx_session_id_digest"),
)


# --- change feed (dxapi.feed) ---------------------------------------------------------------------------------
# One row per captured table: which column keys its changes, the capture's version (installed triggers older
# than `feed.capture.CAPTURE_VERSION` are reinstalled), the generation a cursor must carry (a new one each time
# capture is installed afresh, so cursors of an earlier capture answer 410), and the newest position whose
# tombstone was pruned (a cursor before it may have missed a delete: 410). `last_seq` is SQLite's sequence.
dx_change_feed = Table(
    "dx_change_feed",
    metadata,
    Column("table_name", String(255), primary_key=True),
    Column("key_column", String(255), nullable=False),
    Column("capture_version", Integer, nullable=False),
    Column("generation", String(32), nullable=False),
    Column("enabled_at", DateTime, nullable=False),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("pruned_xid", BigInteger, nullable=True),
    Column("pruned_seq", BigInteger, nullable=True),
)


# --- idempotency records (dxapi.idempotency) ------------------------------------------------------------------
# One row per principal and key: the first execution's answer, written in the transaction of its writes.
# `scope` is the SHA-256 of principal and key (a short fixed-width primary key on every backend);
# `fingerprint` the SHA-256 of the request it answered; `created_at` epoch milliseconds, for pruning.
dx_idempotency = Table(
    "dx_idempotency",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_dx_idempotency_created_at", "created_at"),
)


# --- rate-limit counters (dxapi.limits.counters) ----------------------------------------------------------------
# One row per counted key (a principal, a principal on an entity, a /token or login identity or address): the
# requests counted in its current window and when that window ends (epoch milliseconds). A window starts with
# the first request after the last one ended. Rows past `expires_at` are dead and pruned by the pruning loop.
dx_rate_counter = Table(
    "dx_rate_counter",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("hits", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
# Counters are disposable: losing them in a PostgreSQL crash only resets some windows early, so they skip the
# write-ahead log (every counted request writes this table; logged, each write would also be a WAL record).
UNLOGGED = frozenset({dx_rate_counter.name})


@compiles(CreateTable, "postgresql")
def _create_unlogged(create: CreateTable, compiler: DDLCompiler, **kw: object) -> str:
    text: str = compiler.visit_create_table(create, **kw)  # type: ignore[no-untyped-call]
    if create.element.name in UNLOGGED:
        return text.replace("CREATE TABLE", "CREATE UNLOGGED TABLE", 1)
    return text
