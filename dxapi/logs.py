"""dxapi's own log output: one stderr handler for the ``dxapi`` logger tree, with repeats throttled.

Without it, dxapi's records fall through to Python's last-resort handler (WARNING and up, message only). The
handler writes ``LEVEL time logger: message`` lines — a line starts with its level name, so ``ERROR`` lines are
easy to find — and its ``Throttle`` collapses repeats: during an outage every failed request logs the same
warning, and 780 identical lines in 20 s hide everything else. The first record of a kind is printed; the
repeats within the window are counted; one summary line ("… 779 more like this in the last 20 s") follows.

Records still propagate to the root logger untouched: throttling happens on this handler only, so any other
handler (the test suite's error collector, a log shipper) sees every record.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from dxapi.observe import request_id

WINDOW_SECONDS = 20.0
MAX_KINDS = 512
# Kinds are keyed and remembered by bounded text: a huge pre-formatted message must not make memory grow.
MAX_KEY_CHARS = 300
MAX_TEXT_CHARS = 2000
# A loop timer may fire a hair before the window ends by our clock; never re-arm it for less than this.
MIN_TIMER_SECONDS = 0.05
SUMMARY_ATTR = "dxapi_summary"
ACCESS_LOGGER = "dxapi.access"  # one record per request, each wanted: never collapsed
SUMMARY_FORMAT = "%s (… %d more like this in the last %d s)"

# `trace` is uvicorn's level below DEBUG; DXAPI_LOG_LEVEL is also handed to uvicorn, so accept its names.
LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": 5,
}

Kind = tuple[str, int, str]


def parse_level(level: str) -> int:
    """``DXAPI_LOG_LEVEL`` as a number: a name uvicorn also accepts, any case."""
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None


def throttled(record: logging.LogRecord) -> bool:
    """Whether repeats of this record may be collapsed.

    Never an ERROR or worse, nor anything carrying a traceback or stack: each may be a different bug, and the
    traceback is the part that tells them apart. Never DEBUG either: whoever turns it on asked for every line.
    Never the access log: a line per request is what it is for.
    """
    if record.levelno >= logging.ERROR or record.levelno <= logging.DEBUG or record.name == ACCESS_LOGGER:
        return False
    return not (record.exc_info or record.exc_text or record.stack_info)


def _text(record: logging.LogRecord) -> str:
    # A filter that raises breaks the logging call itself, i.e. the request; a bad format is shown, not raised.
    try:
        return record.getMessage()[:MAX_TEXT_CHARS]
    except Exception:
        return str(record.msg)[:MAX_TEXT_CHARS]


@dataclass(slots=True)
class _Window:
    """One kind's current window: when it opened, where it is logged from, what it suppressed."""

    start: float
    name: str
    levelno: int
    pathname: str
    lineno: int
    func: str | None
    count: int = 0
    last_text: str = ""

    def summary(self, now: float) -> logging.LogRecord:
        span = max(1, round(now - self.start))
        return logging.makeLogRecord(
            {
                "name": self.name,
                "levelno": self.levelno,
                "levelname": logging.getLevelName(self.levelno),
                "pathname": self.pathname,
                "lineno": self.lineno,
                "funcName": self.func,
                "msg": SUMMARY_FORMAT,
                "args": (self.last_text, self.count, span),
                SUMMARY_ATTR: True,
            }
        )


class Throttle(logging.Filter):
    """Pass the first record of a kind, count its repeats for ``window`` seconds, then emit one summary.

    A kind is (logger, level, message template): ``record.msg`` before its arguments are filled in, so
    "database unavailable: %s" is one kind whatever text the driver put in — during an outage that text varies
    (refused, reset, closed mid-operation, a new PID or address each time) and keying on it would let the flood
    through. The summary repeats the *last* suppressed message in full, so the latest driver text is seen.

    A summary is never lost: it goes out with the next record of any kind once the window is over, on a timer
    of the running event loop if the repeats were logged from one (no background task), when the handler
    closes (``logging.shutdown`` at a clean exit), or when the app shuts down (``flush_summaries``). Summaries
    are handed to ``emit`` (the handler's ``handle``), marked so this filter lets them through. At most
    ``max_kinds`` windows are kept; a new kind beyond that closes the oldest window early, its summary emitted
    at once.
    """

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        *,
        window: float = WINDOW_SECONDS,
        max_kinds: int = MAX_KINDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._emit = emit
        self._window = window
        self._max_kinds = max_kinds
        self._clock = clock
        # Ordered by window start (insertion), so expired windows are always at the front.
        self._windows: OrderedDict[Kind, _Window] = OrderedDict()
        self._lock = threading.Lock()  # records arrive from the loop thread and from worker threads
        self._timer: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None

    @property
    def kinds(self) -> int:
        """How many windows are open (bounded by ``max_kinds``)."""
        return len(self._windows)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, SUMMARY_ATTR, False):
            return True
        with self._lock:
            now = self._clock()
            due = self._take_expired(now)
            passes = self._admit(record, now, due)
            if not passes:
                self._arm_timer(now)
        self._send(due)  # before the record itself, so the lines stay in order
        return passes

    def flush_expired(self) -> None:
        """Emit the summaries of windows that are over (what the loop timer runs)."""
        with self._lock:
            self._timer = None
            now = self._clock()
            due = self._take_expired(now)
            self._arm_timer(now)
        self._send(due)

    def drain(self) -> None:
        """Emit every pending summary now, window over or not, and forget all windows (at close, at shutdown)."""
        with self._lock:
            now = self._clock()
            due = [w.summary(now) for w in self._windows.values() if w.count]
            self._windows.clear()
        self._send(due)

    def _admit(self, record: logging.LogRecord, now: float, due: list[logging.LogRecord]) -> bool:
        if not throttled(record):
            return True
        kind = (record.name, record.levelno, str(record.msg)[:MAX_KEY_CHARS])
        window = self._windows.get(kind)
        if window is not None:
            window.count += 1
            window.last_text = _text(record)
            return False
        if len(self._windows) >= self._max_kinds:
            _, oldest = self._windows.popitem(last=False)
            if oldest.count:
                due.append(oldest.summary(now))
        self._windows[kind] = _Window(now, record.name, record.levelno, record.pathname, record.lineno, record.funcName)
        return True

    def _take_expired(self, now: float) -> list[logging.LogRecord]:
        due = []
        while self._windows:
            window = next(iter(self._windows.values()))
            if window.start + self._window > now:
                break
            self._windows.popitem(last=False)
            if window.count:
                due.append(window.summary(now))
        return due

    def _arm_timer(self, now: float) -> None:
        """Make sure the running loop, if any, wakes up when the first window with repeats ends."""
        if self._timer is not None:
            loop, handle = self._timer
            if not (loop.is_closed() or handle.cancelled()):
                return
            self._timer = None
        ends = [w.start + self._window for w in self._windows.values() if w.count]
        if not ends:
            return
        try:
            loop = asyncio.get_running_loop()  # only the loop's own thread may schedule on it
        except RuntimeError:
            return  # no loop here: the next record or the handler's close brings the summary
        delay = max(min(ends) - now, MIN_TIMER_SECONDS)
        self._timer = (loop, loop.call_later(delay, self.flush_expired))

    def _send(self, records: list[logging.LogRecord]) -> None:
        for record in records:
            self._emit(record)


