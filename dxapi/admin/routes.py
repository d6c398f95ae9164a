"""The back office's route table under ``/admin``: which page module answers which path and method.

The pages live in ``login``, ``entities``, ``principals`` and ``audit``; ``pages`` holds the guard they share.
Feeds ``app`` (mounted before the API's ``/{alias}`` routes).
"""

from __future__ import annotations

from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dxapi.admin.audit import audit_entry, audit_page, audit_revert, config_export, config_import, config_page
from dxapi.admin.entities import (
    entity_create,
    entity_edit_page,
    entity_list,
    entity_new_page,
    entity_save,
    entity_toggle,
    relation_add,
    relation_remove,
)
from dxapi.admin.login import login, login_page, logout
from dxapi.admin.pages import HERE
from dxapi.admin.principals import (
    clients_add,
    clients_disable,
    clients_page,
    clients_rate_limit,
    keys_add,
    keys_page,
    keys_revoke,
    users_add,
    users_disable,
    users_page,
)


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
        Route("/admin/clients/{client_id}/rate-limit", clients_rate_limit, methods=["POST"]),
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
