"""Benchmark results: the measured figures per scenario, the printed table and benchmarks/results/latest.json.

Fed by `run`; feeds people (stdout) and tools (the JSON file).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


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


PHASES = ("off", "on")  # phase i of a cost comparison is PHASES[i % 2]: without, with what it measures
FEED_LABELS = ("off", "on")  # the change feed of the products (capture cost)
KEY_LABELS = ("no key", "key")  # a fresh Idempotency-Key on every request (key cost)


@dataclass
class Phase:
    """One write scenario on dxapi without ("off") or with ("on") what a cost comparison measures: the
    products' change feed (capture cost) or an Idempotency-Key on every request (key cost)."""

    variant: str  # "off" or "on"
    dxapi: Measurement
    cpu_server_s: float = 0.0  # CPU seconds of dxapi's processes during the measured load (and its settling)
    cpu_database_s: float = 0.0  # … and of the PostgreSQL backends serving the benchmark database
    units: int = 0  # rows (batch writes: counted in the table afterwards) or successful requests

    @property
    def cpu_us(self) -> float | None:
        """CPU microseconds per row or request, dxapi and PostgreSQL together; None when nothing was done."""
        return 1e6 * (self.cpu_server_s + self.cpu_database_s) / self.units if self.units else None

    @property
    def database_us(self) -> float | None:
        return 1e6 * self.cpu_database_s / self.units if self.units else None


@dataclass
class Cost:
    """What something costs one write scenario: phases off, on, off, …, off, same data, same run.

    Overhead is what each row (or request) costs more "on", in %: 100 x (on / off - 1), of the wall time per
    row (1 / throughput) and of the CPU time per row. Each "on" phase lies between two "off" phases and is
    compared with their mean, so a machine that gets steadily faster or slower moves both sides alike;
    "overall" compares the mean of the ons with the mean of the offs.
    """

    scenario: str
    unit: str  # "rows/s" or "req/s": what `throughput` counts
    goal_pct: float | None  # the most it may cost (issue 11: capture 30 % on post-batch; issue 12: key 15 %)
    phases: list[Phase] = field(default_factory=list)

    def costs(self, cpu: bool) -> list[float | None]:
        """Per phase, microseconds per row or request: of CPU, or of wall time (1 / throughput)."""
        if cpu:
            return [p.cpu_us for p in self.phases]
        return [1e6 / rate if rate else None for rate in (throughput(p.dxapi) for p in self.phases)]

    def overheads(self, cpu: bool = False) -> list[float | None]:
        """Per "on" phase: its cost against the mean of the "off" phases next to it."""
        costs, found = self.costs(cpu), []
        for index, phase in enumerate(self.phases):
            if phase.variant == "on":
                around = [i for i in (index - 1, index + 1) if 0 <= i < len(self.phases)]
                offs = [costs[i] for i in around if self.phases[i].variant == "off"]
                found.append(overhead(mean(offs), costs[index]))
        return found

    def overall(self, cpu: bool = False) -> float | None:
        costs = self.costs(cpu)
        ons = [c for c, p in zip(costs, self.phases, strict=True) if p.variant == "on"]
        offs = [c for c, p in zip(costs, self.phases, strict=True) if p.variant == "off"]
        return overhead(mean(offs), mean(ons))

    def meets_goal(self, cpu: bool = False) -> bool | None:
        found = self.overall(cpu)
        return None if self.goal_pct is None or found is None else found <= self.goal_pct

    def summary(self) -> dict[str, Any]:
        """What latest.json holds besides the phases' measurements."""
        return {
            "overhead_pct": self.overall(),
            "overhead_pct_per_on_phase": self.overheads(),
            "cpu_overhead_pct": self.overall(cpu=True),
            "cpu_overhead_pct_per_on_phase": self.overheads(cpu=True),
            "throughput_per_phase": [throughput(p.dxapi) for p in self.phases],
            "cpu_us_per_phase": [p.cpu_us for p in self.phases],
            "database_cpu_us_per_phase": [p.database_us for p in self.phases],
            "meets_goal": self.meets_goal(),
            "meets_goal_cpu": self.meets_goal(cpu=True),
        }


def mean(values: Sequence[float | None]) -> float | None:
    """The mean, or None if a value is missing (a phase not measured) or there is none."""
    if not values or any(v is None for v in values):
        return None
    return sum(v or 0.0 for v in values) / len(values)


