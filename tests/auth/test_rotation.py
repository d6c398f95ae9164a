"""Signing-key rotation, JWKS and algorithm pinning (security-and-reliability §7 T03, T09).

Each step is a private server on the first backend's database (``serve``), restarted with the next key
configuration, the way an operator rotates: HS256 with ``jwt_previous_secrets``, RS256 with the old public key
in ``jwt_public_key_files``. Tokens issued before the rotation keep working during the overlap and stop once the
old key is gone. An RS256 server refuses HS256 tokens keyed with its own public key (algorithm confusion), and
key configurations that mix or weaken algorithms refuse to start.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pydantic import SecretStr

from dxapi.auth.tokens import KeyConfigurationError, load_keys
from dxapi.settings import Settings
from tests.auth.conftest import (
    API,
    access_token,
    assert_unauthorized,
    b64url,
    bearer,
    client_token,
    on_one_backend,
    serve,
    settings_for,
)
from tests.conftest import Backend


def _status(base_url: str, token: str) -> int:
    return httpx.get(f"{base_url}{API}/countries/1", headers=bearer(token), timeout=30).status_code


def _secret() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(48))


def _write_keys(directory: Path, name: str, private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> tuple[str, str]:
    """Write the PEM private and public key files; return their paths."""
    private_path, public_path = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    private_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return str(private_path), str(public_path)


def _asymmetric(backend: Backend, algorithm: str, private_file: str, public_files: list[str] | None = None) -> Settings:
    return settings_for(
        backend,
        jwt_algorithm=algorithm,
        jwt_secret=None,
        jwt_previous_secrets=[],
        jwt_private_key_file=private_file,
        jwt_public_key_files=public_files or [],
    )


def _jwks(base_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base_url}/.well-known/jwks.json", timeout=30)
    assert response.status_code == 200, response.text
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


def _hs256(claims: dict[str, Any], header: dict[str, Any], key: bytes) -> str:
    """HS256 by hand: PyJWT refuses PEM keys as HMAC secrets, an attacker does not."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@on_one_backend()
def test_hs256_rotation_overlap_then_removal(backend: Backend, admin_client: tuple[str, str]) -> None:
    old, new = _secret(), _secret()
    with serve(settings_for(backend, jwt_secret=old, jwt_previous_secrets=[])) as base_url:
        old_token = access_token(client_token(base_url, *admin_client))
        assert _status(base_url, old_token) == 200
    with serve(settings_for(backend, jwt_secret=new, jwt_previous_secrets=[old])) as base_url:
        assert _status(base_url, old_token) == 200  # overlap: the previous secret still verifies
        new_token = access_token(client_token(base_url, *admin_client))  # …but only the new one signs
        assert jwt.get_unverified_header(new_token)["kid"] != jwt.get_unverified_header(old_token)["kid"]
        jwt.decode(new_token, new.get_secret_value(), algorithms=["HS256"], audience=backend.settings.jwt_audience)
        assert _status(base_url, new_token) == 200
        # the old secret under the new kid is not a way in: the kid selects exactly one key
        claims = jwt.decode(old_token, options={"verify_signature": False})
        swapped = jwt.encode(
            claims,
            old.get_secret_value(),
            "HS256",
            headers={"typ": "at+jwt", "kid": jwt.get_unverified_header(new_token)["kid"]},
        )
        assert_unauthorized(httpx.get(f"{base_url}{API}/countries/1", headers=bearer(swapped)))
        assert _jwks(base_url) == []  # shared secrets are never published
    with serve(settings_for(backend, jwt_secret=new, jwt_previous_secrets=[])) as base_url:
        assert_unauthorized(httpx.get(f"{base_url}{API}/countries/1", headers=bearer(old_token)))
        assert _status(base_url, new_token) == 200


