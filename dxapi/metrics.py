"""Prometheus metrics (``DXAPI_METRICS=true``), with the official ``prometheus-client``.

Fed by ``observe`` (one call per finished request: its rows, its rate-limit refusal, its change-feed lag) and
by a sampler of the pools and the registry; feeds
``GET /metrics`` (``app``) or the port of its own (``server``, ``DXAPI_METRICS_PORT``).

Across ``--workers N`` the client's multiprocess mode sums the workers: ``dxapi serve`` gives it a fresh
directory of its own (``PROMETHEUS_MULTIPROC_DIR``) before the workers start, so a scrape of any worker
answers for all of them. An application built without that directory (a test, an embedding) counts in a
registry of its own.

Labels stay bounded: ``entity`` is a configured alias or empty (an unknown alias in a URL is not a label),
``status`` is a class (``2xx``), ``method`` one of the API's.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.pool import QueuePool
from starlette.requests import Request
from starlette.responses import Response

from dxapi import errors
from dxapi.observe import Exchange

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from dxapi.endpoints import Runtime

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_SECONDS = 1.0  # pools, snapshot version and reload counts are sampled, not counted as they move
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10_000)
log = logging.getLogger("dxapi.metrics")
TOKEN_CHALLENGE = 'Bearer realm="metrics"'
METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class PoolSample:
    """One pool as sampled: ``in_use`` connections, ``open`` ones, requests ``waiting`` for one."""

    name: str
    in_use: int
    open: int
    waiting: int


@dataclass(frozen=True, slots=True)
class _Series:
    requests: Any
    duration: Any
    rows_read: Any
    rows_written: Any


class Metrics:
    """The series of one worker (see the module docstring for how workers are summed)."""

    def __init__(self) -> None:
        self.directory = os.environ.get(MULTIPROC_DIR) or None
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "dxapi_requests", "Requests answered.", ["entity", "method", "status"], registry=registry
        )
        self.duration = Histogram(
            "dxapi_request_duration_seconds",
            "Time from the request's arrival to the end of its answer.",
            ["entity", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows_read = Counter("dxapi_rows_read", "Rows handed out by reads.", ["entity"], registry=registry)
        self.rows_written = Counter(
            "dxapi_rows_written", "Rows created or changed by writes.", ["entity"], registry=registry
        )
        self.batch_items = Histogram(
            "dxapi_batch_items",
            "Items in the body of a write.",
            ["entity", "method"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.pool_in_use = Gauge(
            "dxapi_db_pool_in_use",
            "Database connections lent out.",
            ["pool"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_open = Gauge(
            "dxapi_db_pool_open", "Database connections open.", ["pool"], multiprocess_mode="livesum", registry=registry
        )
        self.pool_waiting = Gauge(
            "dxapi_db_pool_waiting",
            "Requests waiting for a database connection.",
            ["pool"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.snapshot_version = Gauge(
            "dxapi_config_version",
            "Configuration version the workers serve (the highest among them).",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.reloads = Counter(
            "dxapi_config_reloads", "Configuration versions loaded after the first.", registry=registry
        )
        self.reload_failures = Counter(
            "dxapi_config_reload_failures", "Configuration checks that could not load.", registry=registry
        )
        self.feed_lag = Gauge(
            "dxapi_change_feed_lag_seconds",
            "Age of the newest change the last read of a change feed handed out while more were pending "
            "(0: the reader was at the head).",
            ["entity"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.rate_limited = Counter(
            "dxapi_rate_limited", "Requests refused by a rate limit or a throttle.", ["scope"], registry=registry
        )
        # Label lookups cost more than the counting itself: each request's series, found once per key (the
        # keys are bounded: aliases, methods and status classes).
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._reloads_seen = 0
        self._failures_seen = 0

    def finished(self, exchange: Exchange) -> None:
        """Count one request (``observe.Observed``'s callback)."""
        method = exchange.method if exchange.method in METHODS else "other"
        entity = exchange.entity
        key = (entity, method, exchange.status // 100)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(
                self.requests.labels(entity, method, f"{key[2]}xx"),
                self.duration.labels(entity, method),
                self.rows_read.labels(entity),
                self.rows_written.labels(entity),
            )
        series.requests.inc()
        series.duration.observe(exchange.duration)
        if exchange.rows_read:
            series.rows_read.inc(exchange.rows_read)
        if exchange.rows_written:
            series.rows_written.inc(exchange.rows_written)
        if exchange.items:
            self.batch_items.labels(entity, method).observe(exchange.items)
        if exchange.limited:
            self.rate_limited.labels(exchange.limited).inc()
        if exchange.feed_lag is not None:
            self.feed_lag.labels(entity).set(exchange.feed_lag)

    def sample(self, pools: list[PoolSample], version: int, reloads: int, failures: int) -> None:
        for pool in pools:
            self.pool_in_use.labels(pool.name).set(pool.in_use)
            self.pool_open.labels(pool.name).set(pool.open)
            self.pool_waiting.labels(pool.name).set(pool.waiting)
        self.snapshot_version.set(version)
        # The registry counts; a counter only moves forward, by what happened since the last sample.
        if reloads > self._reloads_seen:
            self.reloads.inc(reloads - self._reloads_seen)
            self._reloads_seen = reloads
        if failures > self._failures_seen:
            self.reload_failures.inc(failures - self._failures_seen)
            self._failures_seen = failures

    def exposition(self) -> bytes:
        return exposition(self.registry if self.directory is None else None)

    def endpoint(self, token: str | None) -> Callable[[Request], Awaitable[Response]]:
        """``GET /metrics`` on the API's port."""

        async def page(request: Request) -> Response:
            if not authorized(request.headers.get("authorization"), token):
                raise errors.ApiError([errors.METRICS_TOKEN_REQUIRED()], {"WWW-Authenticate": TOKEN_CHALLENGE})
            return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

        return page

    async def sample_forever(self, rt: Runtime, engine: AsyncEngine, control: AsyncEngine) -> None:
        """Sample the pools and the registry every ``SAMPLE_SECONDS`` until cancelled (the lifespan's end)."""
        while True:
            try:
                found = [sqlalchemy_pool("requests", engine.pool), sqlalchemy_pool("control", control.pool)]
                pools = [pool for pool in found if pool is not None]
                if rt.driver_pool is not None:
                    pools.append(driver_pool("driver", rt.driver_pool.pool))
                registry = rt.registry
                version = registry.current().version if registry.loaded else 0
                self.sample(pools, version, registry.reloads, registry.reload_failures)
            except Exception as exc:  # a bug here must not end the sampling (nor the worker): logged, tried again
                log.error("metrics sample failed", exc_info=exc)
            await asyncio.sleep(SAMPLE_SECONDS)


def exposition(own: CollectorRegistry | None = None) -> bytes:
    """The text format: of ``own``, or of every worker's files in the multiprocess directory."""
    if own is not None:
        return bytes(generate_latest(own))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return bytes(generate_latest(registry))


def authorized(header: str | None, token: str | None) -> bool:
    """``Authorization: Bearer <token>`` when a token is set (compared in constant time)."""
    if token is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())


