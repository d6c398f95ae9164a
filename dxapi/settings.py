"""Settings: every knob dxapi has, read from the environment as ``DXAPI_<NAME>``.

Fed by the environment (and CLI overrides); feeds ``db``, ``app`` and the CLI. ``docs/settings.md`` documents
every field; ``tests/unit/test_docs.py`` checks that nothing is missing there.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dxapi.limits.rates import parse_rate


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DXAPI_", frozen=True, extra="ignore")

    database_url: str = Field(
        "sqlite:///dxapi.db",
        description="SQLAlchemy URL of the database to serve; dxapi's own `dx_*` tables live there too.",
    )
    api_prefix: str = Field("/dynamic-entity", description="URL prefix of the generated endpoints.")
    default_page_limit: int = Field(1000, ge=1, description="Rows per page when `page[limit]` is absent.")
    max_page_limit: int = Field(10_000, ge=1, description="Largest `page[limit]` accepted.")
    max_include_depth: int = Field(5, ge=1, description="Longest `include` chain (relations deep).")
    max_filter_values: int = Field(
        1000, ge=1, description="Most values in one `in` filter, and most filters in one request."
    )
    count_exact_below: int = Field(
        10_000,
        ge=0,
        description="`Prefer: count=estimated` counts exactly when the planner estimates fewer matching rows.",
    )
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1, description="Largest request body accepted, in bytes.")
    max_batch_items: int = Field(10_000, ge=1, description="Most items in one write request.")
    admin_max_import_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1,
        description="Largest configuration file the back office accepts for import, in bytes (larger: 413, "
        "unread). Other back-office forms accept at most 1 MiB.",
    )
    deny_tables: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated table names that may never be configured, on top of the built-in "
        "deny-list (`dx_*` and the database's catalogs).",
    )
    reload_interval: float = Field(
        0.25, gt=0, description="Seconds between two checks of the configuration version by a worker."
    )
    change_retention: float = Field(
        7 * 86400,
        gt=0,
        description="Seconds a change feed keeps tombstones of deleted rows; a cursor older than the newest "
        "pruned one answers 410 (resync from the start).",
    )
    change_prune_interval: float = Field(
        300,
        gt=0,
        description="Seconds between two prunings by a worker: old tombstones of the change feeds and expired "
        "idempotency records.",
    )
    idempotency_ttl: float = Field(
        86400,
        gt=0,
        description="Seconds the answer of a request sent with `Idempotency-Key` is kept for its retries; then "
        "the key may be used again.",
    )
    pool_size: int = Field(10, ge=1, description="Database connections kept open per worker.")
    pool_timeout: float = Field(
        3.0, gt=0, description="Seconds a request waits for a free connection before answering 503."
    )
    connect_timeout: float = Field(
        3.0, gt=0, description="Seconds to open a new database connection before giving up (503)."
    )
    statement_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds one SQL statement may run, enforced by the database (PostgreSQL `statement_timeout`, "
        "MariaDB `max_statement_time`, SQLite an interrupt): then 503 `5005` and the transaction rolls back.",
    )
    lock_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds a statement waits for a row or table lock at most, then 409 `3005`: PostgreSQL "
        "`lock_timeout` (half of it per wait: a writer queued behind another waits twice), MariaDB "
        "`innodb_lock_wait_timeout` (whole seconds), SQLite's busy timeout.",
    )
    control_pool_size: int = Field(
        2,
        ge=1,
        description="Database connections per worker kept apart for readiness, configuration reloads and "
        "principal checks, so a busy request pool cannot fail them.",
    )
    shutdown_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a stopping worker lets running requests finish; what still runs then is answered "
        "503 `5008`.",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a complete request head (from the connect, or from the first byte "
        "of a next request on a keep-alive connection); then the connection is closed without an answer.",
    )
    body_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client may pause while sending a request body (every chunk restarts the clock); "
        "then the connection is closed.",
    )
    keepalive_timeout: float = Field(
        5.0, gt=0, description="Seconds an idle keep-alive connection stays open between requests."
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Concurrent connections (or running requests) per worker; a request beyond them is answered "
        "503 `5009` at once.",
    )
    environment: str = Field(
        "development",
        description="`production` refuses to start unless a signing key is configured explicitly "
        "(`DXAPI_JWT_SECRET` or `DXAPI_JWT_PRIVATE_KEY_FILE`).",
    )
    jwt_algorithm: str = Field("HS256", description="The one JWT algorithm accepted: HS256, RS256 or EdDSA.")
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 signing secret (at least 32 bytes). Unset: the file `DXAPI_JWT_SECRET_FILE`."
    )
    jwt_secret_file: str = Field(
        ".dxapi/jwt-secret", description="Where `dxapi init` stores a generated HS256 secret (development)."
    )
    jwt_previous_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated HS256 secrets still accepted for verification during a key rotation.",
    )
    jwt_private_key_file: str | None = Field(
        None,
        description="PEM private key for RS256/EdDSA signing; its public key is served at `/.well-known/jwks.json`.",
    )
    jwt_public_key_files: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated PEM public keys still accepted for verification during a key rotation.",
    )
    jwt_issuer: str = Field("dxapi", description="`iss` of issued tokens, required on every token.")
    jwt_audience: str = Field("dxapi", description="`aud` of issued tokens, required on every token.")
    jwt_leeway: int = Field(30, ge=0, le=300, description="Seconds of clock skew tolerated on `exp`/`nbf`/`iat`.")
    access_token_ttl: int = Field(3600, ge=60, description="Lifetime of access tokens, in seconds.")
    refresh_token_ttl: int = Field(30 * 86400, ge=60, description="Lifetime of refresh tokens, in seconds.")
    password_grant: bool = Field(
        True, description="Accept `grant_type=password` for back-office users (Spryker compatible)."
    )
    token_attempts_per_minute: int = Field(
        10,
        ge=1,
        description="`/token` attempts per minute per client or user, counted for all workers and hosts together "
        "(then 429); an attempt with the right secret or password is not counted.",
    )
    token_attempts_per_address: int = Field(
        30,
        ge=1,
        description="`/token` attempts per minute per source address, counted for all workers and hosts together "
        "(then 429); the same limit applies to failed API-key checks per source address (then 429 `4029`).",
    )
    rate_limit: str | None = Field(
        None,
        description="Requests each principal (OAuth client, user, API key) may make to the data endpoints, e.g. "
        "`600/minute`, `10/second`, `5000/day` or `100/30s`; then 429 `4291` with `Retry-After`. Counted for all "
        "workers and hosts together (in the database, or in Redis with `DXAPI_REDIS_URL`). A client's own limit "
        "(`dxapi client rate-limit`, the admin page) replaces it. Unset: no limit.",
    )
    rate_limit_per_entity: str | None = Field(
        None,
        description="Requests each principal may make to one entity (alias), in the same form as "
        "`DXAPI_RATE_LIMIT`, counted on top of it. Unset: no limit per entity.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (`redis://127.0.0.1:6379/0`) of the store of rate-limit counters and of the "
        "`/token`, API-key and admin-login throttles. Unset: they are counted in the database (table "
        "`dx_rate_counter`). If the store fails, requests are admitted uncounted and a warning is logged.",
    )
    redis_prefix: str = Field("dxapi:", description="Prefix of every key dxapi writes in Redis.")
    principal_cache_seconds: float = Field(
        2.0, ge=0, le=5, description="How long a worker trusts that a client, user or key is still active."
    )
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or networks (CIDR) of TLS-terminating reverse proxies whose "
        "`X-Forwarded-Proto` is believed; a request they forward as `https` gets the `__Host-` `Secure` "
        "back-office cookie. Empty: the header is ignored from every peer.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins (`https://app.example.com`, or `*`) whose browser scripts may call "
        "the API (CORS). Empty: no CORS headers at all, and browsers refuse cross-origin calls.",
    )
    gzip_min_bytes: int = Field(
        1400,
        ge=0,
        description="Answers of at least this many bytes are sent gzip-compressed to a client that accepts it "
        "(`Accept-Encoding: gzip`), streamed exports always; smaller ones as they are. 0: never compress.",
    )
    read_replica_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="PostgreSQL only: comma-separated URLs of streaming replicas that answer reads (pages, rows, "
        "includes, exports, the change feed), in turn among the healthy ones; writes and everything inside them "
        "stay on `DXAPI_DATABASE_URL`. Empty: every read goes to the primary.",
    )
    replica_wait: float = Field(
        0.5,
        ge=0,
        description="Seconds a read waits for a replica to replay its principal's last write (read-your-writes, "
        "tracked per worker) before the primary answers it instead.",
    )
    replica_max_lag: float = Field(
        10.0,
        gt=0,
        description="Seconds a replica may fall behind the primary (since the primary's WAL was first seen past "
        "what the replica has replayed, both polled every 0.1 s) before it is taken out; it returns when it "
        "catches up.",
    )
    pgbouncer: bool = Field(
        False,
        description="PostgreSQL only: the database URLs name a PgBouncer in transaction mode. Statements are not "
        "kept prepared, the timeouts are set per transaction (`SET LOCAL`), and the configuration listener needs "
        "`DXAPI_LISTEN_URL` (else changes arrive by polling).",
    )
    listen_url: str | None = Field(
        None,
        description="PostgreSQL only: a direct URL of the primary used for nothing but `LISTEN` (configuration "
        "changes wake workers at once). Unset: `DXAPI_DATABASE_URL`, or polling only with `DXAPI_PGBOUNCER`.",
    )
    host: str = Field("127.0.0.1", description="Address `dxapi serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `dxapi serve` listens on.")
    workers: int = Field(1, ge=1, description="Worker processes started by `dxapi serve`.")
    log_level: str = Field("info", description="Log level of the server (`debug`, `info`, `warning`, …).")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text`: one `LEVEL time logger: message` line per record. `json`: one JSON object per line, "
        "and an access log line per request on the logger `dxapi.access` (time, request id, principal, entity, "
        "method, path, status, duration, rows).",
    )
    metrics: bool = Field(
        False,
        description="Serve Prometheus metrics at `GET /metrics` (requests, latency, rows, batch sizes, pools, "
        "configuration reloads, change-feed lag, rate-limit rejections), summed over every worker.",
    )
    metrics_token: SecretStr | None = Field(
        None, description="When set, `/metrics` requires `Authorization: Bearer <this token>` (else 401 `4011`)."
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve `/metrics` on this port of `DXAPI_HOST` instead of the API's port (`dxapi serve` "
        "only; the API's port then answers 404 there).",
    )

    @field_validator(
        "deny_tables",
        "jwt_previous_secrets",
        "jwt_public_key_files",
        "trusted_proxies",
        "cors_origins",
        "read_replica_urls",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rate_limit", "rate_limit_per_entity")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_rate(value)  # a bad rate stops the start, with what is accepted
        return value.strip()

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.default_page_limit > self.max_page_limit:
            raise ValueError("DXAPI_DEFAULT_PAGE_LIMIT must not exceed DXAPI_MAX_PAGE_LIMIT")
        self._check_postgresql_only()
        return self

    def _check_postgresql_only(self) -> None:
        """Replicas, PgBouncer and the listener are PostgreSQL's: refused at start-up on the other backends."""
        on_postgresql = _is_postgresql(self.database_url)
        wanted = [
            name
            for name, value in (
                ("DXAPI_READ_REPLICA_URLS", self.read_replica_urls),
                ("DXAPI_PGBOUNCER", self.pgbouncer),
                ("DXAPI_LISTEN_URL", self.listen_url),
            )
            if value
        ]
        if wanted and not on_postgresql:
            raise ValueError(f"{', '.join(wanted)}: PostgreSQL only, and DXAPI_DATABASE_URL is not a PostgreSQL URL")
        for url in [*self.read_replica_urls, *([self.listen_url] if self.listen_url else [])]:
            if not _is_postgresql(url):
                raise ValueError("DXAPI_READ_REPLICA_URLS and DXAPI_LISTEN_URL take PostgreSQL URLs only")


def _is_postgresql(url: str) -> bool:
    """``postgresql://…`` or ``postgresql+driver://…``, read without parsing the rest."""
    return url.split(":", 1)[0].split("+", 1)[0] == "postgresql"
