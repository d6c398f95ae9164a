"""Where one dxapi worker's memory goes: RSS (anonymous vs file-backed) after start, after reads by id and after
POST batches, optionally with tracemalloc's view of who holds the Python objects.

    python -m benchmarks.memory                       # 2000 reads by id, 4 rounds of 4 concurrent POSTs of 1000 rows
    python -m benchmarks.memory --gets 500 --post-rounds 2
    python -m benchmarks.memory --tracemalloc 12      # + the top 12 allocation sites per phase (slower)

Uses the database of `make bench` (`DXAPI_BENCH_DATABASE_URL`, loaded and configured: run `make bench` once, or
pass --configure for `dxapi init` and `config import`). Starts `dxapi serve --workers 1` (the worker is that
process) with a random token signing secret and a client of its own (disabled at the end), like `run` does.
Rows it writes carry skus `BENCH-MEM<pid>-…` and are deleted at the end. Nothing else is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import signal
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.auth import SCOPES, BearerToken, new_signing_secret, parse_client
from benchmarks.data import DEFAULT_URL, URL_ENV, asyncpg_dsn, load_context
from benchmarks.report import RESULTS_DIR
from benchmarks.run import CONFIG_FILE, dxapi_command, run_cli
from benchmarks.scenarios import PRODUCTS_PATH, post_target
from benchmarks.servers import Server, fetch, free_port, peak_rss

SKU_PREFIX = f"BENCH-MEM{os.getpid()}-"
# Runs inside the server process with --tracemalloc: dxapi's own CLI, plus a SIGUSR1 handler that writes a
# tracemalloc snapshot to the file named in DXAPI_MEMORY_SNAPSHOT (uvicorn handles only SIGINT and SIGTERM).
TRACED_SERVER = """
import os, signal, sys, tracemalloc
tracemalloc.start(int(os.environ["DXAPI_MEMORY_FRAMES"]))
def dump(number, frame):
    import gc
    peak = tracemalloc.get_traced_memory()[1]  # before the snapshot, which is traced too
    gc.collect()
    tracemalloc.take_snapshot().dump(os.environ["DXAPI_MEMORY_SNAPSHOT"])
    with open(os.environ["DXAPI_MEMORY_SNAPSHOT"] + ".tmp", "w") as done:
        done.write(str(peak))
    os.replace(os.environ["DXAPI_MEMORY_SNAPSHOT"] + ".tmp", os.environ["DXAPI_MEMORY_SNAPSHOT"] + ".done")
    tracemalloc.reset_peak()
signal.signal(signal.SIGUSR1, dump)
signal.signal(signal.SIGUSR2, lambda number, frame: tracemalloc.reset_peak())
from dxapi.cli import main
sys.exit(main(sys.argv[1:]))
"""


def memory_of(pid: int) -> dict[str, int]:
    """KiB from /proc/PID/smaps_rollup (Rss, Anonymous; file = the rest) and VmHWM (peak RSS) of /proc/PID/status."""
    rollup: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        rollup[name.strip()] = int(value.split()[0])
    status = {
        line.split(":")[0]: int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith(("VmHWM", "VmRSS"))
    }
    rss, anon = rollup["Rss"], rollup["Anonymous"]
    return {"rss": rss, "anon": anon, "file": rss - anon, "hwm": status["VmHWM"]}


def line(phase: str, pid: int, extra: str = "") -> dict[str, int]:
    m = memory_of(pid)
    print(
        f"{phase:<28} RSS {m['rss'] / 1024:6.1f} MB  anon {m['anon'] / 1024:6.1f}  file {m['file'] / 1024:5.1f}"
        f"  peak(VmHWM) {m['hwm'] / 1024:6.1f}{extra}",
        flush=True,
    )
    return m


def snapshot_top(server: Server, previous: tracemalloc.Snapshot | None, top: int, label: str) -> tracemalloc.Snapshot:
    """Ask the traced server for a snapshot; print the largest holders (and what grew since `previous`)."""
    assert server.process is not None
    target = server.env["DXAPI_MEMORY_SNAPSHOT"]
    done = Path(target + ".done")
    done.unlink(missing_ok=True)
    os.kill(server.process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    peak = int(done.read_text() or 0)
    # code objects of imported modules count: they are allocated under importlib's frames, kept here
    snap = tracemalloc.Snapshot.load(target).filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    total = sum(stat.size for stat in snap.statistics("filename"))
    since = f"peak since the phase began {peak / 2**20:.1f} MB"
    print(f"  tracemalloc {label}: {total / 2**20:.1f} MB of Python allocations ({since}); by file:")
    for stat in snap.statistics("filename")[:top]:
        print(f"    {stat.size / 2**20:6.2f} MB {stat.count:7d} blocks  {stat.traceback[0].filename}")
    if previous is not None:
        print("  grown since the previous phase, by allocating call stack (innermost first):")
        for diff in snap.compare_to(previous, "traceback")[:top]:
            if diff.size_diff > 0:
                stack = " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(diff.traceback))
                print(f"    {diff.size_diff / 2**20:+6.2f} MB {diff.count_diff:+7d} blocks  {stack}")
    return snap


def reset_peak(server: Server) -> None:
    """The traced server's peak of Python allocations starts again from what it holds now."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGUSR2)
    time.sleep(0.5)


