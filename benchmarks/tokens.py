"""`/token` under load (issue 15): client credentials at 20 concurrent connections, and what it does to others.

Fed by `run` (the run's dxapi server, its credentials and data); feeds `run` with figures for the printed
report and latest.json (`meta["token"]`). dxapi only: the reference has no `/token`.

dxapi verifies a client secret with argon2id (about 30 ms of CPU) on a small thread pool, off the event loop
(`dxapi.auth.passwords`; one thread on two cores), and each worker remembers the secrets it has matched
(`proven` in `dxapi.auth.accounts.check_client`), so a load that repeats a client's secret measures that
memory, not argon2. The section measures on a dxapi worker of its own (the run's command and environment,
one worker, log `results/dxapi-token.log`), started fresh so that nothing is proven yet, in this order:

1. `get-by-id` alone;
2. `/token` with one client on every connection (a fleet of workers sharing a client);
3. `/token` with 20 clients, one of them at random per request: each proven after its first request;
4. `/token` with a client the worker has not seen on every request: one of `NEW_CLIENTS` at random, so
   argon2 runs for (nearly) every request; the expected number of repeats is reported;
5. 4 again, with `get-by-id` on the same worker alongside (the /token load starts before and ends after it);
6. `get-by-id` alone again: 5's reads are compared with the mean of 1 and 6.

The section's clients (`dxc_benchtoken_*`, not the run's client: a load that the per-client throttle answers
with 429 keeps that client locked out for the rest of the minute) share one argon2id hash of one secret, new
each run: hashing 20,000 secrets would take minutes, and a secret verified against a shared hash costs argon2
the same. They are upserted into `dx_client` at the start (the same rows every run) and disabled at the end.
The section's worker gets `DXAPI_TOKEN_ATTEMPTS_PER_ADDRESS` raised: every request comes from 127.0.0.1, and
attempts per address are never taken back (by design), so its default of 30 a minute would answer all but the
first 30 requests with 429. The per-client throttle (`DXAPI_TOKEN_ATTEMPTS_PER_MINUTE`) keeps its setting.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from benchmarks.data import DataContext, asyncpg_dsn
from benchmarks.load import Result, run_load
from benchmarks.report import RESULTS_DIR, columns, fmt, log
from benchmarks.scenarios import SCENARIOS, Target
from benchmarks.servers import Server, cpu_seconds, fetch, free_port, process_tree
from dxapi.auth.passwords import hash_secret, new_secret, verify_secret

TOKEN = "token"  # --only name: not a Scenario (dxapi only)
GOAL_P99_MS = 300.0  # issue 15: /token p99 under 20 concurrent clients
CLIENT_PREFIX = "dxc_benchtoken_"
SHARED_CLIENT = f"{CLIENT_PREFIX}0"  # load 2: every connection's client
PROVEN_PREFIX = f"{CLIENT_PREFIX}p"  # load 3: {PROVEN_PREFIX}1..{connections}
NEW_PREFIX = CLIENT_PREFIX  # loads 4 and 5: {NEW_PREFIX}1..NEW_CLIENTS
NEW_CLIENTS = 20_000
CLIENT_NAME = "benchmark /token load"
CLIENT_SCOPES = "*:read"
ADDRESS_LIMIT = 1_000_000  # DXAPI_TOKEN_ATTEMPTS_PER_ADDRESS of the section's worker: all load is from 127.0.0.1
FORM = "application/x-www-form-urlencoded"
OVERLAP_S = 1.0  # the /token load alongside get-by-id starts this much earlier and ends this much later
WARMUP_S = 1.0  # unmeasured get-by-id on the fresh worker (snapshot, pool) before the first measurement
READ_SCENARIO = next(s for s in SCENARIOS if s.name == "get-by-id")  # the "other requests"
READ_CONNECTIONS = READ_SCENARIO.connections
READ_FIGURES = ("p50_ms", "p99_ms", "requests_per_s")  # compared between get-by-id alone and during /token


@dataclass
class TokenLoad:
    """One measured load run of the section."""

    name: str  # token-shared, token-proven, token-new, token-new-with-reads, get-by-id-before, …
    label: str
    connections: int
    requests_per_s: float = 0.0  # successful (2xx)
    p50_ms: float = 0.0  # of all answers, as the load generator saw them
    p99_ms: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    errors: int = 0  # socket errors and timeouts
    seconds: float = 0.0
    cpu_ms_per_request: float | None = None  # of the worker's processes per answer; None when another load ran too
    after_non_2xx: str | None = None  # what the same request answered right after a load with non-2xx answers

    @property
    def is_token(self) -> bool:
        return self.name.startswith("token")

    def meets_goal(self) -> bool | None:
        """p99 within the goal, every answer 2xx; None for other requests or without answers."""
        if not self.is_token or not self.requests:
            return None
        return self.p99_ms <= GOAL_P99_MS and not self.non_2xx and not self.errors


@dataclass
class TokenSection:
    """The `/token` figures of a run."""

    connections: int
    seconds_per_load: float
    new_clients: int = NEW_CLIENTS
    loads: list[TokenLoad] = field(default_factory=list)
    argon2_ms: float | None = None  # CPU of one verification in the harness's process, for comparison
    seconds: float = 0.0
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    def load(self, name: str) -> TokenLoad | None:
        return next((m for m in self.loads if m.name == name), None)

    def new_client_requests(self) -> int:
        """Requests of the loads with a new client per request (one worker: their clients' memory is shared)."""
        return sum(m.requests for m in self.loads if m.name.startswith("token-new"))

    def expected_repeats(self) -> float:
        return expected_repeats(self.new_client_requests(), self.new_clients)

    def reads_change(self) -> dict[str, float | None]:
        """get-by-id during the /token load against alone (mean of before and after), in %."""
        during = self.load("get-by-id-during")
        alone = [m for m in (self.load("get-by-id-before"), self.load("get-by-id-after")) if m and m.requests]
        if during is None or not during.requests or not alone:
            return dict.fromkeys(READ_FIGURES)
        return {
            key: change(statistics.mean(getattr(m, key) for m in alone), getattr(during, key)) for key in READ_FIGURES
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "seconds_per_load": self.seconds_per_load,
            "new_clients": self.new_clients,
            "goal_p99_ms": GOAL_P99_MS,
            "loads": [{**asdict(m), "meets_goal": m.meets_goal()} for m in self.loads],
            "new_client_requests": self.new_client_requests(),
            "expected_repeats": round(self.expected_repeats(), 1),
            "reads_change_pct": self.reads_change(),
            "argon2_cpu_ms": self.argon2_ms,
            "seconds": round(self.seconds, 1),
            "problem": self.problem,
            "warnings": self.warnings,
        }


def expected_repeats(requests: int, clients: int) -> float:
    """How many of `requests` picks out of `clients` (uniform, with replacement) pick a client picked before."""
    if requests <= 0 or clients <= 0:
        return 0.0
    return requests - clients * (1.0 - (1.0 - 1.0 / clients) ** requests)


def change(before: float, after: float) -> float | None:
    """`after` against `before`, in %."""
    return 100.0 * (after / before - 1.0) if before else None


def token_form(client_id: str, secret: str) -> str:
    """The client-credentials form; `{id}` in `client_id` stays a placeholder for the load generator."""
    parameters = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return urllib.parse.urlencode(parameters, safe="{}")


def client_ids(proven: int, new: int) -> list[str]:
    """Every client of the section: the shared one, `proven` for load 3, `new` for loads 4 and 5."""
    return [
        SHARED_CLIENT,
        *(f"{PROVEN_PREFIX}{n}" for n in range(1, proven + 1)),
        *(f"{NEW_PREFIX}{n}" for n in range(1, new + 1)),
    ]


def section_command(command: Sequence[str], port: int) -> list[str]:
    """The run's dxapi command on another port with one worker (`--port N`, `--workers N` of dxapi or granian)."""
    found = list(command)
    for option, value in (("--port", str(port)), ("--workers", "1")):
        if option in found[:-1]:
            found[found.index(option) + 1] = value
    return found


def section_server(dxapi: Server) -> Server:
    """A dxapi of the section's own: the run's command and environment, one worker, the address throttle raised."""
    port = free_port()
    env = {**dxapi.env, "DXAPI_TOKEN_ATTEMPTS_PER_ADDRESS": str(ADDRESS_LIMIT)}
    return Server("dxapi-token", section_command(dxapi.command, port), port, env, RESULTS_DIR / "dxapi-token.log")


async def enable_clients(url: str, ids: Sequence[str], secret_hash: str) -> None:
    """Clients `ids`, active, with `secret_hash`: new, or updated if an earlier run made them."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO dx_client (client_id, name, secret_hash, scopes, is_active, created_at, updated_at) "
            "SELECT id, $2, $3, $4, true, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' "
            "FROM unnest($1::text[]) AS id "
            "ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash, is_active = true, "
            "updated_at = excluded.updated_at",
            list(ids),
            CLIENT_NAME,
            secret_hash,
            CLIENT_SCOPES,
        )
    finally:
        await conn.close()


async def disable_clients(url: str) -> int:
    """Disable the section's clients (what `dxapi client disable` does, in one statement) → how many."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        status = await conn.execute(
            "UPDATE dx_client SET is_active = false, updated_at = now() AT TIME ZONE 'UTC' "
            "WHERE starts_with(client_id, $1) AND is_active",
            CLIENT_PREFIX,
        )
    finally:
        await conn.close()
    return int(status.split()[-1])


