"""The page machinery every back-office page shares: templates and security headers, the ``page`` guard
(session, role, origin and CSRF, checked before a byte of the body is read), and the few store calls several
pages make.

Every unsafe request (POST) must come from this origin and carry the session's CSRF token, or it changes
nothing (403). Session, origin and role are checked before any of the body is read, and a body is read only up
to a cap (``bodies``); a file upload carries its token outside the body, so it too is checked first. Viewers
change nothing; only admins manage users, clients and API keys. Templates autoescape everything: table and
column names come from the database and are untrusted.

Fed by ``sessions`` (who is asking) and ``bodies`` (the capped form); feeds every page module (``login``,
``entities``, ``principals``, ``audit``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dxapi.admin.bodies import MAX_FORM_BYTES, TooLarge, Unreadable, read_form
from dxapi.admin.sessions import (
    AdminUser,
    cookie_name,
    csrf_ok,
    load_session,
    same_origin,
    scheme,
)
from dxapi.registry.model import EntityConfig
from dxapi.registry.store import load_entities, save_entities

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).resolve().parent
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    # `same-origin`, not `no-referrer`: with no-referrer a browser posts forms with `Origin: null`, and the
    # origin check (sessions.same_origin) could not tell the page's own forms from a foreign site's.
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}
REFUSED = "This request did not come from this page; nothing changed."
Handler = Callable[[Request, AdminUser], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


@functools.cache
def _templates() -> Environment:
    """Loaded at the first page, not at start-up: a worker that only serves the API never pays for jinja2."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))


def runtime(request: Request) -> Any:
    return request.app.state.runtime


def engine(request: Request) -> AsyncEngine:
    found: AsyncEngine = runtime(request).engine
    return found


def render(request: Request, template: str, user: AdminUser | None, status: int = 200, **context: Any) -> Response:
    html = _templates().get_template(template).render(user=user, nav=template.split(".")[0], **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def forbidden(request: Request, user: AdminUser | None, reason: str) -> Response:
    return render(request, "error.html", user, status=403, message=reason)


def unread(response: Response) -> Response:
    """Answer without reading the (rest of the) body: the connection cannot be reused, so close it."""
    response.headers["Connection"] = "close"
    return response


def too_large(request: Request, user: AdminUser | None, cap: int) -> Response:
    return unread(
        render(
            request,
            "error.html",
            user,
            status=413,
            message=f"The request is larger than the {cap} bytes accepted here; nothing changed.",
        )
    )


def request_scheme(request: Request) -> str:
    return scheme(request, runtime(request).settings.trusted_proxies)


def session_cookie(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request_scheme(request) == "https"))


def _refusal(request: Request, user: AdminUser | None, role: str, upload: bool) -> Response | None:
    """Why a POST is refused before its body is read, if it is."""
    if user is None or not same_origin(request, request_scheme(request)):
        return forbidden(request, user, REFUSED)
    if ROLE_RANK[user.role] < ROLE_RANK[role]:
        return forbidden(request, user, f"This needs the {role} role.")
    if upload and not csrf_ok(user, request.headers.get("x-csrf-token") or request.query_params.get("csrf")):
        return forbidden(request, user, REFUSED)
    return None


def page(role: str = "viewer", *, upload: bool = False) -> Callable[[Handler], Endpoint]:
    """Session, role and (for POST) origin + CSRF checks around a handler.

    A form post carries its CSRF token in the body, which is read (at most ``MAX_FORM_BYTES``) only after the
    session, origin and role passed. An ``upload`` carries it in ``X-CSRF-Token`` or the ``csrf`` query
    parameter (the import form's action holds it), so every check passes before a byte of the file is read;
    it may be up to ``DXAPI_ADMIN_MAX_IMPORT_BYTES``.
    """

    def wrap(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            user = await load_session(engine(request), session_cookie(request))
            if request.method != "POST":
                if user is None:
                    return RedirectResponse("/admin/login", status_code=303, headers=HEADERS)
                if ROLE_RANK[user.role] < ROLE_RANK[role]:
                    return forbidden(request, user, f"This needs the {role} role.")
                return await handler(request, user)
            refusal = _refusal(request, user, role, upload)
            if refusal is not None:
                return unread(refusal)
            assert user is not None
            cap = runtime(request).settings.admin_max_import_bytes if upload else MAX_FORM_BYTES
            try:
                form = await read_form(request, cap, files=1 if upload else 0)
            except TooLarge:
                return too_large(request, user, cap)
            except Unreadable:
                return render(request, "error.html", user, status=400, message="The form could not be read.")
            try:
                if not upload and not csrf_ok(user, form_text(form.get("csrf"))):
                    return forbidden(request, user, REFUSED)
                request.state.form = {k: form_text(v) for k, v in form.multi_items() if isinstance(v, str)}
                request.state.files = {k: v for k, v in form.multi_items() if not isinstance(v, str)}
                return await handler(request, user)
            finally:
                await form.close()

        return endpoint

    return wrap


def form_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def form_fields(request: Request) -> dict[str, str]:
    found: dict[str, str] = request.state.form
    return found


async def stored_entities(request: Request) -> tuple[list[EntityConfig], dict[str, list[str]]]:
    """The stored configurations, and by alias the stored rows that do not parse."""
    async with engine(request).connect() as conn:
        return await load_entities(conn)


async def save_configs(request: Request, user: AdminUser, configs: list[EntityConfig], action: str) -> int:
    """Save through the store (all or nothing, validated as an import is) and wake the registry at once."""
    settings = runtime(request).settings
    version = await save_entities(engine(request), configs, actor=user.email, action=action, deny=settings.deny_tables)
    runtime(request).registry.wake()
    return version


async def fetch_rows(request: Request, statement: Any) -> list[Any]:
    async with engine(request).connect() as conn:
        return list((await conn.execute(statement)).all())