@dataclass
class FeedPull:
    """One client reading the whole table from the start, page after page, through HTTP."""

    read: str  # "_changes" (the feed) or "list page[cursor]" (keyset list, for comparison)
    limit: int  # page[limit]
    pages: int = 0
    rows: int = 0  # items received (feed: upserts + deletes)
    distinct_ids: int = 0
    deletes: int = 0
    seconds: float = 0.0  # first request sent → last answer read
    rows_per_s: float = 0.0
    bytes: int = 0  # response bodies
    waits: int = 0  # empty "hasMore" pages waited out (Retry-After: a transaction still running)


@dataclass
class FeedSection:
    """The change-feed figures of a run: capture cost per write scenario and feed pull throughput."""

    capture: list[Cost] = field(default_factory=list)
    pulls: list[FeedPull] = field(default_factory=list)
    expected_rows: int | None = None  # live rows of the table when it was pulled
    switch_s: list[float] = field(default_factory=list)  # seconds per feed switch (saved + workers reloaded)
    seconds: float = 0.0  # the whole section, switches, pulls and phases
    problem: str | None = None  # why (part of) the section is missing
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "capture": [{**asdict(c), **c.summary()} for c in self.capture],
            "pulls": [asdict(p) for p in self.pulls],
            "pull_medians": pull_medians(self.pulls),
            "expected_rows": self.expected_rows,
            "switch_s": [round(s, 2) for s in self.switch_s],
            "seconds": round(self.seconds, 1),
            "problem": self.problem,
            "warnings": self.warnings,
        }


@dataclass
class KeySection:
    """What an Idempotency-Key costs the write scenarios: phases without and with a fresh key per request."""

    costs: list[Cost] = field(default_factory=list)
    seconds: float = 0.0
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "costs": [{**asdict(c), **c.summary()} for c in self.costs],
            "seconds": round(self.seconds, 1),
            "problem": self.problem,
            "warnings": self.warnings,
        }


def throughput(m: Measurement) -> float | None:
    """rows/s for batch writes, req/s otherwise; None when not measured."""
    if m.status != "ok":
        return None
    return m.rows_per_s if m.rows_per_s is not None else m.requests_per_s


def overhead(off: float | None, on: float | None) -> float | None:
    """How much more `on` costs than `off`, in %."""
    if off is None or on is None or off <= 0:
        return None
    return 100.0 * (on / off - 1.0)


