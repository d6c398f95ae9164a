"""dxapi's log handler (no database, no sleeps: the throttle reads an injected clock).

Shows: repeats of a kind (logger, level, message template) within 20 s print once, then one summary line with
the exact count and the last message; a window that is over lets the kind through again; a pending summary
goes out with the next record of any kind, on the running loop's timer, when the handler closes, or on
``flush_summaries`` at shutdown; ERRORs, tracebacks and DEBUG lines are never suppressed; at most ``max_kinds``
windows are kept and none of their counts is lost; ``configure_logging`` is idempotent, touches only the
``dxapi`` tree and prints a record once with a root handler present; the line format starts with the level;
uvicorn's ``log_config`` variant works when uvicorn applies it.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dxapi.logs import (
    MIN_TIMER_SECONDS,
    StderrHandler,
    Throttle,
    UtcFormatter,
    configure_logging,
    flush_summaries,
    parse_level,
)

_names = itertools.count()
LINE = re.compile(r"^(?P<level>[A-Z]+) \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<name>[\w.-]+): (?P<message>.*)$")


def field(line: str, name: str) -> str:
    """One part of a log line; the line must have the handler's format."""
    match = LINE.fullmatch(line)
    assert match, line
    return match[name]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Setup:
    """A handler on a private logger (propagation off: nothing reaches the suite's root handlers)."""

    def __init__(self, window: float = 20.0) -> None:
        self.clock = Clock()
        self.out = io.StringIO()
        self.handler = StderrHandler(self.out, window=window, clock=self.clock)
        self.log = logging.getLogger(f"logs-test.{next(_names)}")
        self.log.propagate = False
        self.log.setLevel(logging.DEBUG)
        self.log.addHandler(self.handler)

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def messages(self) -> list[str]:
        return [field(line, "message") for line in self.lines() if LINE.fullmatch(line)]  # tracebacks left out


@pytest.fixture
def setup() -> Iterator[Setup]:
    made = Setup()
    yield made
    made.log.removeHandler(made.handler)


@pytest.fixture
def dxapi_logger() -> Iterator[logging.Logger]:
    """The real ``dxapi`` logger without handlers (a server started earlier may have left one); restored after."""
    logger = logging.getLogger("dxapi")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers.clear()
    yield logger
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


class Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_outage_of_780_identical_warnings_prints_one_line_then_one_summary(setup: Setup) -> None:
    for _ in range(780):  # 780 in 19.5 s, one per failed request
        setup.log.warning("database unavailable: connection refused")
        setup.clock.now += 0.025
    assert setup.messages() == ["database unavailable: connection refused"]

    setup.clock.now = 1000.0 + 20.0
    setup.log.warning("database unavailable: connection refused")
    assert setup.messages() == [
        "database unavailable: connection refused",
        "database unavailable: connection refused (… 779 more like this in the last 20 s)",
        "database unavailable: connection refused",  # opens the next window
    ]
    assert [field(line, "level") for line in setup.lines()] == ["WARNING"] * 3


def test_a_kind_is_its_template_so_varying_driver_text_collapses_and_the_last_text_is_shown(setup: Setup) -> None:
    for text in ["connection refused", "connection reset by peer", "closed in the middle of operation"]:
        setup.log.warning("database unavailable: %s", text)
    setup.clock.now += 25
    setup.log.info("recovered")
    assert setup.messages() == [
        "database unavailable: connection refused",
        "database unavailable: closed in the middle of operation (… 2 more like this in the last 25 s)",
        "recovered",
    ]


def test_other_loggers_levels_and_templates_are_other_kinds(setup: Setup) -> None:
    other = logging.getLogger(f"{setup.log.name}.child")  # propagates into the same handler
    for _ in range(2):
        setup.log.warning("pool exhausted")
        other.warning("pool exhausted")
        setup.log.info("pool exhausted")
        setup.log.warning("lock wait timed out: %s", "x")
    assert setup.lines() and len(setup.lines()) == 4, setup.lines()
    assert {(field(line, "name"), field(line, "level")) for line in setup.lines()} == {
        (setup.log.name, "WARNING"),
        (other.name, "WARNING"),
        (setup.log.name, "INFO"),
    }


def test_after_the_window_a_kind_passes_again_and_no_summary_is_made_of_nothing(setup: Setup) -> None:
    setup.log.warning("configuration reload failed: %s", "timeout")
    setup.clock.now += 19.9
    setup.log.warning("configuration reload failed: %s", "timeout")  # still inside: counted
    setup.clock.now += 0.1
    setup.log.warning("configuration reload failed: %s", "timeout")  # 20 s after the first: a new window
    setup.clock.now += 20
    setup.log.warning("configuration reload failed: %s", "timeout")  # nothing was counted in the second one
    assert setup.messages() == [
        "configuration reload failed: timeout",
        "configuration reload failed: timeout (… 1 more like this in the last 20 s)",
        "configuration reload failed: timeout",
        "configuration reload failed: timeout",
    ]


