"""`make bench`: dxapi against the thin reference server, same PostgreSQL data, same run (DESIGN.md §8).

Steps: (re)create the database and load the demo shop through `dxapi.demo` (100,000 products); run
`dxapi init`, `dxapi config import examples/shop-config.json` and `dxapi client add` (a client for this run,
`auth`); start `benchmarks.reference` and `dxapi serve` (with a random token signing secret in its
environment) with the same worker count and pool size; fetch an access token from dxapi's `/token`; then for
every scenario check that both servers answer the same JSON, warm each up, load them in alternating slices
for the same total time while sampling their memory. Then the cost of an Idempotency-Key: post-batch and
patch-one on dxapi without a key, with a fresh key per request, without, … Then the change feed (`feed`):
post-batch and patch-one on dxapi with the products' feed off, on, off, on, off (switched through `dxapi
config import`), and full pulls of the feed right after it was first switched on. Finally print the tables
and write them as JSON to benchmarks/results/latest.json (`report`). Every dxapi request carries
`Authorization: Bearer …`; the reference gets no credentials. Only processes started here are stopped (by
process group), also on Ctrl-C, SIGTERM or an error; the run's client is disabled at the end.

    python -m benchmarks.run [--workers N] [--duration S] [--only SCENARIO] [--skip-load] [--self-test]
                             [--key-rounds N] [--capture-rounds N] [--feed-pulls N] [--feed-limit N]
                             [--token-clients N] [--token-duration S] [--dxapi-server uvicorn|granian]

A scenario dxapi does not serve yet (404/405/501 on its sample request) is reported as "n/a".
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import importlib.util
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from benchmarks.auth import AUTH_HEADERS, SCOPES, AuthError, BearerToken, new_signing_secret, parse_client
from benchmarks.data import (
    DEFAULT_URL,
    PRODUCTS,
    URL_ENV,
    DataContext,
    backend_pids,
    count_products,
    delete_bench_rows,
    delete_key_records,
    fill_key_records,
    load_context,
    load_shop,
    recreate_database,
)
from benchmarks.export import EXPORT_NDJSON, ExportSection, export_section, report_export
from benchmarks.feed import PullError, pull_feed, pull_list, set_feed, switch_feed
from benchmarks.history import REGRESSION_PCT, git_commit, load_average, make_entry, record
from benchmarks.load import Result, find_wrk, run_load
from benchmarks.report import (
    KEY_LABELS,
    PHASES,
    RESULTS_DIR,
    Cost,
    FeedPull,
    FeedSection,
    KeySection,
    Measurement,
    Phase,
    ScenarioResult,
    fmt,
    log,
    report,
)
from benchmarks.scenarios import IDEMPOTENCY_KEY, SCENARIOS, Scenario, Target, first_difference, keyed, materialise
from benchmarks.servers import ROOT, Server, cpu_seconds, fetch, free_port, named, peak_rss, process_tree
from benchmarks.tokens import TOKEN, report_tokens, token_section
from dxapi.server import APP, EXIT_SLACK
from dxapi.settings import Settings

CONFIG_FILE = ROOT / "examples" / "shop-config.json"
SETTLE_S = 0.5  # shortest pause after a load run, see settle()
SETTLE_MAX_S = 10.0
SAMPLE_S = 30.0  # the longest a sample request may take (servers.fetch's timeout)
NOT_SERVED = (404, 405, 501)  # dxapi answers these for endpoints it does not have yet
# Write scenarios whose cost of change capture is measured → the most throughput it may cost, in % (issue 11)
CAPTURE_GOALS: dict[str, float | None] = {"post-batch": 30.0, "patch-one": None}
# Write scenarios whose cost of an Idempotency-Key is measured → the most it may cost, in % (issue 12)
KEY_GOALS: dict[str, float | None] = {"post-batch": 15.0, "patch-one": 15.0}
FEED_PULL = "feed-pull"  # --only name of the feed pull: not a Scenario (dxapi only, no reference to compare)
KEY_COST = "key-cost"  # --only name of the key cost of every KEY_GOALS scenario, without their main table rows
DXAPI_SERVERS = ("uvicorn", "granian")
PULL_TOKEN_S = 600.0  # a bearer token for one pull must stay valid this long
NO_BACKENDS = "PostgreSQL's backends are not processes of this machine: the CPU figures count dxapi alone"


@dataclass(frozen=True, slots=True)
class Round:
    """One measured load run of one server."""

    result: Result
    rss_mb: float
    worker_rss_mb: float
    processes: int
    cpu_s: float = 0.0  # CPU seconds of the server's process tree while the load ran (all its threads)
    rows_created: int = 0  # POST: benchmark rows found afterwards (in-flight requests finished included)
    key_records: int = 0  # keyed requests: idempotency records found afterwards (one per executed request)


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
    headers: dict[str, str]  # --header: sent to both servers
    auth: dict[str, BearerToken]  # slot ("dxapi") → its bearer tokens; the reference has none
    id_max: int = PRODUCTS  # {id} placeholders pick from 1..id_max: the seeded products (--products)

    def headers_for(self, slot: str, valid_for: float) -> dict[str, str]:
        """What one load run of `valid_for` seconds sends to the server in `slot`: --header plus its token."""
        token = self.auth.get(slot)
        return self.headers if token is None else {**self.headers, **token.headers(valid_for)}


def sample(target: Target, sample_id: int, unique: str, headers: dict[str, str]) -> tuple[int, Any]:
    """Send one concrete request → (status, parsed JSON or the start of a non-JSON body)."""
    url, body, own = materialise(target, sample_id, unique)
    status, raw = fetch(target.method, url, body, {**headers, **own})
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw[:200].decode(errors="replace")


def settle(result: Result) -> None:
    """Wait for the requests still in flight when the load generator stopped counting.

    They finish on the server: let them, so they neither slow the next run down nor leave rows behind after
    the clean-up. A POST of 1000 rows can take longer than a second on a busy machine: wait for its p99.
    """
    time.sleep(min(SETTLE_MAX_S, max(SETTLE_S, 1.5 * result.p99_ms / 1000)))


def is_keyed(target: Target) -> bool:
    return IDEMPOTENCY_KEY in target.headers


def clean_after(target: Target, url: str) -> tuple[int, int]:
    """Remove what a load run of `target` left → (benchmark rows, idempotency records)."""
    rows = asyncio.run(delete_bench_rows(url)) if target.method == "POST" else 0
    return rows, asyncio.run(delete_key_records(url)) if is_keyed(target) else 0


def load_once(slot: str, server: Server, scenario: Scenario, target: Target, options: Options, url: str) -> Round:
    """One measured run of `target` on `server`, its memory sampled; the rows it created removed after."""
    assert server.process is not None
    connections = options.connections or scenario.connections
    # before sampling: may call /token
    headers = {**options.headers_for(slot, options.slice_s + SETTLE_S), **dict(target.headers)}
    before = cpu_seconds(process_tree(server.process.pid))
    with peak_rss(server.process.pid) as peak:
        result = run_load(
            target.urls,
            target.method,
            target.body,
            options.slice_s,
            connections,
            headers=headers,
            id_max=options.id_max,
        )
    cpu_s = spent(before, cpu_seconds(process_tree(server.process.pid)))
    settle(result)
    created, records = clean_after(target, url)
    mb = 2**20
    return Round(result, peak["bytes"] / mb, peak["largest"] / mb, peak["processes"], cpu_s, created, records)


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
    ref_status, ref_body = sample(ref_target, sample_id, unique, options.headers_for("reference", SAMPLE_S))
    if not 200 <= ref_status < 300:
        ref_problem = Measurement("error", f"sample request answered {ref_status}: {ref_body!s:.200}")
    if dxapi.problem:
        return ref_problem, Measurement("n/a", dxapi.problem), warnings
    if ref_target.method == "POST":
        unique = "S" + secrets.token_hex(4).upper()
    dx_status, dx_body = sample(dx_target, sample_id, unique, options.headers_for("dxapi", SAMPLE_S))
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


def log_checks(warnings: list[str], problems: dict[str, Measurement | None], servers: dict[str, Server]) -> None:
    """The sample check's findings: differences between the answers, then why a server is not measured."""
    for warning in warnings:
        log(f"  WARNING {warning}")
    for slot, problem in problems.items():
        if problem is not None:
            log(f"  {servers[slot].label}: {problem.status} ({problem.reason})")


