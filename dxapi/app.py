"""The ASGI application: routes, lifespan (engine + snapshot registry) and the one error rendering path.

Every failure — catalogued ``ApiError``, routing 404/405, or an unexpected exception — leaves as the same
JSON error array; an unexpected exception is logged with its traceback and answered with 5001 only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dxapi import endpoints, errors, health
from dxapi.db import create_engine
from dxapi.registry.reload import Registry
from dxapi.responses import render_errors
from dxapi.settings import Settings

log = logging.getLogger("dxapi")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return render_errors(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return render_errors(errors.METHOD_NOT_ALLOWED.error(method=request.method))
    if exc.status_code == 404:
        return render_errors(errors.NOT_FOUND.error())
    return render_errors(errors.ApiError([errors.ErrorItem(str(exc.status_code), exc.status_code, exc.detail)]))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render_errors(errors.INTERNAL_ERROR.error())


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    prefix = settings.api_prefix.rstrip("/")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.pool_size,
                               pool_timeout=settings.pool_timeout)
        registry = Registry(engine, interval=settings.reload_interval, deny=settings.deny_tables)
        try:
            await registry.refresh()
        except Exception as exc:  # start anyway: readiness says why, the background check retries
            registry.last_error = f"{type(exc).__name__}: configuration could not be loaded"
            log.warning("initial configuration load failed: %s", exc)
        app.state.runtime = endpoints.Runtime(settings, engine, registry)
        try:
            yield
        finally:
            await registry.close()
            await engine.dispose()

    routes = [
        Route("/health/live", health.live, methods=["GET"]),
        Route("/health/ready", health.ready, methods=["GET"]),
        Route(prefix + "/{alias}", endpoints.read_collection, methods=["GET"]),
        Route(prefix + "/{alias}", endpoints.create, methods=["POST"]),
        Route(prefix + "/{alias}", endpoints.update, methods=["PATCH"]),
        Route(prefix + "/{alias}", endpoints.upsert, methods=["PUT"]),
        Route(prefix + "/{alias}", endpoints.delete_collection, methods=["DELETE"]),
        Route(prefix + "/{alias}/{id}", endpoints.read_item, methods=["GET"]),
        Route(prefix + "/{alias}/{id}", endpoints.update, methods=["PATCH"]),
        Route(prefix + "/{alias}/{id}", endpoints.upsert, methods=["PUT"]),
        Route(prefix + "/{alias}/{id}", endpoints.delete_item, methods=["DELETE"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            errors.ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
