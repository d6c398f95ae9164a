"""``POST /token`` (RFC 6749): client credentials, password (back-office users) and refresh-token grants.

Parameters come form-encoded (RFC 6749) or, as Spryker's own clients send them, as JSON: flat
(``{"grantType": "password", …}``) or Glue's ``{"data": {"type": "token", "attributes": {…}}}``, with Spryker's
camelCase names or the RFC's snake_case ones.

Answers use OAuth's own error format (``{"error": "invalid_grant"}``), not the API's error array, because
OAuth client libraries parse it. A wrong password and an unknown user get the same answer in the same time.
A database that cannot answer is ``503 temporarily_unavailable`` with ``Retry-After`` (RFC 6749 §5.2's word).
Refresh tokens are opaque, stored as digests, rotated on every use; presenting one that was already used
revokes its whole family (RFC 9700 §4.14), since one of the two presenters must be a thief.
Attempts are throttled per client or user and per source address, for all workers and hosts (``throttle``); a
right secret or password is taken back from its client's or user's count (not from the address's: one valid
credential must not buy a sprayer more guesses at others). A client secret this worker verified before
counts nowhere, and concurrent requests with one secret share one verification: no guess in either case.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dxapi import errors
from dxapi.auth.accounts import (
    ClientCheck,
    SubjectStatus,
    check_client,
    check_password,
    family_revoked,
    read_client,
    revoke_family,
    subject_status,
)
from dxapi.auth.passwords import digest
from dxapi.auth.scopes import ROLES, narrow
from dxapi.auth.throttle import Throttle
from dxapi.dberrors import CONFLICT, RETRY_AFTER_SECONDS, classify, database_errors
from dxapi.limits.counters import Counters
from dxapi.registry.tables import dx_refresh_token
from dxapi.settings import Settings

__all__ = ["OAuthError", "TokenService"]

MAX_FORM_BYTES = 8192
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"
JSON_TYPES = ("application/json", "application/vnd.api+json")
# JSON parameter names → the RFC's: Spryker's transfers take camelCase (and snake_case too).
JSON_NAMES = {
    **{
        name: name
        for name in ("grant_type", "client_id", "client_secret", "refresh_token", "scope", "username", "password")
    },
    "grantType": "grant_type",
    "clientId": "client_id",
    "clientSecret": "client_secret",
    "refreshToken": "refresh_token",
}


class OAuthError(Exception):
    def __init__(self, error: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}


def oauth_response(document: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(document),
        status_code=status,
        media_type="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


class _Repeated(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):  # as in forms, a repeated parameter is ambiguous
        raise _Repeated()
    return document


_JSON = json.JSONDecoder(object_pairs_hook=_object)


async def read_parameters(request: Request) -> dict[str, str]:
    """The request's parameters by their RFC 6749 names, from a form or a JSON body; invalid_request otherwise."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM and media_type not in JSON_TYPES:
        raise OAuthError("invalid_request")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise OAuthError("invalid_request")
    except ClientDisconnect:  # nobody is left to answer; not a failure of ours to log with a traceback
        raise OAuthError("invalid_request") from None
    parameters = _form(body) if media_type == FORM else _json(body)
    for value in parameters.values():
        if not _storable(value):  # names reach the database: a NUL or a lone surrogate is no name anywhere
            raise OAuthError("invalid_request")
    return parameters


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request") from None
    form = dict(pairs)
    if len(form) != len(pairs):  # RFC 6749 §3.2: parameters must not be repeated
        raise OAuthError("invalid_request")
    return form


def _json(body: bytes) -> dict[str, str]:
    try:
        document = _JSON.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise OAuthError("invalid_request") from None
    if isinstance(document, dict) and "data" in document:  # Glue: {"data": {"type": "token", "attributes": …}}
        data = document["data"]
        if not isinstance(data, dict) or data.get("type", "token") != "token":
            raise OAuthError("invalid_request")
        document = data.get("attributes")
    if not isinstance(document, dict):
        raise OAuthError("invalid_request")
    parameters: dict[str, str] = {}
    for key, value in document.items():
        name = JSON_NAMES.get(key)
        if name is None:  # unknown parameters are ignored, as in forms (RFC 6749 §3.1)
            continue
        if not isinstance(value, str) or name in parameters:  # `grantType` and `grant_type` together: ambiguous
            raise OAuthError("invalid_request")
        parameters[name] = value
    return parameters


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header and header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", 401, {"WWW-Authenticate": 'Basic realm="dxapi"'}) from None
        client_id, colon, secret = decoded.partition(":")
        if not colon or not _storable(unquote(client_id)):
            raise OAuthError("invalid_client", 401, {"WWW-Authenticate": 'Basic realm="dxapi"'})
        return unquote(client_id), unquote(secret)
    if "client_id" in form and "client_secret" in form:
        return form["client_id"], form["client_secret"]
    return None