def test_the_summary_says_how_long_ago_the_window_opened_when_it_comes_late(setup: Setup) -> None:
    for _ in range(3):
        setup.log.warning("statement timed out")
    setup.clock.now += 300  # the outage ended long ago; this is the next line the server logs
    setup.log.info("configuration version %s loaded", 7)
    assert setup.messages()[1:] == [
        "statement timed out (… 2 more like this in the last 300 s)",
        "configuration version 7 loaded",
    ]


def test_errors_tracebacks_and_debug_lines_are_never_suppressed(setup: Setup) -> None:
    for _ in range(3):
        setup.log.error("unexpected database error: %s", "deadlock")
        setup.log.critical("worker out of memory")
        setup.log.debug("plan built")
        try:
            raise RuntimeError("each traceback may be a different bug")
        except RuntimeError:
            setup.log.warning("pruning %s failed", "tombstones", exc_info=True)
        setup.log.warning("stack of a slow request", stack_info=True)
    text = setup.out.getvalue()
    assert text.count("ERROR ") == 3
    assert text.count("CRITICAL ") == 3
    assert text.count("DEBUG ") == 3
    assert text.count("pruning tombstones failed") == 3 and text.count("Traceback (most recent call last):") == 3
    assert [m for m in setup.messages() if m == "stack of a slow request"] == ["stack of a slow request"] * 3
    assert "more like this" not in text
    setup.clock.now += 60
    setup.log.info("after")
    assert "more like this" not in setup.out.getvalue()


def test_a_pending_summary_is_printed_when_the_handler_closes(setup: Setup) -> None:
    for _ in range(4):
        setup.log.warning("write conflict: %s", "serialization failure")
    setup.clock.now += 5
    setup.handler.close()  # logging.shutdown() does this at exit
    assert setup.messages() == [
        "write conflict: serialization failure",
        "write conflict: serialization failure (… 3 more like this in the last 5 s)",
    ]