def argon2_cpu_ms(repeats: int = 3) -> float:
    """CPU milliseconds of one argon2id verification in this thread, hashed as dxapi hashes (median)."""
    stored = hash_secret("benchmark")
    found = []
    for _ in range(repeats):
        started = time.thread_time()
        verify_secret(stored, "benchmark")
        found.append((time.thread_time() - started) * 1000)
    return statistics.median(found)


class TokenSectionError(Exception):
    """The section could not measure; the message says why."""


@dataclass
class TokenRun:
    """What the section works with."""

    server: Server
    section: TokenSection
    get_by_id: Target
    headers: Callable[[float], dict[str, str]]  # the run's credentials for get-by-id, valid for so many seconds
    id_max: int

    def read_load(self, seconds: float) -> Result:
        target = self.get_by_id
        headers = {**self.headers(seconds + OVERLAP_S), **dict(target.headers)}
        return run_load(
            target.urls, target.method, target.body, seconds, READ_CONNECTIONS, headers=headers, id_max=self.id_max
        )

    def token_load(self, body: str, seconds: float, clients: int) -> Result:
        """`/token` with `body` ({id}: one of 1..clients per request) on the section's connections."""
        url = f"{self.server.base}/token"
        headers = {"Content-Type": FORM}
        return run_load(url, "POST", body, seconds, self.section.connections, headers=headers, id_max=clients)

    def cpu_s(self) -> float:
        assert self.server.process is not None
        return sum(cpu_seconds(process_tree(self.server.process.pid)).values())

    def record(self, name: str, label: str, result: Result, connections: int, cpu_s: float | None = None) -> TokenLoad:
        load = TokenLoad(
            name,
            label,
            connections,
            requests_per_s=result.ok_per_s,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            requests=result.requests,
            non_2xx=result.non_2xx,
            errors=result.errors,
            seconds=result.duration_s,
            cpu_ms_per_request=cpu_s * 1000 / result.requests if cpu_s is not None and result.requests else None,
        )
        self.section.loads.append(load)
        log(
            f"  {label}: {load.requests_per_s:,.1f} req/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms"
            + (f", CPU {load.cpu_ms_per_request:.2f} ms/req" if load.cpu_ms_per_request is not None else "")
            + (f", {load.non_2xx} non-2xx" if load.non_2xx else "")
            + (f", {load.errors} socket errors" if load.errors else "")
        )
        return load

    def alone(self, name: str, label: str, run: Callable[[], Result], connections: int) -> TokenLoad:
        """A load with nothing else on the worker: its CPU per request too."""
        before = self.cpu_s()
        result = run()
        return self.record(name, label, result, connections, self.cpu_s() - before)

    def check(self, body: str) -> str | None:
        """One `/token` request → None if it answered 200 with a token, else what it answered."""
        status, raw = fetch("POST", f"{self.server.base}/token", body.encode(), {"Content-Type": FORM})
        return None if status == 200 and b"access_token" in raw else f"{status}: {raw[:200].decode(errors='replace')}"

    def explain(self, load: TokenLoad, body: str) -> None:
        """After a load with non-2xx answers: what the same request answers now (429: a throttle)."""
        if load.non_2xx:
            load.after_non_2xx = self.check(body) or "200"
            log(f"  {load.label}: {load.non_2xx:,} non-2xx; the same request right after answered {load.after_non_2xx}")


