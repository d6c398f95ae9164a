"""Benchmark results: the measured figures per scenario, the printed table and benchmarks/results/latest.json.

Fed by `run`; feeds people (stdout) and tools (the JSON file).
"""

from __future__ import annotations

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
    if "dxapi_auth" in meta:
        print(f"dxapi credentials: {meta['dxapi_auth']}")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    path.write_bytes(orjson.dumps({**meta, "scenarios": [asdict(r) for r in results]}, option=orjson.OPT_INDENT_2))
    print(f"written to {path.relative_to(ROOT)}")
