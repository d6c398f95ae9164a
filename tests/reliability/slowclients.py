"""Idle and slow-header (slowloris) connections against a server, from a process of their own.

Run by ``test_slow_clients`` as ``python -m tests.reliability.slowclients PORT SECONDS REPORT`` so that its
work does not compete with the measured clients for the test process's interpreter lock. For ``SECONDS`` it
keeps open, on 127.0.0.1:PORT:

- ``silent``: 50 connections that never send a byte;
- ``kept``: 50 that send one complete request, read the answer and then stay idle (keep-alive);
- ``slow``: 50 that send a request line and then one more header line every 0.5 s, never the blank line that
  ends the head.

A connection the server closes (end of file or reset) is recorded with how long it was idle or unfinished, and
replaced by a new one of its kind. At the end, those still open are recorded with their age. The report is a
JSON list of ``{"kind", "seconds", "closed"}``; "ready" is printed once the first connections are open.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import sys
import time
from dataclasses import dataclass

COUNTS = {"silent": 50, "kept": 50, "slow": 50}
TRICKLE = 0.5  # seconds between two header lines of a slow connection
REQUEST = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@dataclass
class Connection:
    kind: str
    sock: socket.socket
    since: float  # when it became idle (kept: after its answer) or was opened
    answered: bool = False
    trickled: int = 0
    next_trickle: float = 0.0


def _open(kind: str, port: int) -> Connection:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    now = time.monotonic()
    connection = Connection(kind, sock, now, next_trickle=now + TRICKLE)
    if kind == "kept":
        sock.sendall(REQUEST + b"\r\n")
    elif kind == "slow":
        sock.sendall(REQUEST)
    return connection


def _readable(connection: Connection) -> bool:
    """Read what is there; → whether the server closed the connection."""
    try:
        data = connection.sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError:
        return True
    if not data:
        return True
    if connection.kind == "kept" and not connection.answered:
        connection.answered = True
        connection.since = time.monotonic()  # idle from here on
    return False


def _trickle(connection: Connection, now: float) -> None:
    if connection.kind == "slow" and now >= connection.next_trickle:
        connection.trickled += 1
        connection.next_trickle = now + TRICKLE
        with contextlib.suppress(OSError):  # closed by the server: the next read tells
            connection.sock.send(f"X-Slow-{connection.trickled}: still coming\r\n".encode())


def run(port: int, seconds: float) -> list[dict[str, object]]:
    selector = selectors.DefaultSelector()
    records: list[dict[str, object]] = []
    for kind, count in COUNTS.items():
        for _ in range(count):
            connection = _open(kind, port)
            selector.register(connection.sock, selectors.EVENT_READ, connection)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        for key, _events in selector.select(timeout=0.05):
            connection = key.data
            if _readable(connection):
                records.append(
                    {"kind": connection.kind, "seconds": time.monotonic() - connection.since, "closed": True}
                )
                selector.unregister(connection.sock)
                connection.sock.close()
                replacement = _open(connection.kind, port)
                selector.register(replacement.sock, selectors.EVENT_READ, replacement)
        for key in list(selector.get_map().values()):
            _trickle(key.data, now)
    for key in list(selector.get_map().values()):
        connection = key.data
        records.append({"kind": connection.kind, "seconds": time.monotonic() - connection.since, "closed": False})
        connection.sock.close()
    return records


if __name__ == "__main__":
    port, seconds, report = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    with open(report, "w") as out:
        json.dump(run(port, seconds), out)