def start(url: str, traced: int, workdir: str) -> tuple[Server, tuple[str, str]]:
    executable = dxapi_command()
    if executable is None:
        raise SystemExit("no dxapi executable found")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DXAPI_DATABASE_URL": url,
        "DXAPI_POOL_SIZE": "10",
        "DXAPI_LOG_LEVEL": os.environ.get("DXAPI_LOG_LEVEL", "warning"),
        "DXAPI_JWT_ALGORITHM": "HS256",
        "DXAPI_JWT_SECRET": new_signing_secret(),
        # the /token throttle per address is counted in the database, for every server on this machine
        "DXAPI_TOKEN_ATTEMPTS_PER_ADDRESS": "1000",
    }
    env.pop("DXAPI_JWT_PRIVATE_KEY_FILE", None)
    env.pop("DXAPI_JWT_PREVIOUS_SECRETS", None)
    port = free_port()
    args = ["--database-url", url, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command = [executable, *args]
    if traced:
        command = [sys.executable, "-c", TRACED_SERVER, *args]
        env["DXAPI_MEMORY_FRAMES"] = str(traced)
        env["DXAPI_MEMORY_SNAPSHOT"] = str(Path(workdir, "snapshot"))
    name = f"memory {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S}"
    problem, output = run_cli([executable, "--database-url", url, "client", "add", name, "--scopes", SCOPES], env)
    client = parse_client(output) if not problem else None
    if client is None:
        raise SystemExit(f"`dxapi client add` failed: {problem or output}")
    return Server("dxapi-memory", command, port, env, RESULTS_DIR / "memory-dxapi.log"), client


def gets(base: str, headers: dict[str, str], id_max: int, count: int, threads: int) -> int:
    def one(_: int) -> int:
        status, _body = fetch("GET", f"{base}{PRODUCTS_PATH}/{random.randint(1, id_max)}", headers=headers)
        return status

    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(one, range(count)))
    return sum(status != 200 for status in statuses)


def posts(base: str, headers: dict[str, str], body: str, rounds: int, concurrent: int) -> int:
    counter = iter(range(10**9))
    failures: list[str] = []

    def one(_: int) -> int:
        uniq = f"{next(counter)}-{random.randrange(10**9)}"
        payload = body.replace("BENCH-{uniq}", f"{SKU_PREFIX}{uniq}").encode()
        status, answer = fetch("POST", f"{base}{PRODUCTS_PATH}", payload, headers, timeout=120)
        if status != 201 and not failures:
            failures.append(f"POST answered {status}: {answer[:300].decode(errors='replace')}")
        return status

    bad = 0
    with ThreadPoolExecutor(concurrent) as pool:
        for _ in range(rounds):
            bad += sum(status != 201 for status in pool.map(one, range(concurrent)))
    for failure in failures:
        print(failure)
    return bad


