"""Shared fixtures of the security suite: principals, forged tokens, table fingerprints and private servers.

Principals are created through the public store functions of ``dxapi.auth.principals`` on the test's own event
loop (``backend.run``) with a fresh engine, exactly as the CLI does. Hostile tokens are forged with PyJWT and
the *server's own* secret and ``kid`` (``Forger``), so each one differs from a token the server would accept
in exactly the property under test; ``test_forged_baseline_is_accepted`` proves the unmodified forgery works.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import jwt
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.auth import principals
from dxapi.auth.tokens import load_keys
from dxapi.db import create_engine
from dxapi.registry.tables import dx_rate_counter
from dxapi.settings import Settings
from tests.conftest import BACKENDS, Backend, _start_server

T = TypeVar("T")
API = "/dynamic-entity"
ALL = "*:read *:write *:delete"
# Pure token logic (no database behind the decision) runs on one backend only: keeps the suite fast.
ONE_BACKEND = [BACKENDS[0]] if BACKENDS else ["sqlite"]


def on_one_backend() -> pytest.MarkDecorator:
    """Run a test that needs a server but not a specific database on the first configured backend only."""
    return pytest.mark.parametrize("backend", ONE_BACKEND, indirect=True)


# --- store access -------------------------------------------------------------------------------------------------


def store(backend: Backend, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work(engine)`` on the test's event loop with a throw-away engine on the backend's database."""
    result: T = backend.with_engine(work)
    return result


def new_client(backend: Backend, scopes: str, name: str = "auth suite") -> tuple[str, str]:
    """(client_id, client_secret) of a fresh active client with the given scopes."""
    wanted = principals.parse_scopes(scopes)
    return store(backend, lambda e: principals.add_client(e, name, wanted))


def new_user(backend: Backend, role: str = "viewer") -> tuple[str, str]:
    """(email, password) of a fresh active back-office user."""
    email = f"user-{secrets.token_hex(6)}@example.com"
    password = secrets.token_urlsafe(18)
    store(backend, lambda e: principals.add_user(e, email, password, role))
    return email, password


def new_api_key(backend: Backend, scopes: str, expires_at: dt.datetime | None = None) -> tuple[str, str]:
    """(prefix, key) of a fresh API key."""
    wanted = principals.parse_scopes(scopes)
    return store(backend, lambda e: principals.add_api_key(e, "auth suite", wanted, expires_at))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


# --- the token endpoint ---------------------------------------------------------------------------------------------


