"""The back office's route table under ``/admin``: which page module answers which path and method.

The pages live in ``login``, ``entities``, ``principals`` and ``audit``; ``pages`` holds the guard they share.
Feeds ``app`` (mounted before the API's ``/{alias}`` routes).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent
Page = Callable[[Request], Awaitable[Response]]


def _page(module: str, name: str) -> Page:
    """The page ``name`` of ``dxapi.admin.<module>``, imported at the first request that needs it.

    A worker that only serves the API never loads the back office (its forms, the entry JSON Schema's
    validators, jinja2): about 2 MB of code objects and tables less in every worker.
    """

    @functools.cache
    def load() -> Page:
        found: Page = getattr(importlib.import_module(f"dxapi.admin.{module}"), name)
        return found

    async def page(request: Request) -> Response:
        return await load()(request)

    page.__name__ = page.__qualname__ = name
    return page


def routes() -> list[Route | Mount]:
    return [
        Route("/admin", lambda request: RedirectResponse("/admin/entities", status_code=303)),
        Route("/admin/login", _page("login", "login_page"), methods=["GET"]),
        Route("/admin/login", _page("login", "login"), methods=["POST"]),
        Route("/admin/logout", _page("login", "logout"), methods=["POST"]),
        Route("/admin/entities", _page("entities", "entity_list"), methods=["GET"]),
        Route("/admin/entities/new", _page("entities", "entity_new_page"), methods=["GET"]),
        Route("/admin/entities/new", _page("entities", "entity_create"), methods=["POST"]),
        Route("/admin/entities/{alias}", _page("entities", "entity_edit_page"), methods=["GET"]),
        Route("/admin/entities/{alias}", _page("entities", "entity_save"), methods=["POST"]),
        Route("/admin/entities/{alias}/toggle", _page("entities", "entity_toggle"), methods=["POST"]),
        Route("/admin/entities/{alias}/relations", _page("entities", "relation_add"), methods=["POST"]),
        Route(
            "/admin/entities/{alias}/relations/{name}/delete", _page("entities", "relation_remove"), methods=["POST"]
        ),
        Route("/admin/users", _page("principals", "users_page"), methods=["GET"]),
        Route("/admin/users", _page("principals", "users_add"), methods=["POST"]),
        Route("/admin/users/{email}/disable", _page("principals", "users_disable"), methods=["POST"]),
        Route("/admin/clients", _page("principals", "clients_page"), methods=["GET"]),
        Route("/admin/clients", _page("principals", "clients_add"), methods=["POST"]),
        Route("/admin/clients/{client_id}/disable", _page("principals", "clients_disable"), methods=["POST"]),
        Route("/admin/clients/{client_id}/rate-limit", _page("principals", "clients_rate_limit"), methods=["POST"]),
        Route("/admin/keys", _page("principals", "keys_page"), methods=["GET"]),
        Route("/admin/keys", _page("principals", "keys_add"), methods=["POST"]),
        Route("/admin/keys/{prefix}/revoke", _page("principals", "keys_revoke"), methods=["POST"]),
        Route("/admin/audit", _page("audit", "audit_page"), methods=["GET"]),
        Route("/admin/audit/{id:int}", _page("audit", "audit_entry"), methods=["GET"]),
        Route("/admin/audit/{id:int}/revert", _page("audit", "audit_revert"), methods=["POST"]),
        Route("/admin/config", _page("audit", "config_page"), methods=["GET"]),
        Route("/admin/config/export", _page("audit", "config_export"), methods=["GET"]),
        Route("/admin/config/import", _page("audit", "config_import"), methods=["POST"]),
        Mount("/admin/static", StaticFiles(directory=HERE / "static"), name="admin-static"),
    ]
