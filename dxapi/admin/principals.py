"""The principal pages (admins only): users, OAuth clients and API keys — list, add, disable or revoke; a client's
own rate limit.

Form values are validated at the edge (``inputs``): a bad one shows the page again (400). Fed by the forms;
feeds ``auth.principals`` (the one place that writes principals).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dxapi.admin import inputs
from dxapi.admin.pages import (
    HEADERS,
    engine,
    fetch_rows,
    form_fields,
    page,
    render,
)
from dxapi.admin.sessions import AdminUser
from dxapi.auth import principals
from dxapi.limits.rates import parse_override
from dxapi.registry.tables import dx_api_key, dx_client, dx_user

CLIENT_LIST = select(
    dx_client.c.client_id, dx_client.c.name, dx_client.c.scopes, dx_client.c.is_active, dx_client.c.rate_limit
).order_by(dx_client.c.name)
KEY_LIST = select(
    dx_api_key.c.prefix, dx_api_key.c.name, dx_api_key.c.scopes, dx_api_key.c.expires_at, dx_api_key.c.revoked_at
).order_by(dx_api_key.c.id)


def _path_text(request: Request, name: str) -> str | None:
    """A name from the path, or None when it cannot name a stored row (PostgreSQL refuses NUL in text)."""
    value: str = request.path_params[name]
    return None if "\x00" in value or len(value) > 255 else value


async def _users(request: Request, user: AdminUser, status: int = 200, **context: Any) -> Response:
    rows = await fetch_rows(
        request, select(dx_user.c.id, dx_user.c.email, dx_user.c.role, dx_user.c.is_active).order_by(dx_user.c.email)
    )
    return render(request, "users.html", user, status=status, users=rows, roles=list(principals.ROLES), **context)


@page("admin")
async def users_page(request: Request, user: AdminUser) -> Response:
    return await _users(request, user)


@page("admin")
async def users_add(request: Request, user: AdminUser) -> Response:
    given = inputs.parse(inputs.UserForm, form_fields(request))
    if isinstance(given, str):
        return await _users(request, user, status=400, error=given)
    try:
        await principals.add_user(engine(request), given.email, given.password, given.role)
    except ValueError as exc:
        return await _users(request, user, status=400, error=str(exc))
    except IntegrityError:
        return await _users(request, user, status=400, error="That user exists already.")
    return RedirectResponse("/admin/users", status_code=303, headers=HEADERS)


@page("admin")
async def users_disable(request: Request, user: AdminUser) -> Response:
    email = _path_text(request, "email")
    if email is None:
        return render(request, "error.html", user, status=404, message="No such user.")
    await principals.set_user(engine(request), email, is_active=False)
    return RedirectResponse("/admin/users", status_code=303, headers=HEADERS)


async def _clients(request: Request, user: AdminUser, status: int = 200, **context: Any) -> Response:
    rows = await fetch_rows(request, CLIENT_LIST)
    return render(request, "clients.html", user, status=status, clients=rows, **context)


@page("admin")
async def clients_page(request: Request, user: AdminUser) -> Response:
    return await _clients(request, user)


@page("admin")
async def clients_add(request: Request, user: AdminUser) -> Response:
    given = inputs.parse(inputs.ClientForm, form_fields(request))
    if isinstance(given, str):
        return await _clients(request, user, status=400, error=given)
    try:
        scopes = principals.parse_scopes(given.scopes)
    except ValueError as exc:
        return await _clients(request, user, status=400, error=str(exc))
    limit = parse_override(given.rate_limit or "")
    client_id, secret = await principals.add_client(engine(request), given.name, scopes, rate_limit=limit)
    return await _clients(request, user, new_id=client_id, new_secret=secret)


@page("admin")
async def clients_rate_limit(request: Request, user: AdminUser) -> Response:
    """A client's own rate limit: a rate, ``unlimited``, or ``default`` (empty) for ``DXAPI_RATE_LIMIT``. Workers
    apply it within ``DXAPI_PRINCIPAL_CACHE_SECONDS``, with the client's status."""
    client_id = _path_text(request, "client_id")
    if client_id is None:
        return render(request, "error.html", user, status=404, message="No such client.")
    given = inputs.parse(inputs.RateLimitForm, form_fields(request))
    if isinstance(given, str):
        return await _clients(request, user, status=400, error=given)
    if not await principals.set_client(engine(request), client_id, rate_limit=parse_override(given.rate_limit)):
        return render(request, "error.html", user, status=404, message="No such client.")
    return RedirectResponse("/admin/clients", status_code=303, headers=HEADERS)


@page("admin")
async def clients_disable(request: Request, user: AdminUser) -> Response:
    client_id = _path_text(request, "client_id")
    if client_id is None:
        return render(request, "error.html", user, status=404, message="No such client.")
    await principals.set_client(engine(request), client_id, is_active=False)
    return RedirectResponse("/admin/clients", status_code=303, headers=HEADERS)


async def _keys(request: Request, user: AdminUser, status: int = 200, **context: Any) -> Response:
    rows = await fetch_rows(request, KEY_LIST)
    return render(request, "keys.html", user, status=status, keys=rows, **context)


@page("admin")
async def keys_page(request: Request, user: AdminUser) -> Response:
    return await _keys(request, user)


@page("admin")
async def keys_add(request: Request, user: AdminUser) -> Response:
    given = inputs.parse(inputs.KeyForm, form_fields(request))
    if isinstance(given, str):
        return await _keys(request, user, status=400, error=given)
    try:
        scopes = principals.parse_scopes(given.scopes)
    except ValueError as exc:
        return await _keys(request, user, status=400, error=str(exc))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    expires = now + dt.timedelta(days=given.days) if given.days else None
    _prefix, key = await principals.add_api_key(engine(request), given.name, scopes, expires)
    return await _keys(request, user, new_key=key)


@page("admin")
async def keys_revoke(request: Request, user: AdminUser) -> Response:
    prefix = _path_text(request, "prefix")
    if prefix is None:
        return render(request, "error.html", user, status=404, message="No such key.")
    await principals.revoke_api_key(engine(request), prefix)
    return RedirectResponse("/admin/keys", status_code=303, headers=HEADERS)