def pull_medians(pulls: Sequence[FeedPull]) -> list[dict[str, Any]]:
    """Per (read, limit), feed first: the median rows/s of its repeats, every repeat's rows/s, pages, rows."""
    groups: dict[tuple[str, int], list[FeedPull]] = {}
    for pull in pulls:
        groups.setdefault((pull.read, pull.limit), []).append(pull)
    return [
        {
            "read": read,
            "limit": limit,
            "pages": max(p.pages for p in group),
            "rows": max(p.rows for p in group),
            "waits": sum(p.waits for p in group),
            "rows_per_s": statistics.median(p.rows_per_s for p in group),
            "rows_per_s_each": [round(p.rows_per_s) for p in group],
        }
        for (read, limit), group in sorted(groups.items(), key=lambda kv: (kv[0][0] != "_changes", kv[0][1]))
    ]


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
    return columns(rows)


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells → aligned text: the first column left, the others right, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(t.ljust(w) if i == 0 else t.rjust(w) for i, (t, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pct(value: float | None) -> str:
    return fmt(value, "{:+.1f} %")


def render_costs(title: str, labels: tuple[str, str], costs: Sequence[Cost]) -> str:
    """Per scenario: dxapi's throughput and CPU per row in each phase (off, on, off, …), and the overheads."""
    phases = max(len(c.phases) for c in costs)
    header = (title, *(labels[i % 2] for i in range(phases)), f"overhead per {labels[1]}", "overall", "goal")
    rows = [header]
    verdicts = {True: " ok", False: " MISS", None: ""}
    padding = [""] * phases
    for c in costs:
        per = c.unit.split("/")[0].rstrip("s")  # "row", "req"
        lines = (
            (c.unit, [fmt(throughput(p.dxapi)) for p in c.phases], False),
            (f"CPU us/{per}", [fmt(p.cpu_us) for p in c.phases], True),
        )
        for label, values, cpu in lines:
            goal = "-" if c.goal_pct is None else f"<={c.goal_pct:.0f} %{verdicts[c.meets_goal(cpu)]}"
            each = " ".join(pct(o) for o in c.overheads(cpu))
            rows.append((f"{c.scenario} {label}", *(values + padding)[:phases], each, pct(c.overall(cpu)), goal))
        database = [fmt(p.database_us) for p in c.phases]
        rows.append(("  of which PostgreSQL", *(database + padding)[:phases], "", "", ""))
    return columns(rows)


def render_pulls(section: FeedSection) -> str:
    rows = [("full read, one client", "page[limit]", "pages", "rows", "rows/s (median)", "each pull rows/s")]
    for m in pull_medians(section.pulls):
        each = " ".join(f"{r:,}" for r in m["rows_per_s_each"])
        waits = f" ({m['waits']} waits)" if m["waits"] else ""
        rows.append(
            (m["read"], f"{m['limit']:,}", f"{m['pages']:,}", f"{m['rows']:,}", fmt(m["rows_per_s"]), each + waits)
        )
    return columns(rows)


def report_feed(section: FeedSection) -> None:
    print()
    if section.capture:
        print("Change capture: dxapi's writes with the products' feed off and on (triggers record every write), phases")
        print(
            "in this order. Overhead = what a row (request) costs more with the feed on, 100 x (on / off - 1), in wall"
        )
        print("time (1 / throughput) and in CPU of dxapi + its PostgreSQL backends; each 'on' against the mean of the")
        print("'off' phases around it, overall the mean of the ons against the mean of the offs.")
        print(render_costs("capture cost (dxapi)", FEED_LABELS, section.capture))
    if section.pulls:
        rows = f"{section.expected_rows:,}" if section.expected_rows is not None else "?"
        print(f"Feed pull: the whole products table ({rows} live rows) from the beginning through HTTP.")
        print(render_pulls(section))
    switches = ", ".join(f"{s:.1f}" for s in section.switch_s) or "none"
    print(
        f"feed switches (configuration saved, dxapi reloaded): {switches} s; the section took {section.seconds:.0f} s"
    )
    for warning in section.warnings:
        print(f"change feed: WARNING {warning}")
    if section.problem:
        print(f"change feed: {section.problem}")


def report_keys(section: KeySection) -> None:
    print()
    if section.costs:
        print("Idempotency-Key: dxapi's writes without a key and with a fresh key on every request (checked and")
        print("recorded in the write's transaction), phases in this order. Overhead = what a row (request) costs")
        print("more with a key, 100 x (key / no key - 1), in wall time (1 / throughput) and in CPU of dxapi + its")
        print("PostgreSQL backends; each 'key' phase against the mean of the phases around it, overall the mean of")
        print("the keyed phases against the mean of the others.")
        print(render_costs("key cost (dxapi)", KEY_LABELS, section.costs))
    print(f"key cost: the section took {section.seconds:.0f} s")
    for warning in section.warnings:
        print(f"key cost: WARNING {warning}")
    if section.problem:
        print(f"key cost: {section.problem}")


def report(
    results: list[ScenarioResult],
    meta: dict[str, Any],
    self_test: bool,
    feed: FeedSection | None = None,
    keys: KeySection | None = None,
) -> None:
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
            goal = "" if slot == "reference" else " (goal <= 80 MB)"
            print(f"{label}: peak RSS of one worker process {worker:.0f} MB{goal}")
    print(
        f"load tool: {meta['load_tool']}; {meta['duration_s']} s per server and scenario in {meta['rounds']} "
        f"alternating slices after {meta['warmup_s']} s warm-up; {meta['workers']} worker(s) each; "
        f"{meta['cpus']} CPUs shared with the load generator"
    )
    if "dxapi_auth" in meta:
        print(f"dxapi credentials: {meta['dxapi_auth']}")
    if keys is not None:
        report_keys(keys)
    if feed is not None:
        report_feed(feed)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    path.write_bytes(
        orjson.dumps(
            {
                **meta,
                "scenarios": [asdict(r) for r in results],
                "idempotency_key": keys.as_json() if keys else None,
                "feed": feed.as_json() if feed else None,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    print(f"written to {path.relative_to(ROOT)}")