def granted_scopes(allowed: frozenset[str], requested: str | None) -> frozenset[str]:
    """The requested scopes if every one is covered (``products:read`` by ``*:read`` too), else invalid_scope."""
    if requested is None or not requested.strip():
        return allowed
    wanted = frozenset(requested.split())
    if narrow(wanted, allowed) != wanted:
        raise OAuthError("invalid_scope")
    return wanted


class TokenService:
    def __init__(self, engine: AsyncEngine, keys: Any, settings: Settings, counters: Counters) -> None:
        self.engine = engine
        self.keys = keys
        self.settings = settings
        self.by_identity = Throttle(counters, "token", settings.token_attempts_per_minute)
        self.by_address = Throttle(counters, "token", settings.token_attempts_per_address)
        self.proven: dict[str, str] = {}  # client secrets verified before (accounts.check_client)
        self._proving: dict[str, asyncio.Future[None]] = {}  # secrets being verified now, by their digest

    async def handle(self, request: Request) -> Response:
        try:
            form = await read_parameters(request)
            address = f"address:{request.client.host if request.client else 'unknown'}"
            grant = form.get("grant_type")
            async with database_errors():
                if grant == "client_credentials":
                    return await self._client_credentials(request, form, address)
                await self._throttle(self.by_address, address)
                if grant == "password" and self.settings.password_grant:
                    return await self._password(form)
                if grant == "refresh_token":
                    return await self._refresh(form)
            raise OAuthError("unsupported_grant_type" if grant else "invalid_request")
        except OAuthError as exc:
            return oauth_response({"error": exc.error}, exc.status, exc.headers)
        except errors.ApiError as exc:
            # Whatever kept the database from answering (down, locked, pool exhausted): RFC 6749 §5.2 calls it
            # temporarily_unavailable, which is a 503, never a 409 or a 500, and the client may retry.
            retry = exc.headers.get("Retry-After", RETRY_AFTER_SECONDS)
            return oauth_response({"error": "temporarily_unavailable"}, 503, {"Retry-After": retry})

    async def _throttle(self, throttle: Throttle, key: str) -> None:
        wait = await throttle.hit(key)
        if wait:
            raise OAuthError("too_many_requests", 429, {"Retry-After": str(wait)})

    async def _client_credentials(self, request: Request, form: dict[str, str], address: str) -> Response:
        credentials = client_credentials(request, form)
        if credentials is None:
            await self._throttle(self.by_address, address)
            raise OAuthError("invalid_client", 401, {"WWW-Authenticate": 'Basic realm="dxapi"'})
        client_id, secret = credentials
        check = await read_client(self.engine, client_id, secret)
        while not check.remembered(self.proven) and (pending := self._proving.get(check.memory)) is not None:
            # The same secret is being verified for another request: its outcome is this one's too.
            await asyncio.shield(pending)
        if check.remembered(self.proven):
            # A secret this worker verified before is no guess and counts nowhere: twenty workers of one
            # connector asking at once are never throttled by their own requests in flight.
            allowed = await check_client(check, secret, self.proven)
        else:
            allowed = await self._verify(check, address, client_id, secret)
        if allowed is None:
            raise OAuthError("invalid_client", 401, {"WWW-Authenticate": 'Basic realm="dxapi"'})
        scopes = granted_scopes(allowed, form.get("scope"))
        # RFC 6749 §4.4.3: no refresh token for client credentials; the client simply asks again.
        return self._answer(f"client:{client_id}", scopes, refresh=None)

    async def _verify(self, check: ClientCheck, address: str, client_id: str, secret: str) -> frozenset[str] | None:
        """argon2 for a secret not remembered, counted first (a guess is a guess however it ends); the right
        secret is taken back from the client's count."""
        done = self._proving[check.memory] = asyncio.get_running_loop().create_future()
        try:
            await self._throttle(self.by_address, address)
            await self._throttle(self.by_identity, f"client:{client_id}")
            allowed = await check_client(check, secret, self.proven)
            if allowed is not None:
                # The right secret was no guess: a fleet of workers sharing one client asks as often as it needs.
                await self.by_identity.forgive(f"client:{client_id}")
            return allowed
        finally:
            if self._proving.get(check.memory) is done:
                del self._proving[check.memory]
            done.set_result(None)

    async def _password(self, form: dict[str, str]) -> Response:
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise OAuthError("invalid_request")
        await self._throttle(self.by_identity, f"user:{username.lower()}")
        found = await check_password(self.engine, username, password)
        if found is None:
            raise OAuthError("invalid_grant")
        await self.by_identity.forgive(f"user:{username.lower()}")
        user_id, role = found
        scopes = granted_scopes(frozenset(ROLES[role].split()), form.get("scope"))
        subject, family = f"user:{user_id}", secrets.token_hex(16)
        async with self.engine.begin() as conn:
            refresh = await self._new_refresh(conn, subject, scopes, family)
        return self._answer(subject, scopes, refresh, family)

    async def _refresh(self, form: dict[str, str]) -> Response:
        presented = form.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request")
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(dx_refresh_token.c.id, dx_refresh_token.c.subject).where(
                        dx_refresh_token.c.token_digest == digest(presented)
                    )
                )
            ).first()
        if found is None:
            raise OAuthError("invalid_grant")
        await self._throttle(self.by_identity, found.subject)
        status = await subject_status(self.engine, found.subject)
        for attempt in (1, 2):
            try:
                return await self._rotate(int(found.id), status, form.get("scope"))
            except DBAPIError as exc:
                # A deadlock with a concurrent revocation of the same family: once more, and the second try
                # sees the revocation's outcome. (SQLite has no deadlocks; it already waited its busy timeout.)
                if attempt == 2 or self.engine.dialect.name == "sqlite" or classify(exc).kind != CONFLICT:
                    raise
        raise AssertionError("unreachable")

    async def _rotate(self, token_id: int, status: SubjectStatus, scope: str | None) -> Response:
        now = _now()
        by_id = dx_refresh_token.c.id == token_id
        async with self.engine.begin() as conn:
            # Using the token is one conditional write, and the transaction's first statement: of concurrent
            # presenters exactly one changes the row; the others wait for its commit and then change nothing.
            # By primary key: a record lock only (MariaDB would lock the unique index's gap too, and deadlock
            # the winner's insert with the waiting presenters). Writing first also keeps SQLite from refusing a
            # transaction that read before it wrote.
            used = await conn.execute(
                update(dx_refresh_token).where(by_id, dx_refresh_token.c.used_at.is_(None)).values(used_at=now)
            )
            row = (await conn.execute(select(dx_refresh_token).where(by_id))).one()
            if used.rowcount != 1:
                # Reuse: revoke the family. A successor a concurrent winner minted is committed by now (its
                # commit is what let this statement through); one minted later still dies by family_revoked.
                await revoke_family(conn, row.family)
                refresh = None
            elif (
                row.revoked_at is not None
                or row.expires_at <= now
                or not status.active
                or await family_revoked(conn, row.family)
            ):
                refresh = None
            else:
                # What the subject may hold now: a role lowered since the login is not carried forward.
                held = narrow(str(row.scopes).split(), status.allowed)
                scopes = granted_scopes(held, scope)  # invalid_scope rolls back: the token stays usable
                refresh = await self._new_refresh(conn, row.subject, held, row.family)
        if refresh is None:
            raise OAuthError("invalid_grant")
        return self._answer(row.subject, scopes, refresh, row.family)

    async def _new_refresh(self, conn: AsyncConnection, subject: str, scopes: frozenset[str], family: str) -> str:
        token = secrets.token_urlsafe(32)
        await conn.execute(
            insert(dx_refresh_token).values(
                token_digest=digest(token),
                family=family,
                subject=subject,
                scopes=" ".join(sorted(scopes)),
                expires_at=_now() + dt.timedelta(seconds=self.settings.refresh_token_ttl),
            )
        )
        return token

    def _answer(self, subject: str, scopes: frozenset[str], refresh: str | None, family: str | None = None) -> Response:
        access, expires_in = self.keys.issue(subject, scopes, self.settings, family)
        document: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "access_token": access,
            "scope": " ".join(sorted(scopes)),
        }
        if refresh is not None:
            document["refresh_token"] = refresh
        return oauth_response(document)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