def warm_up(active: list[str], targets: dict[str, Target], connections: int, options: Options, url: str) -> None:
    """Unmeasured load for each server in turn; the rows it created removed after."""
    if options.warmup <= 0:
        return
    for slot in active:
        target = targets[slot]
        headers = {**options.headers_for(slot, options.warmup + SETTLE_S), **dict(target.headers)}
        settle(
            run_load(
                target.urls,
                target.method,
                target.body,
                options.warmup,
                connections,
                headers=headers,
                id_max=options.id_max,
            )
        )
        clean_after(target, url)


def measure_rounds(
    active: list[str],
    servers: dict[str, Server],
    scenario: Scenario,
    targets: dict[str, Target],
    options: Options,
    url: str,
) -> dict[str, list[Round]]:
    """`options.rounds` slices per server, alternating: slot → its rounds."""
    rounds: dict[str, list[Round]] = {slot: [] for slot in active}
    for number in range(options.rounds):
        # A B, B A, A B …: drift of the machine (other load, cache state, autovacuum) hits both alike
        order = active if number % 2 == 0 else active[::-1]
        for slot in order:
            rounds[slot].append(load_once(slot, servers[slot], scenario, targets[slot], options, url))
    return rounds


def log_measurement(label: str, m: Measurement, rounds: Sequence[Round]) -> None:
    # CPU per answer: a server that runs its HTTP I/O on threads of its own takes more of the shared cores,
    # which a throughput ratio alone rewards
    done = sum(r.result.requests - r.result.non_2xx for r in rounds)
    cpu = sum(r.cpu_s for r in rounds) / done * 1e6 if done else 0.0
    log(
        f"  {label}: {m.requests_per_s:,.1f} req/s "
        f"(rounds {' '.join(f'{r:,.0f}' for r in m.rounds_per_s)}), p50 {m.p50_ms:.1f} ms, "
        f"p99 {m.p99_ms:.1f} ms, {m.rss_mb:.0f} MB, CPU {cpu:,.0f} us/req"
        + (f", {m.non_2xx} non-2xx" if m.non_2xx else "")
        + (f", {m.errors} socket errors" if m.errors else "")
    )


