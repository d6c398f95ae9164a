"""dxapi credentials for a benchmark run: a signing secret, a throw-away OAuth client and its bearer tokens.

Fed by `run` (the `dxapi client add` output, the dxapi base URL); feeds `run` with the `Authorization` header
for every dxapi request. The reference server needs none. Nothing here is written to disk: the signing
secret goes into the dxapi processes' environment only, the client secret and tokens stay in memory, and
`run` disables the client when the run ends.

Tokens come from `POST /token` (client credentials) and are fetched again before a load run that would
outlive the current one, so a run of any length keeps sending valid tokens (one /token request per hour of
load with dxapi's default lifetime of 3600 s).
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from dataclasses import dataclass, field

import orjson

from benchmarks.servers import fetch

SCOPES = "*:read *:write *:delete"  # every scenario reads, creates or updates products
MARGIN_S = 60.0  # a token must stay valid this much longer than the load run it is used for
AUTH_HEADERS = frozenset({"authorization", "x-api-key"})  # credentials given with --header: no bench client


class AuthError(Exception):
    """dxapi refused to hand out a token; the message says what it answered."""


def new_signing_secret() -> str:
    """A random HS256 secret for this run's dxapi processes (DXAPI_JWT_SECRET wants at least 32 bytes)."""
    return secrets.token_urlsafe(48)


def parse_client(output: str) -> tuple[str, str] | None:
    """`dxapi client add` output → (client_id, client_secret); None if either line is missing."""
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    client_id, secret = values.get("client_id", "").strip(), values.get("client_secret", "").strip()
    return (client_id, secret) if client_id and secret else None


@dataclass
class BearerToken:
    """Access tokens of one client at one dxapi server, fetched when needed."""

    base: str
    client_id: str
    client_secret: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    expires_at: float = 0.0  # time.monotonic() deadline of `token`
    lifetime_s: float = 0.0  # expires_in of the last answer
    fetched: int = 0  # tokens fetched so far

    def headers(self, valid_for: float) -> dict[str, str]:
        """The Authorization header with a token valid for at least `valid_for` more seconds."""
        if self.token is None or time.monotonic() + valid_for + MARGIN_S > self.expires_at:
            self.refresh()
            if valid_for + MARGIN_S > self.lifetime_s:
                raise AuthError(
                    f"a load run of {valid_for:.0f} s outlives dxapi's access tokens ({self.lifetime_s:.0f} s): "
                    "use shorter slices (--duration/--rounds, --warmup) or raise DXAPI_ACCESS_TOKEN_TTL"
                )
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self) -> None:
        """`POST /token` with grant_type=client_credentials, form-encoded."""
        form = urllib.parse.urlencode(
            {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret}
        ).encode()
        asked_at = time.monotonic()  # the lifetime counts from the server's clock, which is not behind ours
        status, raw = fetch("POST", f"{self.base}/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
        try:
            document = orjson.loads(raw)
            token, lifetime = document["access_token"], float(document["expires_in"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise AuthError(f"POST /token answered {status}: {raw[:200].decode(errors='replace')}") from None
        if status != 200 or not isinstance(token, str) or not token:
            raise AuthError(f"POST /token answered {status}: {raw[:200].decode(errors='replace')}")
        self.token, self.lifetime_s, self.expires_at = token, lifetime, asked_at + lifetime
        self.fetched += 1
