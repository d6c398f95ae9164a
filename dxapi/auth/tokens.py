"""Access tokens: JWTs signed with one pinned algorithm, and the keys that sign and verify them.

Fed by settings (secret or key files); feeds the ``/token`` endpoint (issue) and request authentication
(verify). Verification follows RFC 8725: the algorithm list has one element, ``exp``/``iat``/``iss``/
``aud``/``sub`` are required and must be integers where they are times, the ``typ`` header must say
``at+jwt`` (so a refresh token or an ID token from elsewhere is refused), and ``jku``/``x5u``/``jwk`` headers
are never followed — the ``kid`` header only selects one of the keys configured here. Every failure is the
same :class:`InvalidToken` for the client; the reason goes to the debug log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dxapi.settings import Settings

log = logging.getLogger("dxapi.auth")

TOKEN_TYPE = "at+jwt"
MAX_TOKEN_BYTES = 8192
ALGORITHMS = ("HS256", "RS256", "EdDSA")


class InvalidToken(Exception):
    pass


class KeyConfigurationError(Exception):
    """The signing configuration is unusable; the server refuses to start (one-line reason)."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    scopes: frozenset[str]
    expires_at: int
    issued_ms: int  # when, to the millisecond: a rotation refuses tokens issued before it
    family: str | None = None  # the refresh-token family of a user login: its revocation ends this token too


@dataclass(frozen=True, slots=True)
class SigningKeys:
    algorithm: str
    kid: str
    signing_key: Any
    verification: dict[str, Any]  # kid → key (the current one and those still accepted during rotation)
    public_jwks: tuple[dict[str, Any], ...]

    def issue(
        self, subject: str, scopes: frozenset[str], settings: Settings, family: str | None = None
    ) -> tuple[str, int]:
        moment = time.time()
        now = int(moment)
        claims: dict[str, Any] = {
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + settings.access_token_ttl,
            "jti": secrets.token_urlsafe(12),
            "scope": " ".join(sorted(scopes)),
            "iat_ms": int(moment * 1000),
        }
        if family is not None:
            claims["fam"] = family
        headers = {"kid": self.kid, "typ": TOKEN_TYPE}
        token = jwt.encode(claims, self.signing_key, algorithm=self.algorithm, headers=headers)
        return token, settings.access_token_ttl

    def verify(self, token: str, settings: Settings) -> Claims:
        try:
            return self._verify(token, settings)
        except jwt.PyJWTError as exc:  # any library complaint is the same answer for the client
            # PyJWT turns every malformed part (segments, base64, JSON, header and claim types, signature,
            # times, audience, issuer) into a PyJWTError; what it lets through are the checks done below.
            log.debug("token refused: %s", exc)
            raise InvalidToken() from exc

    def _verify(self, token: str, settings: Settings) -> Claims:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken()
        header = jwt.get_unverified_header(token)
        if header.get("typ") != TOKEN_TYPE or header.get("alg") != self.algorithm or "crit" in header:
            raise InvalidToken()
        key = self.verification.get(header.get("kid", ""))
        if key is None:
            raise InvalidToken()
        claims = jwt.decode(
            token,
            key,
            algorithms=[self.algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway,
            options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_signature": True},
        )
        # PyJWT accepts "9999999999" and 1e10 as times; RFC 7519 NumericDate here means an integer.
        for name in ("exp", "iat", "nbf"):
            if name in claims and type(claims[name]) is not int:
                raise InvalidToken()
        if claims["iat"] > time.time() + settings.jwt_leeway:
            raise InvalidToken()
        subject, scope = claims["sub"], claims.get("scope", "")
        if not isinstance(subject, str) or not isinstance(scope, str):
            raise InvalidToken()
        issued_ms = claims.get("iat_ms", claims["iat"] * 1000)
        family = claims.get("fam")
        if type(issued_ms) is not int or (family is not None and not isinstance(family, str)):
            raise InvalidToken()
        return Claims(subject, frozenset(scope.split()), claims["exp"], issued_ms, family)


def _kid(material: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(material).digest()[:12]).decode().rstrip("=")


def load_keys(settings: Settings) -> SigningKeys:
    """The signing and verification keys the settings name; KeyConfigurationError when they cannot work."""
    algorithm = settings.jwt_algorithm
    if algorithm not in ALGORITHMS:
        raise KeyConfigurationError(f"DXAPI_JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}")
    if algorithm == "HS256":
        return _shared_secret_keys(settings)
    return _key_pair_keys(settings, algorithm)


def _shared_secret_keys(settings: Settings) -> SigningKeys:
    """HS256: the secret (from the settings, or in development the file ``dxapi init`` wrote) and the previous
    secrets still accepted during a rotation."""
    if settings.jwt_private_key_file:
        raise KeyConfigurationError("HS256 takes DXAPI_JWT_SECRET, not a private key file")
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    if secret is None and settings.environment != "production":
        secret = _read_secret_file(Path(settings.jwt_secret_file))
    if secret is None:
        raise KeyConfigurationError(
            "no signing key: set DXAPI_JWT_SECRET (production) or run `dxapi init` (development)"
        )
    if len(secret.encode()) < 32:
        raise KeyConfigurationError("DXAPI_JWT_SECRET must be at least 32 bytes")
    secrets_ = [secret, *(p.get_secret_value() for p in settings.jwt_previous_secrets)]
    shared: dict[str, Any] = {_kid(s.encode()): s for s in secrets_}
    return SigningKeys("HS256", _kid(secret.encode()), secret, shared, ())


def _key_pair_keys(settings: Settings, algorithm: str) -> SigningKeys:
    """RS256 and EdDSA: the private key signs; its public key and the configured previous public keys verify
    and are published as the JWKS."""
    if settings.jwt_secret:
        raise KeyConfigurationError(f"{algorithm} takes DXAPI_JWT_PRIVATE_KEY_FILE, not a shared secret")
    if not settings.jwt_private_key_file:
        raise KeyConfigurationError(f"{algorithm} needs DXAPI_JWT_PRIVATE_KEY_FILE")
    private = serialization.load_pem_private_key(Path(settings.jwt_private_key_file).read_bytes(), password=None)
    wanted = rsa.RSAPrivateKey if algorithm == "RS256" else ed25519.Ed25519PrivateKey
    if not isinstance(private, wanted):
        raise KeyConfigurationError(f"the private key does not fit {algorithm}")
    publics: list[Any] = [private.public_key()]
    publics += [_public_key(path, algorithm) for path in settings.jwt_public_key_files]
    verification: dict[str, Any] = {}
    jwks = []
    for public in publics:
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        kid = _kid(der)
        verification[kid] = public
        jwks.append({**_jwk(public), "kid": kid, "use": "sig", "alg": algorithm})
    return SigningKeys(algorithm, next(iter(verification)), private, verification, tuple(jwks))


def _public_key(path: str, algorithm: str) -> Any:
    public = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(public, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)) or (
        isinstance(public, rsa.RSAPublicKey) != (algorithm == "RS256")
    ):
        raise KeyConfigurationError(f"{path}: the public key does not fit {algorithm}")
    return public


def _jwk(public: Any) -> dict[str, Any]:
    if isinstance(public, rsa.RSAPublicKey):
        return dict(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public)))
    return dict(json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public)))


def _read_secret_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_secret_file(settings: Settings) -> Path | None:
    """``dxapi init`` in development: create a random HS256 secret file if no secret is configured."""
    if settings.jwt_algorithm != "HS256" or settings.jwt_secret is not None:
        return None
    path = Path(settings.jwt_secret_file)
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_urlsafe(48) + "\n")
    return path
