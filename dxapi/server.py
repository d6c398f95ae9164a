"""How ``dxapi serve`` runs its HTTP server (uvicorn 0.54, httptools): graceful shutdown and connection hygiene.

Fed by ``cli`` (``serve`` and ``demo``) and ``settings``; wraps ``app.create_app``.

* Shutdown. On SIGTERM/SIGINT uvicorn stops accepting connections, closes idle ones and waits for the requests
  in flight. Left alone, after ``timeout_graceful_shutdown`` it cancels what still runs *without waiting for it*
  and without an answer that fits dxapi (its plain-text 500), and the process may then hang in asyncio's final
  cleanup or in a database driver's thread. So dxapi keeps its own clock: :class:`ShutdownGuard` (the outermost
  ASGI layer) knows every request in flight; ``DXAPI_SHUTDOWN_TIMEOUT`` after the signal it answers those that
  have not started their response with a JSON 503 ``5008`` (``Retry-After``, ``Connection: close``) and cancels
  them, which rolls their transactions back. A worker that has still not exited ``EXIT_SLACK`` seconds later
  (SQLite runs a statement to its end in aiosqlite's thread; a cancelled task cannot stop it) ends itself with
  ``os._exit(1)``: every backend rolls back an uncommitted transaction of a process that is gone.
* Connections. :class:`Protocol` (uvicorn's httptools protocol) closes a connection that has not sent a complete
  request head within ``DXAPI_HEADER_TIMEOUT`` (counted from the connect, or from the first byte after a
  response) or that pauses a request body for longer than the body timeout; uvicorn has neither. Idle keep-alive
  connections are closed by uvicorn after ``DXAPI_KEEPALIVE_TIMEOUT``. Beyond ``DXAPI_MAX_CONNECTIONS``
  connections (or as many requests running) a worker answers a JSON 503 instead of uvicorn's plain one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
import tempfile
import threading
from asyncio import TimerHandle
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from dxapi import errors
from dxapi.logs import uvicorn_log_config

# A worker process unpickles ServerConfig, and so imports this module, before it answers its supervisor's
# health pings: what is heavy (SQLAlchemy, pydantic, the application) is imported where it is used.
if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from dxapi.settings import Settings

log = logging.getLogger("dxapi.server")

APP = "dxapi.server:create_app"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # dxapi.metrics' too; that module is imported only when needed
EXIT_SLACK = 1.0  # seconds after the shutdown timeout for the cut requests to unwind before the worker ends
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve(settings: Settings, workers: int) -> None:
    """Run the server until it is stopped, the way ``uvicorn.run`` would, with dxapi's configuration."""
    with _metrics_directory(settings), _metrics_port(settings):
        _serve(settings, workers)


@contextlib.contextmanager
def _metrics_directory(settings: Settings) -> Iterator[None]:
    """A fresh directory for the workers' metrics files (prometheus-client's multiprocess mode), made before
    the workers start so that they inherit it, removed when the server ends. One the operator set is kept
    (it is theirs to empty between runs)."""
    if not settings.metrics or os.environ.get(MULTIPROC_DIR):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="dxapi-metrics-") as directory:
        os.environ[MULTIPROC_DIR] = directory
        try:
            yield
        finally:
            os.environ.pop(MULTIPROC_DIR, None)


@contextlib.contextmanager
def _metrics_port(settings: Settings) -> Iterator[None]:
    if not (settings.metrics and settings.metrics_port):
        yield
        return
    from dxapi.metrics import serve_port  # after the directory is set: prometheus-client reads it at import

    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    stop = serve_port(settings.host, settings.metrics_port, token)
    try:
        yield
    finally:
        stop()


