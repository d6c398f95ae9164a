"""Accounts: the users, OAuth clients and API keys dxapi knows, and the refresh-token families of users.

Fed by the CLI and the back office (create, change, revoke), by ``oauth`` (password and client checks, refresh
families) and by ``principals`` (the state of a subject or an API key behind a request); feeds the ``dx_user``,
``dx_client``, ``dx_api_key`` and ``dx_refresh_token`` tables. Secrets are argon2 hashes made on the hashing pool
(``passwords``); a secret is shown once, when it is created. Changing a user (password, role, status) or
rotating a client's secret sets ``revoked_before``, which ends every token issued earlier.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi.auth.passwords import digest, hash_secret_async, new_secret, verify_secret_async
from dxapi.auth.scopes import ROLES, Principal
from dxapi.registry.tables import dx_api_key, dx_client, dx_refresh_token, dx_user

API_KEY_PREFIX = "dxk"
CLIENT_ID_PREFIX = "dxc"


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    active: bool
    allowed: frozenset[str]  # what the subject may hold now (role, client scopes)
    revoked_before_ms: int  # tokens issued earlier are refused (0: none)
    rate_limit: str | None = None  # a client's own rate limit (dx_client.rate_limit); None: the default


INACTIVE = SubjectStatus(False, frozenset(), 0)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """The row of an API key."""

    prefix: str
    key_hash: str
    scopes: frozenset[str]
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ProvenKey:
    """An API key argon2 has matched against ``key_hash``, and its row's state when last read."""

    prefix: str
    key_hash: str
    principal: Principal | None  # None: revoked
    expires_at: dt.datetime | None
    checked_at: float  # time.monotonic() of the last read of the row

    def current(self) -> Principal | None:
        if self.expires_at is not None and self.expires_at <= _now():
            return None
        return self.principal


def proof_of(row: StoredKey) -> ProvenKey:
    """The proof of a key whose row argon2 has just matched, with the row's state as read now."""
    principal = None if row.revoked_at is not None else Principal(f"apikey:{row.prefix}", row.scopes)
    return ProvenKey(row.prefix, row.key_hash, principal, row.expires_at, time.monotonic())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


async def subject_status(engine: AsyncEngine, subject: str) -> SubjectStatus:
    kind, _, ref = subject.partition(":")
    async with engine.connect() as conn:
        if kind == "client":
            client = (
                await conn.execute(
                    select(
                        dx_client.c.is_active, dx_client.c.scopes, dx_client.c.revoked_before, dx_client.c.rate_limit
                    ).where(dx_client.c.client_id == ref)
                )
            ).first()
            if client is not None:
                scopes = frozenset(str(client.scopes).split())
                return SubjectStatus(bool(client.is_active), scopes, client.revoked_before or 0, client.rate_limit)
        if kind == "user" and ref.isdigit():
            row = (
                await conn.execute(
                    select(dx_user.c.is_active, dx_user.c.role, dx_user.c.revoked_before).where(
                        dx_user.c.id == int(ref)
                    )
                )
            ).first()
            if row is not None:
                allowed = frozenset(ROLES.get(str(row.role), "").split())
                return SubjectStatus(bool(row.is_active), allowed, row.revoked_before or 0)
    return INACTIVE


def _now_ms() -> int:
    return int(time.time() * 1000)


