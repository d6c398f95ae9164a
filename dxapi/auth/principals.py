"""Principals: who is calling, what they may do, and whether they still may.

A request is authenticated by a bearer token (``tokens``) or an ``X-Api-Key`` header; either way it becomes a
:class:`Principal` with scopes such as ``products:read`` or ``*:write``. Scopes are checked in the plan stage
for the root entity and every entity reached through ``include`` or nested writes.

Revocation: a token stays valid until it expires, so each worker re-checks that the subject behind it (user,
client, API key) is still active, at most every ``DXAPI_PRINCIPAL_CACHE_SECONDS`` (≤ 5 s) per subject; a user's
token also dies with its refresh-token family (a detected refresh-token reuse revokes the family).

API keys: argon2 proves a key once per worker (on the hashing pool, off the event loop); the proof is kept under
the key's SHA-256 and re-used as long as the stored hash stays the same, while revocation, expiry and scopes are
re-read like any subject's status. A key that proves nothing counts as a failed attempt of the caller's address.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi import errors
from dxapi.auth.passwords import digest, hash_secret_async, new_secret, verify_secret_async
from dxapi.auth.throttle import Throttle
from dxapi.auth.tokens import Claims, InvalidToken, SigningKeys
from dxapi.dberrors import database_errors
from dxapi.registry.tables import dx_api_key, dx_client, dx_refresh_token, dx_user
from dxapi.settings import Settings

READ, WRITE, DELETE = "read", "write", "delete"
ACTIONS = (READ, WRITE, DELETE)
ROLES = {"admin": "*:read *:write *:delete", "editor": "*:read *:write", "viewer": "*:read"}
API_KEY_PREFIX = "dxk"
CLIENT_ID_PREFIX = "dxc"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # "client:<client_id>", "user:<id>" or "apikey:<prefix>"
    scopes: frozenset[str]

    def allows(self, alias: str, action: str) -> bool:
        return f"{alias}:{action}" in self.scopes or f"*:{action}" in self.scopes


def covered(scope: str, allowed: frozenset[str]) -> bool:
    """``products:read`` is covered by ``products:read`` or ``*:read``; ``*:read`` only by ``*:read``."""
    return scope in allowed or f"*:{scope.rpartition(':')[2]}" in allowed


def narrow(scopes: Iterable[str], allowed: frozenset[str]) -> frozenset[str]:
    return frozenset(s for s in scopes if covered(s, allowed))


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    active: bool
    allowed: frozenset[str]  # what the subject may hold now (role, client scopes)
    revoked_before_ms: int  # tokens issued earlier are refused (0: none)


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


def parse_scopes(text: str) -> frozenset[str]:
    """``"products:read *:write"`` → the set; raises ValueError on anything else."""
    scopes = frozenset(text.replace(",", " ").split())
    for scope in scopes:
        alias, colon, action = scope.rpartition(":")
        if not colon or action not in ACTIONS or not alias or not (alias == "*" or _alias_like(alias)):
            raise ValueError(f"`{scope}` is not a scope; use alias:read, alias:write, alias:delete or *:read …")
    return scopes


def _alias_like(text: str) -> bool:
    return all(c.isalnum() or c in "_-" for c in text)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class Authenticator:
    """Turns request credentials into a Principal; one per worker."""

    def __init__(self, engine: AsyncEngine, keys: SigningKeys, settings: Settings) -> None:
        self._engine = engine
        self._keys = keys
        self._settings = settings
        self._status: dict[str, tuple[float, SubjectStatus]] = {}  # subject → (checked at, status)
        self._families: dict[str, tuple[float, bool]] = {}  # refresh-token family → (checked at, revoked)
        self._api_keys: dict[str, ProvenKey] = {}  # digest of the key → proof
        self._proving: dict[str, asyncio.Future[StoredKey | None]] = {}  # one argon2 run per key at a time
        self._key_failures = Throttle(settings.token_attempts_per_address)
        # Tokens whose signature and claims were verified, until they expire: verifying costs about as much
        # as the query of a read by id. Revocation is still checked on every request (status cache).
        self._verified: dict[str, Claims] = {}

    async def authenticate(self, authorization: str | None, api_key: str | None, address: str = "unknown") -> Principal:
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise invalid_token()
            claims = self._verified.get(token)
            if claims is None or claims.expires_at + self._settings.jwt_leeway < time.time():
                try:
                    claims = self._keys.verify(token.strip(), self._settings)
                except InvalidToken:
                    raise invalid_token() from None
                if len(self._verified) > 10_000:
                    self._verified.clear()
                self._verified[token] = claims
            async with database_errors():  # a database that is down answers 503, as everywhere else
                status = await self._status_of(claims.subject)
                ended = claims.family is not None and await self._family_revoked(claims.family)
            if not status.active or claims.issued_ms < status.revoked_before_ms or ended:
                raise invalid_token()
            # Scopes taken away since the token was issued are gone now, not at its expiry.
            return Principal(claims.subject, narrow(claims.scopes, status.allowed))
        if api_key is not None:
            async with database_errors():
                return await self._api_key(api_key, address)
        raise errors.ApiError([errors.AUTHENTICATION_REQUIRED()], {"WWW-Authenticate": 'Bearer realm="dxapi"'})

    async def _status_of(self, subject: str) -> SubjectStatus:
        now = time.monotonic()
        cached = self._status.get(subject)
        if cached is not None and now - cached[0] < self._settings.principal_cache_seconds:
            return cached[1]
        status = await subject_status(self._engine, subject)
        if len(self._status) > 10_000:
            self._status.clear()
        self._status[subject] = (now, status)
        return status

    async def _family_revoked(self, family: str) -> bool:
        now = time.monotonic()
        cached = self._families.get(family)
        if cached is not None and now - cached[0] < self._settings.principal_cache_seconds:
            return cached[1]
        async with self._engine.connect() as conn:
            revoked = await family_revoked(conn, family)
        if len(self._families) > 10_000:
            self._families.clear()
        self._families[family] = (now, revoked)
        return revoked

    async def _api_key(self, key: str, address: str) -> Principal:
        cache_key = digest(key)
        proven = self._api_keys.get(cache_key)
        if proven is not None and time.monotonic() - proven.checked_at >= self._settings.principal_cache_seconds:
            row = await find_api_key(self._engine, proven.prefix)
            # A changed hash is another key under the same prefix: prove again.
            proven = _proven(row) if row is not None and row.key_hash == proven.key_hash else None
            self._remember(cache_key, proven)
        if proven is None:
            wait = self._key_failures.hit(address)  # counted before argon2 runs, taken back if the key is right
            if wait:
                raise errors.ApiError([errors.TOO_MANY_ATTEMPTS(seconds=wait)], {"Retry-After": str(wait)})
            row = await self._prove(cache_key, key)
            if row is None:
                raise invalid_token()
            self._key_failures.forgive(address)
            proven = _proven(row)
            self._remember(cache_key, proven)
        principal = proven.current()
        if principal is None:
            raise invalid_token()
        return principal

    async def _prove(self, cache_key: str, key: str) -> StoredKey | None:
        """The key's row if argon2 matches it; concurrent requests with the same key share one verification."""
        running = self._proving.get(cache_key)
        if running is None:
            running = asyncio.ensure_future(prove_api_key(self._engine, key))
            self._proving[cache_key] = running

            def done(task: asyncio.Future[StoredKey | None]) -> None:
                self._proving.pop(cache_key, None)
                if not task.cancelled():
                    task.exception()  # retrieved here too: every waiter may have gone away

            running.add_done_callback(done)
        return await asyncio.shield(running)

    def _remember(self, cache_key: str, proven: ProvenKey | None) -> None:
        if proven is None:
            self._api_keys.pop(cache_key, None)
            return
        if len(self._api_keys) > 10_000:
            self._api_keys.clear()
        self._api_keys[cache_key] = proven