def _serve(settings: Settings, workers: int) -> None:
    config = ServerConfig(settings, workers)
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled, once shut down
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def create_app() -> ASGIApp:
    """The factory each worker calls: the application behind its shutdown guard."""
    from dxapi.app import create_app as create_dxapi
    from dxapi.settings import Settings

    settings = Settings()
    return ShutdownGuard(create_dxapi(settings), settings.shutdown_timeout)


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the limits :class:`Protocol` reads; pickled to every worker process."""

    def __init__(self, settings: Settings, workers: int) -> None:
        super().__init__(
            APP,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=settings.log_level,
            # dxapi's records and uvicorn's on one handler (dxapi.logs): levels, times, repeats summarised;
            # applied in every worker process before it imports the app.
            log_config=uvicorn_log_config(settings.log_level, settings.log_format),
            access_log=False,
            proxy_headers=False,
            http=Protocol,
            # uvicorn only hands it to call_later: fractions of a second work.
            timeout_keep_alive=settings.keepalive_timeout,  # type: ignore[arg-type]
            # A backstop only: the guard cuts at the shutdown timeout and the worker ends EXIT_SLACK later.
            timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout + EXIT_SLACK) + 1,
        )
        self.header_timeout = settings.header_timeout
        self.body_timeout: float = settings.body_timeout
        self.max_connections = settings.max_connections


def _answer(spec: errors.ErrorSpec) -> tuple[Message, Message]:
    """The error as the two ASGI messages of its response, ``Connection: close`` so that the client retries on a
    new connection (to a worker that has room, or one that is up)."""
    from dxapi.dberrors import RETRY_AFTER_SECONDS
    from dxapi.responses import render_errors

    response = render_errors(errors.ApiError([spec()], {"Retry-After": RETRY_AFTER_SECONDS, "Connection": "close"}))
    start = {"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers}
    return start, {"type": "http.response.body", "body": response.body, "more_body": False}


async def _too_busy(scope: Scope, receive: Receive, send: Send) -> None:
    for message in _answer(errors.TOO_MANY_CONNECTIONS):
        await send(message)


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on every phase in which the client is the one to act.

    One timer per connection: armed for the request head at the connect and when the first byte of a later
    request arrives, then for the body (re-armed on every chunk), disarmed once the body is complete. While
    uvicorn itself has stopped reading (a large body the application has not read yet) the client is not late.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, ServerConfig)
        self.header_timeout = config.header_timeout
        self.body_timeout = config.body_timeout
        self.max_connections = config.max_connections
        self.limit_concurrency = None  # uvicorn's own check answers plain text: on_headers_complete checks
        self.deadline: TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Bytes of a next request on a keep-alive connection (uvicorn's keep-alive timer is off now): its head
        # has to be complete in time too, however slowly it trickles in.
        if self.deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm(self.header_timeout)

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection belongs to another protocol from here on
        super().handle_websocket_upgrade()

    def on_headers_complete(self) -> None:
        busy = len(self.connections) > self.max_connections or len(self.tasks) >= self.max_connections
        self.app = _too_busy if busy else self.config.loaded_app
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._late, seconds)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _late(self, seconds: float) -> None:
        self.deadline = None
        if self.flow.read_paused:  # uvicorn stopped reading, not the client
            self._arm(seconds)
        elif not self.transport.is_closing():
            self.transport.close()


class _InFlight:
    """One request as the guard sees it: its task, whether its response has started, whether it was cut."""

    __slots__ = ("answered", "cut", "in_app", "send_raw", "started", "task")

    def __init__(self, send: Send, task: asyncio.Task[Any]) -> None:
        self.send_raw = send
        self.task = task
        self.started = False  # the application started its response: it is not replaced by a 503
        self.answered = False  # the guard's 503 went out instead: what the application still sends is dropped
        self.in_app = True
        self.cut: asyncio.Task[None] | None = None

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self.send_raw(message)


class ShutdownGuard:
    """The outermost ASGI layer of a worker: it keeps the clock of the shutdown and cuts what outlasts it."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout
        self.running: set[_InFlight] = set()
        self.stopping = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        request = _InFlight(send, task)
        self.running.add(request)
        try:
            await self.app(scope, receive, request.send)
        except asyncio.CancelledError:
            if request.cut is None:  # not the cut: someone else's cancellation
                raise
        finally:
            request.in_app = False
            self.running.discard(request)
        if request.cut is not None:  # uvicorn must not see the request end before its answer is written
            await request.cut

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._watch_signals()
            await send(message)

        return lifespan_send

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":  # stopped without a signal seen: bound the exit anyway
                self.stop()
            return message

        return lifespan_receive

    def _watch_signals(self) -> None:
        """Start the clock when the server is told to stop.

        uvicorn installs its handlers with ``signal.signal`` (to restore the previous ones afterwards) before
        the lifespan starts; each is wrapped here, and called as before. (A ``uvicorn.Server`` subclass would
        not reach the workers of ``--workers N``: uvicorn's supervisor builds a plain one in each.)
        """
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for number in SHUTDOWN_SIGNALS:
            previous = signal.getsignal(number)
            if callable(previous):
                signal.signal(number, self._chained(loop, previous))

    def _chained(self, loop: asyncio.AbstractEventLoop, previous: Any) -> Any:
        def handler(number: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.stop)
            previous(number, frame)

        return handler

    def stop(self) -> None:
        """The shutdown began: cut at the timeout, end the process shortly after if it is still there."""
        if self.stopping:
            return
        self.stopping = True
        asyncio.get_running_loop().call_later(self.timeout, self._cut)
        # A thread, not the event loop: the loop may be gone, or waiting on a driver thread, by then.
        watchdog = threading.Timer(self.timeout + EXIT_SLACK, _exit_now, (self.timeout + EXIT_SLACK,))
        watchdog.daemon = True
        watchdog.start()

    def _cut(self) -> None:
        if self.running:
            log.warning("shutdown: %d request(s) outlasted %ss: answered 503", len(self.running), self.timeout)
        loop = asyncio.get_running_loop()
        for request in list(self.running):
            request.cut = loop.create_task(_cut_one(request))


async def _cut_one(request: _InFlight) -> None:
    # Answer first, then cancel: the application may take a while to unwind (a rollback, a driver's thread).
    if not request.started:
        request.answered = True
        for message in _answer(errors.SHUTTING_DOWN):
            await request.send_raw(message)
    if request.in_app:
        request.task.cancel()


def _exit_now(seconds: float) -> None:
    log.warning("shutdown: the worker has not exited %ss after the signal; ending it", seconds)
    os._exit(1)