async def add_user(engine: AsyncEngine, email: str, password: str, role: str) -> int:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 12:
        raise ValueError("the password must be at least 12 characters long")
    now = _now()
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(dx_user).values(
                email=email.lower(),
                password_hash=await hash_secret_async(password),
                role=role,
                is_active=True,
                created_at=now,
                updated_at=now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def set_user(engine: AsyncEngine, email: str, **values: Any) -> bool:
    """Change a user; a new password, role or status also ends every token and refresh token issued before."""
    if "password" in values:
        values["password_hash"] = await hash_secret_async(values.pop("password"))
    async with engine.begin() as conn:
        result = await conn.execute(
            update(dx_user)
            .where(dx_user.c.email == email.lower())
            .values(updated_at=_now(), revoked_before=_now_ms(), **values)
        )
        found = (await conn.execute(select(dx_user.c.id).where(dx_user.c.email == email.lower()))).first()
        if found is not None:
            await conn.execute(
                update(dx_refresh_token)
                .where(dx_refresh_token.c.subject == f"user:{found.id}", dx_refresh_token.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
        return bool(result.rowcount)


async def check_password(engine: AsyncEngine, email: str, password: str) -> tuple[int, str] | None:
    """(user id, role) for the right password of an active user; None otherwise, in the same time."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(dx_user.c.id, dx_user.c.password_hash, dx_user.c.role, dx_user.c.is_active).where(
                    dx_user.c.email == email.lower()
                )
            )
        ).first()
    ok = await verify_secret_async(row.password_hash if row else None, password)
    if row is None or not ok or not row.is_active:
        return None
    return int(row.id), str(row.role)


async def add_client(
    engine: AsyncEngine, name: str, scopes: frozenset[str], rate_limit: str | None = None
) -> tuple[str, str]:
    """Create an OAuth client; return (client_id, client_secret) — the secret is never shown again.

    ``rate_limit``: its own limit as ``rates.parse_override`` returns it (None: ``DXAPI_RATE_LIMIT``)."""
    client_id = new_secret(CLIENT_ID_PREFIX, 12)
    secret = new_secret("dxs")
    secret_hash = await hash_secret_async(secret)
    now = _now()
    async with engine.begin() as conn:
        await conn.execute(
            insert(dx_client).values(
                client_id=client_id,
                name=name,
                secret_hash=secret_hash,
                scopes=" ".join(sorted(scopes)),
                rate_limit=rate_limit,
                is_active=True,
                created_at=now,
                updated_at=now,
            )
        )
    return client_id, secret


async def set_client(engine: AsyncEngine, client_id: str, **values: Any) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(dx_client).where(dx_client.c.client_id == client_id).values(updated_at=_now(), **values)
        )
        return bool(result.rowcount)


async def rotate_client_secret(engine: AsyncEngine, client_id: str) -> str | None:
    """A new secret; tokens issued with the old one stop working too (a leaked secret may have made them)."""
    secret = new_secret("dxs")
    changed = await set_client(engine, client_id, secret_hash=await hash_secret_async(secret), revoked_before=_now_ms())
    return secret if changed else None


PROVEN_SECRETS = 10_000  # client secrets a worker remembers having verified


@dataclass(frozen=True, slots=True)
class ClientCheck:
    """A client's row as read for one ``/token`` request (``secret_hash`` None: no such client), and the digest
    of client id and secret that a verified secret is remembered under."""

    secret_hash: str | None
    scopes: frozenset[str]
    is_active: bool
    memory: str

    def remembered(self, proven: dict[str, str]) -> bool:
        """This worker verified the presented secret against the row's current hash before."""
        return self.secret_hash is not None and proven.get(self.memory) == self.secret_hash


async def read_client(engine: AsyncEngine, client_id: str, secret: str) -> ClientCheck:
    """The row of ``client_id``, for :func:`check_client`.

    ``proven`` (digest of client id and secret → the stored hash they matched) spares argon2 for a secret
    remembered: a connector asks for a token with the same secret every few minutes, and twenty doing so at
    once queued behind the hashing thread for seconds; a remembered secret is no guess either, so it counts
    against no throttle (``oauth``). The row is read every time, so a disabled client or a rotated secret
    (another hash) is refused at once. Only a caller who knows the secret can hit the memory, so its being
    faster tells nobody anything.
    """
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(dx_client.c.secret_hash, dx_client.c.scopes, dx_client.c.is_active).where(
                    dx_client.c.client_id == client_id
                )
            )
        ).first()
    memory = digest(f"{client_id}\0{secret}")
    if row is None:
        return ClientCheck(None, frozenset(), False, memory)
    return ClientCheck(row.secret_hash, frozenset(str(row.scopes).split()), bool(row.is_active), memory)


async def check_client(check: ClientCheck, secret: str, proven: dict[str, str]) -> frozenset[str] | None:
    """The scopes of an active client whose secret matches; None otherwise, in the same time (argon2 runs
    for an unknown client too, unless the secret is remembered). A secret argon2 matched is remembered."""
    ok = check.remembered(proven)
    if not ok:
        ok = await verify_secret_async(check.secret_hash, secret)
        if ok and check.secret_hash is not None:
            if len(proven) >= PROVEN_SECRETS:
                proven.clear()
            proven[check.memory] = check.secret_hash
    if check.secret_hash is None or not ok or not check.is_active:
        return None
    return check.scopes


async def add_api_key(
    engine: AsyncEngine, name: str, scopes: frozenset[str], expires_at: dt.datetime | None
) -> tuple[str, str]:
    """Create an API key; return (prefix, key) — the key is never shown again."""
    key = new_secret(API_KEY_PREFIX)
    while not key[len(API_KEY_PREFIX) + 1].isalnum():  # the id is typed on command lines: no leading `-`
        key = new_secret(API_KEY_PREFIX)
    prefix = key[len(API_KEY_PREFIX) + 1 :][:12]
    key_hash = await hash_secret_async(key)
    async with engine.begin() as conn:
        await conn.execute(
            insert(dx_api_key).values(
                name=name,
                prefix=prefix,
                key_hash=key_hash,
                scopes=" ".join(sorted(scopes)),
                expires_at=expires_at,
                created_at=_now(),
            )
        )
    return prefix, key


async def revoke_api_key(engine: AsyncEngine, prefix: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(dx_api_key)
            .where(dx_api_key.c.prefix == prefix, dx_api_key.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
        return bool(result.rowcount)


async def find_api_key(engine: AsyncEngine, prefix: str) -> StoredKey | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    dx_api_key.c.key_hash, dx_api_key.c.scopes, dx_api_key.c.expires_at, dx_api_key.c.revoked_at
                ).where(dx_api_key.c.prefix == prefix)
            )
        ).first()
    if row is None:
        return None
    return StoredKey(prefix, str(row.key_hash), frozenset(str(row.scopes).split()), row.expires_at, row.revoked_at)