@on_one_backend()
def test_rs256_jwks_rotation_overlap_then_removal(
    backend: Backend, admin_client: tuple[str, str], tmp_path: Path
) -> None:
    first_private, first_public = _write_keys(tmp_path, "first", rsa.generate_private_key(65537, 2048))
    second_private, _ = _write_keys(tmp_path, "second", rsa.generate_private_key(65537, 2048))

    with serve(_asymmetric(backend, "RS256", first_private)) as base_url:
        (published,) = _jwks(base_url)
        assert published["kty"] == "RSA" and published["alg"] == "RS256" and published["use"] == "sig"
        assert published["kid"] and published["n"] and published["e"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(published), "private key material published"
        old_token = access_token(client_token(base_url, *admin_client))
        assert jwt.get_unverified_header(old_token) == {"alg": "RS256", "kid": published["kid"], "typ": "at+jwt"}
        public = jwt.PyJWK(published).key  # a third party verifies with the published key alone
        jwt.decode(old_token, public, algorithms=["RS256"], audience=backend.settings.jwt_audience)
        assert _status(base_url, old_token) == 200

    with serve(_asymmetric(backend, "RS256", second_private, [first_public])) as base_url:
        keys = _jwks(base_url)
        assert len(keys) == 2 and published["kid"] in {k["kid"] for k in keys}
        assert _status(base_url, old_token) == 200  # overlap
        new_token = access_token(client_token(base_url, *admin_client))
        new_kid = jwt.get_unverified_header(new_token)["kid"]
        assert new_kid != published["kid"] and keys[0]["kid"] == new_kid  # the signing key is listed first
        assert _status(base_url, new_token) == 200

    with serve(_asymmetric(backend, "RS256", second_private)) as base_url:
        assert [k["kid"] for k in _jwks(base_url)] == [new_kid]
        assert_unauthorized(httpx.get(f"{base_url}{API}/countries/1", headers=bearer(old_token)))
        assert _status(base_url, new_token) == 200


@on_one_backend()
def test_rs256_refuses_algorithm_confusion(backend: Backend, admin_client: tuple[str, str], tmp_path: Path) -> None:
    key = rsa.generate_private_key(65537, 2048)
    private_file, public_file = _write_keys(tmp_path, "server", key)
    with serve(_asymmetric(backend, "RS256", private_file)) as base_url:
        (published,) = _jwks(base_url)
        kid = published["kid"]
        genuine = access_token(client_token(base_url, *admin_client))
        claims = jwt.decode(genuine, options={"verify_signature": False})
        pem = Path(public_file).read_bytes()
        forged = {
            "hs256-public-pem": _hs256(claims, {"alg": "HS256", "typ": "at+jwt", "kid": kid}, pem),
            "hs256-public-pem-stripped": _hs256(claims, {"alg": "HS256", "typ": "at+jwt", "kid": kid}, pem.strip()),
            "hs256-public-pem-no-kid": _hs256(claims, {"alg": "HS256", "typ": "at+jwt"}, pem),
            "hs256-public-jwk": _hs256(
                claims, {"alg": "HS256", "typ": "at+jwt", "kid": kid}, json.dumps(published).encode()
            ),
            "rs512-server-key": jwt.encode(claims, key, "RS512", headers={"typ": "at+jwt", "kid": kid}),
            "ps256-server-key": jwt.encode(claims, key, "PS256", headers={"typ": "at+jwt", "kid": kid}),
            "none": f"{b64url(json.dumps({'alg': 'none', 'typ': 'at+jwt', 'kid': kid}).encode())}."
            f"{b64url(json.dumps(claims).encode())}.",
        }
        for name, token in forged.items():
            response = httpx.get(f"{base_url}{API}/countries/1", headers=bearer(token), timeout=30)
            assert response.status_code == 401, (name, response.text)
            assert_unauthorized(response)
        assert _status(base_url, genuine) == 200  # control


@on_one_backend()
def test_eddsa_server_publishes_okp_key(backend: Backend, admin_client: tuple[str, str], tmp_path: Path) -> None:
    private_file, _ = _write_keys(tmp_path, "ed", ed25519.Ed25519PrivateKey.generate())
    with serve(_asymmetric(backend, "EdDSA", private_file)) as base_url:
        (published,) = _jwks(base_url)
        assert published["kty"] == "OKP" and published["crv"] == "Ed25519" and "d" not in published
        token = access_token(client_token(base_url, *admin_client))
        assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
        assert _status(base_url, token) == 200


@on_one_backend()
def test_backend_jwks_of_an_hs256_server_is_empty(backend: Backend) -> None:
    assert _jwks(backend.base_url) == []


# --- configurations that must not start ---------------------------------------------------------------------------


def _refused(tmp_path: Path) -> dict[str, dict[str, Any]]:
    rsa_private, rsa_public = _write_keys(tmp_path, "rsa", rsa.generate_private_key(65537, 2048))
    ed_private, ed_public = _write_keys(tmp_path, "ed", ed25519.Ed25519PrivateKey.generate())
    return {
        "short-hs256-secret": {"jwt_secret": SecretStr("x" * 31)},
        "hs256-with-private-key": {"jwt_secret": _secret(), "jwt_private_key_file": rsa_private},
        "rs256-with-shared-secret": {
            "jwt_algorithm": "RS256",
            "jwt_secret": _secret(),
            "jwt_private_key_file": rsa_private,
        },
        "rs256-without-key": {"jwt_algorithm": "RS256"},
        "rs256-with-ed25519-key": {"jwt_algorithm": "RS256", "jwt_private_key_file": ed_private},
        "rs256-with-ed25519-previous-key": {
            "jwt_algorithm": "RS256",
            "jwt_private_key_file": rsa_private,
            "jwt_public_key_files": [ed_public],
        },
        "eddsa-with-rsa-previous-key": {
            "jwt_algorithm": "EdDSA",
            "jwt_private_key_file": ed_private,
            "jwt_public_key_files": [rsa_public],
        },
        "alg-none": {"jwt_algorithm": "none", "jwt_secret": _secret()},
        "alg-HS512": {"jwt_algorithm": "HS512", "jwt_secret": _secret()},
        "alg-RS256-lowercase": {"jwt_algorithm": "rs256", "jwt_private_key_file": rsa_private},
        "production-without-explicit-key": {"environment": "production", "jwt_secret_file": str(tmp_path / "x")},
    }


def test_unsafe_key_configurations_refuse_to_start(tmp_path: Path) -> None:
    failures = []
    for name, values in _refused(tmp_path).items():
        settings = Settings(**{"database_url": "sqlite://", "jwt_secret_file": str(tmp_path / "none"), **values})
        try:
            load_keys(settings)
        except KeyConfigurationError:
            continue
        failures.append(name)
    assert not failures, f"accepted: {failures}"
