"""The fault proxy itself does what the other tests rely on, against a plain echo server of the test's own.

Pass-through echoes; a blackhole holds what was sent (nothing comes back, new connections are still accepted)
and delivers all of it once the mode is back to pass; a reset breaks open connections with ECONNRESET and
resets new ones; refuse closes the port (ECONNREFUSED) while open connections keep working.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.reliability.faultproxy import FaultProxy, Mode


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback echo server in a thread; one thread per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy resets it in some tests
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


@pytest.fixture
def proxied(echo_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(echo_port).start()
    yield proxy
    proxy.close()


def _connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def _roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_pass_and_blackhole(proxied: FaultProxy) -> None:
    with _connect(proxied) as sock:
        assert _roundtrip(sock, b"hello") == b"hello"
        proxied.set_mode(Mode.BLACKHOLE)
        sock.sendall(b"held")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        with _connect(proxied) as late:  # a hung server's kernel still accepts
            late.sendall(b"late")
            proxied.set_mode(Mode.PASS)
            late.settimeout(2)
            assert late.recv(10) == b"late"
        sock.settimeout(2)
        assert sock.recv(10) == b"held"


def test_reset(proxied: FaultProxy) -> None:
    with _connect(proxied) as sock:
        assert _roundtrip(sock, b"x") == b"x"
        proxied.set_mode(Mode.RESET)
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        # at the connect already, or at the first read
        with pytest.raises(ConnectionResetError), _connect(proxied) as fresh:
            fresh.recv(10)
    proxied.set_mode(Mode.PASS)
    with _connect(proxied) as sock:
        assert _roundtrip(sock, b"again") == b"again"


def test_refuse(proxied: FaultProxy) -> None:
    with _connect(proxied) as sock:
        assert _roundtrip(sock, b"open") == b"open"
        proxied.set_mode(Mode.REFUSE)
        with pytest.raises(ConnectionRefusedError):
            _connect(proxied)
        assert _roundtrip(sock, b"still") == b"still"  # open connections go on
    proxied.set_mode(Mode.PASS)
    with _connect(proxied) as sock:
        assert _roundtrip(sock, b"back") == b"back"
