"""Issue 9 hardening of authentication: refresh-token races, argon2 off the event loop, JSON bodies at ``/token``,
and OAuth's status for an unavailable database.

- item 7: the same refresh token sent several times at once mints exactly one successor; the others are reuse,
  which revokes the whole family — the successor minted concurrently and its access token included (every
  backend, truly concurrent requests, several rounds).
- item 8: random API keys hammering a server leave ``/health/live`` fast (argon2 runs in a thread pool), failed
  key checks are throttled per address (429 ``4029``), and a proven key is not hashed again per request.
- item 14: Spryker's JSON bodies (plain and Glue's ``{"data": {"attributes": …}}``) for every grant.
- item 19: a locked SQLite database or an unreachable one answers ``503 temporarily_unavailable`` with
  ``Retry-After`` at ``/token``.
"""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.auth import principals
from tests.auth.conftest import (
    API,
    access_token,
    assert_oauth_error,
    assert_unauthorized,
    bearer,
    client_token,
    new_api_key,
    new_client,
    new_user,
    on_one_backend,
    password_token,
    refresh,
    serve,
    settings_for,
    store,
    token_request,
)
from tests.conftest import BACKENDS, Backend

PROBE = f"{API}/countries/1"


def _at_once(base_url: str, forms: list[dict[str, str]]) -> list[httpx.Response]:
    """``POST /token`` with each form, released together: each on its own open connection, behind one barrier."""
    barrier = threading.Barrier(len(forms))

    def one(form: dict[str, str]) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            assert client.get("/health/live").status_code == 200  # the connection is open before the race
            barrier.wait()
            return client.post("/token", data=form)

    with ThreadPoolExecutor(len(forms)) as pool:
        return list(pool.map(one, forms))


def _family_rows(backend: Backend, subject: str) -> list[tuple[object, object]]:
    rows = backend.sql("SELECT used_at, revoked_at FROM dx_refresh_token WHERE subject = :s", s=subject)
    return [(used, revoked) for used, revoked in rows]


# --- item 7: refresh-token race ------------------------------------------------------------------------------------


