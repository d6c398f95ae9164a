"""``POST /token`` (RFC 6749, RFC 9700; security-and-reliability §7 T07, T11, T13, T14).

Grants that store or read rows (client credentials, password, refresh rotation and family revocation) run on
every backend; request-syntax checks, timing and throttling run on one backend, throttling and the switched-off
password grant on private servers with their own settings.
"""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Callable

import httpx
import jwt
import pytest

from dxapi.auth import principals
from tests.auth.conftest import (
    API,
    access_token,
    assert_oauth_error,
    assert_unauthorized,
    bearer,
    client_token,
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
from tests.conftest import Backend


@pytest.fixture(scope="session")
def reader_client(backend: Backend) -> tuple[str, str]:
    return new_client(backend, "products:read countries:read")


def _api_status(base_url: str, token: str, path: str = f"{API}/products/1") -> int:
    return httpx.get(f"{base_url}{path}", headers=bearer(token), timeout=30).status_code


# --- client credentials -------------------------------------------------------------------------------------------


def test_client_credentials_success(backend: Backend, reader_client: tuple[str, str]) -> None:
    response = client_token(backend.base_url, *reader_client)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "no-store" in response.headers["cache-control"]
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == backend.settings.access_token_ttl
    assert body["scope"] == "countries:read products:read"
    assert "refresh_token" not in body  # RFC 6749 §4.4.3
    token = body["access_token"]
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert _api_status(backend.base_url, token) == 200


def test_client_authentication_failures_look_the_same(backend: Backend, reader_client: tuple[str, str]) -> None:
    client_id, secret = reader_client
    wrong = client_token(backend.base_url, client_id, secret[:-2] + "xx")
    unknown = client_token(backend.base_url, "dxc_" + "n" * 16, secret)
    missing = token_request(backend.base_url, {"grant_type": "client_credentials", "client_id": client_id})
    for response in (wrong, unknown, missing):
        assert_oauth_error(response, "invalid_client", 401)
        assert response.headers.get("www-authenticate", "").startswith("Basic")
    assert wrong.content == unknown.content == missing.content
    assert dict(_stable(wrong.headers)) == dict(_stable(unknown.headers))


def _stable(headers: httpx.Headers) -> list[tuple[str, str]]:
    per_request = ("date", "content-length", "x-request-id", "server-timing")
    return sorted((k, v) for k, v in headers.items() if k not in per_request)


@on_one_backend()
def test_client_authentication_timing_does_not_tell_unknown_from_wrong(
    backend: Backend, reader_client: tuple[str, str]
) -> None:
    """CWE-204: an unknown client id costs the same argon2 verification as a wrong secret.

    The fastest of several attempts is compared (within 50 %): it is the intrinsic cost, while medians move
    with whatever else the machine is doing."""
    client_id, secret = reader_client
    known: list[float] = []
    unknown: list[float] = []
    for i in range(9):
        for target, samples in ((client_id, known), (f"dxc_unknown{i:04d}xxxxxx", unknown)):
            start = time.perf_counter()
            response = client_token(backend.base_url, target, secret + "wrong")
            samples.append(time.perf_counter() - start)
            assert response.status_code == 401
    fastest = min(known), min(unknown)
    assert max(fastest) < min(fastest) * 1.5, f"fastest wrong secret {fastest[0]:.4f}s, unknown {fastest[1]:.4f}s"


@on_one_backend()
def test_password_timing_does_not_tell_unknown_user_from_wrong_password(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    known: list[float] = []
    unknown: list[float] = []
    for i in range(7):
        for user, samples in ((email, known), (f"nobody{i}@example.com", unknown)):
            start = time.perf_counter()
            response = password_token(backend.base_url, user, password + "wrong")
            samples.append(time.perf_counter() - start)
            assert response.status_code == 400
    medians = statistics.median(known), statistics.median(unknown)
    assert max(medians) < min(medians) * 1.5, f"median wrong password {medians[0]:.4f}s, unknown {medians[1]:.4f}s"


@on_one_backend()
def test_client_authentication_by_http_basic(backend: Backend, reader_client: tuple[str, str]) -> None:
    client_id, secret = reader_client
    response = token_request(backend.base_url, {"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert _api_status(backend.base_url, access_token(response)) == 200
    wrong = token_request(backend.base_url, {"grant_type": "client_credentials"}, auth=(client_id, "nope"))
    assert_oauth_error(wrong, "invalid_client", 401)
    garbage = token_request(
        backend.base_url, {"grant_type": "client_credentials"}, headers={"Authorization": "Basic %%%not-base64"}
    )
    assert_oauth_error(garbage, "invalid_client", 401)
    no_colon = token_request(
        backend.base_url,
        {"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(client_id.encode()).decode()},
    )
    assert_oauth_error(no_colon, "invalid_client", 401)


@on_one_backend()
def test_two_client_authentication_methods_do_not_get_a_token(backend: Backend, reader_client: tuple[str, str]) -> None:
    """RFC 6749 §2.3: one method per request; a wrong Basic secret is not rescued by a right form secret."""
    client_id, secret = reader_client
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    response = token_request(backend.base_url, form, auth=(client_id, "wrong-secret"))
    assert response.status_code in (400, 401), response.text
    assert "access_token" not in response.text


# --- password grant and refresh tokens ---------------------------------------------------------------------------


def test_password_grant_success(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    response = password_token(backend.base_url, email.upper(), password)  # e-mail addresses match any case
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers["cache-control"]
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == backend.settings.access_token_ttl
    assert body["refresh_token"] and body["refresh_token"] != body["access_token"]
    assert body["scope"] == "*:read"
    assert _api_status(backend.base_url, body["access_token"]) == 200


@on_one_backend()
def test_password_grant_scope_narrows_the_role(backend: Backend) -> None:
    """A viewer (``*:read``) may ask for less: ``scope=products:read`` gives a token for products only."""
    email, password = new_user(backend, "viewer")
    narrowed = password_token(backend.base_url, email, password, scope="products:read")
    assert narrowed.status_code == 200, narrowed.text
    token = narrowed.json()["access_token"]
    assert _api_status(backend.base_url, token) == 200
    assert _api_status(backend.base_url, token, f"{API}/tax-rates/1") == 403
    assert_oauth_error(password_token(backend.base_url, email, password, scope="products:write"), "invalid_scope")


def test_password_grant_failures_look_the_same(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    wrong = password_token(backend.base_url, email, password + "x")
    unknown = password_token(backend.base_url, "nobody-" + email, password)
    for response in (wrong, unknown):
        assert_oauth_error(response, "invalid_grant")
    assert wrong.content == unknown.content
    assert _stable(wrong.headers) == _stable(unknown.headers)


@on_one_backend()
def test_refresh_after_role_downgrade_gets_the_new_role(backend: Backend) -> None:
    """An editor demoted to viewer must not keep minting ``*:write`` tokens from an old refresh token."""
    email, password = new_user(backend, "editor")
    login = password_token(backend.base_url, email, password).json()
    assert login["scope"] == "*:read *:write"
    store(backend, lambda e: principals.set_user(e, email, role="viewer"))
    renewed = refresh(backend.base_url, login["refresh_token"])
    if renewed.status_code == 200:
        assert renewed.json()["scope"] == "*:read", renewed.json()["scope"]
    else:
        assert_oauth_error(renewed, "invalid_grant")


@on_one_backend()
def test_password_grant_missing_fields_is_invalid_request(backend: Backend) -> None:
    assert_oauth_error(
        token_request(backend.base_url, {"grant_type": "password", "username": "a@b.c"}), "invalid_request"
    )
    assert_oauth_error(
        token_request(backend.base_url, {"grant_type": "password", "password": "x" * 12}), "invalid_request"
    )


@on_one_backend()
def test_password_grant_can_be_switched_off(backend: Backend, reader_client: tuple[str, str]) -> None:
    email, password = new_user(backend, "viewer")
    with serve(settings_for(backend, password_grant=False)) as base_url:
        assert_oauth_error(password_token(base_url, email, password), "unsupported_grant_type")
        assert client_token(base_url, *reader_client).status_code == 200  # the other grants still work


def test_refresh_rotates(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    first = password_token(backend.base_url, email, password).json()
    second = refresh(backend.base_url, first["refresh_token"])
    assert second.status_code == 200, second.text
    assert "no-store" in second.headers["cache-control"]
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert _api_status(backend.base_url, body["access_token"]) == 200
    third = refresh(backend.base_url, body["refresh_token"])  # the new one goes on working once
    assert third.status_code == 200, third.text


def test_refresh_token_reuse_revokes_the_family(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    stolen = password_token(backend.base_url, email, password).json()["refresh_token"]
    other_session = password_token(backend.base_url, email, password).json()["refresh_token"]
    newest = refresh(backend.base_url, stolen).json()["refresh_token"]
    assert_oauth_error(refresh(backend.base_url, stolen), "invalid_grant")  # the old one fails…
    assert_oauth_error(refresh(backend.base_url, newest), "invalid_grant")  # …and revoked the newest too
    assert_oauth_error(refresh(backend.base_url, stolen), "invalid_grant")
    # another login of the same user is another family: untouched
    assert refresh(backend.base_url, other_session).status_code == 200


@on_one_backend()
def test_refresh_grant_refuses_other_tokens(backend: Backend, reader_client: tuple[str, str]) -> None:
    token = access_token(client_token(backend.base_url, *reader_client))
    assert_oauth_error(refresh(backend.base_url, token), "invalid_grant")  # an access token is no refresh token
    assert_oauth_error(refresh(backend.base_url, "made-up"), "invalid_grant")
    assert_oauth_error(token_request(backend.base_url, {"grant_type": "refresh_token"}), "invalid_request")


# --- request syntax ------------------------------------------------------------------------------------------------


@on_one_backend()
@pytest.mark.parametrize(
    "grant", ["implicit", "authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer", "CLIENT_CREDENTIALS"]
)
def test_unknown_grant_is_unsupported(backend: Backend, reader_client: tuple[str, str], grant: str) -> None:
    client_id, secret = reader_client
    form = {"grant_type": grant, "client_id": client_id, "client_secret": secret}
    assert_oauth_error(token_request(backend.base_url, form), "unsupported_grant_type")


@on_one_backend()
def test_missing_grant_type_is_invalid_request(backend: Backend, reader_client: tuple[str, str]) -> None:
    client_id, secret = reader_client
    assert_oauth_error(
        token_request(backend.base_url, {"client_id": client_id, "client_secret": secret}), "invalid_request"
    )


@on_one_backend()
def test_body_of_another_media_type_is_invalid_request(backend: Backend, reader_client: tuple[str, str]) -> None:
    """Forms and JSON (Spryker's clients, see test_hardening) are parameters; any other body is not."""
    client_id, secret = reader_client
    form = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
    response = httpx.post(f"{backend.base_url}/token", content=form, headers={"Content-Type": "text/plain"}, timeout=30)
    assert_oauth_error(response, "invalid_request")
    no_type = httpx.post(
        f"{backend.base_url}/token",
        timeout=30,
        content=f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}",
    )
    assert_oauth_error(no_type, "invalid_request")


@on_one_backend()
@pytest.mark.parametrize("repeated", ["grant_type", "client_id", "client_secret", "scope"])
def test_repeated_parameter_is_invalid_request(backend: Backend, reader_client: tuple[str, str], repeated: str) -> None:
    client_id, secret = reader_client
    pairs = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("scope", "products:read"),
    ]
    value = dict(pairs)[repeated]
    pairs.append((repeated, value))
    body = "&".join(f"{k}={v}" for k, v in pairs)
    response = token_request(
        backend.base_url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_oauth_error(response, "invalid_request")


@on_one_backend()
def test_oversized_and_broken_forms_are_invalid_request(backend: Backend) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    big = token_request(backend.base_url, content="grant_type=client_credentials&x=" + "a" * 20_000, headers=headers)
    assert_oauth_error(big, "invalid_request")
    binary = token_request(backend.base_url, content=b"grant_type=\xff\xfe", headers=headers)
    assert_oauth_error(binary, "invalid_request")


@on_one_backend()
def test_access_token_in_query_string_is_ignored(backend: Backend, reader_client: tuple[str, str]) -> None:
    token = access_token(client_token(backend.base_url, *reader_client))
    response = httpx.get(f"{backend.base_url}{API}/products/1", params={"access_token": token}, timeout=30)
    assert_unauthorized(response, "4001")


# --- throttling ------------------------------------------------------------------------------------------------------


def _assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text)
    retry = response.headers.get("retry-after", "")
    assert retry.isdigit() and 1 <= int(retry) <= 61, retry
    assert "access_token" not in response.text
    assert "no-store" in response.headers.get("cache-control", "")


@on_one_backend()
def test_token_attempts_are_throttled_per_client(backend: Backend) -> None:
    victim_id, victim_secret = new_client(backend, "products:read")
    bystander = new_client(backend, "products:read")
    settings = settings_for(backend, token_attempts_per_minute=3, token_attempts_per_address=1000)
    with serve(settings) as base_url:
        for _ in range(3):
            assert_oauth_error(client_token(base_url, victim_id, "wrong-secret"), "invalid_client", 401)
        _assert_throttled(client_token(base_url, victim_id, victim_secret))  # the right secret is refused too
        # neither a random extra field nor a spoofed X-Forwarded-For resets the counter (Strapi CVE-2025-64526)
        form = {"grant_type": "client_credentials", "client_id": victim_id, "client_secret": victim_secret}
        _assert_throttled(token_request(base_url, {**form, "nonce": "123"}))
        _assert_throttled(token_request(base_url, form, headers={"X-Forwarded-For": "203.0.113.9"}))
        assert client_token(base_url, *bystander).status_code == 200  # other clients are unaffected


@on_one_backend()
def test_password_attempts_are_throttled_per_user(backend: Backend) -> None:
    email, password = new_user(backend, "viewer")
    settings = settings_for(backend, token_attempts_per_minute=3, token_attempts_per_address=1000)
    with serve(settings) as base_url:
        for _ in range(3):
            assert_oauth_error(password_token(base_url, email, "wrong-password-123"), "invalid_grant")
        _assert_throttled(password_token(base_url, email.upper(), password))  # same user, other spelling


@on_one_backend()
def test_token_attempts_are_throttled_per_address(backend: Backend) -> None:
    settings = settings_for(backend, token_attempts_per_minute=1000, token_attempts_per_address=5)
    with serve(settings) as base_url:
        attempt: Callable[[int], httpx.Response] = lambda i: client_token(base_url, f"dxc_guess{i:08d}", "x")  # noqa: E731
        for i in range(5):
            assert attempt(i).status_code == 401
        _assert_throttled(attempt(99))  # a new client id per guess does not escape the address limit
