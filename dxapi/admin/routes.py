"""The back-office pages under ``/admin``: each handler reads the session, checks role and CSRF, calls the
configuration or principal store, and renders a template.

Every unsafe request (POST) must come from this origin and carry the session's CSRF token, or it changes
nothing (403). Viewers change nothing; only admins manage users, clients and API keys. Saving an entity
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

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dxapi.admin import forms
from dxapi.admin.sessions import COOKIE, AdminUser, csrf_ok, end_session, load_session, same_origin, start_session
from dxapi.auth import principals
from dxapi.auth.oauth import Throttle
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
Handler = Callable[[Request, AdminUser], Awaitable[Response]]


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


def page(role: str = "viewer") -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Session, role and (for POST) origin + CSRF checks around a handler."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = await load_session(_engine(request), request.cookies.get(COOKIE))
            if request.method == "POST":
                form = await request.form()
                if user is None or not same_origin(request) or not csrf_ok(user, _text(form.get("csrf"))):
                    return forbidden(request, user, "This request did not come from this page; nothing changed.")
                request.state.form = {k: _text(v) for k, v in form.multi_items() if isinstance(v, str)}
                request.state.files = {k: v for k, v in form.multi_items() if not isinstance(v, str)}
            elif user is None:
                return RedirectResponse("/admin/login", status_code=303, headers=HEADERS)
            assert user is not None
            if ROLE_RANK[user.role] < ROLE_RANK[role]:
                return forbidden(request, user, f"This needs the {role} role.")
            return await handler(request, user)

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


async def login(request: Request) -> Response:
    if not same_origin(request):
        return forbidden(request, None, "This request did not come from this page; nothing changed.")
    form = await request.form()
    email, password = _text(form.get("email")).strip().lower(), _text(form.get("password"))
    address = request.client.host if request.client else "unknown"
    wait = _LOGIN_BY_EMAIL.hit(email) or _LOGIN_BY_ADDRESS.hit(address)
    if wait:
        response = render(request, "login.html", None, status=429, error="Too many attempts; wait a minute.")
        response.headers["Retry-After"] = str(wait)
        return response
    found = await principals.check_password(_engine(request), email, password)
    if found is None:
        return render(request, "login.html", None, status=401, error="Wrong email or password.")
    session_id = await start_session(_engine(request), found[0])
    log.info("admin login: user %s", found[0])
    response = RedirectResponse("/admin/entities", status_code=303, headers=HEADERS)
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/admin",
                        secure=request.url.scheme == "https")
    return response


@page()
async def logout(request: Request, user: AdminUser) -> Response:
    await end_session(_engine(request), request.cookies.get(COOKIE))
    response = RedirectResponse("/admin/login", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/admin")
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
        names = await conn.run_sync(load_table_names)
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
    return {"config": config, "rows": rows, "all": configs}


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


@page("admin")
async def users_page(request: Request, user: AdminUser) -> Response:
    rows = await _rows(request, select(dx_user.c.id, dx_user.c.email, dx_user.c.role, dx_user.c.is_active)
                       .order_by(dx_user.c.email))
    return render(request, "users.html", user, users=rows, roles=list(principals.ROLES))


@page("admin")
async def users_add(request: Request, user: AdminUser) -> Response:
    form = _form(request)
    try:
        await principals.add_user(_engine(request), form.get("email", ""), form.get("password", ""),
                                  form.get("role", "viewer"))
    except ValueError as exc:
        return render(request, "error.html", user, status=400, message=str(exc))
    except Exception:
        return render(request, "error.html", user, status=400, message="That user exists already.")
    return RedirectResponse("/admin/users", status_code=303, headers=HEADERS)


@page("admin")
async def users_disable(request: Request, user: AdminUser) -> Response:
    await principals.set_user(_engine(request), request.path_params["email"], is_active=False)
    return RedirectResponse("/admin/users", status_code=303, headers=HEADERS)


@page("admin")
async def clients_page(request: Request, user: AdminUser) -> Response:
    rows = await _rows(request, CLIENT_LIST)
    return render(request, "clients.html", user, clients=rows)


@page("admin")
async def clients_add(request: Request, user: AdminUser) -> Response:
    form = _form(request)
    try:
        scopes = principals.parse_scopes(form.get("scopes", ""))
    except ValueError as exc:
        return render(request, "error.html", user, status=400, message=str(exc))
    client_id, secret = await principals.add_client(_engine(request), form.get("name", "client"), scopes)
    rows = await _rows(request, CLIENT_LIST)
    return render(request, "clients.html", user, clients=rows, new_id=client_id, new_secret=secret)


@page("admin")
async def clients_disable(request: Request, user: AdminUser) -> Response:
    await principals.set_client(_engine(request), request.path_params["client_id"], is_active=False)
    return RedirectResponse("/admin/clients", status_code=303, headers=HEADERS)


@page("admin")
async def keys_page(request: Request, user: AdminUser) -> Response:
    rows = await _rows(request, KEY_LIST)
    return render(request, "keys.html", user, keys=rows)


@page("admin")
async def keys_add(request: Request, user: AdminUser) -> Response:
    form = _form(request)
    try:
        scopes = principals.parse_scopes(form.get("scopes", ""))
        days = int(form["days"]) if form.get("days") else None
    except ValueError as exc:
        return render(request, "error.html", user, status=400, message=str(exc))
    expires = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=days) if days else None
    _prefix, key = await principals.add_api_key(_engine(request), form.get("name", "key"), scopes, expires)
    rows = await _rows(request, KEY_LIST)
    return render(request, "keys.html", user, keys=rows, new_key=key)


@page("admin")
async def keys_revoke(request: Request, user: AdminUser) -> Response:
    await principals.revoke_api_key(_engine(request), request.path_params["prefix"])
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


@page()
async def audit_entry(request: Request, user: AdminUser) -> Response:
    rows = await _rows(request, select(dx_audit).where(dx_audit.c.id == int(request.path_params["id"])))
    if not rows:
        return render(request, "error.html", user, status=404, message="No such audit entry.")
    entry = rows[0]
    diff = list(difflib.unified_diff(_pretty(entry.before), _pretty(entry.after), "before", "after", lineterm=""))
    return render(request, "audit_entry.html", user, entry=entry, diff=diff)


@page("editor")
async def audit_revert(request: Request, user: AdminUser) -> Response:
    rows = await _rows(request, select(dx_audit).where(dx_audit.c.id == int(request.path_params["id"])))
    if not rows or rows[0].after is None:
        return render(request, "error.html", user, status=404, message="No such audit entry.")
    try:
        await _save(request, user, parse_import([orjson.loads(rows[0].after)]), "revert")
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


@page("editor")
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

