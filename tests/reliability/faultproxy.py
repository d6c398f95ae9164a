"""A TCP proxy between dxapi and the suite's PostgreSQL cluster that misbehaves on command.

Feeds the reliability tests: dxapi's ``DXAPI_DATABASE_URL`` names the proxy's port, so the test decides what the
network between them does. It listens on 127.0.0.1 only and runs an asyncio loop in a thread of its own.

Modes (``set_mode``):

- ``PASS``: bytes flow both ways as they come.
- ``BLACKHOLE``: a hung database. Connections are still accepted (the kernel of a stopped server accepts them
  too), but nothing is forwarded either way: what was read is held, the rest waits in the socket buffers, as
  with a ``SIGSTOP``-ed server. Back to ``PASS``, everything held flows on.
- ``RESET``: every open connection is reset (RST on both sides) and every new one is reset right after the
  accept, until the mode changes. ``reset_all()`` is a reset followed by ``PASS``.
- ``REFUSE``: the listening socket is closed, so new connections are refused (``ECONNREFUSED``); open ones go
  on (one still in the accept backlog is reset by the kernel).

A connection whose upstream connect fails (the cluster is down) is reset at once: dxapi sees a reset where it
would have seen a refusal, which is the same "database not reachable" to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any

CHUNK = 64 * 1024


class Mode(enum.Enum):
    PASS = "pass"
    BLACKHOLE = "blackhole"
    RESET = "reset"
    REFUSE = "refuse"


def _close(writer: asyncio.StreamWriter) -> None:
    if writer.transport.is_closing():
        writer.transport.abort()
    else:
        writer.close()


_LINGER_ZERO = struct.pack("ii", 1, 0)  # close with RST instead of FIN


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    writer.transport.abort()


def _reset_socket(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    sock.close()


class _Link:
    """One proxied connection: the client's side and the upstream side."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)

    def close(self) -> None:
        _close(self.client)
        _close(self.upstream)


class FaultProxy:
    """``start()``, point clients at ``port``, change ``set_mode`` as the test goes, ``close()``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.mode = Mode.PASS
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Future[None] | None = None
        self._handlers: set[asyncio.Future[None]] = set()
        self._flowing: asyncio.Event | None = None
        self._links: set[_Link] = set()

    # --- the test's side (any thread) -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def set_mode(self, mode: Mode) -> None:
        self._call(self._apply(mode))

    def reset_all(self) -> None:
        self.set_mode(Mode.RESET)
        self.set_mode(Mode.PASS)

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # --- the loop's side --------------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._listen()

    def _listen(self) -> None:
        # A listening socket of its own rather than asyncio's server: closing it must leave no connection
        # half-accepted (asyncio may accept one whose handler then never runs, and it would hang).
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = asyncio.ensure_future(self._accept(listener))

    async def _unlisten(self) -> None:
        """Stop listening: connections still in the backlog are reset by the kernel, later ones refused."""
        if self._acceptor is not None:
            self._acceptor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._acceptor
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def _accept(self, listener: socket.socket) -> None:
        while True:
            conn, _address = await self._loop.sock_accept(listener)
            handler = asyncio.ensure_future(self._handle(conn))
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)

    async def _apply(self, mode: Mode) -> None:
        assert self._flowing is not None
        previous, self.mode = self.mode, mode
        if mode is Mode.REFUSE:
            await self._unlisten()  # accepted connections stay as they are
        elif previous is Mode.REFUSE:
            self._listen()
        if mode is Mode.RESET:
            for link in list(self._links):
                link.reset()
        if mode is Mode.BLACKHOLE:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _stop(self) -> None:
        await self._unlisten()
        for link in list(self._links):
            link.close()
        for handler in list(self._handlers):
            handler.cancel()

    async def _handle(self, conn: socket.socket) -> None:
        self.accepted += 1
        if self.mode is Mode.RESET:
            _reset_socket(conn)
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset_socket(conn)
            return
        client_reader, client = await asyncio.open_connection(sock=conn)
        link = _Link(client, upstream)
        self._links.add(link)
        try:
            await asyncio.gather(self._pump(client_reader, upstream), self._pump(upstream_reader, client))
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        """Forward one direction; data read while the mode is BLACKHOLE is held until it is not."""
        assert self._flowing is not None
        try:
            while True:
                data = await source.read(CHUNK)
                await self._flowing.wait()
                if not data:
                    break
                target.write(data)
                await target.drain()
        except OSError:
            pass
        finally:
            # One side ended: end the other (PostgreSQL's protocol has no use for half-closed connections).
            _close(target)
