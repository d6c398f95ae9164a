"""``POST /token`` (RFC 6749): client credentials, password (back-office users) and refresh-token grants.

Answers use OAuth's own error format (``{"error": "invalid_grant"}``), not the API's error array, because
OAuth client libraries parse it. A wrong password and an unknown user get the same answer in the same time.
Refresh tokens are opaque, stored as digests, rotated on every use; presenting one that was already used
revokes its whole family (RFC 9700 §4.14), since one of the two presenters must be a thief.
Attempts are throttled per client or user and per source address (per worker).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from dxapi import errors
from dxapi.auth.passwords import digest
from dxapi.auth.principals import ROLES, check_client, check_password, narrow, subject_status
from dxapi.dberrors import database_errors
from dxapi.registry.tables import dx_refresh_token
from dxapi.settings import Settings

MAX_FORM_BYTES = 8192
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    def __init__(self, error: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}


def oauth_response(document: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json",
                    headers={**NO_STORE, **(headers or {})})


class Throttle:
    """At most ``limit`` attempts per key in any 60 seconds."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: dict[str, deque[float]] = {}

    def hit(self, key: str) -> int:
        """Record an attempt; return 0 if allowed, else the seconds to wait."""
        now = time.monotonic()
        window = self._seen.setdefault(key, deque())
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self._limit:
            return int(61 - (now - window[0])) or 1
        window.append(now)
        if len(self._seen) > 50_000:  # forget idle keys rather than grow without bound
            self._seen = {k: v for k, v in self._seen.items() if v and now - v[-1] <= 60}
        return 0


async def read_form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request") from None
    form = dict(pairs)
    if len(form) != len(pairs):  # RFC 6749 §3.2: parameters must not be repeated
        raise OAuthError("invalid_request")
    return form


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header and header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", 401, {"WWW-Authenticate": 'Basic realm="dxapi"'}) from None
        client_id, colon, secret = decoded.partition(":")
        if not colon:
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
    def __init__(self, engine: AsyncEngine, keys: Any, settings: Settings) -> None:
        self.engine = engine
        self.keys = keys
        self.settings = settings
        self.by_identity = Throttle(settings.token_attempts_per_minute)
        self.by_address = Throttle(settings.token_attempts_per_address)

    async def handle(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            address = request.client.host if request.client else "unknown"
            self._throttle(self.by_address, f"address:{address}")
            grant = form.get("grant_type")
            async with database_errors():
                if grant == "client_credentials":
                    return await self._client_credentials(request, form)
                if grant == "password" and self.settings.password_grant:
                    return await self._password(form)
                if grant == "refresh_token":
                    return await self._refresh(form)
            raise OAuthError("unsupported_grant_type" if grant else "invalid_request")
        except OAuthError as exc:
            return oauth_response({"error": exc.error}, exc.status, exc.headers)
        except errors.ApiError as exc:  # the database is down: OAuth's word for it, with Retry-After
            return oauth_response({"error": "temporarily_unavailable"}, exc.status, exc.headers)

    def _throttle(self, throttle: Throttle, key: str) -> None:
        wait = throttle.hit(key)
        if wait:
            raise OAuthError("too_many_requests", 429, {"Retry-After": str(wait)})

    async def _client_credentials(self, request: Request, form: dict[str, str]) -> Response:
        credentials = client_credentials(request, form)
        if credentials is None:
            raise OAuthError("invalid_client", 401, {"WWW-Authenticate": 'Basic realm="dxapi"'})
        client_id, secret = credentials
        self._throttle(self.by_identity, f"client:{client_id}")
        allowed = await check_client(self.engine, client_id, secret)
        if allowed is None:
            raise OAuthError("invalid_client", 401, {"WWW-Authenticate": 'Basic realm="dxapi"'})
        scopes = granted_scopes(allowed, form.get("scope"))
        # RFC 6749 §4.4.3: no refresh token for client credentials; the client simply asks again.
        return self._answer(f"client:{client_id}", scopes, refresh=None)

    async def _password(self, form: dict[str, str]) -> Response:
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise OAuthError("invalid_request")
        self._throttle(self.by_identity, f"user:{username.lower()}")
        found = await check_password(self.engine, username, password)
        if found is None:
            raise OAuthError("invalid_grant")
        user_id, role = found
        scopes = granted_scopes(frozenset(ROLES[role].split()), form.get("scope"))
        subject = f"user:{user_id}"
        refresh = await self._new_refresh(subject, scopes, family=secrets.token_hex(16))
        return self._answer(subject, scopes, refresh)

    async def _refresh(self, form: dict[str, str]) -> Response:
        presented = form.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request")
        now = _now()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(select(dx_refresh_token).where(dx_refresh_token.c.token_digest == digest(presented)))
            ).first()
            if row is None:
                raise OAuthError("invalid_grant")
            self._throttle(self.by_identity, row.subject)
            if row.used_at is not None:
                await conn.execute(
                    update(dx_refresh_token).where(dx_refresh_token.c.family == row.family).values(revoked_at=now)
                )
                reused = True
            else:
                reused = False
                await conn.execute(update(dx_refresh_token).where(dx_refresh_token.c.id == row.id).values(used_at=now))
        if reused or row.revoked_at is not None or row.expires_at <= now:
            raise OAuthError("invalid_grant")
        status = await subject_status(self.engine, row.subject)
        if not status.active:
            raise OAuthError("invalid_grant")
        # What the subject may hold now: a role lowered since the login is not carried forward.
        held = narrow(str(row.scopes).split(), status.allowed)
        scopes = granted_scopes(held, form.get("scope"))
        refresh = await self._new_refresh(row.subject, held, row.family)
        return self._answer(row.subject, scopes, refresh)

    async def _new_refresh(self, subject: str, scopes: frozenset[str], family: str) -> str:
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(dx_refresh_token).values(
                    token_digest=digest(token), family=family, subject=subject, scopes=" ".join(sorted(scopes)),
                    expires_at=_now() + dt.timedelta(seconds=self.settings.refresh_token_ttl),
                )
            )
        return token

    def _answer(self, subject: str, scopes: frozenset[str], refresh: str | None) -> Response:
        access, expires_in = self.keys.issue(subject, scopes, self.settings)
        document: dict[str, Any] = {
            "token_type": "Bearer", "expires_in": expires_in, "access_token": access, "scope": " ".join(sorted(scopes)),
        }
        if refresh is not None:
            document["refresh_token"] = refresh
        return oauth_response(document)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
