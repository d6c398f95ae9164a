"""Giving the C heap's free pages back to the system after large requests (glibc's ``malloc_trim``).

A POST of 1000 rows builds a few MB of objects (the parsed body, the plan, the rows returned, the answer) and
frees them when it is answered. Python's small-object arenas that empty out are unmapped; what was taken
from glibc's heap stays in the process as free chunks between live ones, and the heap shrinks only from its
top. Measured with ``python -m benchmarks.memory``: after four rounds of four concurrent 1000-row POSTs a
worker held about 4 MB of such free heap (RSS 110 → 106 MB once trimmed), which the reads that follow
never need.

So after a request that read or wrote many rows, a trim runs half a second later (one at a time, on the event
loop: 1 to 5 ms measured on a heap of about 25 MB). Under steady load that is at most one trim per half second
(under 1 % of the loop's time); after a burst the last one runs when the burst's memory is free. Other C
libraries (musl, macOS) have no such call.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import sys
from collections.abc import Callable
from typing import Any

from dxapi.observe import Exchange

LARGE_REQUEST_ROWS = 200  # rows read or written (or items sent) from which a request counts as large
TRIM_DELAY_SECONDS = 0.5


@functools.cache
def glibc() -> Any | None:
    """The C library, where it is glibc (Linux); None elsewhere (musl, macOS): no ``malloc_trim``, no
    ``mallopt``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):  # musl
        return None
    return libc


def _malloc_trim() -> Callable[[], Any] | None:
    libc = glibc()
    return None if libc is None else lambda: libc.malloc_trim(0)


class HeapTrimmer:
    """``after(exchange)`` for ``observe.Observed``: schedules a trim after a large request."""

    def __init__(self, trim: Callable[[], Any] | None = None) -> None:
        self._trim = trim
        self._pending = False

    @classmethod
    def for_this_process(cls) -> HeapTrimmer | None:
        trim = _malloc_trim()
        return cls(trim) if trim is not None else None

    def after(self, exchange: Exchange) -> None:
        if self._pending or max(exchange.rows_read, exchange.rows_written, exchange.items) < LARGE_REQUEST_ROWS:
            return
        self._pending = True
        asyncio.get_running_loop().call_later(TRIM_DELAY_SECONDS, self._run)

    def _run(self) -> None:
        self._pending = False
        assert self._trim is not None
        self._trim()