def _utc(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class UtcFormatter(logging.Formatter):
    """``LEVEL 2025-01-31T12:00:00.123Z logger: message [request id]``: the level first, UTC time, the logger's
    name; the id of the request the record was written for, if any."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(asctime)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        found = getattr(record, "request_id", None)
        return f"{line} [{found}]" if found else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``DXAPI_LOG_FORMAT=json``): time, level, logger, message, request id, the
    traceback if any, and an access record's fields (``observe.log_access``) at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": _text(record),
        }
        found = getattr(record, "request_id", None)
        if found:
            line["requestId"] = found
        line.update(getattr(record, "access", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was written for (``observe.request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id()
        return True


class StderrHandler(logging.StreamHandler[TextIO]):
    """dxapi's handler: UTC lines (or JSON ones), a ``Throttle``, and ``sys.stderr`` looked up at each write.

    Looking the stream up late (as Python's last-resort handler does) keeps the handler writing to whatever
    ``sys.stderr`` is now — pytest swaps it per test — instead of a stream closed since.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        json: bool = False,
    ) -> None:
        super().__init__()
        self._fixed_stream = stream
        self.setFormatter(JsonFormatter() if json else UtcFormatter())
        self.throttle = Throttle(self.handle, window=window, clock=clock)
        self.addFilter(RequestIdFilter())
        self.addFilter(self.throttle)

    @property
    def stream(self) -> TextIO:
        return self._fixed_stream if self._fixed_stream is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        # StreamHandler.__init__ assigns sys.stderr; only an explicit stream given to us is kept.
        pass

    def close(self) -> None:
        self.throttle.drain()  # what was counted is printed before the process goes
        super().close()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Give the ``dxapi`` logger tree its stderr handler and ``level``; the root logger is left alone.

    Idempotent: a second call only changes the level. Records keep propagating to the root, so a handler
    there still sees them; with no root handler (what ``dxapi serve`` has) nothing prints them a second time,
    since the last-resort handler only acts when no handler at all was found.
    """
    logger = logging.getLogger("dxapi")
    logger.setLevel(parse_level(level))
    logger.propagate = True
    if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        logger.addHandler(StderrHandler(json=log_format == "json"))


def flush_summaries() -> None:
    """Print every pending summary of dxapi's handlers now, window over or not.

    For the app's shutdown: uvicorn ends a process stopped by SIGTERM by raising that signal again once it has
    shut down, so ``atexit`` — ``logging.shutdown``, the handler's ``close`` — never runs there.
    """
    for name in ("dxapi", "uvicorn"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, StderrHandler):
                handler.throttle.drain()  # a handler shared by both loggers has nothing left the second time


def uvicorn_log_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's ``log_config`` for ``dxapi serve``: dxapi's and uvicorn's records share one ``StderrHandler``.

    uvicorn applies it with ``dictConfig`` in its own process and again in every worker it spawns, before it
    imports the app — the same as ``configure_logging`` plus uvicorn's loggers, whose per-connection warnings
    ("Invalid HTTP request received.") are throttled and formatted like dxapi's lines. uvicorn's access log
    stays off: dxapi writes its own (``dxapi.access``, with ``DXAPI_LOG_FORMAT=json``), which knows the
    principal, the entity and the rows.
    Applying it again replaces the handlers of these loggers, so it never adds a second one.
    """
    number = parse_level(level)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"()": "dxapi.logs.StderrHandler", "json": log_format == "json"}},
        "loggers": {
            "dxapi": {"handlers": ["stderr"], "level": number, "propagate": True},
            "uvicorn": {"handlers": ["stderr"], "level": number, "propagate": False},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
