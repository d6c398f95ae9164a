"""Principals: who is calling, what they may do, and whether they still may.

A request is authenticated by a bearer token (``tokens``) or an ``X-Api-Key`` header; either way it becomes a
:class:`Principal` with scopes such as ``products:read`` or ``*:write`` (``scopes``). Scopes are checked in the
plan stage for the root entity and every entity reached through ``include`` or nested writes. Fed by the
``Authorization`` and ``X-Api-Key`` headers and the stored accounts (``accounts``); feeds the endpoints and
health checks. The names of ``scopes`` and ``accounts`` that the CLI, the back office and the tests use are
re-exported here.

Revocation: a token stays valid until it expires, so each worker re-checks that the subject behind it (user,
client, API key) is still active, at most every ``DXAPI_PRINCIPAL_CACHE_SECONDS`` (≤ 5 s) per subject; a user's
token also dies with its refresh-token family (a detected refresh-token reuse revokes the family).

API keys: argon2 proves a key once per worker (on the hashing pool, off the event loop); the proof is kept under
the key's SHA-256 and re-used as long as the stored hash stays the same, while revocation, expiry and scopes are
re-read like any subject's status. A key that proves nothing counts as a failed attempt of the caller's address.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi import errors
from dxapi.auth.accounts import (
    ProvenKey,
    StoredKey,
    SubjectStatus,
    add_api_key,
    add_client,
    add_user,
    check_password,
    family_revoked,
    find_api_key,
    proof_of,
    prove_api_key,
    revoke_api_key,
    rotate_client_secret,
    set_client,
    set_user,
    subject_status,
)
from dxapi.auth.passwords import digest
from dxapi.auth.scopes import ACTIONS, DELETE, READ, ROLES, WRITE, Principal, narrow, parse_scopes
from dxapi.auth.throttle import Throttle
from dxapi.auth.tokens import Claims, InvalidToken, SigningKeys
from dxapi.dberrors import database_errors
from dxapi.limits.counters import Counters
from dxapi.settings import Settings

__all__ = [
    "ACTIONS",
    "DELETE",
    "READ",
    "ROLES",
    "WRITE",
    "Authenticator",
    "Principal",
    "add_api_key",
    "add_client",
    "add_user",
    "check_password",
    "invalid_token",
    "parse_scopes",
    "revoke_api_key",
    "rotate_client_secret",
    "set_client",
    "set_user",
]


class Authenticator:
    """Turns request credentials into a Principal; one per worker."""

    def __init__(self, engine: AsyncEngine, keys: SigningKeys, settings: Settings, counters: Counters) -> None:
        self._engine = engine
        self._keys = keys
        self._settings = settings
        self._status: dict[str, tuple[float, SubjectStatus]] = {}  # subject → (checked at, status)
        self._families: dict[str, tuple[float, bool]] = {}  # refresh-token family → (checked at, revoked)
        self._api_keys: dict[str, ProvenKey] = {}  # digest of the key → proof
        self._proving: dict[str, asyncio.Future[StoredKey | None]] = {}  # one argon2 run per key at a time
        self._key_failures = Throttle(counters, "api_key", settings.token_attempts_per_address)
        # Tokens whose signature and claims were verified, until they expire: verifying costs about as much
        # as the query of a read by id. Revocation is still checked on every request (status cache).
        self._verified: dict[str, Claims] = {}
        # The principal each verified token was last admitted as, with the status that admitted it: while that
        # status is the cached one (same object, so neither expired nor re-read), the answer is the same.
        self._admitted: dict[str, tuple[SubjectStatus, Principal]] = {}

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
            admitted = self._admitted.get(token)
            if admitted is not None and self._fresh(claims.subject) is admitted[0]:
                return admitted[1]
            async with database_errors():  # a database that is down answers 503, as everywhere else
                status = await self._status_of(claims.subject)
                ended = claims.family is not None and await self._family_revoked(claims.family)
            if not status.active or claims.issued_ms < status.revoked_before_ms or ended:
                raise invalid_token()
            # Scopes taken away since the token was issued are gone now, not at its expiry.
            principal = Principal(claims.subject, narrow(claims.scopes, status.allowed), status.rate_limit)
            if claims.family is None:  # a login's token also depends on its family: checked every time
                if len(self._admitted) > 10_000:
                    self._admitted.clear()
                self._admitted[token] = (status, principal)
            return principal
        if api_key is not None:
            async with database_errors():
                return await self._api_key(api_key, address)
        raise errors.ApiError([errors.AUTHENTICATION_REQUIRED()], {"WWW-Authenticate": 'Bearer realm="dxapi"'})

    def _fresh(self, subject: str) -> SubjectStatus | None:
        """The subject's cached status while it is fresh, else None."""
        cached = self._status.get(subject)
        if cached is not None and time.monotonic() - cached[0] < self._settings.principal_cache_seconds:
            return cached[1]
        return None

    async def _status_of(self, subject: str) -> SubjectStatus:
        fresh = self._fresh(subject)
        if fresh is not None:
            return fresh
        status = await subject_status(self._engine, subject)
        if len(self._status) > 10_000:
            self._status.clear()
        self._status[subject] = (time.monotonic(), status)
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
            proven = proof_of(row) if row is not None and row.key_hash == proven.key_hash else None
            self._remember(cache_key, proven)
        if proven is None:
            wait = await self._key_failures.hit(address)  # counted before argon2 runs, taken back if the key is right
            if wait:
                raise errors.ApiError([errors.TOO_MANY_ATTEMPTS(seconds=wait)], {"Retry-After": str(wait)})
            row = await self._prove(cache_key, key)
            if row is None:
                raise invalid_token()
            await self._key_failures.forgive(address)
            proven = proof_of(row)
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


def invalid_token() -> errors.ApiError:
    return errors.ApiError([errors.INVALID_TOKEN()], {"WWW-Authenticate": 'Bearer error="invalid_token"'})