def set_ratio(result: ScenarioResult, reference: Sequence[Round], dxapi: Sequence[Round], goal: float | None) -> None:
    """dxapi / reference throughput of rounds run back to back into `result`, and whether it meets the goal.

    The median of the ratios of rounds run back to back, not the ratio of the totals: this machine's speed
    drifts by tens of percent within seconds, and a burst of speed in one server's slice would move the
    totals. (rows/s ratios are the same: both servers get the same batches.)
    """
    pairs = zip(reference, dxapi, strict=True)
    ratios = [dx.result.ok_per_s / ref.result.ok_per_s for ref, dx in pairs if ref.result.ok_per_s > 0]
    if not ratios:
        return
    result.ratio = statistics.median(ratios)
    result.ratio_of_totals = result.dxapi.requests_per_s / max(result.reference.requests_per_s, 1e-9)
    if goal is not None:
        result.meets_goal = result.ratio >= goal


def run_scenario(
    scenario: Scenario, reference: Server, dxapi: Server, ctx: DataContext, url: str, options: Options
) -> ScenarioResult:
    log(f"scenario {scenario.name}: {scenario.description}")
    targets = {"reference": scenario.build(reference.base, ctx), "dxapi": scenario.build(dxapi.base, ctx)}
    servers = {"reference": reference, "dxapi": dxapi}
    ref_problem, dx_problem, warnings = check_samples(
        scenario, targets["reference"], targets["dxapi"], dxapi, ctx, options
    )
    problems = {"reference": ref_problem, "dxapi": dx_problem}
    log_checks(warnings, problems, servers)
    active = [slot for slot, problem in problems.items() if problem is None]
    if "POST" in {t.method for t in targets.values()}:
        asyncio.run(delete_bench_rows(url))  # the sample requests' rows

    connections = options.connections or scenario.connections
    warm_up(active, targets, connections, options, url)
    rounds = measure_rounds(active, servers, scenario, targets, options, url)

    measured = {slot: problems[slot] or combine(rounds[slot], scenario.batch) for slot in servers}
    for slot in active:
        log_measurement(servers[slot].label, measured[slot], rounds[slot])
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
        set_ratio(result, rounds["reference"], rounds["dxapi"], scenario.goal)
    return result


class FeedSwitchError(Exception):
    """Switching the products' change feed failed; the message says why."""


@dataclass
class FeedRun:
    """What the change-feed part of a run works with, and the section it fills."""

    dxapi: Server
    ctx: DataContext
    url: str
    options: Options
    workers: int
    section: FeedSection
    feed_on: bool = False  # as last asked for: the finally of run_feed_section switches it off again

    def switch(self, enabled: bool) -> None:
        self.feed_on = enabled
        problem, seconds = set_feed(self.url, CONFIG_FILE, self.dxapi, enabled, self.workers)
        if problem:
            raise FeedSwitchError(f"switching the feed {'on' if enabled else 'off'}: {problem}")
        self.section.switch_s.append(seconds)

    def measure(self, scenario: Scenario) -> Phase:
        feed = "on" if self.feed_on else "off"
        target = scenario.build(self.dxapi.base, self.ctx)
        alone = Alone(self.dxapi, self.options, self.url, self.section.warnings)
        return measure_phase(alone, scenario, target, feed, f"feed {feed}")