async def delete_rows(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        status = await conn.execute("DELETE FROM shop_product WHERE sku LIKE $1", SKU_PREFIX + "%")
    finally:
        await conn.close()
    return int(status.split()[-1])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gets", type=int, default=2000, help="reads by id (4 connections); default 2000")
    parser.add_argument("--post-rounds", type=int, default=4, help="rounds of concurrent POSTs; default 4")
    parser.add_argument("--concurrent", type=int, default=4, help="POSTs in flight per round; default 4")
    parser.add_argument("--rows", type=int, default=1000, help="rows per POST; default 1000")
    parser.add_argument(
        "--vary",
        action="store_true",
        help="one row fewer each round (1000, 999, …): a statement of another size per round, as real clients send",
    )
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="TOP", help="top allocation sites per phase")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames per allocation; default 1")
    parser.add_argument("--configure", action="store_true", help="run `dxapi init` and `config import` first")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get(URL_ENV, DEFAULT_URL)
    ctx = asyncio.run(load_context(url))
    if args.configure:
        for step in (["init"], ["config", "import", str(CONFIG_FILE)]):
            problem, _ = run_cli([dxapi_command() or "dxapi", "--database-url", url, *step], dict(os.environ))
            if problem:
                raise SystemExit(problem)
    with tempfile.TemporaryDirectory(prefix="dxapi-memory-") as workdir:
        server, client = start(url, args.frames if args.tracemalloc else 0, workdir)
        try:
            return measure(server, client, ctx, args)
        finally:
            server.stop()
            removed = asyncio.run(delete_rows(url))
            run_cli([dxapi_command() or "dxapi", "--database-url", url, "client", "disable", client[0]], server.env)
            print(f"stopped; deleted {removed} rows, disabled client {client[0]}")


def measure(server: Server, client: tuple[str, str], ctx: Any, args: argparse.Namespace) -> int:
    started_at = time.monotonic()
    server.start()
    if not server.wait_ready():
        raise SystemExit(f"dxapi did not start: {server.problem}")
    assert server.process is not None
    pid = server.process.pid
    print(f"dxapi serve pid {pid}, ready in {time.monotonic() - started_at:.1f} s", flush=True)
    top = args.tracemalloc
    snap = None
    time.sleep(1.0)
    line("after start", pid)
    if top:
        snap = snapshot_top(server, snap, top, "after start")
    token = BearerToken(server.base, *client)
    headers = token.headers(600)
    line("after POST /token", pid)
    if top:
        reset_peak(server)
    errors = gets(server.base, headers, ctx.id_max, args.gets, 4)
    line(f"after {args.gets} GET by id", pid, f"  ({errors} not 200)")
    if top:
        snap = snapshot_top(server, snap, top, "after GETs")
    bodies = [post_target("", ctx, args.rows - (n if args.vary else 0)).body or "" for n in range(args.post_rounds)]
    if top:
        reset_peak(server)
    posting_from = time.monotonic()
    with peak_rss(pid, 0.05) as peak:
        errors = sum(posts(server.base, headers, body, 1, args.concurrent) for body in bodies)
    what = f"after {args.post_rounds}x{args.concurrent} POST x{args.rows}{'-' if args.vary else ''}"
    took = time.monotonic() - posting_from
    line(what, pid, f"  ({errors} not 201; sampled peak {peak['largest'] / 2**20:.1f} MB; {took:.1f} s)")
    time.sleep(1.0)  # dxapi trims its heap half a second after a large request (dxapi.heap)
    line("1 s after the POSTs", pid)
    if top:
        snap = snapshot_top(server, snap, top, "after POSTs")
    errors = gets(server.base, headers, ctx.id_max, args.gets, 4)
    line(f"after {args.gets} more GET", pid, f"  ({errors} not 200)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
