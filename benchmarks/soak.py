"""`make soak`: one dxapi server under a fixed request rate for minutes: memory, latency, no 5xx (issue 13).

Steps: the database as `make bench` prepares it (`run.prepare_data`: recreated and loaded with the demo shop,
or reused with `--skip-load`); `dxapi init`, `config import` and a client for the run (`run.prepare_dxapi`);
one `dxapi serve` with one worker and a bearer token (`run.authenticate`); the products' change feed switched
on (`feed.set_feed`) and the idempotency table given its filler (`data.fill_key_records`), so writes meet
the triggers and the table a production server has. Then an open-loop schedule: request i is sent at
start + i / rate whether or not the earlier ones have been answered, up to `--max-in-flight` at once (a slot
that finds them all busy is dropped and counted). The requests are a mix of the API (`MIX`). The RSS of the
server's process tree is read every second. The first `--warmup` seconds are not counted.

    python -m benchmarks.soak [--rate R] [--duration S] [--warmup S] [--max-in-flight N] [--skip-load] [--no-feed]

Prints a table per request kind and the memory figures and writes benchmarks/results/soak.json. Exit status 1
when a request was answered 5xx or failed in transport, the achieved rate fell more than 5 % short of
`--rate`, or the server exited; 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import math
import os
import random
import secrets
import signal
import statistics
import sys
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

from benchmarks.auth import AuthError, BearerToken
from benchmarks.data import (
    DEFAULT_URL,
    PAGE,
    PRODUCTS,
    URL_ENV,
    DataContext,
    delete_bench_rows,
    delete_key_records,
    fill_key_records,
)
from benchmarks.feed import CHANGES_PATH, set_feed, switch_feed
from benchmarks.load import _percentile
from benchmarks.report import RESULTS_DIR, log
from benchmarks.run import (
    CONFIG_FILE,
    authenticate,
    clean_up,
    disable_client,
    exit_on_sigterm,
    prepare_data,
    prepare_dxapi,
)
from benchmarks.scenarios import (
    PRODUCTS_PATH,
    Target,
    by_id_target,
    keyed,
    keyset_target,
    materialise,
    offset_target,
    patch_target,
    post_target,
    query,
)
from benchmarks.servers import Server, cpu_seconds, process_tree, tree_rss

RESULTS_FILE = RESULTS_DIR / "soak.json"
# kind → share of the requests in %. Reads dominate, as with a shop front and its connectors; every created
# batch is deleted again by a later "delete-batch", so the table keeps its size however long the soak runs.
MIX: dict[str, int] = {
    "get-by-id": 35,
    "list-cursor": 15,
    "list-offset": 5,
    "list-filtered": 15,
    "patch": 10,
    "patch-keyed": 5,
    "post-batch": 5,
    "delete-batch": 5,
    "feed": 5,
}
POST_ROWS = 10  # rows per POST: a small order-sized batch, not the bench's 1000
FEED_LIMIT = 500
PRICE_WINDOWS = 100  # filtered lists: price ranges of 25 (the demo's prices lie in 0.99..2500.00)
WALKS = 16  # list cursors kept for later pages: more walks at once start from the first page
FOLLOWERS = 4  # feed cursors kept: a slot that finds none free starts a follower at `since=now`
LATE_S = 0.1  # a request sent this much after its slot counts as late: the load generator lagged
SHORTFALL = 0.05  # achieved rate below (1 - SHORTFALL) x --rate fails the soak
WINDOW_S = 60.0  # the timeline's rows
SAMPLE_S = 1.0  # RSS (and load average) samples
TOKEN_MARGIN_S = 60.0  # the bearer token is renewed once it has less than this (+ auth.MARGIN_S) left
PROBLEMS = 20  # different problem messages kept for the report
DROPPED, TRANSPORT = -1, 0  # Record.status besides HTTP statuses


@dataclass(frozen=True, slots=True)
class Call:
    """One concrete request; `after` sees its 2xx answer (cursors to follow, ids to delete later)."""

    kind: str
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: Callable[[bytes], None] | None = None
    failed: Callable[[], None] | None = None  # gives back what the call took (a feed cursor) on any failure


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    slot_s: float  # scheduled send time, seconds after the start (warm-up included)
    latency_s: float  # from the scheduled time to the end of the answer: a late send counts against it
    status: int  # HTTP status, TRANSPORT or DROPPED
    late: bool


@dataclass
class Mix:
    """Builds the requests of the mix; keeps the state a client would (list and feed cursors, created ids)."""

    base: str
    ctx: DataContext
    rng: random.Random
    feed: bool
    nonce: str = field(default_factory=lambda: secrets.token_hex(3).upper())
    counter: int = 0
    walks: deque[tuple[str, int]] = field(default_factory=deque)  # next page's URL, its number in the walk
    walks_started: int = 0
    deepest_page: int = 0
    followers: deque[str] = field(default_factory=deque)
    batches: deque[list[int]] = field(default_factory=deque)
    problems: Counter[str] = field(default_factory=Counter)
    feed_entries: int = 0  # changes the feed pages delivered: a tail that sees the soak's own writes
    targets: dict[str, Target] = field(init=False)

    def __post_init__(self) -> None:
        base, ctx = self.base, self.ctx
        prices = [
            f"{base}{PRODUCTS_PATH}?"
            + query(
                **{
                    "filter[products.price]": orjson.dumps({"gte": f"{25 * n}", "lt": f"{25 * (n + 1)}"}).decode(),
                    "filter[products.isActive]": "true",
                    "sort": "-price",
                    "page[offset]": "0",
                    "page[limit]": str(PAGE),
                }
            )
            for n in range(PRICE_WINDOWS)
        ]
        posted = orjson.loads(post_target(base, ctx).body or "{}")["data"][:POST_ROWS]
        self.targets = {
            "get-by-id": by_id_target(base, ctx),
            "list-offset": offset_target(base, ctx),
            "list-filtered": Target(keyset_target(base, ctx).urls + prices),
            "patch": patch_target(base, ctx),
            "patch-keyed": keyed(patch_target(base, ctx)),
            "post-batch": Target([f"{base}{PRODUCTS_PATH}"], "POST", orjson.dumps({"data": posted}).decode()),
        }

    @property
    def kinds(self) -> dict[str, int]:
        return {kind: share for kind, share in MIX.items() if self.feed or kind != "feed"}

    def pick(self) -> str:
        kinds = self.kinds
        return self.rng.choices(list(kinds), weights=list(kinds.values()))[0]

    def build(self, kind: str) -> Call:
        if kind == "list-cursor":
            return self.list_page()
        if kind == "feed":
            return self.feed_page()
        if kind == "delete-batch":
            return self.delete_batch()
        call = self.concrete(kind, self.targets[kind])
        if kind == "post-batch":
            return dataclasses.replace(call, after=self.created)
        return call

    def concrete(self, kind: str, target: Target) -> Call:
        """`target` with one of its URLs, a random id and a fresh {uniq} (skus, names, Idempotency-Key)."""
        self.counter += 1
        one = dataclasses.replace(target, urls=[self.rng.choice(target.urls)])
        url, body, headers = materialise(one, self.rng.randint(1, self.ctx.id_max), f"{self.nonce}S{self.counter}")
        if body is not None:
            headers["Content-Type"] = "application/json"
        return Call(kind, target.method, url, body, headers)

    def list_page(self) -> Call:
        """The next page of a keyset walk through the products, or the first page of a new walk."""
        if self.walks:
            url, page = self.walks.popleft()
        else:
            url, page = f"{self.base}{PRODUCTS_PATH}?" + query(**{"page[cursor]": "", "page[limit]": str(PAGE)}), 1
            self.walks_started += 1

        def walked(raw: bytes) -> None:
            self.deepest_page = max(self.deepest_page, page)
            link = self.parse(raw, "list-cursor", lambda d: d.get("links", {}).get("next"))
            if link and len(self.walks) < WALKS:
                # links.next is a path with its query; tolerate an absolute URL too
                parts = urllib.parse.urlsplit(str(link))
                self.walks.append((self.base + parts.path + (f"?{parts.query}" if parts.query else ""), page + 1))

        return Call("list-cursor", "GET", url, after=walked)

    def feed_page(self) -> Call:
        """A connector's tail of the products' change feed: from its last cursor, or from `since=now`."""
        cursor = self.followers.popleft() if self.followers else "now"
        url = f"{self.base}{CHANGES_PATH}?" + query(since=cursor, **{"page[limit]": str(FEED_LIMIT)})

        def give_back() -> None:
            if cursor != "now":
                self.keep_follower(cursor)

        return Call("feed", "GET", url, after=self.followed, failed=give_back)

    def followed(self, raw: bytes) -> None:
        page = self.parse(raw, "feed", lambda d: (d["meta"]["cursor"], len(d["data"])))
        if page:
            self.feed_entries += page[1]
            self.keep_follower(page[0])

    def keep_follower(self, cursor: str) -> None:
        if len(self.followers) < FOLLOWERS:
            self.followers.append(cursor)

    def created(self, raw: bytes) -> None:
        ids = self.parse(raw, "post-batch", lambda d: [item["idProduct"] for item in d["data"]])
        if ids:
            self.batches.append(ids)

    def delete_batch(self) -> Call:
        """Delete the rows of an earlier POST in one request; a GET by id while none is waiting (the start)."""
        if not self.batches:
            return self.concrete("get-by-id", self.targets["get-by-id"])
        ids = self.batches.popleft()
        url = f"{self.base}{PRODUCTS_PATH}?" + query(
            **{"filter[products.idProduct]": orjson.dumps({"in": ids}).decode()}
        )
        return Call("delete-batch", "DELETE", url)

    def parse(self, raw: bytes, kind: str, read: Callable[[Any], Any]) -> Any:
        try:
            return read(orjson.loads(raw))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            self.note(f"{kind}: unexpected answer ({exc!r}): {raw[:160].decode(errors='replace')}")
            return None

    def note(self, problem: str) -> None:
        note(self.problems, problem)


def note(problems: Counter[str], problem: str) -> None:
    """Count `problem`; only the first PROBLEMS different ones are kept (a failing server repeats itself)."""
    if problem in problems or len(problems) < PROBLEMS:
        problems[problem] += 1


@dataclass
class Sample:
    at_s: float  # seconds after the start
    rss: int  # summed over the server's process tree, bytes
    largest: int  # its largest process, bytes
    processes: int
    load_1m: float


@dataclass
class Soak:
    """One soak run: settings, what it recorded, and the CPU the server used while counted."""

    rate: float
    duration: float
    warmup: float
    max_in_flight: int
    timeout: float
    records: list[Record] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    cpu_s: float | None = None  # the server's CPU seconds over the counted part
    client_cpu_s: float | None = None  # this process's (the load generator's) over the same time
    elapsed_s: float = 0.0  # wall time of the schedule, warm-up included

    @property
    def total_s(self) -> float:
        return self.warmup + self.duration


@dataclass
class Recorder:
    """Where the requests' outcomes go; `start` is the loop time of slot 0."""

    start: float
    records: list[Record] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)  # 5xx answers and transport errors

    def add(self, call: Call, slot_s: float, late: bool, status: int, now: float) -> None:
        self.records.append(Record(call.kind, slot_s, now - self.start - slot_s, status, late))

    def note(self, problem: str) -> None:
        note(self.problems, problem)