def measure(run: TokenRun, secret: str, seconds: float) -> None:
    """The section's loads, in the order of the module's docstring."""
    connections = run.section.connections
    shared = token_form(SHARED_CLIENT, secret)
    proven = token_form(f"{PROVEN_PREFIX}{{id}}", secret)
    new = token_form(f"{NEW_PREFIX}{{id}}", secret)
    probe = token_form(f"{PROVEN_PREFIX}1", secret)  # proven by now: asks the throttles, not argon2
    for body in (shared, probe):
        problem = run.check(body)
        if problem:
            raise TokenSectionError(f"sample /token request answered {problem}")
    run.read_load(WARMUP_S)
    run.alone("get-by-id-before", "get-by-id alone", lambda: run.read_load(seconds), READ_CONNECTIONS)
    label = "/token, one client on every connection"
    run.explain(run.alone("token-shared", label, lambda: run.token_load(shared, seconds, 1), connections), shared)
    for number in range(1, connections + 1):  # each client's argon2 verification before the load, not in it
        problem = run.check(token_form(f"{PROVEN_PREFIX}{number}", secret))
        if problem:
            raise TokenSectionError(f"/token for {PROVEN_PREFIX}{number} answered {problem}")
    label = f"/token, {connections} clients (proven)"
    run.explain(
        run.alone("token-proven", label, lambda: run.token_load(proven, seconds, connections), connections), probe
    )
    label = "/token, a new client per request"
    run.explain(run.alone("token-new", label, lambda: run.token_load(new, seconds, NEW_CLIENTS), connections), probe)
    # the /token load runs in a thread, from OVERLAP_S before the reads until OVERLAP_S after them
    found: dict[str, Result] = {}
    thread = threading.Thread(
        target=lambda: found.update(token=run.token_load(new, seconds + 2 * OVERLAP_S, NEW_CLIENTS))
    )
    thread.start()
    try:
        time.sleep(OVERLAP_S)
        reads = run.read_load(seconds)
    finally:
        thread.join()
    if "token" not in found:
        raise TokenSectionError("the /token load alongside get-by-id failed (see above)")
    label = "/token, a new client per request, get-by-id alongside"
    run.explain(run.record("token-new-with-reads", label, found["token"], connections), probe)
    run.record("get-by-id-during", "get-by-id during /token (new clients)", reads, READ_CONNECTIONS)
    run.alone("get-by-id-after", "get-by-id alone, after", lambda: run.read_load(seconds), READ_CONNECTIONS)


