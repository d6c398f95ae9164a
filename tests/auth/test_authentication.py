"""Authentication of every generated route (security-and-reliability §7 T01, T02, T04-T08).

Each credential variant is sent to every generated route of a configured alias (``countries``) and of an alias
that does not exist: GET/PATCH/PUT/DELETE on the collection and on ``/{id}``, POST on the collection. Every one
must answer 401 with ``WWW-Authenticate: Bearer …`` and the catalogue error array — ``4001`` when no credentials
were sent, ``001`` when the ones sent are not valid — and no refused write may change a row (``shop_country``
and ``shop_tax_rate`` are fingerprinted before and after).

Hostile tokens are forged with the server's own secret and ``kid`` (``Forger``) so that only the property under
test is wrong; ``test_forged_baseline_is_accepted`` is the control. Variants whose verdict involves the database
(no credentials, an unknown subject, a refresh token, and a sample of broken tokens against refused writes) run
on every backend; the other pure token variants run on the first configured backend.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.auth.conftest import (
    API,
    DROP,
    Forger,
    access_token,
    assert_unauthorized,
    b64url,
    bearer,
    client_token,
    fingerprint,
    new_user,
    on_one_backend,
    password_token,
)
from tests.conftest import Backend

NEW_COUNTRY = {"iso2Code": "QQ", "iso3Code": "QQQ", "name": "Nowhere", "postalCodeMandatory": False}
TABLES = ("shop_country", "shop_tax_rate")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    params: dict[str, str] | None = None

    def send(self, client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
        return client.request(self.method, self.path, json=self.body, params=self.params, headers=headers)

    def __str__(self) -> str:
        return f"{self.method} {self.path}{'?' + str(self.params) if self.params else ''}"


def routes(alias: str) -> list[Call]:
    """Every generated route of one alias, each with a body or filter that would really write."""
    base, item = f"{API}/{alias}", f"{API}/{alias}/1"
    return [
        Call("GET", base),
        Call("GET", item),
        Call("POST", base, {"data": [NEW_COUNTRY]}),
        Call("PATCH", base, {"data": [{"idCountry": 1, "name": "Hacked"}]}),
        Call("PATCH", item, {"data": {"name": "Hacked"}}),
        Call("PUT", base, {"data": [{"idCountry": 1, **NEW_COUNTRY}]}),
        Call("PUT", item, {"data": NEW_COUNTRY}),
        Call("DELETE", base, params={f"filter[{alias}.idCountry]": "1"}),
        Call("DELETE", item),
    ]


ALL_ROUTES = routes("countries") + routes("no-such-alias")


@dataclass
class Context:
    backend: Backend
    forger: Forger
    admin: tuple[str, str]


def _flip(segment: str, position: int) -> str:
    """Change one base64url character in the middle of a segment (a different byte after decoding)."""
    char = segment[position]
    return segment[:position] + ("B" if char != "B" else "C") + segment[position + 1 :]


def _refresh_token(ctx: Context) -> str:
    email, password = new_user(ctx.backend)
    response = password_token(ctx.backend.base_url, email, password)
    assert response.status_code == 200, response.text
    token: str = response.json()["refresh_token"]
    return token


def _flipped_payload(ctx: Context) -> str:
    header, payload, signature = ctx.forger.token().split(".")
    return ".".join((header, _flip(payload, len(payload) // 2), signature))


def _tampered_claims(ctx: Context) -> str:
    """A valid token whose payload is replaced (wider scope, another subject) while the signature is kept."""
    header, _, signature = ctx.forger.token(ctx.forger.claims(scope="products:read")).split(".")
    payload = b64url(json.dumps(ctx.forger.claims(sub="client:someone-else")).encode())
    return ".".join((header, payload, signature))


def _flipped_signature(ctx: Context) -> str:
    header, payload, signature = ctx.forger.token().split(".")
    return ".".join((header, payload, _flip(signature, len(signature) // 2)))


def _huge(ctx: Context) -> str:
    """A correctly signed 100 KB token (a claim padded out)."""
    return ctx.forger.token(ctx.forger.claims(pad="x" * 100_000))


FOREIGN_SECRET = "another-deployment-secret-" + "s" * 40

Variant = Callable[[Context], dict[str, str]]

# id → (headers builder, expected catalogue code)
VARIANTS: dict[str, tuple[Variant, str]] = {
    "no-credentials": (lambda c: {}, "4001"),
    "bearer-empty": (lambda c: {"Authorization": "Bearer"}, "001"),
    # the API ignores cookies completely (an admin-page session is no API credential)
    "cookie-only": (lambda c: {"Cookie": f"session={c.forger.token()}; access_token={c.forger.token()}"}, "4001"),
    "basic-with-valid-client-credentials": (
        lambda c: {"Authorization": "Basic " + base64.b64encode(f"{c.admin[0]}:{c.admin[1]}".encode()).decode()},
        "001",
    ),
    "token-without-scheme": (lambda c: {"Authorization": c.forger.token()}, "001"),
    "two-segments": (lambda c: bearer(".".join(c.forger.token().split(".")[:2])), "001"),
    "four-segments": (lambda c: bearer(c.forger.token() + ".AAAA"), "001"),
    "bad-base64": (lambda c: bearer("!!!$.%%%^.&&&*"), "001"),
    "garbage": (lambda c: bearer("not-a-token"), "001"),
    "flipped-payload-byte": (lambda c: bearer(_flipped_payload(c)), "001"),
    "tampered-claims": (lambda c: bearer(_tampered_claims(c)), "001"),
    "flipped-signature-byte": (lambda c: bearer(_flipped_signature(c)), "001"),
    "empty-signature": (lambda c: bearer(c.forger.token().rsplit(".", 1)[0] + "."), "001"),
    "100kb-token": (lambda c: bearer(_huge(c)), "001"),
    "expired": (
        lambda c: bearer(
            c.forger.token(
                c.forger.claims(exp=int(time.time()) - 120, iat=int(time.time()) - 900, nbf=int(time.time()) - 900)
            )
        ),
        "001",
    ),
    "alg-none": (lambda c: bearer(c.forger.unsigned("none")), "001"),
    "alg-NONE": (lambda c: bearer(c.forger.unsigned("NONE")), "001"),
    "alg-nOnE": (lambda c: bearer(c.forger.unsigned("nOnE")), "001"),
    "alg-none-with-signature": (
        lambda c: bearer(c.forger.unsigned("none") + c.forger.token().rsplit(".", 1)[1]),
        "001",
    ),
    "alg-HS512-server-secret": (lambda c: bearer(c.forger.token(headers=c.forger.headers(), algorithm="HS512")), "001"),
    "foreign-secret-same-kid": (lambda c: bearer(c.forger.token(key=FOREIGN_SECRET)), "001"),
    "foreign-secret-no-kid": (
        lambda c: bearer(c.forger.token(headers=c.forger.headers(kid=DROP), key=FOREIGN_SECRET)),
        "001",
    ),
    "wrong-audience": (lambda c: bearer(c.forger.token(c.forger.claims(aud="another-api"))), "001"),
    "missing-audience": (lambda c: bearer(c.forger.token(c.forger.claims(aud=DROP))), "001"),
    "audience-array-without-ours": (
        lambda c: bearer(c.forger.token(c.forger.claims(aud=["another-api", "dxapi-x"]))),
        "001",
    ),
    "wrong-issuer": (lambda c: bearer(c.forger.token(c.forger.claims(iss="https://idp.example"))), "001"),
    "prefix-issuer": (lambda c: bearer(c.forger.token(c.forger.claims(iss=c.forger.settings.jwt_issuer[:2]))), "001"),
    "issuer-trailing-slash": (
        lambda c: bearer(c.forger.token(c.forger.claims(iss=c.forger.settings.jwt_issuer + "/"))),
        "001",
    ),
    "issuer-other-case": (
        lambda c: bearer(c.forger.token(c.forger.claims(iss=c.forger.settings.jwt_issuer.upper()))),
        "001",
    ),
    "missing-issuer": (lambda c: bearer(c.forger.token(c.forger.claims(iss=DROP))), "001"),
    "exp-string": (lambda c: bearer(c.forger.token(c.forger.claims(exp="9999999999"))), "001"),
    "exp-float": (lambda c: bearer(c.forger.token(c.forger.claims(exp=9999999999.5))), "001"),
    "exp-1e10": (lambda c: bearer(c.forger.token(c.forger.claims(exp=1e10))), "001"),
    "exp-true": (lambda c: bearer(c.forger.token(c.forger.claims(exp=True))), "001"),
    "exp-null": (lambda c: bearer(c.forger.token(c.forger.claims(exp=None))), "001"),
    "exp-missing": (lambda c: bearer(c.forger.token(c.forger.claims(exp=DROP))), "001"),
    "iat-missing": (lambda c: bearer(c.forger.token(c.forger.claims(iat=DROP))), "001"),
    "iat-string": (lambda c: bearer(c.forger.token(c.forger.claims(iat=str(int(time.time()))))), "001"),
    "nbf-future": (lambda c: bearer(c.forger.token(c.forger.claims(nbf=int(time.time()) + 300))), "001"),
    "iat-future": (lambda c: bearer(c.forger.token(c.forger.claims(iat=int(time.time()) + 300))), "001"),
    "sub-missing": (lambda c: bearer(c.forger.token(c.forger.claims(sub=DROP))), "001"),
    "sub-unknown-client": (lambda c: bearer(c.forger.token(c.forger.claims(sub="client:dxc_nobody"))), "001"),
    "sub-api-key-subject": (lambda c: bearer(c.forger.token(c.forger.claims(sub="apikey:abcdefabcdef"))), "001"),
    "scope-not-a-string": (lambda c: bearer(c.forger.token(c.forger.claims(scope=["*:read"]))), "001"),
    "refresh-token-as-access-token": (lambda c: bearer(_refresh_token(c)), "001"),
    "typ-JWT": (lambda c: bearer(c.forger.token(headers=c.forger.headers(typ="JWT"))), "001"),
    "typ-id+jwt": (lambda c: bearer(c.forger.token(headers=c.forger.headers(typ="id+jwt"))), "001"),
    "typ-missing": (lambda c: bearer(c.forger.token(headers=c.forger.headers(typ=DROP))), "001"),
    "kid-unknown": (lambda c: bearer(c.forger.token(headers=c.forger.headers(kid="no-such-key"))), "001"),
    "kid-missing": (lambda c: bearer(c.forger.token(headers=c.forger.headers(kid=DROP))), "001"),
    "kid-path-traversal": (
        lambda c: bearer(c.forger.token(headers=c.forger.headers(kid="../../../../dev/null"))),
        "001",
    ),
    "kid-sql": (lambda c: bearer(c.forger.token(headers=c.forger.headers(kid="' OR '1'='1"))), "001"),
    "kid-10kb": (lambda c: bearer(c.forger.token(headers=c.forger.headers(kid="k" * 10_000))), "001"),
    "crit-unknown": (
        lambda c: bearer(c.forger.token(headers=c.forger.headers(crit=["x-dxapi"], **{"x-dxapi": 1}))),
        "001",
    ),
}


@pytest.fixture
def context(backend: Backend, forger: Forger, admin_client: tuple[str, str]) -> Context:
    return Context(backend, forger, admin_client)


def test_forged_baseline_is_accepted(anon: httpx.Client, forger: Forger) -> None:
    """Control: the unmodified forgery is a valid token, so each variant fails for its one change only."""
    response = anon.get(f"{API}/countries/1", headers=bearer(forger.token()))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["idCountry"] == 1
    # …and lower-case scheme is fine too (RFC 7235: the scheme is case-insensitive).
    assert anon.get(f"{API}/countries/1", headers={"Authorization": f"bearer {forger.token()}"}).status_code == 200


# Variants whose verdict involves the database (subject lookup, writes refused before any SQL) run on every
# backend; the rest is token parsing and runs on one.
EVERY_BACKEND = {
    "no-credentials",
    "bearer-empty",
    "basic-with-valid-client-credentials",
    "garbage",
    "expired",
    "alg-none",
    "foreign-secret-same-kid",
    "sub-unknown-client",
    "refresh-token-as-access-token",
}


@pytest.mark.parametrize("variant", sorted(EVERY_BACKEND))
def test_every_route_refuses(variant: str, backend: Backend, anon: httpx.Client, context: Context) -> None:
    _sweep(variant, backend, anon, context)


@on_one_backend()
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in EVERY_BACKEND])
def test_every_route_refuses_token(variant: str, backend: Backend, anon: httpx.Client, context: Context) -> None:
    _sweep(variant, backend, anon, context)


def _sweep(variant: str, backend: Backend, anon: httpx.Client, context: Context) -> None:
    build, code = VARIANTS[variant]
    headers = build(context)
    before = fingerprint(backend, *TABLES)
    failures: list[str] = []
    for call in ALL_ROUTES:
        response = call.send(anon, headers)
        try:
            assert_unauthorized(response, code)
        except (AssertionError, ValueError) as exc:
            failures.append(f"{call}: {exc}")
    assert not failures, "\n".join(failures)
    assert fingerprint(backend, *TABLES) == before, "a refused request changed a row"


@on_one_backend()
def test_post_on_item_path_is_not_a_route(anon: httpx.Client, forger: Forger) -> None:
    """``POST /{alias}/{id}`` is not generated: 405 with or without credentials, nothing else leaks."""
    for headers in ({}, bearer(forger.token())):
        response = anon.post(f"{API}/countries/1", json={"data": NEW_COUNTRY}, headers=headers)
        assert response.status_code == 405, response.text
        assert isinstance(response.json(), list)


@on_one_backend()
def test_audience_array_with_ours_is_accepted(anon: httpx.Client, forger: Forger) -> None:
    token = forger.token(forger.claims(aud=["another-api", forger.settings.jwt_audience]))
    assert anon.get(f"{API}/countries", params={"page[limit]": "1"}, headers=bearer(token)).status_code == 200


@on_one_backend()
def test_expiry_leeway(anon: httpx.Client, forger: Forger) -> None:
    """Expired 10 s ago is inside the 30 s leeway (200); 60 s ago is outside (401)."""
    now = int(time.time())
    recent = forger.token(forger.claims(exp=now - 10, iat=now - 600, nbf=now - 600))
    assert anon.get(f"{API}/countries/1", headers=bearer(recent)).status_code == 200
    old = forger.token(forger.claims(exp=now - 60, iat=now - 600, nbf=now - 600))
    assert_unauthorized(anon.get(f"{API}/countries/1", headers=bearer(old)))


@on_one_backend()
def test_access_token_in_query_string_is_ignored(anon: httpx.Client, forger: Forger) -> None:
    """RFC 6750 / OAuth 2.1: a token in the URL is never used."""
    token = forger.token()
    response = anon.get(f"{API}/countries", params={"access_token": token})
    assert_unauthorized(response, "4001")


@on_one_backend()
def test_issued_token_shape(backend: Backend, admin_client: tuple[str, str]) -> None:
    """What the server issues is what the verifier demands: typ at+jwt, kid, every required claim, int times."""
    token = access_token(client_token(backend.base_url, *admin_client))
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "HS256" and header["kid"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"iss", "aud", "sub", "iat", "exp", "jti"} <= set(claims)
    assert all(type(claims[name]) is int for name in ("iat", "exp"))
    assert claims["exp"] - claims["iat"] == backend.settings.access_token_ttl


# --- hostile key headers: nothing is ever fetched -------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []
    jwks: bytes = b"{}"

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).jwks)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker_host() -> Iterator[tuple[str, list[str], rsa.RSAPrivateKey]]:
    """A loopback HTTP server serving the attacker's JWKS; yields (base URL, list of paths requested, key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    hits: list[str] = []
    document = json.dumps({"keys": [{**jwk, "kid": "attacker"}]}).encode()
    handler = type("Recorder", (_Recorder,), {"hits": hits, "jwks": document})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits, key
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@on_one_backend()
def test_jku_x5u_jwk_headers_are_never_followed(
    anon: httpx.Client, forger: Forger, attacker_host: tuple[str, list[str], rsa.RSAPrivateKey]
) -> None:
    url, hits, key = attacker_host
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    claims = forger.claims()
    attacker_tokens = {
        "rs256-jku": jwt.encode(
            claims, key, "RS256", headers={"typ": "at+jwt", "kid": "attacker", "jku": f"{url}/jwks.json"}
        ),
        "rs256-x5u": jwt.encode(
            claims, key, "RS256", headers={"typ": "at+jwt", "kid": "attacker", "x5u": f"{url}/cert.pem"}
        ),
        "rs256-embedded-jwk": jwt.encode(
            claims, key, "RS256", headers={"typ": "at+jwt", "kid": "attacker", "jwk": jwk}
        ),
        "hs256-foreign-jku": forger.token(claims, forger.headers(jku=f"{url}/jwks.json"), key=FOREIGN_SECRET),
        "hs256-foreign-x5u-server-kid": forger.token(claims, forger.headers(x5u=f"{url}/x.pem"), key=FOREIGN_SECRET),
    }
    for name, token in attacker_tokens.items():
        response = anon.get(f"{API}/countries", headers=bearer(token))
        assert response.status_code == 401, (name, response.text)
        assert_unauthorized(response)
    # A token the server did sign, carrying a jku: whatever the verdict, the URL is not fetched.
    signed = forger.token(claims, forger.headers(jku=f"{url}/jwks.json", x5u=f"{url}/x.pem"))
    assert anon.get(f"{API}/countries", params={"page[limit]": "1"}, headers=bearer(signed)).status_code in (200, 401)
    time.sleep(0.2)
    assert hits == [], f"the server fetched attacker URLs: {hits}"
