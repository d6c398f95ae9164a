"""No clear-text secret anywhere (security-and-reliability §7 T12; DESIGN §5) on every backend.

The test creates a user, a client and an API key, obtains access and refresh tokens by every grant, uses them
(and a few wrong ones) against the API, then dumps every ``dx_*`` table of the backend and every log record the
server produced meanwhile (``dxapi`` and ``uvicorn`` loggers at DEBUG, through ``caplog`` and a handler of its
own, plus whatever reached the process's stdout/stderr via ``capfd``) and asserts that none of the passwords,
secrets, keys or tokens appears. Stored credentials must be argon2id hashes with OWASP's parameters
(m=19456 KiB, t=2, p=1) of exactly the secret they protect.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import jwt
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.auth import principals
from dxapi.auth.passwords import digest
from tests.auth.conftest import (
    API,
    access_token,
    bearer,
    client_token,
    new_api_key,
    new_client,
    new_user,
    password_token,
    refresh,
    store,
)
from tests.conftest import Backend

ARGON2_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
LOGGERS = ("dxapi", "uvicorn", "uvicorn.error", "sqlalchemy.engine")


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything the in-process server logs during the test, at DEBUG, in one text buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        caplog.set_level(logging.DEBUG, logger=name)
    try:
        yield buffer
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(saved[name])


def _dump(backend: Backend) -> str:
    """Every row of every ``dx_*`` table, as text."""

    async def tables(engine: AsyncEngine) -> list[str]:
        async with engine.connect() as conn:
            names: list[str] = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        return sorted(n for n in names if n.startswith("dx_"))

    names = store(backend, tables)
    assert {"dx_user", "dx_client", "dx_api_key", "dx_refresh_token", "dx_audit"} <= set(names), names
    parts = []
    for name in names:
        for row in backend.sql(sa.select(sa.text("*")).select_from(sa.table(name))):
            parts.append(f"{name}: " + " | ".join(str(value) for value in row))
    return "\n".join(parts)


def test_no_clear_text_secret_in_database_or_logs(
    backend: Backend, server_log: io.StringIO, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    base = backend.base_url
    email, password = new_user(backend, "editor")
    client_id, client_secret = new_client(backend, "products:read tax-rates:read")
    key_prefix, api_key = new_api_key(backend, "products:read")

    client_access = access_token(client_token(base, client_id, client_secret))
    narrowed_access = access_token(client_token(base, client_id, client_secret, scope="tax-rates:read"))
    login = password_token(base, email, password).json()
    refreshed = refresh(base, login["refresh_token"]).json()
    refreshed_again = refresh(base, refreshed["refresh_token"]).json()
    wrong_password = password + "-typo"
    wrong_secret = client_secret[:-1] + ("A" if not client_secret.endswith("A") else "B")
    rotated_secret = store(backend, lambda e: principals.rotate_client_secret(e, client_id))
    assert rotated_secret is not None

    with httpx.Client(base_url=base, timeout=30) as http:
        for headers in (
            bearer(client_access),
            bearer(narrowed_access),
            bearer(login["access_token"]),
            bearer(refreshed_again["access_token"]),
            {"X-Api-Key": api_key},
        ):
            # the rotation above ended the client's older tokens (401); the others read or lack scope
            assert http.get(f"{API}/products/1", headers=headers).status_code in (200, 401, 403)
        # failures log their reasons at DEBUG: the reasons must not carry what was presented
        http.get(f"{API}/products/1", headers=bearer(client_access[:-4] + "AAAA"))
        http.get(f"{API}/products/1", headers={"X-Api-Key": api_key[:-3] + "xyz"})
        http.get(f"{API}/products/1", headers={"Authorization": f"Basic {client_secret}"})
    password_token(base, email, wrong_password)
    client_token(base, client_id, wrong_secret)
    client_token(base, client_id, client_secret)  # the old secret after rotation
    refresh(base, login["refresh_token"])  # reuse: revokes the family, logged or not

    secrets = {
        "password": password,
        "wrong password": wrong_password,
        "client secret": client_secret,
        "wrong client secret": wrong_secret,
        "rotated client secret": rotated_secret,
        "API key": api_key,
        "client access token": client_access,
        "narrowed access token": narrowed_access,
        "user access token": login["access_token"],
        "refreshed access token": refreshed["access_token"],
        "refresh token": login["refresh_token"],
        "rotated refresh token": refreshed["refresh_token"],
        "newest refresh token": refreshed_again["refresh_token"],
    }
    captured = capfd.readouterr()
    places = {
        "database": _dump(backend),
        "server log": server_log.getvalue(),
        "caplog": caplog.text,
        "stdout/stderr": captured.out + captured.err,
    }
    leaks = [
        f"{what} in the {where}" for what, secret in secrets.items() for where, text in places.items() if secret in text
    ]
    assert not leaks, leaks
    # the capture must have seen the server's own records (refused tokens are logged at DEBUG), else it proves nothing
    assert any(r.name.startswith("dxapi") for r in caplog.records), "no dxapi log record was captured"
    assert "dxapi" in places["server log"]
    # JWT payloads are readable by anyone: no secret inside them either
    for token in (client_access, login["access_token"]):
        claims = str(jwt.decode(token, options={"verify_signature": False}))
        assert not any(s in claims for s in (password, client_secret, api_key))

    user_hash = backend.sql("SELECT password_hash FROM dx_user WHERE email = :e", e=email)[0][0]
    client_hash = backend.sql("SELECT secret_hash FROM dx_client WHERE client_id = :c", c=client_id)[0][0]
    key_hash = backend.sql("SELECT key_hash FROM dx_api_key WHERE prefix = :p", p=key_prefix)[0][0]
    hasher = PasswordHasher()
    for stored, secret in ((user_hash, password), (client_hash, rotated_secret), (key_hash, api_key)):
        assert stored.startswith(ARGON2_PREFIX), stored[:40]
        assert hasher.verify(stored, secret)
    refresh_rows = backend.sql("SELECT token_digest FROM dx_refresh_token")
    stored_digests = {row[0] for row in refresh_rows}
    assert digest(refreshed_again["refresh_token"]) in stored_digests  # only a SHA-256 of a 256-bit random token