@dataclass(frozen=True, slots=True)
class Alone:
    """What a phase of a cost comparison works with: dxapi alone, no reference; warnings go to `warnings`."""

    dxapi: Server
    options: Options
    url: str
    warnings: list[str]


def measure_phase(alone: Alone, scenario: Scenario, target: Target, variant: str, label: str) -> Phase:
    """`target` on dxapi alone: a sample request, the warm-up, then one load of --duration, and the CPU time
    dxapi and its PostgreSQL backends spent on it. `variant` is "off" or "on", `label` names it in the log.

    One continuous run rather than slices: there is no other server to alternate with, and a POST of 1000
    rows takes seconds on a busy machine, so short slices would count only a handful of requests.
    """
    dxapi, options, url = alone.dxapi, alone.options, alone.url
    sample_id = max(1, min(options.id_max, 4242))
    status, body = sample(target, sample_id, "S" + secrets.token_hex(4).upper(), options.headers_for("dxapi", SAMPLE_S))
    clean_after(target, url)
    if not 200 <= status < 300:
        log(f"  dxapi: sample request answered {status}: {body!s:.200}")
        return Phase(variant, Measurement("error", f"sample request answered {status}: {body!s:.200}"))
    warm_up(["dxapi"], {"dxapi": target}, options.connections or scenario.connections, options, url)
    assert dxapi.process is not None
    server = process_tree(dxapi.process.pid)
    reported = asyncio.run(backend_pids(url))
    database = named(reported, "postgres")
    if reported and not database and NO_BACKENDS not in alone.warnings:
        alone.warnings.append(NO_BACKENDS)
        log(f"  WARNING {NO_BACKENDS}")
    before = cpu_seconds(server), cpu_seconds(database)
    measured = load_once("dxapi", dxapi, scenario, target, dataclasses.replace(options, rounds=1), url)
    after = cpu_seconds(server), cpu_seconds(database)
    result = combine([measured], scenario.batch)
    # POST: the rows found afterwards, requests finished after the deadline included (so is their CPU)
    done = result.requests - result.non_2xx
    units = measured.rows_created if scenario.batch > 1 else done
    phase = Phase(variant, result, spent(before[0], after[0]), spent(before[1], after[1]), units)
    log_measurement(f"{scenario.name} dxapi, {label}", result, [measured])
    records = f", {measured.key_records:,} idempotency records" if is_keyed(target) else ""
    log(
        f"  CPU {fmt(phase.cpu_us)} us per {'row' if scenario.batch > 1 else 'request'} "
        f"(dxapi {phase.cpu_server_s:.2f} s, PostgreSQL {phase.cpu_database_s:.2f} s, {units:,} done{records})"
    )
    # every executed keyed request records its answer: fewer records means the keys did not do their work
    if is_keyed(target) and measured.key_records < done:
        warning = f"{scenario.name}: {measured.key_records:,} idempotency records for {done:,} keyed requests"
        alone.warnings.append(warning)
        log(f"  WARNING {warning}")
    return phase


def key_scenarios(args: argparse.Namespace, scenarios: Sequence[Scenario]) -> list[Scenario]:
    """The write scenarios whose key cost this run measures: those selected, or all with `--only key-cost`."""
    if args.key_rounds <= 0 or args.self_test:
        return []
    every = KEY_COST in (args.only or [])
    return [s for s in SCENARIOS if s.name in KEY_GOALS and (every or s in scenarios)]