def test_concurrent_refresh_mints_one_successor_and_revokes_the_family(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    (user_id,) = backend.sql("SELECT id FROM dx_user WHERE email = :e", e=email)[0]
    subject = f"user:{user_id}"
    for _round in range(4):
        backend.sql("DELETE FROM dx_refresh_token WHERE subject = :s", s=subject)
        login = password_token(backend.base_url, email, password).json()
        form = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
        answers = _at_once(backend.base_url, [form] * 5)
        winners = [r for r in answers if r.status_code == 200]
        assert len(winners) == 1, [(r.status_code, r.text[:80]) for r in answers]
        for loser in (r for r in answers if r.status_code != 200):
            assert_oauth_error(loser, "invalid_grant")
        successor = winners[0].json()
        # one successor was minted, and the reuse revoked it with the rest of the family
        rows = _family_rows(backend, subject)
        assert len(rows) == 2, rows
        assert all(revoked is not None for _used, revoked in rows), rows
        assert_oauth_error(refresh(backend.base_url, successor["refresh_token"]), "invalid_grant")
        assert_oauth_error(refresh(backend.base_url, login["refresh_token"]), "invalid_grant")
        assert_unauthorized(
            httpx.get(f"{backend.base_url}{PROBE}", headers=bearer(successor["access_token"]), timeout=30)
        )
        assert len(_family_rows(backend, subject)) == 2  # nothing minted afterwards either


def test_reuse_racing_a_legitimate_refresh_leaves_nothing_of_the_family_working(backend: Backend) -> None:
    """A thief replays an old token while the owner refreshes the newest one: whichever commits first, the
    successor the owner may get is dead once the reuse is seen (a revocation covers tokens minted with it)."""
    email, password = new_user(backend, "viewer")
    for _round in range(4):
        first = password_token(backend.base_url, email, password).json()["refresh_token"]
        newest = refresh(backend.base_url, first).json()["refresh_token"]
        replay, owner = _at_once(
            backend.base_url, [{"grant_type": "refresh_token", "refresh_token": token} for token in (first, newest)]
        )
        assert_oauth_error(replay, "invalid_grant")
        if owner.status_code == 200:  # the owner was first: its successor is revoked with the family
            successor = owner.json()
            assert_oauth_error(refresh(backend.base_url, successor["refresh_token"]), "invalid_grant")
            assert_unauthorized(
                httpx.get(f"{backend.base_url}{PROBE}", headers=bearer(successor["access_token"]), timeout=30)
            )
        else:
            assert_oauth_error(owner, "invalid_grant")
        assert_oauth_error(refresh(backend.base_url, newest), "invalid_grant")


def test_sequential_reuse_also_ends_access_tokens_of_the_family(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    login = password_token(backend.base_url, email, password).json()
    other = password_token(backend.base_url, email, password).json()  # another login: another family
    renewed = refresh(backend.base_url, login["refresh_token"]).json()
    probe = lambda token: httpx.get(f"{backend.base_url}{PROBE}", headers=bearer(token), timeout=30)  # noqa: E731
    assert probe(renewed["access_token"]).status_code == 200
    assert_oauth_error(refresh(backend.base_url, login["refresh_token"]), "invalid_grant")  # reuse
    deadline = time.monotonic() + backend.settings.principal_cache_seconds + 1
    while probe(renewed["access_token"]).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_unauthorized(probe(renewed["access_token"]))
    assert_unauthorized(probe(login["access_token"]))
    assert probe(other["access_token"]).status_code == 200
    assert refresh(backend.base_url, other["refresh_token"]).status_code == 200


# --- item 8: argon2 off the event loop, throttled key checks, fast valid keys ---------------------------------------

_HAMMER = """
import asyncio, json, secrets, sys
import httpx

async def main(url, seconds, connections):
    statuses = {}
    async def one():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                key = "dxk_" + secrets.token_urlsafe(32)
                response = await client.get("/dynamic-entity/countries/1", headers={"X-Api-Key": key})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    await asyncio.gather(*(one() for _ in range(connections)))
    print(json.dumps(statuses))

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""


def _live_latencies(client: httpx.Client, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        assert client.get("/health/live").status_code == 200
        samples.append(time.perf_counter() - start)
        time.sleep(0.01)
    return samples


@on_one_backend()
def test_random_api_keys_do_not_stall_the_event_loop(backend: Backend) -> None:
    """Four connections of random keys (each one an argon2 verification) from another process: ``/health/live``
    stays within a small factor of its idle latency, measured just before on the same server."""
    with (
        serve(settings_for(backend, token_attempts_per_address=1_000_000)) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        _live_latencies(client, 5)
        idle = statistics.median(_live_latencies(client, 30))
        hammer = subprocess.Popen(
            [sys.executable, "-c", _HAMMER, base_url, "4", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.0)  # the load process is up and its connections are busy
            loaded = statistics.median(_live_latencies(client, 60))
        finally:
            out, err = hammer.communicate(timeout=60)
        assert hammer.returncode == 0, err
        statuses = json.loads(out)
        assert set(statuses) == {"401"} and statuses["401"] >= 20, statuses  # the load really was argon2 work
        assert loaded < idle * 3 + 0.004, (
            f"/health/live median {loaded * 1000:.1f} ms under load, {idle * 1000:.1f} ms idle"
        )


def _key_get(base_url: str, key: str) -> httpx.Response:
    return httpx.get(f"{base_url}{PROBE}", headers={"X-Api-Key": key}, timeout=30)


@on_one_backend()
def test_failed_api_key_checks_are_throttled_per_address(backend: Backend) -> None:
    _, proven = new_api_key(backend, "countries:read")
    _, fresh = new_api_key(backend, "countries:read")
    reader = new_client(backend, "countries:read")
    with serve(settings_for(backend, token_attempts_per_address=5)) as base_url:
        token = access_token(client_token(base_url, *reader))
        assert _key_get(base_url, proven).status_code == 200
        for _ in range(5):
            assert_unauthorized(_key_get(base_url, "dxk_" + secrets.token_urlsafe(32)))
        for key in ("dxk_" + secrets.token_urlsafe(32), "garbage", fresh):  # unchecked keys wait, valid ones too
            throttled = _key_get(base_url, key)
            assert throttled.status_code == 429, (throttled.status_code, throttled.text)
            body = throttled.json()
            assert body[0]["code"] == "4029" and body[0]["status"] == 429, body
            assert throttled.headers["x-dxapi-error-code"] == "4029"
            retry = throttled.headers.get("retry-after", "")
            assert retry.isdigit() and 1 <= int(retry) <= 61, retry
        assert _key_get(base_url, proven).status_code == 200  # a key proven before costs no hash: still served
        assert httpx.get(f"{base_url}{PROBE}", headers=bearer(token), timeout=30).status_code == 200


@on_one_backend()
def test_a_proven_api_key_is_not_hashed_again_but_revocation_still_applies(backend: Backend) -> None:
    """With no status cache at all (``DXAPI_PRINCIPAL_CACHE_SECONDS=0``) every request re-reads the key's row, yet
    only the first one pays for argon2: key requests cost about what bearer-token requests cost."""
    prefix, key = new_api_key(backend, "countries:read")
    reader = new_client(backend, "countries:read")
    with (
        serve(settings_for(backend, principal_cache_seconds=0)) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        token = access_token(client_token(base_url, *reader))

        def median_latency(headers: dict[str, str]) -> float:
            samples = []
            for _ in range(25):
                start = time.perf_counter()
                assert client.get(PROBE, headers=headers).status_code == 200
                samples.append(time.perf_counter() - start)
            return statistics.median(samples)

        median_latency({"X-Api-Key": key})
        by_token, by_key = median_latency(bearer(token)), median_latency({"X-Api-Key": key})
        assert by_key < by_token * 2 + 0.008, f"key {by_key * 1000:.1f} ms, token {by_token * 1000:.1f} ms"
        assert store(backend, lambda e: principals.revoke_api_key(e, prefix))
        assert_unauthorized(client.get(PROBE, headers={"X-Api-Key": key}))


# --- item 14: JSON bodies at /token ----------------------------------------------------------------------------------


def _json_token(base_url: str, document: object, media_type: str = "application/json") -> httpx.Response:
    content = document if isinstance(document, (bytes, str)) else json.dumps(document)
    return token_request(base_url, content=content, headers={"Content-Type": media_type})


def test_spryker_json_bodies_for_every_grant(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    plain = _json_token(backend.base_url, {"grantType": "password", "username": email, "password": password})
    assert plain.status_code == 200, plain.text
    glue = _json_token(
        backend.base_url,
        {
            "data": {
                "type": "token",
                "attributes": {
                    "grantType": "password",
                    "username": email,
                    "password": password,
                    "scope": "countries:read",
                },
            }
        },
    )
    assert glue.status_code == 200, glue.text
    assert glue.json()["scope"] == "countries:read"
    renewed = _json_token(
        backend.base_url, {"grantType": "refresh_token", "refreshToken": plain.json()["refresh_token"]}
    )
    assert renewed.status_code == 200, renewed.text
    client_id, secret = new_client(backend, "countries:read")
    by_client = _json_token(
        backend.base_url,
        {"data": {"attributes": {"grantType": "client_credentials", "clientId": client_id, "clientSecret": secret}}},
        "application/vnd.api+json",
    )
    assert by_client.status_code == 200, by_client.text
    snake = _json_token(
        backend.base_url,
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        "application/json; charset=utf-8",
    )
    assert snake.status_code == 200, snake.text
    for answer in (plain, glue, renewed, by_client, snake):
        assert (
            httpx.get(
                f"{backend.base_url}{PROBE}", headers=bearer(answer.json()["access_token"]), timeout=30
            ).status_code
            == 200
        )
    wrong = _json_token(backend.base_url, {"grantType": "password", "username": email, "password": password + "x"})
    assert_oauth_error(wrong, "invalid_grant")


@on_one_backend()
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'"password"',
        b"null",
        b'{"grantType": "password", "grantType": "password"}',
        b'{"grantType": "client_credentials", "grant_type": "client_credentials"}',
        b'{"grantType": 1}',
        b'{"grantType": "password", "username": ["a@b.c"], "password": "x"}',
        b'{"data": []}',
        b'{"data": {"type": "token", "attributes": "grantType=password"}}',
        b'{"data": {"type": "access-token", "attributes": {"grantType": "password"}}}',
        b'{"grantType": "password", "username": "a@b.c", "password": "' + b"x" * 10_000 + b'"}',
        b"\xff\xfe{}",
    ],
    ids=[
        "empty",
        "broken",
        "array",
        "string",
        "null",
        "duplicate",
        "both-spellings",
        "number",
        "list-value",
        "data-array",
        "attributes-string",
        "wrong-type",
        "oversized",
        "not-utf8",
    ],
)
def test_bad_json_bodies_are_invalid_request(backend: Backend, body: bytes) -> None:
    assert_oauth_error(_json_token(backend.base_url, body), "invalid_request")


@on_one_backend()
def test_json_body_without_grant_type_and_other_media_types(backend: Backend) -> None:
    assert_oauth_error(_json_token(backend.base_url, {"username": "a@b.c", "password": "x" * 12}), "invalid_request")
    assert_oauth_error(_json_token(backend.base_url, {"grantType": "implicit"}), "unsupported_grant_type")
    assert_oauth_error(_json_token(backend.base_url, b"grant_type=client_credentials", "text/plain"), "invalid_request")


# --- item 19: database failures at /token are 503 temporarily_unavailable; bad text never reaches the database


def test_text_no_database_can_store_is_invalid_request(backend: Backend) -> None:
    """A NUL (PostgreSQL refuses it in text) or a lone surrogate (no UTF-8 at all) is refused before any query."""
    for username in ("a\x00b@example.com", "\ud800@example.com"):
        document = json.dumps({"grantType": "password", "username": username, "password": "x" * 12})
        assert_oauth_error(_json_token(backend.base_url, document), "invalid_request")
    form = "grant_type=password&username=a%00b%40example.com&password=xxxxxxxxxxxx"
    assert_oauth_error(_json_token(backend.base_url, form, "application/x-www-form-urlencoded"), "invalid_request")
    assert_oauth_error(
        token_request(backend.base_url, {"grant_type": "client_credentials"}, auth=("dxc\x00", "x")),
        "invalid_client",
        401,
    )


def _assert_temporarily_unavailable(response: httpx.Response) -> None:
    assert_oauth_error(response, "temporarily_unavailable", 503)
    retry = response.headers.get("retry-after", "")
    assert retry.isdigit() and int(retry) >= 1, retry


@pytest.mark.skipif("sqlite" not in BACKENDS, reason="SQLite is not among DXAPI_TEST_BACKENDS")
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_token_under_sqlite_lock_contention_is_503(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    path = make_url(backend.url).database
    assert path
    holder = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock longer than the busy timeout
        _assert_temporarily_unavailable(password_token(backend.base_url, email, password))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert password_token(backend.base_url, email, password).status_code == 200


def test_token_with_the_database_unreachable_is_503(backend: Backend) -> None:
    client_id, secret = new_client(backend, "countries:read")
    url = make_url(backend.url)
    if url.get_backend_name() == "sqlite":
        gone = url.set(database=f"/nonexistent-{secrets.token_hex(4)}/shop.db")
    else:
        gone = url.set(host="127.0.0.1", port=9)  # discard port: nothing listens
    with serve(settings_for(backend, database_url=gone.render_as_string(hide_password=False))) as base_url:
        _assert_temporarily_unavailable(client_token(base_url, client_id, secret))
        _assert_temporarily_unavailable(refresh(base_url, "made-up"))


# --- the family index reaches databases initialised by older versions --------------------------------------------


def test_init_adds_the_family_index_to_an_older_schema(backend: Backend) -> None:
    from dxapi.registry.store import ensure_schema

    def indexes() -> set[str]:
        async def names(engine: AsyncEngine) -> set[str]:
            async with engine.connect() as conn:
                found = await conn.run_sync(lambda sync: sa.inspect(sync).get_indexes("dx_refresh_token"))
            return {str(index["name"]) for index in found}

        found: set[str] = store(backend, names)
        return found

    assert "ix_dx_refresh_token_family" in indexes()
    on_table = " ON dx_refresh_token" if backend.name == "mysql" else ""
    backend.sql(f"DROP INDEX ix_dx_refresh_token_family{on_table}")
    assert "ix_dx_refresh_token_family" not in indexes()
    store(backend, ensure_schema)
    assert "ix_dx_refresh_token_family" in indexes()
    store(backend, ensure_schema)  # idempotent


def test_a_client_that_hangs_up_mid_body_is_no_server_error(backend: Backend) -> None:
    """Half a form and then gone: nothing to answer, and nothing logged as a failure of the server (the
    autouse check of tests.conftest fails the test on any server error)."""
    url = httpx.URL(backend.base_url)
    with socket.create_connection((url.host, url.port or 80), timeout=5) as sock:
        sock.sendall(
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000\r\n\r\ngrant_type=client_credentials&client_id="
        )
        time.sleep(0.1)
    time.sleep(0.3)  # the server meets the hang-up and finishes the request
    assert backend.client.get("/health/live").status_code == 200
