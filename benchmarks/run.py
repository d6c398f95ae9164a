"""`make bench`: dxapi against the thin reference server, same PostgreSQL data, same run (DESIGN.md §8).

Steps: (re)create the database and load the demo shop through `dxapi.demo` (100,000 products); run
`dxapi init` and `dxapi config import examples/shop-config.json`; start `benchmarks.reference` and
`dxapi serve` with the same worker count and pool size; then for every scenario check that both servers
answer the same JSON, warm each up, load each for the same time while sampling its memory, and finally print
a table and write it as JSON to benchmarks/results/latest.json. Only processes started here are stopped
(by process group), also on Ctrl-C, SIGTERM or an error.

    python -m benchmarks.run [--workers N] [--duration S] [--only SCENARIO] [--skip-load] [--self-test]

A scenario dxapi does not serve yet (404/405/501 on its sample request) is reported as "n/a".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from benchmarks.load import Result, find_wrk, run_load

URL_ENV = "DXAPI_BENCH_DATABASE_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/dxapi_bench"
ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "examples" / "shop-config.json"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PRODUCTS = 100_000
BATCH_ROWS = 1000
PAGE = 100
OFFSET_PAGES = 100  # offset scenario pages through the first 100 pages, see offset_target()
SETTLE_S = 0.5  # pause after a load run, see load_once()
NOT_SERVED = (404, 405, 501)  # dxapi answers these for endpoints it does not have yet
BENCH_SKU_PREFIX = "BENCH-"  # rows the POST scenario creates; deleted after each server's run
PRODUCTS_PATH = "/dynamic-entity/products"


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class DataContext:
    """What the scenarios need to know about the loaded data."""

    id_max: int  # seeded products have ids 1..id_max
    cursors: list[str]  # ISO updatedAt values with at least a full page after them
    category_ids: list[int]
    tax_rate_ids: list[int]


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def recreate_database(url: str) -> None:
    name = make_url(url).database
    if not name:
        raise SystemExit(f"{URL_ENV} names no database")
    # the maintenance database, because one cannot drop the database one is connected to
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()


async def load_shop(url: str, products: int) -> None:
    """Fill the shop through dxapi.demo, so both servers and the test suite see the very same rows."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from dxapi.demo import build_shop

    # no sync PostgreSQL driver is installed: run the sync builder on asyncpg through run_sync
    engine = create_async_engine(make_url(url).set(drivername="postgresql+asyncpg"))
    try:
        async with engine.begin() as conn:
            counts = await conn.run_sync(build_shop, products)
    finally:
        await engine.dispose()
    log(f"loaded {counts}")
    await vacuum(url)


