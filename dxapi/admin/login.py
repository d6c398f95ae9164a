"""The login and logout pages: password check behind two throttles (per email, per client address) and the
session cookie (``__Host-`` over https).

Fed by the login form and ``auth.principals.check_password``; feeds ``sessions`` (a new or ended session).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dxapi.admin import inputs
from dxapi.admin.bodies import MAX_FORM_BYTES, TooLarge, Unreadable, read_form
from dxapi.admin.pages import (
    HEADERS,
    REFUSED,
    engine,
    forbidden,
    form_text,
    page,
    render,
    request_scheme,
    runtime,
    session_cookie,
    too_large,
    unread,
)
from dxapi.admin.sessions import (
    AdminUser,
    cookie_name,
    end_session,
    same_origin,
    start_session,
)
from dxapi.auth import principals
from dxapi.auth.throttle import Throttle

log = logging.getLogger("dxapi.admin")

LOGINS_PER_EMAIL = 5  # attempts per minute, for all workers and hosts (auth.throttle)
LOGINS_PER_ADDRESS = 20


async def login_page(request: Request) -> Response:
    return render(request, "login.html", None)


def _cookie_scope(request: Request) -> dict[str, Any]:
    """Name and attributes of the session cookie: over https ``__Host-`` (Secure, Path=/, no Domain)."""
    https = request_scheme(request) == "https"
    return {
        "key": cookie_name(https),
        "path": "/" if https else "/admin",
        "secure": https,
        "httponly": True,
        "samesite": "strict",
    }


async def login(request: Request) -> Response:
    if not same_origin(request, request_scheme(request)):
        return unread(forbidden(request, None, REFUSED))
    try:
        form = await read_form(request, MAX_FORM_BYTES)
    except TooLarge:
        return too_large(request, None, MAX_FORM_BYTES)
    except Unreadable:
        return render(request, "login.html", None, status=400, error="The form could not be read.")
    email = form_text(form.get("email")).strip().lower()[:255]
    address = request.client.host if request.client else "unknown"
    wait = await _throttled(request, email, address)
    if wait:
        response = render(request, "login.html", None, status=429, error="Too many attempts; wait a minute.")
        response.headers["Retry-After"] = str(wait)
        return response
    given = inputs.parse(inputs.LoginForm, {k: form_text(form.get(k)) for k in ("email", "password")})
    found = (
        None
        if isinstance(given, str)
        else await principals.check_password(engine(request), given.email, given.password)
    )
    if found is None:  # a malformed email or password gets the same answer as a wrong one
        return render(request, "login.html", None, status=401, error="Wrong email or password.")
    session_id = await start_session(engine(request), found[0])
    log.info("admin login: user %s", found[0])
    response = RedirectResponse("/admin/entities", status_code=303, headers=HEADERS)
    response.set_cookie(value=session_id, **_cookie_scope(request))
    return response


async def _throttled(request: Request, email: str, address: str) -> int:
    """Seconds to wait, or 0: the email's attempts, then the address's (not counted for a refused email)."""
    counters = runtime(request).counters
    wait = await Throttle(counters, "login", LOGINS_PER_EMAIL).hit(f"email:{email}")
    if wait:
        return wait
    return await Throttle(counters, "login", LOGINS_PER_ADDRESS).hit(f"address:{address}")


@page()
async def logout(request: Request, user: AdminUser) -> Response:
    await end_session(engine(request), session_cookie(request))
    response = RedirectResponse("/admin/login", status_code=303, headers=HEADERS)
    response.delete_cookie(**_cookie_scope(request))
    return response
