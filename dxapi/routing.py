"""The router: the data paths matched by hand first, everything else by Starlette's routes.

Every data request used to walk Starlette's route list (a regular expression per route, a scope built for
each partial match) and a second exception wrapper inside the route, about 5 % of a read by id. The data
paths have a fixed shape, ``{prefix}/{alias}``, ``{prefix}/{alias}/_changes`` and ``{prefix}/{alias}/{id}``,
so splitting the path finds the endpoint at once. Anything else, and a method a path does not take, goes to
Starlette's routes, which answer exactly as before (405, 404, the pages, the static files).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Router
from starlette.types import Receive, Scope, Send

from dxapi.request.incoming import ApiRequest

Endpoint = Callable[[Request], Awaitable[Response]]
MethodTable = Mapping[str, Endpoint]

# First segments under the prefix that are not aliases (registry.model.RESERVED_ALIASES keeps them so).
FIXED_NAMES = frozenset({"openapi.json", "docs", "static"})


class DataRouter(Router):
    def __init__(
        self,
        routes: Sequence[BaseRoute],
        *,
        prefix: str,
        collection: MethodTable,
        changes: MethodTable,
        item: MethodTable,
        lifespan: Any,
    ) -> None:
        super().__init__(routes, redirect_slashes=False, lifespan=lifespan)
        self._base = prefix + "/"
        self._collection = collection
        self._changes = changes
        self._item = item

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self._match(scope["path"], scope["method"])
            if found is not None:
                endpoint, params = found
                scope.setdefault("router", self)
                scope["path_params"] = params
                response = await endpoint(ApiRequest(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().app(scope, receive, send)

    def _match(self, path: str, method: str) -> tuple[Endpoint, dict[str, str]] | None:
        if not path.startswith(self._base):
            return None
        alias, slash, rest = path[len(self._base) :].partition("/")
        if not alias or alias in FIXED_NAMES:
            return None
        if not slash:
            table, params = self._collection, {"alias": alias}
        elif not rest or "/" in rest:
            return None
        elif rest == "_changes":  # shadows an identifier `_changes`, as documented with the feed
            table, params = self._changes, {"alias": alias}
        else:
            table, params = self._item, {"alias": alias, "id": rest}
        endpoint = table.get(method)
        return None if endpoint is None else (endpoint, params)