def sqlalchemy_pool(name: str, pool: Any) -> PoolSample | None:
    """None for a pool that keeps no connections (SQLite's NullPool: a connection per use, nothing to count)."""
    if not isinstance(pool, QueuePool):
        return None
    in_use = pool.checkedout()
    return PoolSample(name, in_use, in_use + pool.checkedin(), _waiting(getattr(pool, "_pool", None), "_queue"))


def driver_pool(name: str, pool: Any) -> PoolSample:
    size = pool.get_size()
    return PoolSample(name, size - pool.get_idle_size(), size, _waiting(pool, "_queue"))


def _waiting(owner: Any, attribute: str) -> int:
    """Tasks waiting in an asyncio queue of a pool. Neither SQLAlchemy nor asyncpg says how many wait for a
    connection; both keep their free connections in an ``asyncio.Queue`` whose waiting getters are the answer
    (``tests/ops/test_metrics.py`` holds the pool and sees them, so a change in either library shows)."""
    queue = getattr(owner, attribute, None)
    getters = getattr(queue, "_getters", ())
    return sum(1 for waiter in getters if not waiter.done())


def serve_port(host: str, port: int, token: str | None) -> Callable[[], None]:
    """``/metrics`` on a port of its own (``DXAPI_METRICS_PORT``), from a thread of ``dxapi serve``'s main
    process, which reads every worker's files; returns the function that stops it."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a line each
            pass

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _error(start_response, "404 Not Found", errors.NOT_FOUND(), [])
        if not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            challenge = [("WWW-Authenticate", TOKEN_CHALLENGE)]
            return _error(start_response, "401 Unauthorized", errors.METRICS_TOKEN_REQUIRED(), challenge)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Cache-Control", "no-store")])
        return [exposition()]

    server = make_server(host, port, app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="dxapi-metrics", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


def _error(
    start_response: Callable[..., Any], status: str, item: errors.ErrorItem, headers: list[tuple[str, str]]
) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json"), ("X-Dxapi-Error-Code", item.code), *headers])
    return [orjson.dumps([item.as_dict()])]