def _proven(row: StoredKey) -> ProvenKey:
    principal = None if row.revoked_at is not None else Principal(f"apikey:{row.prefix}", row.scopes)
    return ProvenKey(row.prefix, row.key_hash, principal, row.expires_at, time.monotonic())


def invalid_token() -> errors.ApiError:
    return errors.ApiError([errors.INVALID_TOKEN()], {"WWW-Authenticate": 'Bearer error="invalid_token"'})


# --- store: users, clients, API keys --------------------------------------------------------------------------


async def subject_status(engine: AsyncEngine, subject: str) -> SubjectStatus:
    kind, _, ref = subject.partition(":")
    async with engine.connect() as conn:
        if kind == "client":
            row = (
                await conn.execute(
                    select(dx_client.c.is_active, dx_client.c.scopes, dx_client.c.revoked_before).where(
                        dx_client.c.client_id == ref
                    )
                )
            ).first()
            if row is not None:
                return SubjectStatus(bool(row.is_active), frozenset(str(row.scopes).split()), row.revoked_before or 0)
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


async def add_client(engine: AsyncEngine, name: str, scopes: frozenset[str]) -> tuple[str, str]:
    """Create an OAuth client; return (client_id, client_secret) — the secret is never shown again."""
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


async def check_client(engine: AsyncEngine, client_id: str, secret: str) -> frozenset[str] | None:
    """The scopes of an active client whose secret matches; None otherwise, in the same time."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(dx_client.c.secret_hash, dx_client.c.scopes, dx_client.c.is_active).where(
                    dx_client.c.client_id == client_id
                )
            )
        ).first()
    ok = await verify_secret_async(row.secret_hash if row else None, secret)
    if row is None or not ok or not row.is_active:
        return None
    return frozenset(str(row.scopes).split())


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
    return _proven(row).current() if row is not None else None


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