def key_section(
    args: argparse.Namespace, scenarios: Sequence[Scenario], dxapi: Server, ctx: DataContext, url: str, options: Options
) -> KeySection | None:
    """What a fresh Idempotency-Key per request costs, or None when this run measures none (self-test, options).

    Per scenario, phases without a key, with, without, … (`--key-rounds` keyed ones, each between two without)
    back to back: nothing to switch on the server, the key is a header. Before the change feed's section, so
    the products have no capture triggers.
    """
    chosen = key_scenarios(args, scenarios)
    if not chosen:
        return None
    section = KeySection()
    if dxapi.problem:
        section.problem = f"not measured: {dxapi.problem}"
        return section
    log(f"idempotency key: cost on {', '.join(s.name for s in chosen)}, {args.key_rounds} keyed phase(s) each")
    asyncio.run(fill_key_records(url))
    alone = Alone(dxapi, options, url, section.warnings)
    started_at = time.monotonic()
    for scenario in chosen:
        cost = Cost(scenario.name, "rows/s" if scenario.batch > 1 else "req/s", KEY_GOALS[scenario.name])
        section.costs.append(cost)
        plain = scenario.build(dxapi.base, ctx)
        for number in range(2 * args.key_rounds + 1):
            variant = PHASES[number % 2]
            target = keyed(plain) if variant == "on" else plain
            cost.phases.append(measure_phase(alone, scenario, target, variant, KEY_LABELS[number % 2]))
    section.seconds = time.monotonic() - started_at
    return section


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two samples, by the processes still there at the second."""
    return sum(seconds - before.get(pid, seconds) for pid, seconds in after.items())


def run_feed_section(
    run: FeedRun, capture: Sequence[Scenario], rounds: int, pulls: tuple[Sequence[int], int] | None
) -> None:
    """Capture cost: each `capture` scenario in phases feed off, on, off, … (`rounds` ons, an off on either
    side of each); the feed pulls (`(limits, repeats)`) right after the feed was first switched on, while the
    change table holds just the table's rows. Leaves the feed off, also when interrupted."""
    found = {s.name: Cost(s.name, "rows/s" if s.batch > 1 else "req/s", CAPTURE_GOALS[s.name]) for s in capture}
    run.section.capture = list(found.values())
    try:
        for number in range(2 * rounds + 1 if capture else 1):
            feed = PHASES[number % 2] if capture else "on"
            if (feed == "on") != run.feed_on:
                run.switch(feed == "on")
            if number == (1 if capture else 0) and pulls is not None:
                run_pulls(run, *pulls)
            for s in capture:
                found[s.name].phases.append(run.measure(s))
    except (FeedSwitchError, PullError) as exc:
        run.section.problem = str(exc)
        log(f"change feed: {exc}")
    finally:
        if run.feed_on:
            problem, _ = switch_feed(run.url, CONFIG_FILE, False)
            if problem:
                log(f"could not switch the change feed off again: {problem}")


def run_pulls(run: FeedRun, limits: Sequence[int], repeats: int) -> None:
    """Read the whole table through the feed and, for comparison, as a keyset list: per limit, alternating."""
    run.section.expected_rows = asyncio.run(count_products(run.url))
    readers = {"_changes": pull_feed, "list page[cursor]": pull_list}
    for limit in limits:
        for _ in range(repeats):
            for read, pull in list(readers.items()):
                try:
                    result = pull(run.dxapi.base, run.options.headers_for("dxapi", PULL_TOKEN_S), limit)
                except PullError as exc:
                    if read == "_changes":
                        raise
                    # the list is only the comparison: without page[cursor] the feed figures still stand
                    run.section.warnings.append(f"list read not measured: {exc}")
                    del readers[read]
                    continue
                log(
                    f"  {read} page[limit]={limit}: {result.rows:,} rows in {result.pages} pages, "
                    f"{result.seconds:.2f} s, {result.rows_per_s:,.0f} rows/s"
                    + (f", {result.waits} waits" if result.waits else "")
                )
                check_pull(run.section, result)
                run.section.pulls.append(result)


def check_pull(section: FeedSection, pull: FeedPull) -> None:
    """A full read must deliver every live row once: else its rows/s measure something else."""
    expected = section.expected_rows
    if pull.rows != pull.distinct_ids or (expected is not None and pull.distinct_ids != expected) or pull.deletes:
        warning = (
            f"{pull.read} page[limit]={pull.limit}: {pull.rows:,} rows, {pull.distinct_ids:,} distinct, "
            f"{pull.deletes:,} deletes; the table has {fmt(expected)} rows"
        )
        section.warnings.append(warning)
        log(f"  WARNING {warning}")


def feed_section(
    args: argparse.Namespace, scenarios: Sequence[Scenario], dxapi: Server, ctx: DataContext, url: str, options: Options
) -> FeedSection | None:
    """The change-feed figures of this run, or None when it has none to measure (self-test, options)."""
    capture = [s for s in scenarios if s.name in CAPTURE_GOALS] if args.capture_rounds > 0 else []
    wants_pull = args.feed_pulls > 0 and (not args.only or FEED_PULL in args.only)
    if args.self_test or not (capture or wants_pull):
        return None
    section = FeedSection()
    if dxapi.problem:
        section.problem = f"not measured: {dxapi.problem}"
        return section
    log(f"change feed: capture cost of {', '.join(s.name for s in capture) or 'nothing'}; feed pull: {wants_pull}")

    run = FeedRun(dxapi, ctx, url, options, args.workers, section)
    limits = args.feed_limit or [1000, int(dxapi.env.get("DXAPI_MAX_PAGE_LIMIT", "10000"))]
    pulls = (sorted(set(limits)), args.feed_pulls) if wants_pull else None
    started_at = time.monotonic()
    run_feed_section(run, capture, args.capture_rounds, pulls)
    section.seconds = time.monotonic() - started_at
    return section