async def send(client: httpx.AsyncClient, call: Call, slot_s: float, late: bool, recorder: Recorder) -> None:
    loop = asyncio.get_running_loop()
    try:
        response = await client.request(call.method, call.url, content=call.body, headers=call.headers)
    except httpx.TransportError as exc:
        recorder.add(call, slot_s, late, TRANSPORT, loop.time())
        recorder.note(f"{call.kind}: {type(exc).__name__}: {exc}")
        if call.failed:
            call.failed()
        return
    recorder.add(call, slot_s, late, response.status_code, loop.time())
    if response.is_success:
        if call.after:
            call.after(response.content)
        return
    if call.failed:
        call.failed()
    if response.status_code >= 500:
        recorder.note(f"{call.kind}: {call.method} answered {response.status_code}: {response.text[:200]}")


def server_cpu(pid: int) -> float:
    return sum(cpu_seconds(process_tree(pid)).values())


async def sample_server(
    soak: Soak,
    pid: int,
    start: float,
    stop: asyncio.Event,
    credentials: Callable[[], dict[str, str]],
    sent: MutableMapping[str, str],
) -> None:
    """Every SAMPLE_S, and once more at `stop`: the server tree's RSS and the load average; keeps the token
    fresh meanwhile."""
    loop = asyncio.get_running_loop()
    tick = 0
    while True:
        total, largest, count = await asyncio.to_thread(tree_rss, pid)
        soak.samples.append(Sample(loop.time() - start, total, largest, count, os.getloadavg()[0]))
        if stop.is_set():
            return
        # a fetch of /token blocks: in a thread, and it happens only when the token nears its end
        sent.update(await asyncio.to_thread(credentials))
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, start + tick * SAMPLE_S - loop.time()))