def check_new_clients(section: TokenSection) -> None:
    """The "new client" load must have cost about one argon2 verification per request, else it measured less."""
    new = section.load("token-new")
    if new is None or new.cpu_ms_per_request is None or section.argon2_ms is None:
        return
    if new.cpu_ms_per_request < 0.8 * section.argon2_ms:
        warning = (
            f"a new client per request cost the worker {new.cpu_ms_per_request:.1f} ms CPU per request, less than "
            f"one argon2 verification ({section.argon2_ms:.1f} ms): not every request was verified"
        )
        section.warnings.append(warning)
        log(f"  WARNING {warning}")


def token_section(
    args: argparse.Namespace, dxapi: Server, ctx: DataContext, url: str, headers: Callable[[float], dict[str, str]]
) -> TokenSection | None:
    """The `/token` figures of this run, or None when it measures none (self-test, `--token-clients 0`, --only).

    `headers(seconds)`: the run's credentials for dxapi (its bearer token, or --header), for get-by-id.
    """
    if args.self_test or args.token_clients <= 0 or (args.only and TOKEN not in args.only):
        return None
    section = TokenSection(args.token_clients, args.token_duration)
    if dxapi.problem:
        section.problem = f"not measured: {dxapi.problem}"
        return section
    log(f"/token: {args.token_clients} connections, {args.token_duration:.0f} s per load, on a worker of its own")
    started_at = time.monotonic()
    secret = new_secret("dxs")
    section.argon2_ms = argon2_cpu_ms()
    server = section_server(dxapi)
    try:
        asyncio.run(enable_clients(url, client_ids(args.token_clients, NEW_CLIENTS), hash_secret(secret)))
        server.start()
        if not server.wait_ready():
            raise TokenSectionError(f"its dxapi worker is not usable: {server.problem}")
        run = TokenRun(server, section, READ_SCENARIO.build(server.base, ctx), headers, ctx.id_max)
        measure(run, secret, args.token_duration)
        check_new_clients(section)
    except (TokenSectionError, RuntimeError, OSError) as exc:  # RuntimeError: wrk failed
        section.problem = str(exc)
        log(f"/token: {exc}")
    finally:
        server.stop()
        try:
            disabled = asyncio.run(disable_clients(url))
            log(f"/token: disabled the section's {disabled:,} clients")
        except (OSError, asyncpg.PostgresError) as exc:
            log(f"/token: could not disable the section's clients {CLIENT_PREFIX}*: {exc}")
    section.seconds = time.monotonic() - started_at
    return section