def token_request(base_url: str, form: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    """``POST /token`` with a form (or whatever ``kwargs`` say: ``content=``, ``headers=``, ``auth=``…)."""
    return httpx.post(f"{base_url}/token", data=form, timeout=30, **kwargs)


def client_token(base_url: str, client_id: str, secret: str, scope: str | None = None) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    if scope is not None:
        form["scope"] = scope
    return token_request(base_url, form)


def password_token(base_url: str, username: str, password: str, scope: str | None = None) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    if scope is not None:
        form["scope"] = scope
    return token_request(base_url, form)


def refresh(base_url: str, refresh_token: str) -> httpx.Response:
    return token_request(base_url, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def access_token(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- answers -----------------------------------------------------------------------------------------------------


def assert_unauthorized(response: httpx.Response, code: str = "001") -> None:
    """401, ``WWW-Authenticate: Bearer …`` and the catalogue error array with ``code``."""
    assert response.status_code == 401, (response.status_code, response.text[:300])
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), challenge
    if code == "001":
        assert 'error="invalid_token"' in challenge, challenge
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, list) and len(body) == 1, body
    assert body[0]["code"] == code and body[0]["status"] == 401 and body[0]["message"], body


def assert_forbidden(response: httpx.Response) -> None:
    """403 with the catalogue error 4003 (valid credentials, scope missing)."""
    assert response.status_code == 403, (response.status_code, response.text[:300])
    body = response.json()
    assert isinstance(body, list) and body and body[0]["code"] == "4003" and body[0]["status"] == 403, body


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    """RFC 6749 §5.2 error document, never cached."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.json()["error"] == error, response.text
    assert "no-store" in response.headers.get("cache-control", "")


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Poll ``check`` until it holds; return the seconds it took, or None after ``timeout``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(step)


# --- table state ("nothing written") -----------------------------------------------------------------------------


def fingerprint(backend: Backend, *tables: str) -> dict[str, list[tuple[str, ...]]]:
    """Every row of each table, as sorted tuples of strings: equal before and after = nothing written."""
    state: dict[str, list[tuple[str, ...]]] = {}
    for table in tables:
        rows = backend.sql(sa.select(sa.text("*")).select_from(sa.table(table)))
        state[table] = sorted(tuple(str(v) for v in row) for row in rows)
    return state


def count(backend: Backend, table: str) -> int:
    rows = backend.sql(sa.select(sa.func.count()).select_from(sa.table(table)))
    return int(rows[0][0])


# --- forged tokens ---------------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class Forger:
    """Builds tokens as the server would (same secret, kid, iss, aud, an active subject), then spoils one thing."""

    secret: str
    kid: str
    settings: Settings
    subject: str
    scope: str = ALL

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": self.subject,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": secrets.token_urlsafe(8),
            "scope": self.scope,
        }
        for name, value in changes.items():
            if value is DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def headers(self, **changes: Any) -> dict[str, Any]:
        headers: dict[str, Any] = {"kid": self.kid, "typ": "at+jwt"}
        for name, value in changes.items():
            if value is DROP:
                headers.pop(name, None)
            else:
                headers[name] = value
        return headers

    def token(
        self,
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        key: Any = None,
        algorithm: str = "HS256",
    ) -> str:
        return jwt.encode(
            claims if claims is not None else self.claims(),
            key if key is not None else self.secret,
            algorithm=algorithm,
            headers=headers if headers is not None else self.headers(),
        )

    def unsigned(self, alg: str, claims: dict[str, Any] | None = None) -> str:
        """A token whose header says ``alg`` (e.g. ``none``) with an empty signature."""
        header = {"alg": alg, "typ": "at+jwt", "kid": self.kid}
        payload = claims if claims is not None else self.claims()
        return f"{b64url(_json(header))}.{b64url(_json(payload))}."


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()  # a claim or header value meaning "leave this one out"


@pytest.fixture(scope="session")
def admin_client(backend: Backend) -> tuple[str, str]:
    """A client of this suite allowed everything: the subject of forged tokens."""
    return new_client(backend, ALL, name="auth suite admin")


@pytest.fixture(scope="session")
def forger(backend: Backend, admin_client: tuple[str, str]) -> Forger:
    secret = backend.settings.jwt_secret
    assert secret is not None
    kid = load_keys(backend.settings).kid
    return Forger(secret.get_secret_value(), kid, backend.settings, f"client:{admin_client[0]}")


@pytest.fixture(scope="session")
def anon(backend: Backend) -> Iterator[httpx.Client]:
    """A client of the backend's server that sends no credentials unless a test adds them."""
    with httpx.Client(base_url=backend.base_url, timeout=30) as client:
        yield client


# --- private servers ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """A server of its own (any settings) for the duration of the block; yields its base URL.

    Throttles count in the database, for every server on it: the server starts with no attempt counted, so
    that its own limits are what the test sees (not the attempts of the tests before)."""
    asyncio.run(forget_counted(settings.database_url))
    server, thread, base_url = _start_server(settings)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def forget_counted(url: str) -> None:
    """Empty the shared counters of rate limits and throttles (``dx_rate_counter``); a database that cannot be
    reached (a test of exactly that) holds none."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.delete(dx_rate_counter))
    except (sa.exc.DBAPIError, OSError):
        pass
    finally:
        await engine.dispose()


def settings_for(backend: Backend, **changes: Any) -> Settings:
    """The backend's settings with some fields changed (validated again, as the environment would be)."""
    values = {**backend.settings.model_dump(), **changes}
    return Settings(**values)


@pytest.fixture(scope="session")
def scoped(backend: Backend) -> Iterator[Callable[[str], httpx.Client]]:
    """``scoped("products:read")``: an HTTP client carrying a token of a client with exactly those scopes."""
    made: dict[str, httpx.Client] = {}

    def make(scopes: str) -> httpx.Client:
        if scopes not in made:
            client_id, secret = new_client(backend, scopes)
            token = access_token(client_token(backend.base_url, client_id, secret))
            made[scopes] = httpx.Client(base_url=backend.base_url, timeout=30, headers=bearer(token))
        return made[scopes]

    yield make
    for client in made.values():
        client.close()