async def drive(soak: Soak, mix: Mix, pid: int, credentials: Callable[[], dict[str, str]]) -> Counter[str]:
    """The open-loop schedule over warm-up and duration, then the requests still in flight → problems."""
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(
        max_connections=soak.max_in_flight,
        max_keepalive_connections=soak.max_in_flight,
        # below the server's DXAPI_KEEPALIVE_TIMEOUT (5 s): no request goes out on a connection it is closing
        keepalive_expiry=4.0,
    )
    in_flight: set[asyncio.Task[None]] = set()
    cpu_from: float | None = None
    client_from = 0.0
    async with httpx.AsyncClient(headers=credentials(), limits=limits, timeout=soak.timeout) as client:
        recorder = Recorder(loop.time())
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_server(soak, pid, recorder.start, stop, credentials, client.headers))
        for number in range(round(soak.total_s * soak.rate)):
            slot_s = number / soak.rate
            if cpu_from is None and slot_s >= soak.warmup:
                cpu_from, client_from = server_cpu(pid), time.process_time()
            delay = recorder.start + slot_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            late = loop.time() - recorder.start - slot_s > LATE_S
            kind = mix.pick()
            if len(in_flight) >= soak.max_in_flight:
                recorder.records.append(Record(kind, slot_s, 0.0, DROPPED, late))
                continue
            task = asyncio.create_task(send(client, mix.build(kind), slot_s, late, recorder))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        soak.elapsed_s = loop.time() - recorder.start
        cpu_to, client_to = server_cpu(pid), time.process_time()
        stop.set()
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=soak.timeout + 5)
        await sampler
    soak.records = recorder.records
    if cpu_from is not None:
        soak.cpu_s, soak.client_cpu_s = cpu_to - cpu_from, client_to - client_from
    return recorder.problems + mix.problems


