"""The ASGI application: routes, lifespan (engine + snapshot registry) and the one error rendering path.

Every failure — catalogued ``ApiError``, routing 404/405, or an unexpected exception — leaves as the same
JSON error array; an unexpected exception is logged with its traceback and answered with 5001 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from dxapi import endpoints, errors, health
from dxapi.admin.routes import routes as admin_routes
from dxapi.auth.oauth import TokenService
from dxapi.auth.principals import Authenticator
from dxapi.auth.tokens import SigningKeys, load_keys
from dxapi.db import Timeouts, create_driver_pool, create_engine, reader, writer
from dxapi.feed.retention import prune_forever
from dxapi.heap import HeapTrimmer
from dxapi.limits.counters import open_counters
from dxapi.limits.quota import Quota
from dxapi.logs import flush_summaries
from dxapi.observe import Exchange, Observed, log_access
from dxapi.registry.reload import CLOSE_WITHIN_SECONDS, Registry
from dxapi.replicas import open_replicas
from dxapi.responses import render_errors, render_json
from dxapi.routing import DataRouter
from dxapi.settings import Settings

if TYPE_CHECKING:
    from dxapi.metrics import Metrics

log = logging.getLogger("dxapi")

STATIC = Path(__file__).resolve().parent / "static"
# The docs page runs only its own script and styles; names from the database are inserted as text.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Endpoint = Callable[[Request], Awaitable[Response]]


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
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render_errors(errors.INTERNAL_ERROR.error())


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Answer an unexpected exception with 5001 inside the endpoint.

    Starlette's handler for ``Exception`` re-raises after answering, so the server logs the error a second
    time and drops the keep-alive connection; catching here keeps the connection and one log line.
    """

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (errors.ApiError, HTTPException):
            raise
        except Exception as exc:
            return await _unexpected(request, exc)

    return guarded


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    keys = load_keys(settings)  # a bad key configuration stops the start, before any request
    prefix = settings.api_prefix.rstrip("/")
    collection, changes, item = (_by_method(table) for table in _data_endpoints())
    metrics = _metrics(settings)
    router = DataRouter(
        [
            *_api_routes(prefix, collection, changes, item),
            *_service_routes(keys, settings, metrics),
            *admin_routes(),
        ],
        prefix=prefix,
        collection=collection,
        changes=changes,
        item=item,
        lifespan=_lifespan(settings, keys, metrics),
    )
    app = Starlette(
        middleware=_middleware(settings, metrics),
        exception_handlers={
            errors.ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    # DataRouter finds the data endpoints without walking the routes; `/dynamic-entity/products/` is not an
    # API path: it answers 404 JSON, not a redirect built from Host.
    app.router = router
    return app


# CORS: what a browser script may send and read. Credentials stay off: dxapi authenticates by header (a bearer
# token, an API key), never by cookie, so no origin needs the browser's cookies.
CORS_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
CORS_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "X-Is-Transactional",
    "Prefer",
    "X-Api-Key",
    "X-Request-Id",
)
CORS_EXPOSED = (
    "ETag",
    "Idempotency-Replayed",
    "Preference-Applied",
    "Retry-After",
    "X-Dxapi-Error-Code",
    "Link",
    "X-Request-Id",
    "Server-Timing",
    "RateLimit",
    "RateLimit-Policy",
)
# zlib's default level: level 9 costs about twice the CPU for a body a percent or two smaller.
GZIP_LEVEL = 6


def _metrics(settings: Settings) -> Metrics | None:
    if not settings.metrics:
        return None
    from dxapi.metrics import Metrics  # prometheus-client only where metrics are wanted

    return Metrics()


def _finished(settings: Settings, metrics: Metrics | None) -> Callable[[Exchange], None] | None:
    """What ``Observed`` does with a finished request: the access log line, the metrics, the heap trim after a
    large one (``heap``), any of them or none."""
    trimmer = HeapTrimmer.for_this_process()
    candidates = (settings.log_format == "json" and log_access, metrics and metrics.finished, trimmer and trimmer.after)
    steps = [step for step in candidates if step]
    if len(steps) < 2:
        return steps[0] if steps else None

    def each(exchange: Exchange) -> None:
        for step in steps:
            step(exchange)

    return each


def _middleware(settings: Settings, metrics: Metrics | None) -> list[Middleware]:
    """Observation outermost (the request id and timings cover everything, a preflight included); then CORS,
    so a preflight is answered before anything else runs and errors carry its headers too; then compression
    of large answers (and of every streamed export) for clients that accept gzip."""
    layers = [Middleware(Observed, finished=_finished(settings, metrics))]
    if settings.cors_origins:
        layers.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=CORS_METHODS,
                allow_headers=CORS_HEADERS,
                expose_headers=CORS_EXPOSED,
            )
        )
    if settings.gzip_min_bytes:
        layers.append(Middleware(Compression, minimum_size=settings.gzip_min_bytes, compresslevel=GZIP_LEVEL))
    return layers