async def prove_api_key(engine: AsyncEngine, key: str) -> StoredKey | None:
    """The row of the key that argon2 matches ``key`` against (revoked or expired or not); None otherwise.

    A key of the wrong form is refused without hashing (its form is public); an unknown prefix still costs one
    verification, so it takes as long as a wrong key under a known prefix."""
    body = key.removeprefix(f"{API_KEY_PREFIX}_")
    if body == key or len(key) > 200:
        return None
    row = await find_api_key(engine, body[:12])
    ok = await verify_secret_async(row.key_hash if row else None, key)
    return row if row is not None and ok else None


async def verify_api_key(engine: AsyncEngine, key: str) -> Principal | None:
    """Who ``key`` is if it is a valid key now (not revoked, not expired); None otherwise."""
    row = await prove_api_key(engine, key)
    return proof_of(row).current() if row is not None else None


# --- refresh-token families -----------------------------------------------------------------------------------


async def family_revoked(conn: AsyncConnection, family: str) -> bool:
    """True once any token of the family was revoked: a revocation covers tokens minted concurrently with it."""
    found = await conn.execute(
        select(dx_refresh_token.c.id)
        .where(dx_refresh_token.c.family == family, dx_refresh_token.c.revoked_at.is_not(None))
        .limit(1)
    )
    return found.first() is not None


async def revoke_family(conn: AsyncConnection, family: str) -> None:
    await conn.execute(
        update(dx_refresh_token)
        .where(dx_refresh_token.c.family == family, dx_refresh_token.c.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