def latency_figures(records: Sequence[Record]) -> dict[str, float]:
    """p50/p99/max in ms of the answered requests (any status; transport errors and drops have no latency)."""
    latencies = sorted(r.latency_s for r in records if r.status > 0)
    return {
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
    }


def counts(records: Sequence[Record]) -> dict[str, int]:
    statuses = Counter(r.status // 100 if r.status > 0 else r.status for r in records)
    return {
        "sent": sum(1 for r in records if r.status != DROPPED),
        "2xx": statuses[2],
        "4xx": statuses[4],
        "5xx": statuses[5],
        "other": statuses[1] + statuses[3],
        "errors": statuses[TRANSPORT],
        "dropped": statuses[DROPPED],
        "late": sum(1 for r in records if r.late),
    }


def rss_figures(soak: Soak) -> dict[str, Any]:
    """Memory over the counted part: the sample at the end of the warm-up is the start."""
    counted = [s for s in soak.samples if s.at_s >= soak.warmup - SAMPLE_S / 2]
    if not counted:
        return {}
    mb = [s.rss / 2**20 for s in counted]
    start, end = mb[0], mb[-1]
    trend = None
    minutes = [s.at_s / 60 for s in counted]
    if len(counted) >= 2 and minutes[-1] > minutes[0]:
        trend = statistics.linear_regression(minutes, mb).slope
    return {
        "start_mb": start,
        "end_mb": end,
        "peak_mb": max(mb),
        "growth_mb": end - start,
        "growth_pct": 100 * (end / start - 1) if start else None,
        "trend_mb_per_min": trend,
        "largest_process_peak_mb": max(s.largest for s in counted) / 2**20,
        "processes": max(s.processes for s in counted),
        "samples": [[round(s.at_s, 1), round(s.rss / 2**20, 2)] for s in soak.samples],
    }


def sample_at(samples: Sequence[Sample], at_s: float) -> Sample | None:
    """The last sample taken by `at_s` (give or take half an interval)."""
    taken = [s for s in samples if s.at_s <= at_s + SAMPLE_S / 2]
    return taken[-1] if taken else None


def timeline(soak: Soak, counted: Sequence[Record]) -> list[dict[str, Any]]:
    """Per WINDOW_S of the counted part: rate, latency, failures, and RSS and load at the window's end."""
    rows = []
    for number in range(math.ceil(soak.duration / WINDOW_S)):
        low = soak.warmup + number * WINDOW_S
        high = min(low + WINDOW_S, soak.total_s)
        window = [r for r in counted if low <= r.slot_s < high]
        found = counts(window)
        sample = sample_at(soak.samples, high)
        rows.append(
            {
                "from_s": low - soak.warmup,
                "to_s": high - soak.warmup,
                "answered_per_s": (found["2xx"] + found["4xx"] + found["5xx"] + found["other"]) / (high - low),
                **latency_figures(window),
                "failed": found["5xx"] + found["errors"],
                "dropped": found["dropped"],
                "rss_mb": sample.rss / 2**20 if sample else None,
                "load_1m": sample.load_1m if sample else None,
            }
        )
    return rows


def summarise(soak: Soak, mix: Mix) -> dict[str, Any]:
    counted = [r for r in soak.records if r.slot_s >= soak.warmup]
    by_kind = {kind: [r for r in counted if r.kind == kind] for kind in mix.kinds}
    total = counts(counted)
    answered = total["2xx"] + total["4xx"] + total["5xx"] + total["other"]
    # a load generator that fell behind stretched the schedule: the rate is over the time the sends took
    seconds = max(soak.duration, soak.elapsed_s - soak.warmup + 1 / soak.rate)
    loads = [s.load_1m for s in soak.samples if s.at_s >= soak.warmup - SAMPLE_S / 2]
    return {
        "kinds": {kind: {**counts(rows), **latency_figures(rows)} for kind, rows in by_kind.items()},
        "all": {**total, **latency_figures(counted)},
        "slots": len(counted),
        "answered": answered,
        "achieved_per_s": answered / seconds,
        "ok_per_s": total["2xx"] / seconds,
        "seconds": seconds,
        "rss": rss_figures(soak),
        "server_cpu_s": soak.cpu_s,
        "load_generator_cpu_s": soak.client_cpu_s,
        "load_1m": {"start": loads[0], "end": loads[-1], "max": max(loads)} if loads else None,
        "feed_entries": mix.feed_entries if mix.feed else None,  # warm-up included
        "list_walks": {"started": mix.walks_started, "deepest_page": mix.deepest_page},  # warm-up included
        "timeline": timeline(soak, counted),
    }


def verdict(summary: dict[str, Any], rate: float, server_exit: int | None) -> list[str]:
    """Why the soak failed; empty when it passed."""
    failures = []
    every = summary["all"]
    if every["5xx"]:
        failures.append(f"{every['5xx']:,} answers 5xx")
    if every["errors"]:
        failures.append(f"{every['errors']:,} transport errors")
    if summary["achieved_per_s"] < (1 - SHORTFALL) * rate:
        failures.append(
            f"achieved {summary['achieved_per_s']:,.1f} req/s, more than {100 * SHORTFALL:.0f} % short of {rate:,.1f}"
        )
    if server_exit is not None:
        failures.append(f"the server exited with {server_exit}")
    return failures


def fmt_ms(value: float) -> str:
    return f"{value:,.1f}"


def render_kinds(summary: dict[str, Any], kinds: dict[str, int]) -> str:
    rows: list[tuple[str, ...]] = [
        ("kind", "share", "sent", "2xx", "4xx", "5xx", "errors", "dropped", "late", "p50 ms", "p99 ms", "max ms")
    ]
    for kind, figures in [*summary["kinds"].items(), ("all", summary["all"])]:
        share = f"{kinds[kind]} %" if kind in kinds else ""
        numbers = [f"{figures[k]:,}" for k in ("sent", "2xx", "4xx", "5xx", "errors", "dropped", "late")]
        rows.append((kind, share, *numbers, *(fmt_ms(figures[k]) for k in ("p50_ms", "p99_ms", "max_ms"))))
    return table(rows)


def render_timeline(summary: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = [
        ("from s", "to s", "req/s", "p50 ms", "p99 ms", "max ms", "5xx+err", "dropped", "RSS MB", "load 1m")
    ]
    for row in summary["timeline"]:
        rows.append(
            (
                f"{row['from_s']:.0f}",
                f"{row['to_s']:.0f}",
                f"{row['answered_per_s']:,.1f}",
                *(fmt_ms(row[k]) for k in ("p50_ms", "p99_ms", "max_ms")),
                f"{row['failed']:,}",
                f"{row['dropped']:,}",
                "n/a" if row["rss_mb"] is None else f"{row['rss_mb']:.1f}",
                "n/a" if row["load_1m"] is None else f"{row['load_1m']:.2f}",
            )
        )
    return table(rows)


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def describe_rss(rss: dict[str, Any]) -> str:
    if not rss:
        return "RSS: no sample"
    growth = "" if rss["growth_pct"] is None else f" ({rss['growth_pct']:+.1f} %)"
    trend = "" if rss["trend_mb_per_min"] is None else f", trend {rss['trend_mb_per_min']:+.2f} MB/min"
    processes = f"{rss['processes']} process" + ("es" if rss["processes"] != 1 else "")
    return (
        f"RSS of the server's process tree ({processes}): start {rss['start_mb']:.1f} MB, end {rss['end_mb']:.1f} MB, "
        f"peak {rss['peak_mb']:.1f} MB, growth {rss['growth_mb']:+.1f} MB{growth}{trend}; "
        f"largest process peak {rss['largest_process_peak_mb']:.1f} MB"
    )


def print_report(
    soak: Soak, summary: dict[str, Any], kinds: dict[str, int], failures: list[str], problems: Counter[str]
) -> None:
    print()
    print(
        f"Soak: one dxapi worker, {soak.rate:,.1f} req/s asked for {soak.duration:,.0f} s after "
        f"{soak.warmup:,.0f} s of warm-up; open loop, at most {soak.max_in_flight} in flight (a slot beyond: dropped)."
    )
    print("Latency from each request's scheduled send time to the end of its answer; late = sent more than")
    print(f"{LATE_S * 1000:.0f} ms after its slot (the load generator lagged).")
    print(render_kinds(summary, kinds))
    print(
        f"achieved: {summary['achieved_per_s']:,.1f} req/s answered ({summary['answered']:,} of {summary['slots']:,} "
        f"slots in {summary['seconds']:,.1f} s), {summary['ok_per_s']:,.1f} req/s 2xx"
    )
    print(describe_rss(summary["rss"]))
    walks = summary["list_walks"]
    print(
        f"list-cursor: {walks['started']:,} walks started, the deepest reached page {walks['deepest_page']:,} "
        "(warm-up included)"
    )
    if summary["feed_entries"] is not None:
        print(f"change feed: the tails received {summary['feed_entries']:,} changes (warm-up included)")
    if summary["server_cpu_s"] is not None:
        seconds = summary["seconds"]
        server, client = summary["server_cpu_s"], summary["load_generator_cpu_s"]
        print(
            f"CPU in {seconds:,.0f} s: server {server:,.1f} s ({100 * server / seconds:.0f} % of one core), "
            f"load generator {client:,.1f} s ({100 * client / seconds:.0f} %)"
        )
    if summary["load_1m"]:
        load = summary["load_1m"]
        print(
            f"load average (1 min, {os.cpu_count()} cores): {load['start']:.2f} at the start, {load['end']:.2f} at the "
            f"end, {load['max']:.2f} at most"
        )
    print(render_timeline(summary))
    for problem, times in problems.most_common():
        print(f"problem ({times:,} x): {problem}")
    print(
        f"soak: FAILED: {'; '.join(failures)}" if failures else "soak: passed (no 5xx, no transport error, rate held)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, fixed (default 100)")
    parser.add_argument("--duration", type=float, default=300.0, help="counted seconds (default 300)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds at the same rate first, not counted")
    parser.add_argument(
        "--max-in-flight", type=int, default=64, help="requests under way at once; a slot beyond is dropped"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take (default 30)")
    parser.add_argument("--skip-load", action="store_true", help="reuse the database of a previous run")
    parser.add_argument("--products", type=int, default=PRODUCTS, help="products to load (default 100,000)")
    parser.add_argument("--pool-size", type=int, default=10, help="database connections of the worker")
    parser.add_argument("--no-feed", action="store_true", help="leave the change feed off (no `feed` requests)")
    parser.add_argument("--seed", type=int, default=13, help="of the request mix (default 13)")
    parser.set_defaults(workers=1)  # run.prepare_dxapi's `dxapi serve --workers`: the soak watches one worker
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.max_in_flight < 1:
        parser.error("--rate, --duration and --max-in-flight must be positive, --warmup not negative")
    return args


def start(dxapi: Server, client: tuple[str, str] | None) -> BearerToken:
    """Start the server and fetch its first token; stops the soak if either fails."""
    dxapi.start()
    if not dxapi.wait_ready():
        raise SystemExit(f"dxapi does not start: {dxapi.problem}")
    auth: dict[str, BearerToken] = {}
    authenticate(dxapi, client, auth)
    if dxapi.problem or "dxapi" not in auth:
        raise SystemExit(f"dxapi is not usable: {dxapi.problem or 'no client for the run'}")
    return auth["dxapi"]


def finish(url: str, dxapi: Server, client: tuple[str, str] | None, feed_on: bool) -> None:
    """Feed off, the soak's idempotency records gone, server stopped, benchmark rows deleted, client disabled."""
    if feed_on:
        problem, _ = switch_feed(url, CONFIG_FILE, False)
        if problem:
            log(f"could not switch the change feed off again: {problem}")
    try:
        # rows of the last POSTs, whose delete-batch had not come yet; many more would mean deletes failed
        rows = asyncio.run(delete_bench_rows(url))
        records = asyncio.run(delete_key_records(url))
        log(f"deleted what the soak left: {rows:,} product rows, {records:,} idempotency records")
    except (OSError, asyncpg.PostgresError) as exc:
        log(f"could not delete what the soak left: {exc}")
    clean_up([dxapi], url, client)


def write_json(soak: Soak, args: argparse.Namespace, url: str, result: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    meta = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": make_url(url).render_as_string(hide_password=True),
        "rate": soak.rate,
        "duration_s": soak.duration,
        "warmup_s": soak.warmup,
        "max_in_flight": soak.max_in_flight,
        "timeout_s": soak.timeout,
        "workers": args.workers,
        "pool_size": args.pool_size,
        "change_feed": not args.no_feed,
        "mix_percent": {k: v for k, v in MIX.items() if not args.no_feed or k != "feed"},
        "post_rows": POST_ROWS,
        "cpus": os.cpu_count(),
        "client": f"httpx {httpx.__version__}",
    }
    RESULTS_FILE.write_bytes(orjson.dumps({**meta, **result}, option=orjson.OPT_INDENT_2))
    log(f"wrote {RESULTS_FILE.relative_to(RESULTS_DIR.parent.parent)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get(URL_ENV, DEFAULT_URL)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    log(f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)")

    ctx = prepare_data(url, args)
    dxapi, client = prepare_dxapi(url, args, {**os.environ, "PYTHONUNBUFFERED": "1"}, create_client=True)
    if dxapi.problem:
        if client is not None:
            disable_client(url, client[0])
        raise SystemExit(f"dxapi cannot run: {dxapi.problem}")
    dxapi.log_path = RESULTS_DIR / "soak-dxapi.log"  # the bench's dxapi.log stays
    soak = Soak(args.rate, args.duration, args.warmup, args.max_in_flight, args.timeout)
    mix = Mix(dxapi.base, ctx, random.Random(args.seed), feed=not args.no_feed)
    feed_on = False
    try:
        token = start(dxapi, client)
        if mix.feed:
            feed_on = True
            problem, _ = set_feed(url, CONFIG_FILE, dxapi, True, args.workers)
            if problem:
                raise SystemExit(f"switching the change feed on: {problem}")
        asyncio.run(fill_key_records(url))
        assert dxapi.process is not None
        log(f"soak: {soak.rate:,.1f} req/s for {soak.warmup:,.0f} s of warm-up + {soak.duration:,.0f} s counted")
        problems = asyncio.run(drive(soak, mix, dxapi.process.pid, lambda: token.headers(TOKEN_MARGIN_S)))
        server_exit = dxapi.process.poll()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except AuthError as exc:
        raise SystemExit(f"dxapi access token: {exc}") from None
    finally:
        finish(url, dxapi, client, feed_on)
    summary = summarise(soak, mix)
    failures = verdict(summary, soak.rate, server_exit)
    print_report(soak, summary, mix.kinds, failures, problems)
    write_json(
        soak,
        args,
        url,
        {**summary, "failures": failures, "problems": [{"times": n, "problem": p} for p, n in problems.most_common()]},
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