def verdict(load: TokenLoad) -> str:
    found = load.meets_goal()
    if found is None:
        return "-"
    return f"p99 <= {GOAL_P99_MS:.0f} ms {'ok' if found else 'MISS'}" + (" (non-2xx)" if load.non_2xx else "")


def render_tokens(section: TokenSection) -> str:
    header = ("/token under load (1 worker)", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx", "CPU ms/req", "goal")
    rows = [header]
    for m in section.loads:
        rows.append(
            (
                m.label,
                str(m.connections),
                f"{m.requests_per_s:,.1f}",
                f"{m.p50_ms:.1f}",
                f"{m.p99_ms:.1f}",
                f"{m.non_2xx:,}" + (f" ({m.errors} errors)" if m.errors else ""),
                fmt(m.cpu_ms_per_request, "{:.2f}"),
                verdict(m),
            )
        )
    return columns(rows)


def report_tokens(section: TokenSection) -> None:
    print()
    if section.loads:
        print(
            f"/token: client credentials on a dxapi worker of its own, {section.connections} connections, "
            f"{section.seconds_per_load:.0f} s per load, in this order. req/s counts 2xx answers, p50/p99 all answers."
        )
        print(
            f"'proven': one of {section.connections} clients at random per request, each verified once before the "
            "load (then the worker's memory of proven secrets answers);"
        )
        print(
            f"'new client': one of {section.new_clients:,} clients at random per request (argon2 each time; "
            f"{section.new_client_requests():,} requests, {section.expected_repeats():.1f} repeats expected)."
        )
        print(render_tokens(section))
        for m in section.loads:
            if m.after_non_2xx:
                print(f"  {m.label}: {m.non_2xx:,} non-2xx; the same request right after answered {m.after_non_2xx}")
        reads = section.reads_change()
        print(
            "get-by-id during /token against alone (mean of before and after): "
            f"p50 {fmt(reads['p50_ms'], '{:+.1f} %')}, p99 {fmt(reads['p99_ms'], '{:+.1f} %')}, "
            f"req/s {fmt(reads['requests_per_s'], '{:+.1f} %')}"
        )
        goals = ", ".join(
            f"{m.name} {m.p99_ms:.0f} ms {'ok' if m.meets_goal() else 'MISS'}"
            + (f" ({m.non_2xx:,} non-2xx)" if m.non_2xx else "")
            for m in section.loads
            if m.is_token
        )
        print(f"goal /token p99 <= {GOAL_P99_MS:.0f} ms under {section.connections} clients: {goals}")
        if section.argon2_ms is not None:
            print(f"one argon2id verification in the harness's process: {section.argon2_ms:.1f} ms CPU")
    print(f"/token: the section took {section.seconds:.0f} s")
    for warning in section.warnings:
        print(f"/token: WARNING {warning}")
    if section.problem:
        print(f"/token: {section.problem}")
