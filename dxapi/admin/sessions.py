"""Back-office sessions: login, the session cookie, timeouts, and CSRF protection.

The cookie holds a random session id; the database holds its SHA-256 digest, the user and a CSRF token, so
sessions work across workers and hosts and a database dump contains no usable session. Sessions end after
``IDLE`` without a request or ``ABSOLUTE`` after login, whichever comes first; a new id is issued at every
login (no fixation). Unsafe requests must come from this origin (``Origin``/``Sec-Fetch-Site``) and carry the
session's CSRF token.

Over https the cookie is ``__Host-dxapi_admin`` (``Secure``, ``Path=/``, no ``Domain``: no other host or
plain-http page can set or overwrite it). A request counts as https when it came over TLS, or when a
configured trusted proxy (``DXAPI_TRUSTED_PROXIES``) says so in ``X-Forwarded-Proto``; from any other peer
that header is ignored.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from dxapi.auth.passwords import digest
from dxapi.registry.tables import dx_session, dx_user

COOKIE = "dxapi_admin"
SECURE_COOKIE = f"__Host-{COOKIE}"
IDLE = dt.timedelta(minutes=30)
ABSOLUTE = dt.timedelta(hours=8)


@dataclass(frozen=True, slots=True)
class AdminUser:
    id: int
    email: str
    role: str
    csrf_token: str

    @property
    def can_edit(self) -> bool:
        return self.role in ("admin", "editor")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


async def start_session(engine: AsyncEngine, user_id: int) -> str:
    session_id = secrets.token_urlsafe(32)
    now = _now()
    async with engine.begin() as conn:
        await conn.execute(
            insert(dx_session).values(
                id_digest=digest(session_id),
                user_id=user_id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                seen_at=now,
            )
        )
    return session_id


async def load_session(engine: AsyncEngine, session_id: str | None) -> AdminUser | None:
    if not session_id or len(session_id) > 100:
        return None
    now = _now()
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(
                    dx_session.c.id,
                    dx_session.c.csrf_token,
                    dx_session.c.created_at,
                    dx_session.c.seen_at,
                    dx_user.c.id.label("user_id"),
                    dx_user.c.email,
                    dx_user.c.role,
                    dx_user.c.is_active,
                )
                .join(dx_user, dx_user.c.id == dx_session.c.user_id)
                .where(dx_session.c.id_digest == digest(session_id))
            )
        ).first()
        if row is None:
            return None
        if not row.is_active or now - row.seen_at > IDLE or now - row.created_at > ABSOLUTE:
            await conn.execute(delete(dx_session).where(dx_session.c.id == row.id))
            return None
        await conn.execute(update(dx_session).where(dx_session.c.id == row.id).values(seen_at=now))
    return AdminUser(int(row.user_id), str(row.email), str(row.role), str(row.csrf_token))


async def end_session(engine: AsyncEngine, session_id: str | None) -> None:
    if session_id:
        async with engine.begin() as conn:
            await conn.execute(delete(dx_session).where(dx_session.c.id_digest == digest(session_id)))


def scheme(request: Request, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """``https`` or ``http`` as the browser sees it: behind a trusted proxy, what its X-Forwarded-Proto says."""
    if request.url.scheme == "https" or not trusted or request.client is None:
        return request.url.scheme
    try:
        peer = ipaddress.ip_address(request.client.host)
    except ValueError:  # a unix socket or a test client: no address to trust
        return request.url.scheme
    if not any(peer in network for network in trusted):
        return request.url.scheme
    # The last value is the one the trusted proxy added; earlier ones came from further out, unvouched for.
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    return forwarded if forwarded in ("http", "https") else request.url.scheme


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def same_origin(request: Request, scheme: str) -> bool:
    """A browser tells where an unsafe request comes from; refuse anything but this site."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer", "")
        return fetch_site is not None or referer.startswith(f"{scheme}://{request.url.netloc}/")
    return origin == f"{scheme}://{request.url.netloc}"


def csrf_ok(user: AdminUser, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(user.csrf_token, submitted)