class Compression(GZipMiddleware):
    """Starlette's gzip for clients that accept it; the others' answers pass untouched but for ``Vary``.

    Starlette wraps those in a responder of its own too, only to add ``Vary: Accept-Encoding`` to large
    answers: on a read by id that cost about as much as planning it. Every answer of dxapi may come
    compressed to a client that asks, so every one varies by the header, whatever its size.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _accepts_gzip(scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def varied(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), VARY]
            await send(message)

        await self.app(scope, receive, varied)


VARY = (b"vary", b"Accept-Encoding")


def _accepts_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"accept-encoding" and b"gzip" in value for name, value in headers)


def _lifespan(
    settings: Settings, keys: SigningKeys, metrics: Metrics | None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Start-up and shut-down: the engine, the registry (first load, background checks), the driver pool and
    the services every request reaches through ``endpoints.runtime``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        timeouts = Timeouts.of(settings)
        pgbouncer = settings.pgbouncer
        engine = create_engine(
            settings.database_url,
            pool_size=settings.pool_size,
            pool_timeout=settings.pool_timeout,
            timeouts=timeouts,
            pgbouncer=pgbouncer,
        )
        # Readiness, configuration reloads and principal checks have connections of their own: a request pool
        # busy with slow requests (or waiting on a lock) must not make the worker look dead or stale.
        control = create_engine(
            settings.database_url,
            pool_size=settings.control_pool_size,
            pool_timeout=settings.pool_timeout,
            timeouts=timeouts,
            pgbouncer=pgbouncer,
        )
        registry = Registry(
            reader(control, pgbouncer=pgbouncer),
            interval=settings.reload_interval,
            deny=settings.deny_tables,
            listen_url=settings.listen_url or (None if pgbouncer else settings.database_url),
        )
        await registry.load_first()
        # Behind PgBouncer every statement goes through SQLAlchemy's pool, in a transaction carrying the bounds.
        driver_pool = None
        if not pgbouncer:
            driver_pool = await create_driver_pool(
                settings.database_url, size=settings.pool_size, timeout=settings.pool_timeout, timeouts=timeouts
            )
        replicas = await open_replicas(
            settings,
            timeouts,
            primary_reader=reader(engine, pgbouncer=pgbouncer),
            primary_pool=driver_pool,
            control=reader(control, pgbouncer=pgbouncer),
            writer=writer(engine),
        )
        counters = open_counters(settings, engine, driver_pool)  # limits and throttles: one store for all workers
        app.state.runtime = endpoints.Runtime(
            settings,
            writer(engine),
            reader(engine, pgbouncer=pgbouncer),
            registry,
            driver_pool,
            Authenticator(reader(control, pgbouncer=pgbouncer), keys, settings, counters),
            TokenService(writer(engine), keys, settings, counters),
            reader(control, pgbouncer=pgbouncer),
            counters,
            Quota(counters, settings),
            replicas,
        )
        registry.start()
        stop_pruning = asyncio.Event()
        pruning = asyncio.create_task(
            prune_forever(
                engine,
                registry,
                settings.change_retention,
                settings.change_prune_interval,
                settings.idempotency_ttl,
                counters,
                stop_pruning,
            )
        )
        sampling = None
        if metrics is not None:
            sampling = asyncio.create_task(metrics.sample_forever(app.state.runtime, engine, control))
        # Everything built so far lives as long as the process; keep the collector from rescanning it.
        gc.freeze()
        try:
            yield
        finally:
            if sampling is not None:
                sampling.cancel()
            # A round in progress is let finish for a while (see Registry.close for why not cancel at once).
            stop_pruning.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(pruning, timeout=CLOSE_WITHIN_SECONDS)
            await registry.close()
            await counters.close()
            if replicas is not None:
                await replicas.close()
            if driver_pool is not None:
                await driver_pool.close()
            await engine.dispose()
            await control.dispose()
            flush_summaries()  # warnings counted but not yet summarised (uvicorn exits without atexit hooks)

    return lifespan


def _data_endpoints() -> tuple[dict[str, Endpoint], dict[str, Endpoint], dict[str, Endpoint]]:
    """The data paths' endpoints by method: `{alias}`, `{alias}/_changes`, `{alias}/{id}`."""
    collection: dict[str, Endpoint] = {
        "GET": endpoints.read_collection,
        "POST": endpoints.create,
        "PATCH": endpoints.update,
        "PUT": endpoints.upsert,
        "DELETE": endpoints.delete_collection,
    }
    item: dict[str, Endpoint] = {
        "GET": endpoints.read_item,
        "PATCH": endpoints.update,
        "PUT": endpoints.upsert,
        "DELETE": endpoints.delete_item,
    }
    return collection, {"GET": endpoints.read_changes}, item