def export_of(
    args: argparse.Namespace, dxapi: Server, headers: dict[str, str], auth: dict[str, BearerToken]
) -> ExportSection | None:
    """The `export-ndjson` figures (every product as NDJSON from dxapi), or None when not asked for."""
    if args.self_test or (args.only and EXPORT_NDJSON not in args.only):
        return None
    token = auth["dxapi"].headers(60) if "dxapi" in auth else {}
    return export_section(dxapi, {**headers, **token})


def dxapi_command() -> str | None:
    """The dxapi console script of this interpreter's environment, else the one on PATH."""
    candidate = Path(sys.executable).with_name("dxapi")
    return str(candidate) if candidate.exists() else shutil.which("dxapi")


def run_cli(command: Sequence[str], env: dict[str, str]) -> tuple[str | None, str]:
    """Run a dxapi CLI command → (None if it worked, else a one-line reason; its standard output)."""
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if completed.returncode == 0:
        return None, completed.stdout
    output = (completed.stderr.strip() or completed.stdout.strip()).splitlines()
    shown = " ".join(command[3:])  # without `dxapi --database-url URL`: the URL may hold a password
    return f"`{shown}` failed ({completed.returncode}): {output[-1] if output else ''}", completed.stdout


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    names = [*(s.name for s in SCENARIOS), KEY_COST, FEED_PULL, EXPORT_NDJSON, TOKEN]
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
        help="extra request header for both servers (repeatable); with Authorization or X-Api-Key among "
        "them the harness creates no client and sends no token of its own",
    )
    parser.add_argument(
        "--key-rounds",
        type=int,
        default=2,
        metavar="N",
        help="post-batch and patch-one on dxapi without an Idempotency-Key, with a fresh one per request, "
        "without, ...: N keyed phases, each between two without (default 2; 0 = no key cost)",
    )
    parser.add_argument(
        "--capture-rounds",
        type=int,
        default=2,
        metavar="N",
        help="post-batch and patch-one on dxapi with the change feed off, on, off, ...: N ons, each between two "
        "offs (default 2; 0 = no capture comparison)",
    )
    parser.add_argument(
        "--feed-pulls",
        type=int,
        default=2,
        metavar="N",
        help="full reads of the products' change feed (and keyset list) per page limit (default 2; 0 = none)",
    )
    parser.add_argument(
        "--feed-limit",
        type=int,
        action="append",
        metavar="N",
        help="page[limit] of the feed pulls (repeatable; default 1000 and dxapi's maximum, 10000)",
    )
    parser.add_argument(
        "--token-clients",
        type=int,
        default=20,
        metavar="N",
        help="concurrent connections of the /token section, on a dxapi worker of its own (default 20; 0 = none)",
    )
    parser.add_argument(
        "--token-duration",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds per load of the /token section (default 3)",
    )
    parser.add_argument(
        "--dxapi-server",
        choices=DXAPI_SERVERS,
        default="uvicorn",
        help="HTTP server in front of dxapi's application: uvicorn as `dxapi serve` runs it (default), or granian "
        "(ASGI, GRANIAN_* environment variables apply); the reference stays on uvicorn",
    )
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit with status 1 when a ratio fell by more than --regression-pct against the previous "
        "comparable run in results/history.jsonl (default: only flag it)",
    )
    parser.add_argument(
        "--regression-pct",
        type=float,
        default=REGRESSION_PCT,
        metavar="P",
        help=f"how far, in %%, a ratio may fall before it is flagged as a REGRESSION (default {REGRESSION_PCT:.0f})",
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


def parse_headers(given: Sequence[str]) -> dict[str, str]:
    """--header 'NAME: VALUE' options → name → value."""
    if any(":" not in h for h in given):
        raise SystemExit("--header takes 'NAME: VALUE'")
    return {name.strip(): value.strip() for name, value in (h.split(":", 1) for h in given)}


def prepare_data(url: str, args: argparse.Namespace) -> DataContext:
    """Recreate and load the database, or with --skip-load delete the rows of earlier runs → ids and cursors."""
    if not args.skip_load:
        log(f"recreating {make_url(url).render_as_string(hide_password=True)} with {args.products:,} products")
        started_at = time.monotonic()
        asyncio.run(recreate_database(url))
        asyncio.run(load_shop(url, args.products))
        log(f"data ready in {time.monotonic() - started_at:.0f} s")
    else:
        removed = asyncio.run(delete_bench_rows(url))
        log(f"reusing the data (removed {removed:,} leftover benchmark rows)")
    return asyncio.run(load_context(url))


def prepare_servers(
    url: str, args: argparse.Namespace, headers: dict[str, str]
) -> tuple[Server, Server, tuple[str, str] | None]:
    """The reference and dxapi (or with --self-test a second reference), not started → (reference, dxapi, client)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reference = reference_server("reference", url, args, env)
    client: tuple[str, str] | None = None
    if args.self_test:
        dxapi = reference_server("ref-2", url, args, env)
    else:
        own_credentials = any(name.lower() in AUTH_HEADERS for name in headers)
        dxapi, client = prepare_dxapi(url, args, env, not own_credentials, args.dxapi_server)
    return reference, dxapi, client


def run_meta(
    url: str,
    args: argparse.Namespace,
    ctx: DataContext,
    dxapi: Server,
    client: tuple[str, str] | None,
    headers: dict[str, str],
) -> dict[str, Any]:
    """What latest.json says about the run besides the results (also picks the load tool: may install wrk)."""
    load_tool = "python" if os.environ.get("DXAPI_BENCH_LOAD") == "python" or not find_wrk() else "wrk"
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": make_url(url).render_as_string(hide_password=True),
        "products": ctx.id_max,
        "workers": args.workers,
        "pool_size": args.pool_size,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "load_tool": load_tool,
        "cpus": os.cpu_count(),
        "self_test": args.self_test,
        "dxapi_problem": dxapi.problem,
        "dxapi_auth": auth_mode(args.self_test, client, headers),
        "dxapi_server": args.dxapi_server,
    }


def start_servers(servers: Sequence[Server], reference: Server) -> None:
    """Start all, then wait for each; stops the run if the reference does not come up."""
    for server in servers:
        server.start()
    for server in servers:
        if not server.wait_ready():
            log(f"{server.label} is not usable: {server.problem}")
    if reference.problem:
        raise SystemExit(f"the reference server does not start: {reference.problem}")


def authenticate(dxapi: Server, client: tuple[str, str] | None, auth: dict[str, BearerToken]) -> None:
    """dxapi's first bearer token for the run's client into `auth`; without one dxapi gets a `problem`."""
    if client is None or dxapi.problem is not None:
        return
    auth["dxapi"] = BearerToken(dxapi.base, *client)
    try:
        auth["dxapi"].refresh()
        log(f"dxapi: bearer token for client {client[0]} (valid {auth['dxapi'].lifetime_s:.0f} s)")
    except (AuthError, OSError) as exc:
        dxapi.problem = f"no access token: {exc}"
        log(f"dxapi is not usable: {dxapi.problem}")


def clean_up(servers: Sequence[Server], url: str, client: tuple[str, str] | None) -> None:
    """Stop the servers started here (by process group), delete benchmark rows, disable the run's client."""
    for server in servers:
        server.stop()
    # rows of requests still in flight when a POST run was cut off: leave the data as it was loaded
    try:
        asyncio.run(delete_bench_rows(url))
    except (OSError, asyncpg.PostgresError) as exc:  # the database went away: say so, clean up the rest
        log(f"could not delete the benchmark rows: {exc}")
    if client is not None:
        disable_client(url, client[0])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get(URL_ENV, DEFAULT_URL)
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    headers = parse_headers(args.header)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    load_before = load_average()

    ctx = prepare_data(url, args)
    reference, dxapi, client = prepare_servers(url, args, headers)
    auth: dict[str, BearerToken] = {}
    servers = [s for s in (reference, dxapi) if s.problem is None]
    meta = run_meta(url, args, ctx, dxapi, client, headers)
    try:
        start_servers(servers, reference)
        authenticate(dxapi, client, auth)
        options = Options(args.duration, args.warmup, args.rounds, args.connections, headers, auth, ctx.id_max)
        results = [run_scenario(s, reference, dxapi, ctx, url, options) for s in scenarios]
        keys = key_section(args, scenarios, dxapi, ctx, url, options)
        feed = feed_section(args, scenarios, dxapi, ctx, url, options)
        export = export_of(args, dxapi, headers, auth)
        tokens = token_section(args, dxapi, ctx, url, lambda s: options.headers_for("dxapi", s))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except AuthError as exc:
        raise SystemExit(f"dxapi access token: {exc}") from None
    finally:
        clean_up(servers, url, client)
    meta["dxapi_problem"] = dxapi.problem
    if "dxapi" in auth:
        meta["dxapi_tokens_fetched"] = auth["dxapi"].fetched
    if export is not None:
        meta["export_ndjson"] = export.as_json()
    if tokens is not None:
        meta["token"] = tokens.as_json()
    report(results, meta, args.self_test, feed, keys)
    if export is not None:
        report_export(export)
    if tokens is not None:
        report_tokens(tokens)
    entry = make_entry(meta, results, load_before, load_average(), git_commit())
    if record(entry, args.regression_pct) and args.fail_on_regression:
        log(f"a ratio fell by more than {args.regression_pct:.0f} % against the previous comparable run")
        return 1
    return 0


def reference_server(label: str, url: str, args: argparse.Namespace, env: dict[str, str]) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.reference", "--dsn", url, "--port", str(port)]
    command += ["--workers", str(args.workers), "--pool-size", str(args.pool_size)]
    return Server(label, command, port, env, RESULTS_DIR / f"{label}.log")


def auth_mode(self_test: bool, client: tuple[str, str] | None, headers: dict[str, str]) -> str:
    if self_test:
        return "none (self-test)"
    if client is not None:
        return "bearer token (client credentials of a client created for the run)"
    given = sorted(name for name in headers if name.lower() in AUTH_HEADERS)
    return f"--header {', '.join(given)}" if given else "none"


def prepare_dxapi(
    url: str, args: argparse.Namespace, env: dict[str, str], create_client: bool, http_server: str = "uvicorn"
) -> tuple[Server, tuple[str, str] | None]:
    """`dxapi init`, `config import`, `client add` and the serve command → (server, (client_id, secret)).

    The server's `problem` says why dxapi cannot run, if so. Its token signing secret is random per run and
    lives only in the environment of the dxapi processes (`dxapi init` then writes no `.dxapi/jwt-secret`).
    """
    executable = dxapi_command()
    port = free_port()
    if http_server == "granian":
        command = granian_command(port, args.workers)
    else:
        command = [executable or "dxapi", "--database-url", url, "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(args.workers)]
    dx_env = {
        **env,
        # what `dxapi serve` hands its workers; granian's load dxapi's app factory straight from the environment
        "DXAPI_DATABASE_URL": url,
        # same pool and log verbosity as the reference, so neither pays for something the other skips
        "DXAPI_POOL_SIZE": str(args.pool_size),
        "DXAPI_LOG_LEVEL": env.get("DXAPI_LOG_LEVEL", "warning"),
        # HS256 with a fresh secret: tokens of earlier runs are worthless, nothing lands in the repository
        "DXAPI_JWT_ALGORITHM": "HS256",
        "DXAPI_JWT_SECRET": new_signing_secret(),
    }
    dx_env.pop("DXAPI_JWT_PRIVATE_KEY_FILE", None)
    dx_env.pop("DXAPI_JWT_PREVIOUS_SECRETS", None)
    server = Server("dxapi", command, port, dx_env, RESULTS_DIR / "dxapi.log")
    client = None
    if executable is None:
        server.problem = "no dxapi executable found"
    elif http_server == "granian" and importlib.util.find_spec("granian") is None:
        server.problem = "granian is not installed (pip install granian)"
    else:
        steps = [["init"], ["config", "import", str(CONFIG_FILE)]]
        if create_client:
            name = f"benchmark {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S}"
            steps.append(["client", "add", name, "--scopes", SCOPES])
        for step in steps:
            problem, output = run_cli([executable, "--database-url", url, *step], dx_env)
            if problem:
                server.problem = problem
                break
            if step[0] == "client":
                client = parse_client(output)
                if client is None:
                    server.problem = "`dxapi client add` printed no client_id/client_secret"
    if server.problem:
        log(f"dxapi will not be measured: {server.problem}")
    return server, client


def granian_command(port: int, workers: int) -> list[str]:
    """granian serving the same application factory as `dxapi serve`, with dxapi's server settings where granian
    has an equivalent: the header timeout, requests per worker, the kill deadline after the shutdown timeout."""
    settings = Settings()
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        APP,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-ws",
        "--log-level",
        os.environ.get("DXAPI_LOG_LEVEL", "warning"),
        "--http1-header-read-timeout",
        str(round(settings.header_timeout * 1000)),
        "--backpressure",
        str(settings.max_connections),
        "--workers-kill-timeout",
        str(math.ceil(settings.shutdown_timeout + EXIT_SLACK) + 1),
    ]


def disable_client(url: str, client_id: str) -> None:
    """Disable the run's client: its secret dies with the run (clients cannot be deleted from the CLI)."""
    executable = dxapi_command()
    if executable is None:
        return
    problem, _ = run_cli([executable, "--database-url", url, "client", "disable", client_id], dict(os.environ))
    if problem:
        log(f"could not disable client {client_id}: {problem}")


if __name__ == "__main__":
    sys.exit(main())