class RecordingLoop(asyncio.SelectorEventLoop):
    """A real loop that also remembers what ``call_later`` was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[tuple[float, Callable[..., Any]]] = []

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        self.timers.append((delay, callback))
        return super().call_later(delay, callback, *args, **kwargs)


def test_repeats_logged_on_a_running_loop_arm_one_timer_that_prints_the_summary(setup: Setup) -> None:
    async def outage() -> None:
        setup.log.warning("database unreachable: %s", "refused")
        setup.clock.now += 3
        for _ in range(5):
            setup.log.warning("database unreachable: %s", "refused")
        # ... and then the server goes quiet: no further record will bring the summary out.

    loop = RecordingLoop()
    try:
        loop.run_until_complete(outage())
        timers = [t for t in loop.timers if getattr(t[1], "__self__", None) is setup.handler.throttle]
        assert [delay for delay, _ in timers] == [pytest.approx(17.0)]  # one timer, at the end of the window
        assert setup.messages() == ["database unreachable: refused"]

        setup.clock.now += 17
        timers[0][1]()  # what the loop runs 17 s later
        assert setup.messages()[1:] == ["database unreachable: refused (… 5 more like this in the last 20 s)"]
        assert setup.handler.throttle.kinds == 0
    finally:
        loop.close()


def test_a_timer_that_fires_early_is_rearmed_not_lost(setup: Setup) -> None:
    async def repeats() -> None:
        setup.log.warning("lock wait timed out")
        setup.log.warning("lock wait timed out")

    loop = RecordingLoop()
    try:
        loop.run_until_complete(repeats())
        setup.clock.now += 19.999  # the loop's clock ran a hair ahead of ours

        async def fire() -> None:
            setup.handler.throttle.flush_expired()

        loop.run_until_complete(fire())
        assert setup.messages() == ["lock wait timed out"]
        assert loop.timers[-1][0] == MIN_TIMER_SECONDS
        setup.clock.now += MIN_TIMER_SECONDS
        loop.timers[-1][1]()
        assert setup.messages()[1:] == ["lock wait timed out (… 1 more like this in the last 20 s)"]
    finally:
        loop.close()


def test_memory_is_bounded_and_evicted_windows_keep_their_counts() -> None:
    clock = Clock()
    emitted: list[str] = []
    throttle = Throttle(lambda record: emitted.append(record.getMessage()), max_kinds=3, clock=clock)

    def warning(msg: str) -> bool:
        return throttle.filter(logging.makeLogRecord({"name": "dxapi.x", "levelno": logging.WARNING, "msg": msg}))

    passed = []
    for n in range(10):
        passed += [warning(f"kind {n}"), warning(f"kind {n}")]
        assert throttle.kinds <= 3
        clock.now += 0.1
    assert passed == [True, False] * 10
    # Seven windows were closed early to make room; each summary went out at once, with its count.
    assert emitted == [f"kind {n} (… 1 more like this in the last 1 s)" for n in range(7)]
    throttle.drain()
    assert emitted[7:] == [f"kind {n} (… 1 more like this in the last 1 s)" for n in range(7, 10)]
    assert throttle.kinds == 0


def test_a_record_with_bad_arguments_does_not_make_the_filter_raise() -> None:
    throttle = Throttle(lambda record: None)
    bad = {"name": "dxapi.x", "levelno": logging.WARNING, "msg": "%d rows", "args": ("many",)}
    assert throttle.filter(logging.makeLogRecord(bad)) is True
    assert throttle.filter(logging.makeLogRecord(bad)) is False  # counted; its text falls back to the template


def test_the_line_starts_with_the_level_and_shows_utc_time_and_logger() -> None:
    record = logging.makeLogRecord(
        {
            "name": "dxapi.execute",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "boom",
            "created": 0.5,
            "msecs": 500.0,
        }
    )
    assert UtcFormatter().format(record) == "ERROR 1970-01-01T00:00:00.500Z dxapi.execute: boom"


def test_levels_are_the_names_uvicorn_accepts() -> None:
    assert [parse_level(n) for n in ("debug", "INFO", " warning ", "error", "critical", "trace")] == [
        logging.DEBUG,
        logging.INFO,
        logging.WARNING,
        logging.ERROR,
        logging.CRITICAL,
        5,
    ]
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        parse_level("loud")


def test_configure_logging_is_idempotent_and_sets_the_level(
    dxapi_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    configure_logging("warning")
    ours = [h for h in dxapi_logger.handlers if isinstance(h, StderrHandler)]
    assert len(ours) == 1
    assert dxapi_logger.level == logging.WARNING
    logging.getLogger("dxapi.feed").info("pruned 3 tombstones")  # below the level now
    logging.getLogger("dxapi.feed").warning("pruning %s failed: %s", "tombstones", "timeout")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and LINE.fullmatch(lines[0]), lines
    assert lines[0].startswith("WARNING ") and lines[0].endswith("dxapi.feed: pruning tombstones failed: timeout")


def test_flush_summaries_prints_what_dxapi_counted_at_shutdown(
    dxapi_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    for _ in range(3):
        logging.getLogger("dxapi.execute").warning("database unavailable: %s", "refused")
    assert capsys.readouterr().err.count("database unavailable") == 1
    flush_summaries()  # the app's lifespan shutdown: uvicorn re-raises SIGTERM after it, atexit never runs
    flush_summaries()
    err = capsys.readouterr().err.splitlines()
    assert [field(line, "message") for line in err] == [
        "database unavailable: refused (… 2 more like this in the last 1 s)"
    ], err


def test_records_reach_a_root_handler_once_and_print_once(
    dxapi_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    collector = Collector()
    root.addHandler(collector)
    try:
        assert not any(isinstance(h, StderrHandler) for h in root.handlers)
        configure_logging("info")
        configure_logging("info")
        assert not any(isinstance(h, StderrHandler) for h in root.handlers)  # the root is left alone
        for _ in range(3):
            logging.getLogger("dxapi.execute").warning("connection pool exhausted")
    finally:
        root.removeHandler(collector)
    err = capsys.readouterr().err
    assert err.count("connection pool exhausted") == 1, err  # no second handler, no last-resort copy
    # Throttling is on dxapi's handler only: the root still sees every record, each once.
    assert [r.getMessage() for r in collector.records if r.name == "dxapi.execute"] == ["connection pool exhausted"] * 3


def test_uvicorn_applies_its_log_config_and_its_warnings_are_throttled_too() -> None:
    # dictConfig closes every handler of the process, so it runs where uvicorn would: in a process of its own.
    script = textwrap.dedent(
        """
        import logging, uvicorn
        from dxapi.logs import StderrHandler, uvicorn_log_config
        for _ in range(2):  # uvicorn's own process, then again as a worker would: no second handler
            uvicorn.Config("dxapi.app:create_app", factory=True, log_config=uvicorn_log_config("info"),
                           log_level="info", access_log=False).configure_logging()
        handlers = logging.getLogger("dxapi").handlers + logging.getLogger("uvicorn").handlers
        assert len({id(h) for h in handlers}) == 1 and isinstance(handlers[0], StderrHandler), handlers
        for _ in range(50):
            logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("dxapi.execute").warning("database unreachable: %s", "refused")
        logging.getLogger("uvicorn.access").info("not shown")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [field(line, "message") for line in lines] == [
        "Invalid HTTP request received.",
        "Started server process [42]",
        "database unreachable: refused",
        "Invalid HTTP request received. (… 49 more like this in the last 1 s)",  # at exit, by logging.shutdown
    ], lines
    assert done.stdout == ""