def _by_method(endpoints_by_method: dict[str, Endpoint]) -> dict[str, Endpoint]:
    guarded = {method: _guarded(endpoint) for method, endpoint in endpoints_by_method.items()}
    if "GET" in guarded:
        guarded["HEAD"] = guarded["GET"]
    return guarded


def _route(path: str, guarded: dict[str, Endpoint]) -> Route:
    """One route per path, its endpoint chosen by method: Starlette tries routes in order, and a route of the
    right path but another method is a partial match it still has to build a scope for."""

    async def by_method(request: Request) -> Response:
        return await guarded[request.method](request)

    return Route(path, by_method, methods=[method for method in guarded if method != "HEAD"])


async def _docs_page(request: Request) -> Response:
    return FileResponse(STATIC / "docs.html", headers=PAGE_HEADERS)


def _api_routes(
    prefix: str, collection: dict[str, Endpoint], changes: dict[str, Endpoint], item: dict[str, Endpoint]
) -> list[Route | Mount]:
    """The API under its prefix. DataRouter answers the data paths before these routes are tried; they still
    answer what it passes on (a method a path does not take → 405). Only the three fixed names under the
    prefix (which aliases may not take, see registry.model.RESERVED_ALIASES) must come before `{alias}`."""
    return [
        _route(prefix + "/openapi.json", _by_method({"GET": endpoints.openapi_document})),
        Route(prefix + "/docs", _docs_page, methods=["GET"]),
        Mount(prefix + "/static", StaticFiles(directory=STATIC), name="static"),
        _route(prefix + "/{alias}", collection),
        # Before `/{alias}/{id}`: an identifier `_changes` is shadowed (documented with the feed).
        _route(prefix + "/{alias}/_changes", changes),
        _route(prefix + "/{alias}/{id}", item),
    ]


def _service_routes(keys: SigningKeys, settings: Settings, metrics: Metrics | None) -> list[Route]:
    """Outside the prefix: the token endpoint, the public keys, health, and the metrics unless they have a
    port of their own."""

    async def token(request: Request) -> Response:
        return await endpoints.runtime(request).tokens.handle(request)

    async def jwks(request: Request) -> Response:
        return render_json({"keys": list(keys.public_jwks)})

    routes = [
        Route("/token", token, methods=["POST"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/health/live", health.live, methods=["GET"]),
        Route("/health/ready", health.ready, methods=["GET"]),
    ]
    if metrics is not None and settings.metrics_port is None:
        secret = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        routes.append(Route("/metrics", metrics.endpoint(secret), methods=["GET"]))
    return routes
