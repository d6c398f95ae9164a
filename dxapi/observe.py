"""What one request did, for the people operating dxapi: its id, its phases' durations, who asked for what.

Fed by the endpoints (``authenticated``, ``entity``, ``lap``, ``read``, ``wrote``); feeds ``logs`` (the id in
every line, the access log) and ``metrics``. ``Observed`` is the outermost layer of the application:

* ``X-Request-Id``: the client's, when it sends a sane one (a proxy or the client already logged it), else a
  new one; echoed on the answer, put in every log line written while the request runs and in error bodies.
* ``Server-Timing``: ``auth``, ``plan``, ``db`` and ``render`` — where the time of this answer went, for the
  integrator looking at a slow call in a browser's or a proxy's tools — and ``total``.
* At the end of the answer: one access-log record (``DXAPI_LOG_FORMAT=json``) and the request's metrics.

The exchange is found through a context variable: the endpoints run in the task of this layer's call, and
nothing else has to pass it along.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("dxapi.access")

# What a client may hand in as its id: enough for UUIDs, trace ids and the like, nothing a log line or a
# header could be broken with.
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
PHASES = ("auth", "plan", "db", "render")


@dataclass(slots=True)
class Exchange:
    """One request as far as operators care: filled in by the endpoints as it runs."""

    request_id: str
    method: str
    path: str
    started: float  # time.perf_counter()
    mark: float  # the end of the last phase
    phases: dict[str, float] = field(default_factory=dict)
    principal: str = ""
    entity: str = ""  # the alias, once it named a configured entity (never any text from the URL)
    rows_read: int = 0
    rows_written: int = 0
    items: int = 0  # items in the body of a write
    status: int = 0
    ended: float = 0.0
    limited: str = ""  # the rate limit or throttle that refused it
    feed_lag: float | None = None  # seconds, for a read of a change feed

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.mark
        self.mark = now

    @property
    def duration(self) -> float:
        return (self.ended or time.perf_counter()) - self.started


_current: ContextVar[Exchange | None] = ContextVar("dxapi_exchange", default=None)


def current() -> Exchange | None:
    return _current.get()


def request_id() -> str | None:
    exchange = _current.get()
    return exchange.request_id if exchange is not None else None


def lap(phase: str) -> None:
    """The phase that just ended (``plan``, ``db``): its time is the time since the previous one ended."""
    exchange = _current.get()
    if exchange is not None:
        exchange.lap(phase)


def authenticated(subject: str) -> None:
    exchange = _current.get()
    if exchange is not None:
        exchange.principal = subject
        exchange.lap("auth")


def entity(alias: str) -> None:
    exchange = _current.get()
    if exchange is not None:
        exchange.entity = alias


def read(rows: int) -> None:
    """Rows a read handed out; the database's time ends here."""
    exchange = _current.get()
    if exchange is not None:
        exchange.rows_read += rows
        exchange.lap("db")


def wrote(rows: int, items: int) -> None:
    """Rows a write saved (or deleted) out of ``items`` asked for; the database's time ends here."""
    exchange = _current.get()
    if exchange is not None:
        exchange.rows_written += rows
        exchange.items = items
        exchange.lap("db")


def limited(scope: str) -> None:
    """The request is refused by a rate limit or throttle (``principal``, ``entity``, ``token``, ``login`` …)."""
    exchange = _current.get()
    if exchange is not None:
        exchange.limited = scope


def feed_lag(seconds: float) -> None:
    exchange = _current.get()
    if exchange is not None:
        exchange.feed_lag = max(seconds, 0.0)


def server_timing(exchange: Exchange, now: float) -> bytes:
    """``auth;dur=0.21, plan;dur=0.05, db;dur=1.30, render;dur=0.08, total;dur=1.70`` (milliseconds)."""
    phases = exchange.phases
    phases["render"] = phases.get("render", 0.0) + now - exchange.mark
    exchange.mark = now
    parts = ["%s;dur=%.2f" % (name, phases[name] * 1000) for name in PHASES if name in phases]  # noqa: UP031
    parts.append("total;dur=%.2f" % ((now - exchange.started) * 1000))
    return ", ".join(parts).encode()


# A new id is this process's random prefix and a count: unique across processes and hosts as a random id
# would be, without a system call per request.
_PROCESS_PREFIX = secrets.token_hex(5)
_numbers = itertools.count(1)


def _new_prefix() -> None:  # a forked process is another process: another prefix
    global _PROCESS_PREFIX, _numbers
    _PROCESS_PREFIX, _numbers = secrets.token_hex(5), itertools.count(1)


os.register_at_fork(after_in_child=_new_prefix)


def _incoming_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id" and REQUEST_ID.fullmatch(value):
            return value.decode()
    return "%s%06x" % (_PROCESS_PREFIX, next(_numbers))  # noqa: UP031


class Observed:
    """The outermost layer of the application (see the module docstring); ``finished`` gets every exchange
    once its answer is sent (or the request failed without one)."""

    def __init__(self, app: ASGIApp, finished: Callable[[Exchange], None] | None = None) -> None:
        self.app = app
        self.finished = finished

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        now = time.perf_counter()
        exchange = Exchange(_incoming_id(scope["headers"]), scope["method"], scope["path"], now, now)
        marker = (b"x-request-id", exchange.request_id.encode())

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                timing = (b"server-timing", server_timing(exchange, time.perf_counter()))
                message["headers"] = [*message.get("headers", ()), marker, timing]
            elif not message.get("more_body", False) and message["type"] == "http.response.body":
                exchange.ended = time.perf_counter()
            await send(message)

        token = _current.set(exchange)
        try:
            await self.app(scope, receive, observed)
        finally:
            if not exchange.ended:
                exchange.ended = time.perf_counter()
            if not exchange.status:  # no answer went out: what the client saw is the server's failure
                exchange.status = 500
            if self.finished is not None:
                self.finished(exchange)  # still in the request's context: its log record carries the id
            _current.reset(token)


def log_access(exchange: Exchange) -> None:
    """The access-log record of one request (JSON lines: ``logs.JsonFormatter`` spreads ``access`` out)."""
    access_log.info(
        "%s %s %d",
        exchange.method,
        exchange.path,
        exchange.status,
        extra={
            "access": {
                "principal": exchange.principal or None,
                "entity": exchange.entity or None,
                "method": exchange.method,
                "path": exchange.path,
                "status": exchange.status,
                "durationMs": round(exchange.duration * 1000, 3),
                "rowsRead": exchange.rows_read,
                "rowsWritten": exchange.rows_written,
            }
        },
    )
