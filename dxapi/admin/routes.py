"""The back-office pages under ``/admin``: each handler reads the session, checks role and CSRF, calls the
configuration or principal store, and renders a template.

Every unsafe request (POST) must come from this origin and carry the session's CSRF token, or it changes
nothing (403). Session, origin and role are checked before any of the body is read, and a body is read only up
to a cap (``bodies``); a file upload carries its token outside the body, so it too is checked first. Form
values are validated at the edge (``inputs``, ``forms``): a bad one shows the page again (400). Viewers change
nothing; only admins manage users, clients and API keys. Saving an entity
goes through ``store.save_entities``, which validates exactly as ``dxapi config import`` does, and shows each
problem next to its row; nothing is half-saved. Templates autoescape everything: table and column names
come from the database and are untrusted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dxapi.admin import forms, inputs
from dxapi.admin.bodies import MAX_FORM_BYTES, TooLarge, Unreadable, read_form
from dxapi.admin.sessions import (
    AdminUser,
    cookie_name,
    csrf_ok,
    end_session,
    load_session,
    same_origin,
    scheme,
    start_session,
)
from dxapi.auth import principals
from dxapi.auth.oauth import Throttle
from dxapi.registry.entry_schema import ENTRY_SCHEMA
from dxapi.registry.identifiers import identifier_candidates
from dxapi.registry.model import ConfigError, EntityConfig
from dxapi.registry.store import export_entities, load_entities, parse_import, save_entities
from dxapi.registry.tables import dx_api_key, dx_audit, dx_client, dx_user
from dxapi.schema.reflect import is_denied, load_table_names, reflect_tables
from dxapi.schema.typemap import compatible_types

log = logging.getLogger("dxapi.admin")

HERE = Path(__file__).resolve().parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    # `same-origin`, not `no-referrer`: with no-referrer a browser posts forms with `Origin: null`, and the
    # origin check (sessions.same_origin) could not tell the page's own forms from a foreign site's.
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}
REFUSED = "This request did not come from this page; nothing changed."
# dx_audit.id is a 32-bit integer on PostgreSQL: a larger id in the path names no entry (and must not reach
# the driver, which refuses it).
MAX_AUDIT_ID = 2**31 - 1
# The import's own rule for a relation name (JSON Schema of the installer format), applied to the form.
RELATION_NAME = jsonschema.Draft202012Validator(ENTRY_SCHEMA["$defs"]["relation"]["properties"]["name"])
Handler = Callable[[Request, AdminUser], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = _runtime(request).engine
    return engine


def render(request: Request, template: str, user: AdminUser | None, status: int = 200, **context: Any) -> Response:
    html = TEMPLATES.get_template(template).render(user=user, nav=template.split(".")[0], **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def forbidden(request: Request, user: AdminUser | None, reason: str) -> Response:
    return render(request, "error.html", user, status=403, message=reason)


def unread(response: Response) -> Response:
    """Answer without reading the (rest of the) body: the connection cannot be reused, so close it."""
    response.headers["Connection"] = "close"
    return response


def too_large(request: Request, user: AdminUser | None, cap: int) -> Response:
    return unread(render(request, "error.html", user, status=413,
                         message=f"The request is larger than the {cap} bytes accepted here; nothing changed."))


def _scheme(request: Request) -> str:
    return scheme(request, _runtime(request).settings.trusted_proxies)


def _session_cookie(request: Request) -> str | None:
    return request.cookies.get(cookie_name(_scheme(request) == "https"))


def _refusal(request: Request, user: AdminUser | None, role: str, upload: bool) -> Response | None:
    """Why a POST is refused before its body is read, if it is."""
    if user is None or not same_origin(request, _scheme(request)):
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
            user = await load_session(_engine(request), _session_cookie(request))
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
            cap = _runtime(request).settings.admin_max_import_bytes if upload else MAX_FORM_BYTES
            try:
                form = await read_form(request, cap, files=1 if upload else 0)
            except TooLarge:
                return too_large(request, user, cap)
            except Unreadable:
                return render(request, "error.html", user, status=400, message="The form could not be read.")
            try:
                if not upload and not csrf_ok(user, _text(form.get("csrf"))):
                    return forbidden(request, user, REFUSED)
                request.state.form = {k: _text(v) for k, v in form.multi_items() if isinstance(v, str)}
                request.state.files = {k: v for k, v in form.multi_items() if not isinstance(v, str)}
                return await handler(request, user)
            finally:
                await form.close()

        return endpoint

    return wrap


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _form(request: Request) -> dict[str, str]:
    found: dict[str, str] = request.state.form
    return found


# --- login ----------------------------------------------------------------------------------------------------

_LOGIN_BY_EMAIL = Throttle(5)
_LOGIN_BY_ADDRESS = Throttle(20)


async def login_page(request: Request) -> Response:
    return render(request, "login.html", None)


def _cookie_scope(request: Request) -> dict[str, Any]:
    """Name and attributes of the session cookie: over https ``__Host-`` (Secure, Path=/, no Domain)."""
    https = _scheme(request) == "https"
    return {"key": cookie_name(https), "path": "/" if https else "/admin", "secure": https, "httponly": True,
            "samesite": "strict"}


async def login(request: Request) -> Response:
    if not same_origin(request, _scheme(request)):
        return unread(forbidden(request, None, REFUSED))
    try:
        form = await read_form(request, MAX_FORM_BYTES)
    except TooLarge:
        return too_large(request, None, MAX_FORM_BYTES)
    except Unreadable:
        return render(request, "login.html", None, status=400, error="The form could not be read.")
    email = _text(form.get("email")).strip().lower()[:255]
    address = request.client.host if request.client else "unknown"
    wait = _LOGIN_BY_EMAIL.hit(email) or _LOGIN_BY_ADDRESS.hit(address)
    if wait:
        response = render(request, "login.html", None, status=429, error="Too many attempts; wait a minute.")
        response.headers["Retry-After"] = str(wait)
        return response
    given = inputs.parse(inputs.LoginForm, {k: _text(form.get(k)) for k in ("email", "password")})
    found = None if isinstance(given, str) else await principals.check_password(_engine(request), given.email,
                                                                               given.password)
    if found is None:  # a malformed email or password gets the same answer as a wrong one
        return render(request, "login.html", None, status=401, error="Wrong email or password.")
    session_id = await start_session(_engine(request), found[0])
    log.info("admin login: user %s", found[0])
    response = RedirectResponse("/admin/entities", status_code=303, headers=HEADERS)
    response.set_cookie(value=session_id, **_cookie_scope(request))
    return response


@page()
async def logout(request: Request, user: AdminUser) -> Response:
    await end_session(_engine(request), _session_cookie(request))
    response = RedirectResponse("/admin/login", status_code=303, headers=HEADERS)
    response.delete_cookie(**_cookie_scope(request))
    return response


# --- entities -------------------------------------------------------------------------------------------------

async def _entities(request: Request) -> tuple[list[EntityConfig], dict[str, list[str]]]:
    async with _engine(request).connect() as conn:
        return await load_entities(conn)


async def _named(request: Request) -> EntityConfig | None:
    """The stored entity the path names (``/admin/entities/{alias}…``), or None."""
    configs, _ = await _entities(request)
    return next((c for c in configs if c.alias == request.path_params["alias"]), None)


def _missing(request: Request, user: AdminUser) -> Response:
    return render(request, "error.html", user, status=404, message="No such entity.")


async def _changes(request: Request) -> dict[str, Any]:
    async with _engine(request).connect() as conn:
        rows = await conn.execute(select(dx_audit.c.table_alias, dx_audit.c.at).order_by(dx_audit.c.id))
        return {alias: at for alias, at in rows}


@page()
async def entity_list(request: Request, user: AdminUser) -> Response:
    configs, broken = await _entities(request)
    snapshot = _runtime(request).registry.current()
    return render(request, "entities.html", user, configs=configs, broken=broken, changed=await _changes(request),
                  unavailable=snapshot.unavailable, query=request.query_params.get("q", ""))


@page("editor")
async def entity_toggle(request: Request, user: AdminUser) -> Response:
    config = await _named(request)
    if config is None:
        return _missing(request, user)
    changed = dataclasses.replace(config, is_active=not config.is_active)
    try:
        await _save(request, user, [changed], "activate" if changed.is_active else "deactivate")
    except ConfigError as exc:
        return render(request, "error.html", user, status=400, message="; ".join(exc.problems))
    return RedirectResponse("/admin/entities", status_code=303, headers=HEADERS)


async def _save(request: Request, user: AdminUser, configs: list[EntityConfig], action: str) -> int:
    settings = _runtime(request).settings
    version = await save_entities(_engine(request), configs, actor=user.email, action=action,
                                  deny=settings.deny_tables)
    _runtime(request).registry.wake()
    return version


async def _free_tables(request: Request) -> list[str]:
    configs, _ = await _entities(request)
    taken = {c.table_name for c in configs}
    deny = _runtime(request).settings.deny_tables
    async with _engine(request).connect() as conn:
        # Tables only: a view declares no keys, so none of its columns could be the identifier.
        names = await conn.run_sync(lambda sync: load_table_names(sync, views=False))
    return [n for n in names if n not in taken and not is_denied(n, deny)]


@page("editor")
async def entity_new_page(request: Request, user: AdminUser) -> Response:
    return render(request, "create.html", user, tables=await _free_tables(request))


@page("editor")
async def entity_create(request: Request, user: AdminUser) -> Response:
    form = _form(request)
    table_name = form.get("table", "")
    if table_name not in await _free_tables(request):
        return render(request, "create.html", user, status=400, tables=await _free_tables(request),
                      error="Choose one of the offered tables.")
    async with _engine(request).connect() as conn:
        tables = await conn.run_sync(lambda sync: reflect_tables(sync, [table_name]))
    alias = form.get("alias", "").strip() or forms.suggest_alias(table_name)
    configs, _ = await _entities(request)
    if any(c.alias.lower() == alias.lower() for c in configs):  # saving is an upsert: never replace here
        return render(request, "create.html", user, status=400, tables=await _free_tables(request),
                      error=f"The alias `{alias}` is taken; choose another one.")
    config = forms.suggest_entity(tables[table_name], alias)
    try:
        await _save(request, user, [config], "create")
    except ConfigError as exc:
        return render(request, "create.html", user, status=400, tables=await _free_tables(request),
                      error="; ".join(exc.problems))
    return RedirectResponse(f"/admin/entities/{alias}", status_code=303, headers=HEADERS)


async def _edit_context(request: Request, config: EntityConfig) -> dict[str, Any]:
    async with _engine(request).connect() as conn:
        tables = await conn.run_sync(lambda sync: reflect_tables(sync, [config.table_name]))
    table = tables.get(config.table_name)
    configs, _ = await _entities(request)
    by_column = {f.field_name: f for f in config.fields}
    suggested = {f.field_name: f for f in forms.suggest_entity(table, config.alias).fields} if table is not None else {}
    rows = []
    for column in table.columns if table is not None else []:
        fitting = [t.value for t in compatible_types(column.type)]
        field = by_column.get(column.name)
        if field is None and column.name in suggested:  # a column added to the table since: offered, off
            field = dataclasses.replace(suggested[column.name], is_enabled=False)
        if field is None:
            continue  # a column type no field type fits (binary …)
        rows.append({"column": column.name, "sql_type": str(column.type), "field": field, "types": fitting})
    identifiers = identifier_candidates(table) if table is not None else []
    return {"config": config, "rows": rows, "all": configs, "identifiers": identifiers}


@page()
async def entity_edit_page(request: Request, user: AdminUser) -> Response:
    config = await _named(request)
    if config is None:
        return _missing(request, user)
    saved = request.query_params.get("saved") == "1"
    return render(request, "edit.html", user, saved=saved, problems=forms.GridProblems({}, []),
                  **await _edit_context(request, config))


@page("editor")
async def entity_save(request: Request, user: AdminUser) -> Response:
    current = await _named(request)
    if current is None:
        return _missing(request, user)
    config, problems = forms.parse_grid(_form(request), current)
    if not problems.by_column and config.alias != current.alias:
        problems.general.append("Renaming an entity is not possible here; export, edit and import instead.")
    if not problems.by_column and not problems.general:
        try:
            await _save(request, user, [config], "update")
            return RedirectResponse(f"/admin/entities/{config.alias}?saved=1", status_code=303, headers=HEADERS)
        except ConfigError as exc:
            problems = forms.assign_problems(exc.problems, config)
    return render(request, "edit.html", user, status=400, saved=False, problems=problems,
                  **await _edit_context(request, config))


@page("editor")
async def relation_add(request: Request, user: AdminUser) -> Response:
    current = await _named(request)
    if current is None:
        return _missing(request, user)
    relation = forms.relation_from_form(_form(request))
    refused = [f"The relation name is not valid (an import would refuse it too): {e.message}"
               for e in RELATION_NAME.iter_errors(relation.name)]
    if refused:
        return render(request, "edit.html", user, status=400, saved=False, problems=forms.GridProblems({}, refused),
                      **await _edit_context(request, current))
    changed = dataclasses.replace(current, relations=(*current.relations, relation))
    try:
        await _save(request, user, [changed], "update")
    except ConfigError as exc:
        return render(request, "edit.html", user, status=400, saved=False,
                      problems=forms.GridProblems({}, exc.problems), **await _edit_context(request, current))
    return RedirectResponse(f"/admin/entities/{current.alias}?saved=1", status_code=303, headers=HEADERS)


@page("editor")
async def relation_remove(request: Request, user: AdminUser) -> Response:
    current = await _named(request)
    if current is None:
        return _missing(request, user)
    kept = tuple(r for r in current.relations if r.name != request.path_params["name"])
    changed = dataclasses.replace(current, relations=kept)
    try:
        await _save(request, user, [changed], "update")
    except ConfigError as exc:
        return render(request, "error.html", user, status=400, message="; ".join(exc.problems))
    return RedirectResponse(f"/admin/entities/{current.alias}?saved=1", status_code=303, headers=HEADERS)


# --- principals -----------------------------------------------------------------------------------------------

async def _rows(request: Request, statement: Any) -> list[Any]:
    async with _engine(request).connect() as conn:
        return list((await conn.execute(statement)).all())


CLIENT_LIST = select(dx_client.c.client_id, dx_client.c.name, dx_client.c.scopes, dx_client.c.is_active).order_by(
    dx_client.c.name
)
KEY_LIST = select(dx_api_key.c.prefix, dx_api_key.c.name, dx_api_key.c.scopes, dx_api_key.c.expires_at,
                  dx_api_key.c.revoked_at).order_by(dx_api_key.c.id)


def _path_text(request: Request, name: str) -> str | None:
    """A name from the path, or None when it cannot name a stored row (PostgreSQL refuses NUL in text)."""
    value: str = request.path_params[name]
    return None if "\x00" in value or len(value) > 255 else value


async def _users(request: Request, user: AdminUser, status: int = 200, **context: Any) -> Response:
    rows = await _rows(request, select(dx_user.c.id, dx_user.c.email, dx_user.c.role, dx_user.c.is_active)
                       .order_by(dx_user.c.email))
    return render(request, "users.html", user, status=status, users=rows, roles=list(principals.ROLES), **context)


@page("admin")
async def users_page(request: Request, user: AdminUser) -> Response:
    return await _users(request, user)


@page("admin")
async def users_add(request: Request, user: AdminUser) -> Response:
    given = inputs.parse(inputs.UserForm, _form(request))
    if isinstance(given, str):
        return await _users(request, user, status=400, error=given)
    try:
        await principals.add_user(_engine(request), given.email, given.password, given.role)
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
    await principals.set_user(_engine(request), email, is_active=False)
    return RedirectResponse("/admin/users", status_code=303, headers=HEADERS)


async def _clients(request: Request, user: AdminUser, status: int = 200, **context: Any) -> Response:
    rows = await _rows(request, CLIENT_LIST)
    return render(request, "clients.html", user, status=status, clients=rows, **context)


@page("admin")
async def clients_page(request: Request, user: AdminUser) -> Response:
    return await _clients(request, user)


@page("admin")
async def clients_add(request: Request, user: AdminUser) -> Response:
    given = inputs.parse(inputs.ClientForm, _form(request))
    if isinstance(given, str):
        return await _clients(request, user, status=400, error=given)
    try:
        scopes = principals.parse_scopes(given.scopes)
    except ValueError as exc:
        return await _clients(request, user, status=400, error=str(exc))
    client_id, secret = await principals.add_client(_engine(request), given.name, scopes)
    return await _clients(request, user, new_id=client_id, new_secret=secret)


@page("admin")
async def clients_disable(request: Request, user: AdminUser) -> Response:
    client_id = _path_text(request, "client_id")
    if client_id is None:
        return render(request, "error.html", user, status=404, message="No such client.")
    await principals.set_client(_engine(request), client_id, is_active=False)
    return RedirectResponse("/admin/clients", status_code=303, headers=HEADERS)


async def _keys(request: Request, user: AdminUser, status: int = 200, **context: Any) -> Response:
    rows = await _rows(request, KEY_LIST)
    return render(request, "keys.html", user, status=status, keys=rows, **context)


@page("admin")
async def keys_page(request: Request, user: AdminUser) -> Response:
    return await _keys(request, user)


@page("admin")
async def keys_add(request: Request, user: AdminUser) -> Response:
    given = inputs.parse(inputs.KeyForm, _form(request))
    if isinstance(given, str):
        return await _keys(request, user, status=400, error=given)
    try:
        scopes = principals.parse_scopes(given.scopes)
    except ValueError as exc:
        return await _keys(request, user, status=400, error=str(exc))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    expires = now + dt.timedelta(days=given.days) if given.days else None
    _prefix, key = await principals.add_api_key(_engine(request), given.name, scopes, expires)
    return await _keys(request, user, new_key=key)


@page("admin")
async def keys_revoke(request: Request, user: AdminUser) -> Response:
    prefix = _path_text(request, "prefix")
    if prefix is None:
        return render(request, "error.html", user, status=404, message="No such key.")
    await principals.revoke_api_key(_engine(request), prefix)
    return RedirectResponse("/admin/keys", status_code=303, headers=HEADERS)


# --- audit and configuration files ----------------------------------------------------------------------------

@page()
async def audit_page(request: Request, user: AdminUser) -> Response:
    rows = await _rows(request, select(dx_audit.c.id, dx_audit.c.at, dx_audit.c.actor, dx_audit.c.action,
                                       dx_audit.c.table_alias).order_by(dx_audit.c.id.desc()).limit(500))
    return render(request, "audit.html", user, entries=rows)


def _pretty(text: str | None) -> list[str]:
    if text is None:
        return []
    return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()


async def _audit_row(request: Request) -> Any | None:
    entry_id = int(request.path_params["id"])
    if entry_id > MAX_AUDIT_ID:
        return None
    rows = await _rows(request, select(dx_audit).where(dx_audit.c.id == entry_id))
    return rows[0] if rows else None


@page()
async def audit_entry(request: Request, user: AdminUser) -> Response:
    entry = await _audit_row(request)
    if entry is None:
        return render(request, "error.html", user, status=404, message="No such audit entry.")
    diff = list(difflib.unified_diff(_pretty(entry.before), _pretty(entry.after), "before", "after", lineterm=""))
    return render(request, "audit_entry.html", user, entry=entry, diff=diff)


@page("editor")
async def audit_revert(request: Request, user: AdminUser) -> Response:
    entry = await _audit_row(request)
    if entry is None or entry.after is None:
        return render(request, "error.html", user, status=404, message="No such audit entry.")
    try:
        await _save(request, user, parse_import([orjson.loads(entry.after)]), "revert")
    except ConfigError as exc:
        return render(request, "error.html", user, status=400, message="; ".join(exc.problems))
    return RedirectResponse("/admin/audit", status_code=303, headers=HEADERS)


@page()
async def config_page(request: Request, user: AdminUser) -> Response:
    return render(request, "config.html", user)


@page()
async def config_export(request: Request, user: AdminUser) -> Response:
    document = await export_entities(_engine(request))
    return Response(orjson.dumps(document, option=orjson.OPT_INDENT_2), media_type="application/json",
                    headers={**HEADERS, "Content-Disposition": 'attachment; filename="dxapi-config.json"'})


@page("editor", upload=True)
async def config_import(request: Request, user: AdminUser) -> Response:
    upload = request.state.files.get("file")
    data = await upload.read() if upload is not None else _form(request).get("document", "").encode()
    try:
        configs = parse_import(orjson.loads(data))
        version = await _save(request, user, configs, "import")
    except orjson.JSONDecodeError:
        return render(request, "config.html", user, status=400, problems=["The file is not valid JSON."])
    except ConfigError as exc:
        return render(request, "config.html", user, status=400, problems=exc.problems)
    return render(request, "config.html", user, imported=len(configs), version=version)


def routes() -> list[Route | Mount]:
    return [
        Route("/admin", lambda request: RedirectResponse("/admin/entities", status_code=303)),
        Route("/admin/login", login_page, methods=["GET"]),
        Route("/admin/login", login, methods=["POST"]),
        Route("/admin/logout", logout, methods=["POST"]),
        Route("/admin/entities", entity_list, methods=["GET"]),
        Route("/admin/entities/new", entity_new_page, methods=["GET"]),
        Route("/admin/entities/new", entity_create, methods=["POST"]),
        Route("/admin/entities/{alias}", entity_edit_page, methods=["GET"]),
        Route("/admin/entities/{alias}", entity_save, methods=["POST"]),
        Route("/admin/entities/{alias}/toggle", entity_toggle, methods=["POST"]),
        Route("/admin/entities/{alias}/relations", relation_add, methods=["POST"]),
        Route("/admin/entities/{alias}/relations/{name}/delete", relation_remove, methods=["POST"]),
        Route("/admin/users", users_page, methods=["GET"]),
        Route("/admin/users", users_add, methods=["POST"]),
        Route("/admin/users/{email}/disable", users_disable, methods=["POST"]),
        Route("/admin/clients", clients_page, methods=["GET"]),
        Route("/admin/clients", clients_add, methods=["POST"]),
        Route("/admin/clients/{client_id}/disable", clients_disable, methods=["POST"]),
        Route("/admin/keys", keys_page, methods=["GET"]),
        Route("/admin/keys", keys_add, methods=["POST"]),
        Route("/admin/keys/{prefix}/revoke", keys_revoke, methods=["POST"]),
        Route("/admin/audit", audit_page, methods=["GET"]),
        Route("/admin/audit/{id:int}", audit_entry, methods=["GET"]),
        Route("/admin/audit/{id:int}/revert", audit_revert, methods=["POST"]),
        Route("/admin/config", config_page, methods=["GET"]),
        Route("/admin/config/export", config_export, methods=["GET"]),
        Route("/admin/config/import", config_import, methods=["POST"]),
        Mount("/admin/static", StaticFiles(directory=HERE / "static"), name="admin-static"),
    ]

