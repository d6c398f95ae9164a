"""CORS (``DXAPI_CORS_ORIGINS``) and gzip compression (``DXAPI_GZIP_MIN_BYTES``), on each backend.

The shared test server has no CORS origins (the default): it must send no CORS header at all. A second server
on the same database, with one allowed origin, answers preflights and actual requests from browsers.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import pytest

from tests.api.test_read import assert_error
from tests.conftest import Backend, _start_server

PREFIX = "/dynamic-entity"
ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"


@pytest.fixture(scope="module")
def cors(backend: Backend) -> Iterator[httpx.Client]:
    server, thread, base_url = _start_server(backend.settings.model_copy(update={"cors_origins": [ALLOWED]}))
    try:
        with httpx.Client(base_url=base_url, timeout=30, headers=backend.client.headers) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def preflight(
    client: httpx.Client, origin: str, method: str = "PATCH", headers: str = "authorization"
) -> httpx.Response:
    return client.options(
        PREFIX + "/products",
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


# --- CORS ------------------------------------------------------------------------------------------------------


def test_preflight_from_an_allowed_origin(cors: httpx.Client) -> None:
    response = preflight(cors, ALLOWED, "PATCH", "authorization, content-type, idempotency-key, if-match")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert set(response.headers["access-control-allow-methods"].split(", ")) == {
        "GET",
        "POST",
        "PATCH",
        "PUT",
        "DELETE",
    }
    allowed = {h.lower() for h in response.headers["access-control-allow-headers"].split(", ")}
    assert {"authorization", "content-type", "idempotency-key", "if-match", "if-none-match", "prefer"} <= allowed
    assert {"x-is-transactional", "x-api-key"} <= allowed
    assert "access-control-allow-credentials" not in response.headers
    assert "origin" in response.headers["vary"].lower()


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [(OTHER, "GET", "authorization"), (ALLOWED, "TRACE", "authorization"), (ALLOWED, "GET", "x-secret-header")],
    ids=["origin", "method", "header"],
)
def test_preflight_refused(cors: httpx.Client, origin: str, method: str, headers: str) -> None:
    response = preflight(cors, origin, method, headers)
    assert response.status_code == 400
    assert response.headers.get("access-control-allow-origin") != origin or origin == ALLOWED
    if origin == OTHER:
        assert "access-control-allow-origin" not in response.headers


def test_actual_request_from_an_allowed_origin_exposes_dxapi_headers(cors: httpx.Client) -> None:
    response = cors.get(PREFIX + "/products", params={"page[limit]": "1"}, headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert exposed == {
        "etag",
        "idempotency-replayed",
        "preference-applied",
        "retry-after",
        "x-dxapi-error-code",
        "link",
        "x-request-id",
        "server-timing",
        "ratelimit",
        "ratelimit-policy",
    }
    assert response.json()["data"]


def test_errors_carry_cors_headers_too(cors: httpx.Client) -> None:
    response = cors.get(PREFIX + "/products", params={"sort": "nope"}, headers={"Origin": ALLOWED})
    assert_error(response, 400, "2005")
    assert response.headers["access-control-allow-origin"] == ALLOWED


def test_actual_request_from_another_origin_has_no_cors_headers(cors: httpx.Client) -> None:
    response = cors.get(PREFIX + "/products", params={"page[limit]": "1"}, headers={"Origin": OTHER})
    assert response.status_code == 200  # the browser, not the server, withholds the answer
    assert "access-control-allow-origin" not in response.headers


def test_without_cors_origins_no_cors_headers_at_all(api: httpx.Client) -> None:
    response = preflight(api, ALLOWED)
    assert not [name for name in response.headers if name.startswith("access-control-")]
    assert response.status_code == 405  # no OPTIONS route: what a server without CORS answers
    actual = api.get(PREFIX + "/products", params={"page[limit]": "1"}, headers={"Origin": ALLOWED})
    assert not [name for name in actual.headers if name.startswith("access-control-")]


# --- gzip ------------------------------------------------------------------------------------------------------


def raw_get(api: httpx.Client, path: str, params: dict[str, str], encoding: str | None) -> httpx.Response:
    headers = {"Accept-Encoding": encoding} if encoding else {"Accept-Encoding": "identity"}
    with api.stream("GET", PREFIX + path, params=params, headers=headers) as response:
        response.raw = b"".join(response.iter_raw())  # type: ignore[attr-defined]
    return response


def test_large_page_is_gzipped_for_a_client_that_accepts_it(api: httpx.Client) -> None:
    params = {"page[limit]": "300"}
    plain = raw_get(api, "/products", params, None)
    packed = raw_get(api, "/products", params, "gzip, deflate, br")
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    assert plain.headers["vary"] == "Accept-Encoding"  # the same URL varies by it, compressed or not
    body = gzip.decompress(packed.raw)  # type: ignore[attr-defined]
    assert body == plain.raw  # type: ignore[attr-defined]
    assert int(packed.headers["content-length"]) == len(packed.raw) < len(body) / 3  # type: ignore[attr-defined]


def test_small_answers_are_not_compressed(api: httpx.Client) -> None:
    response = raw_get(api, "/countries", {"page[limit]": "1"}, "gzip")
    assert "content-encoding" not in response.headers
    assert len(response.raw) < 1400  # type: ignore[attr-defined]
    error = raw_get(api, "/products", {"sort": "nope"}, "gzip")
    assert error.status_code == 400 and "content-encoding" not in error.headers


def test_etag_and_304_with_gzip(api: httpx.Client) -> None:
    first = api.get(PREFIX + "/products", params={"page[limit]": "1"}).json()["data"][0]
    path = f"{PREFIX}/products/{first['idProduct']}"
    plain = api.get(path, headers={"Accept-Encoding": "identity"})
    packed = api.get(path, headers={"Accept-Encoding": "gzip"})
    assert plain.headers["etag"] == packed.headers["etag"]  # the tag is of the row, not of the bytes
    again = api.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b"" and "content-encoding" not in again.headers