async def vacuum(url: str) -> None:
    """Fresh statistics and visibility map, so both servers meet the same plans and no dead rows."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def delete_bench_rows(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        status = await conn.execute("DELETE FROM shop_product WHERE sku LIKE $1", BENCH_SKU_PREFIX + "%")
        await conn.execute("VACUUM ANALYZE shop_product")
    finally:
        await conn.close()
    return int(status.split()[-1])


async def load_context(url: str) -> DataContext:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        id_max = await conn.fetchval(
            "SELECT max(id_product) FROM shop_product WHERE sku NOT LIKE $1", BENCH_SKU_PREFIX + "%"
        )
        if not id_max:
            raise SystemExit("shop_product is empty: run without --skip-load first")
        rows = await conn.fetch(
            "SELECT updated_at FROM shop_product WHERE id_product <= $1 ORDER BY random() LIMIT 1000",
            max(1, id_max - PAGE),
        )
        categories = await conn.fetch("SELECT id_category FROM shop_category ORDER BY id_category")
        tax_rates = await conn.fetch("SELECT id_tax_rate FROM shop_tax_rate ORDER BY id_tax_rate")
    finally:
        await conn.close()
    return DataContext(
        id_max=id_max,
        cursors=[row["updated_at"].isoformat() for row in rows],
        category_ids=[row["id_category"] for row in categories],
        tax_rate_ids=[row["id_tax_rate"] for row in tax_rates],
    )


# ------------------------------------------------------------------------------------------ scenarios


@dataclass(frozen=True, slots=True)
class Target:
    """What to send: `urls` may hold {id} (random id per request); `body` may hold {uniq} and {id}."""

    urls: list[str]
    method: str = "GET"
    body: str | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    build: Callable[[str, DataContext], Target]
    connections: int
    goal: float | None = None  # minimum dxapi/reference ratio from DESIGN.md §8
    batch: int = 1  # rows written per request: rows/s = successful requests/s x batch
    volatile: frozenset[str] = frozenset()  # response keys that legitimately differ between servers


def query(**params: str) -> str:
    """Percent-encode brackets and JSON as a careful client does.

    >>> query(**{"page[limit]": "1"})
    'page%5Blimit%5D=1'
    """
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def by_id_target(base: str, ctx: DataContext) -> Target:
    return Target([f"{base}{PRODUCTS_PATH}/{{id}}"])


def offset_target(base: str, ctx: DataContext) -> Target:
    # The first pages only: a deep OFFSET makes PostgreSQL walk and drop up to 100,000 index entries per
    # request, which measures the database, not the API server. Clients pick random pages among them.
    pages = min(OFFSET_PAGES, max(1, ctx.id_max // PAGE))
    return Target(
        [
            f"{base}{PRODUCTS_PATH}?" + query(**{"page[offset]": str(n * PAGE), "page[limit]": str(PAGE)})
            for n in range(pages)
        ]
    )


def keyset_target(base: str, ctx: DataContext) -> Target:
    # page[offset]=0 too: Spryker applies page[limit] only when page[offset] is present as well, and the
    # comparison must not depend on which reading a server follows.
    return Target(
        [
            f"{base}{PRODUCTS_PATH}?"
            + query(
                **{
                    "filter[products.updatedAt]": orjson.dumps({"gt": cursor}).decode(),
                    "sort": "updatedAt",
                    "page[offset]": "0",
                    "page[limit]": str(PAGE),
                }
            )
            for cursor in ctx.cursors
        ]
    )


def post_target(base: str, ctx: DataContext) -> Target:
    items = [
        {
            "sku": f"{BENCH_SKU_PREFIX}{{uniq}}-{i:04d}",  # {uniq}: unique per request, see load.py
            "name": f"Bench Product {i}",
            "description": "Created by the benchmark",
            "fkCategory": ctx.category_ids[i % len(ctx.category_ids)],
            "fkTaxRate": ctx.tax_rate_ids[i % len(ctx.tax_rate_ids)],
            "price": f"{i % 500 + 1}.{i % 100:02d}",
            "isActive": i % 10 != 0,
            "attributes": '{"color":"blue"}',
            "availableFrom": "2026-03-01",
        }
        for i in range(BATCH_ROWS)
    ]
    return Target([f"{base}{PRODUCTS_PATH}"], "POST", orjson.dumps({"data": items}).decode())


def patch_target(base: str, ctx: DataContext) -> Target:
    body = orjson.dumps({"data": {"name": "Patched {uniq}", "price": "12.34"}}).decode()
    return Target([f"{base}{PRODUCTS_PATH}/{{id}}"], "PATCH", body)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("get-by-id", "GET /products/{id}, random id", by_id_target, 16, goal=0.8),
    Scenario("page-offset", f"GET page of {PAGE} by page[offset], first {OFFSET_PAGES} pages", offset_target, 16),
    Scenario("page-keyset", f"GET page of {PAGE} after a random updatedAt", keyset_target, 16, goal=0.8),
    # few connections: each request carries 1000 rows, more in flight only queue up on 2 cores
    Scenario(
        "post-batch",
        f"POST {BATCH_ROWS} new rows in one request",
        post_target,
        4,
        goal=0.5,
        batch=BATCH_ROWS,
        volatile=frozenset({"idProduct", "sku", "createdAt", "updatedAt"}),
    ),
    Scenario("patch-one", "PATCH /products/{id}: name and price, random id", patch_target, 16),
)


def materialise(target: Target, sample_id: int, unique: str) -> tuple[str, bytes | None]:
    """One concrete request out of a Target, for the equality check: first URL, fixed id, given {uniq}."""
    url = target.urls[0].replace("{id}", str(sample_id))
    body = None
    if target.body is not None:
        body = target.body.replace("{uniq}", unique).replace("{id}", str(sample_id)).encode()
    return url, body


def first_difference(left: Any, right: Any, volatile: frozenset[str], path: str = "$") -> str | None:
    """Where two JSON values first differ, ignoring `volatile` object keys; None when equal."""
    if isinstance(left, dict) and isinstance(right, dict):
        keys = (left.keys() | right.keys()) - volatile
        missing = sorted(k for k in keys if k not in left or k not in right)
        if missing:
            return f"{path}: key(s) {missing} present in only one response"
        for key in sorted(keys):
            found = first_difference(left[key], right[key], volatile, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return f"{path}: {len(left)} items vs {len(right)}"
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            found = first_difference(a, b, volatile, f"{path}[{index}]")
            if found:
                return found
        return None
    if type(left) is not type(right) or left != right:
        return f"{path}: reference {left!r:.80} vs dxapi {right!r:.80}"
    return None


# -------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fetch(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/json"
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Server:
    label: str
    command: list[str]
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    problem: str | None = None  # why this server cannot be measured, if it cannot

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as output:
            # a session of its own: stop() signals the whole group (uvicorn's worker processes included)
            # and nothing else
            self.process = subprocess.Popen(
                self.command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until any HTTP answer below 500 on a product URL (401 counts: the server is up)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.problem = f"exited with {self.process.returncode}: {self.log_tail()}"
                return False
            try:
                status, _ = fetch("GET", f"{self.base}{PRODUCTS_PATH}/1", timeout=2)
                if status < 500:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        self.problem = f"did not answer within {timeout:.0f} s: {self.log_tail()}"
        return False

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break  # the whole group is gone
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                continue
            if not group_alive(pgid):
                break
        self.process = None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc (uvicorn workers are children of the supervisor)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: fields start after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> tuple[int, int, int]:
    """(summed resident set size, largest single process's RSS, number of processes) of `root`'s tree."""
    total = largest = count = 0
    for pid in process_tree(root):
        try:
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        total += rss
        largest = max(largest, rss)
        count += 1
    return total, largest, count


@contextmanager
def peak_rss(root: int, interval: float = 0.2) -> Iterator[dict[str, int]]:
    """Sample the tree's RSS in a thread while the body runs.

    Yields {"bytes": peak of the sum, "largest": peak of one process (a worker), "processes": n}.
    """
    peak = {"bytes": 0, "largest": 0, "processes": 0}
    stop = threading.Event()

    def sample_loop() -> None:
        while True:
            total, largest, count = tree_rss(root)
            peak["largest"] = max(peak["largest"], largest)
            if total > peak["bytes"]:
                peak.update(bytes=total, processes=count)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=sample_loop, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


# -------------------------------------------------------------------------------------------- running


@dataclass
class Measurement:
    status: str  # "ok", "n/a" (dxapi lacks the endpoint or cannot run), "error"; "pending" until measured
    reason: str = ""
    requests_per_s: float = 0.0  # successful (2xx) requests per second
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    non_2xx: int = 0
    requests: int = 0
    rows_per_s: float | None = None
    rss_mb: float = 0.0  # peak of the summed RSS of the server's processes
    worker_rss_mb: float = 0.0  # peak RSS of its largest process (a worker)
    processes: int = 0
    rounds_per_s: list[float] = field(default_factory=list)  # successful req/s of each round, to see noise


@dataclass(frozen=True, slots=True)
class Round:
    """One measured load run of one server."""

    result: Result
    rss_mb: float
    worker_rss_mb: float
    processes: int


@dataclass
class ScenarioResult:
    name: str
    description: str
    connections: int
    goal: float | None
    batch: int
    reference: Measurement
    dxapi: Measurement
    ratio: float | None = None  # dxapi/reference: median over the alternating rounds
    ratio_of_totals: float | None = None
    meets_goal: bool | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Options:
    duration: float
    warmup: float
    rounds: int

    @property
    def slice_s(self) -> float:
        """Seconds of one round: the measured time is split into alternating slices (wrk counts whole s)."""
        return max(1.0, round(self.duration / self.rounds))

    connections: int | None
    headers: dict[str, str]


def sample(target: Target, sample_id: int, unique: str, headers: dict[str, str]) -> tuple[int, Any]:
    """Send one concrete request → (status, parsed JSON or the start of a non-JSON body)."""
    url, body = materialise(target, sample_id, unique)
    status, raw = fetch(target.method, url, body, headers)
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw[:200].decode(errors="replace")


def load_once(server: Server, scenario: Scenario, target: Target, options: Options, url: str) -> Round:
    """One measured run of `target` on `server`, its memory sampled; the rows it created removed after."""
    assert server.process is not None
    connections = options.connections or scenario.connections
    with peak_rss(server.process.pid) as peak:
        result = run_load(
            target.urls, target.method, target.body, options.slice_s, connections, headers=options.headers
        )
    # wrk stops counting at the deadline but requests still in flight finish on the server: let them, so
    # they neither slow the next run down nor leave rows behind after the clean-up
    time.sleep(SETTLE_S)
    if target.method == "POST":
        asyncio.run(delete_bench_rows(url))
    return Round(result, peak["bytes"] / 2**20, peak["largest"] / 2**20, peak["processes"])


def combine(rounds: Sequence[Round], batch: int) -> Measurement:
    """Rounds of one server → one Measurement: throughput over all rounds, median latencies, peak memory."""
    seconds = sum(r.result.duration_s for r in rounds)
    ok = sum(r.result.requests - r.result.non_2xx for r in rounds) / seconds if seconds else 0.0
    return Measurement(
        status="ok",
        requests_per_s=ok,
        p50_ms=statistics.median(r.result.p50_ms for r in rounds),
        p99_ms=statistics.median(r.result.p99_ms for r in rounds),
        errors=sum(r.result.errors for r in rounds),
        non_2xx=sum(r.result.non_2xx for r in rounds),
        requests=sum(r.result.requests for r in rounds),
        rows_per_s=ok * batch if batch > 1 else None,
        rss_mb=max(r.rss_mb for r in rounds),
        worker_rss_mb=max(r.worker_rss_mb for r in rounds),
        processes=max(r.processes for r in rounds),
        rounds_per_s=[round(r.result.ok_per_s, 1) for r in rounds],
    )


def check_samples(
    scenario: Scenario, ref_target: Target, dx_target: Target, dxapi: Server, ctx: DataContext, options: Options
) -> tuple[Measurement | None, Measurement | None, list[str]]:
    """One request to each server first: (reference problem, dxapi problem, warnings about differences).

    Equal answers are what makes the comparison fair: a server that returns fewer rows or fields is faster.
    """
    sample_id = max(1, min(ctx.id_max, 4242))
    warnings: list[str] = []
    ref_problem = dx_problem = None
    # the reference first, then the same {uniq}: both PATCHes write the same values to the same row. Only
    # new rows need their own skus.
    unique = "S" + secrets.token_hex(4).upper()
    ref_status, ref_body = sample(ref_target, sample_id, unique, options.headers)
    if not 200 <= ref_status < 300:
        ref_problem = Measurement("error", f"sample request answered {ref_status}: {ref_body!s:.200}")
    if dxapi.problem:
        return ref_problem, Measurement("n/a", dxapi.problem), warnings
    if ref_target.method == "POST":
        unique = "S" + secrets.token_hex(4).upper()
    dx_status, dx_body = sample(dx_target, sample_id, unique, options.headers)
    if dx_status in NOT_SERVED:
        dx_problem = Measurement("n/a", f"dxapi answers {dx_status}")
    elif not 200 <= dx_status < 300:
        dx_problem = Measurement("error", f"sample request answered {dx_status}: {dx_body!s:.200}")
    elif dx_status != ref_status:
        warnings.append(f"status differs: reference {ref_status}, dxapi {dx_status}")
    if ref_problem is None and dx_problem is None:
        difference = first_difference(ref_body, dx_body, scenario.volatile)
        if difference:
            warnings.append(f"responses differ, comparison may be unfair: {difference}")
    return ref_problem, dx_problem, warnings


def run_scenario(
    scenario: Scenario, reference: Server, dxapi: Server, ctx: DataContext, url: str, options: Options
) -> ScenarioResult:
    log(f"scenario {scenario.name}: {scenario.description}")
    targets = {"reference": scenario.build(reference.base, ctx), "dxapi": scenario.build(dxapi.base, ctx)}
    servers = {"reference": reference, "dxapi": dxapi}
    ref_problem, dx_problem, warnings = check_samples(
        scenario, targets["reference"], targets["dxapi"], dxapi, ctx, options
    )
    for warning in warnings:
        log(f"  WARNING {warning}")
    problems = {"reference": ref_problem, "dxapi": dx_problem}
    for slot, problem in problems.items():
        if problem is not None:
            log(f"  {servers[slot].label}: {problem.status} ({problem.reason})")
    active = [slot for slot, problem in problems.items() if problem is None]
    if "POST" in {t.method for t in targets.values()}:
        asyncio.run(delete_bench_rows(url))  # the sample requests' rows

    connections = options.connections or scenario.connections
    if options.warmup > 0:
        for slot in active:
            target = targets[slot]
            run_load(target.urls, target.method, target.body, options.warmup, connections, headers=options.headers)
            time.sleep(SETTLE_S)
            if target.method == "POST":
                asyncio.run(delete_bench_rows(url))
    rounds: dict[str, list[Round]] = {slot: [] for slot in active}
    for number in range(options.rounds):
        # A B, B A, A B …: drift of the machine (other load, cache state, autovacuum) hits both alike
        order = active if number % 2 == 0 else active[::-1]
        for slot in order:
            rounds[slot].append(load_once(servers[slot], scenario, targets[slot], options, url))

    measured = {slot: problems[slot] or combine(rounds[slot], scenario.batch) for slot in servers}
    for slot in active:
        m = measured[slot]
        log(
            f"  {servers[slot].label}: {m.requests_per_s:,.1f} req/s "
            f"(rounds {' '.join(f'{r:,.0f}' for r in m.rounds_per_s)}), p50 {m.p50_ms:.1f} ms, "
            f"p99 {m.p99_ms:.1f} ms, {m.rss_mb:.0f} MB"
            + (f", {m.non_2xx} non-2xx" if m.non_2xx else "")
            + (f", {m.errors} socket errors" if m.errors else "")
        )
    result = ScenarioResult(
        scenario.name,
        scenario.description,
        connections,
        scenario.goal,
        scenario.batch,
        measured["reference"],
        measured["dxapi"],
        warnings=warnings,
    )
    if len(active) == 2:
        # The median of the ratios of rounds run back to back, not the ratio of the totals: this machine's
        # speed drifts by tens of percent within seconds, and a burst of speed in one server's slice would
        # move the totals. (rows/s ratios are the same: both servers get the same batches.)
        pairs = zip(rounds["reference"], rounds["dxapi"], strict=True)
        ratios = [dx.result.ok_per_s / ref.result.ok_per_s for ref, dx in pairs if ref.result.ok_per_s > 0]
        if ratios:
            result.ratio = statistics.median(ratios)
            result.ratio_of_totals = result.dxapi.requests_per_s / max(result.reference.requests_per_s, 1e-9)
            if scenario.goal is not None:
                result.meets_goal = result.ratio >= scenario.goal
    return result


def dxapi_command() -> str | None:
    """The dxapi console script of this interpreter's environment, else the one on PATH."""
    candidate = Path(sys.executable).with_name("dxapi")
    return str(candidate) if candidate.exists() else shutil.which("dxapi")


def run_cli(command: Sequence[str], env: dict[str, str]) -> str | None:
    """Run a dxapi CLI command; None if it worked, else a one-line reason."""
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if completed.returncode == 0:
        return None
    output = (completed.stderr.strip() or completed.stdout.strip()).splitlines()
    return f"`{' '.join(command[-3:])}` failed ({completed.returncode}): {output[-1] if output else ''}"


# -------------------------------------------------------------------------------------------- report


def fmt(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def cell(measurement: Measurement, render: Callable[[Measurement], str]) -> str:
    """A measured value, or why there is none ("n/a", "error")."""
    return render(measurement) if measurement.status == "ok" else measurement.status


def per_s(m: Measurement) -> str:
    return fmt(m.requests_per_s, "{:,.1f}")


def latency(m: Measurement) -> str:
    return f"{m.p50_ms:.1f} / {m.p99_ms:.1f}"


def rss(m: Measurement) -> str:
    return f"{m.rss_mb:.0f}"


def rows_per_s(m: Measurement) -> str:
    return fmt(m.rows_per_s)


def render_table(results: Sequence[ScenarioResult], self_test: bool) -> str:
    other = "ref-2" if self_test else "dxapi"
    header = (
        "scenario",
        "ref req/s",
        f"{other} req/s",
        "ratio",
        "goal",
        "ref p50/p99 ms",
        f"{other} p50/p99 ms",
        "ref RSS MB",
        f"{other} RSS MB",
        f"rows/s ref / {other}",
    )
    verdicts = {True: " ok", False: " MISS", None: ""}
    rows = [header]
    for r in results:
        goal = "-" if r.goal is None else f">={r.goal:.2f}{verdicts[r.meets_goal]}"
        rows_cell = "-" if r.batch == 1 else f"{cell(r.reference, rows_per_s)} / {cell(r.dxapi, rows_per_s)}"
        rows.append(
            (
                r.name,
                cell(r.reference, per_s),
                cell(r.dxapi, per_s),
                fmt(r.ratio, "{:.2f}"),
                goal,
                cell(r.reference, latency),
                cell(r.dxapi, latency),
                cell(r.reference, rss),
                cell(r.dxapi, rss),
                rows_cell,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(results: list[ScenarioResult], meta: dict[str, Any], self_test: bool) -> None:
    print()
    if self_test:
        print("SELF-TEST: the second server is another reference instance, not dxapi; ratios should be ~1.")
    print(render_table(results, self_test))
    for r in results:
        for m, label in ((r.reference, "reference"), (r.dxapi, "dxapi")):
            if m.status != "ok":
                print(f"  {r.name} {label}: {m.status}: {m.reason}")
            elif m.non_2xx or m.errors:
                print(f"  {r.name} {label}: {m.non_2xx} non-2xx answers, {m.errors} socket errors/timeouts")
        for warning in r.warnings:
            print(f"  {r.name}: WARNING {warning}")
    for slot in ("reference", "dxapi"):
        measured = [getattr(r, slot) for r in results if getattr(r, slot).status == "ok"]
        if measured:
            label = "ref-2" if self_test and slot == "dxapi" else slot
            worker = max(m.worker_rss_mb for m in measured)
            goal = "" if slot == "reference" else " (goal <= 150 MB)"
            print(f"{label}: peak RSS of one worker process {worker:.0f} MB{goal}")
    print(
        f"load tool: {meta['load_tool']}; {meta['duration_s']} s per server and scenario in {meta['rounds']} "
        f"alternating slices after {meta['warmup_s']} s warm-up; {meta['workers']} worker(s) each; "
        f"{meta['cpus']} CPUs shared with the load generator"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    path.write_bytes(orjson.dumps({**meta, "scenarios": [asdict(r) for r in results]}, option=orjson.OPT_INDENT_2))
    print(f"written to {path.relative_to(ROOT)}")


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    names = [s.name for s in SCENARIOS]
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server (default 1)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per server and scenario (default 10)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="slices the duration is split into, alternating between the servers (default 5)",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="SCENARIO",
        help=f"run only this scenario (repeatable): {', '.join(names)}",
    )
    parser.add_argument("--skip-load", action="store_true", help="reuse the database of a previous run")
    parser.add_argument("--products", type=int, default=PRODUCTS, help="products to load (default 100,000)")
    parser.add_argument("--connections", type=int, help="connections for every scenario (default: per scenario)")
    parser.add_argument("--pool-size", type=int, default=10, help="database connections per worker, both servers")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header for both servers, e.g. dxapi credentials (repeatable)",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="measure a second reference server instead of dxapi (harness check: ratio ~1)",
    )
    return parser.parse_args(argv)


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # raising unwinds through main()'s finally, which stops the servers this run started
    log(f"stopped by signal {signum}")
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get(URL_ENV, DEFAULT_URL)
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    if any(":" not in h for h in args.header):
        raise SystemExit("--header takes 'NAME: VALUE'")
    headers = {name.strip(): value.strip() for name, value in (h.split(":", 1) for h in args.header)}
    signal.signal(signal.SIGTERM, exit_on_sigterm)

    if not args.skip_load:
        log(f"recreating {make_url(url).render_as_string(hide_password=True)} with {args.products:,} products")
        started_at = time.monotonic()
        asyncio.run(recreate_database(url))
        asyncio.run(load_shop(url, args.products))
        log(f"data ready in {time.monotonic() - started_at:.0f} s")
    else:
        removed = asyncio.run(delete_bench_rows(url))
        log(f"reusing the data (removed {removed:,} leftover benchmark rows)")
    ctx = asyncio.run(load_context(url))

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reference = reference_server("reference", url, args, env)
    dxapi = reference_server("ref-2", url, args, env) if args.self_test else prepare_dxapi(url, args, env)

    servers = [s for s in (reference, dxapi) if s.problem is None]
    load_tool = "python" if os.environ.get("DXAPI_BENCH_LOAD") == "python" or not find_wrk() else "wrk"
    meta: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": make_url(url).render_as_string(hide_password=True),
        "products": ctx.id_max,
        "workers": args.workers,
        "pool_size": args.pool_size,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "load_tool": load_tool,
        "cpus": os.cpu_count(),
        "self_test": args.self_test,
        "dxapi_problem": dxapi.problem,
    }
    try:
        for server in servers:
            server.start()
        for server in servers:
            if not server.wait_ready():
                log(f"{server.label} is not usable: {server.problem}")
        if reference.problem:
            raise SystemExit(f"the reference server does not start: {reference.problem}")
        options = Options(args.duration, args.warmup, args.rounds, args.connections, headers)
        results = [run_scenario(s, reference, dxapi, ctx, url, options) for s in scenarios]
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for server in servers:
            server.stop()
        # rows of requests still in flight when a POST run was cut off: leave the data as it was loaded
        asyncio.run(delete_bench_rows(url))
    meta["dxapi_problem"] = dxapi.problem
    report(results, meta, args.self_test)
    return 0


def reference_server(label: str, url: str, args: argparse.Namespace, env: dict[str, str]) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.reference", "--dsn", url, "--port", str(port)]
    command += ["--workers", str(args.workers), "--pool-size", str(args.pool_size)]
    return Server(label, command, port, env, RESULTS_DIR / f"{label}.log")


def prepare_dxapi(url: str, args: argparse.Namespace, env: dict[str, str]) -> Server:
    """`dxapi init` + `config import` and the serve command; `problem` says why dxapi cannot run, if so."""
    executable = dxapi_command()
    port = free_port()
    command = [
        executable or "dxapi",
        "--database-url",
        url,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
    ]
    dx_env = {
        **env,
        # same pool and log verbosity as the reference, so neither pays for something the other skips
        "DXAPI_POOL_SIZE": str(args.pool_size),
        "DXAPI_LOG_LEVEL": env.get("DXAPI_LOG_LEVEL", "warning"),
    }
    server = Server("dxapi", command, port, dx_env, RESULTS_DIR / "dxapi.log")
    if executable is None:
        server.problem = "no dxapi executable found"
    else:
        for step in (["init"], ["config", "import", str(CONFIG_FILE)]):
            problem = run_cli([executable, "--database-url", url, *step], dx_env)
            if problem:
                server.problem = problem
                break
    if server.problem:
        log(f"dxapi will not be measured: {server.problem}")
    return server


if __name__ == "__main__":
    sys.exit(main())
