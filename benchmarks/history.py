"""The benchmark's memory: one line per `make bench` run in benchmarks/results/history.jsonl, and the change of
every ratio against the previous comparable run.

Fed by `run` (the run's settings and `report.ScenarioResult`s); feeds people (the printed comparison) and the
exit status (`--fail-on-regression`). Two runs are comparable when they measured the same scenarios with the
same options that shape the main table (workers, pool size, duration, rounds, warm-up, connections, products,
load tool, self-test, credentials): a ratio from 2 s slices against one from 10 s slices says nothing.
Options of the sections after the table (key cost, change feed, export) do not count: they do not touch it.

The file lives in results/, which is not in git: it is this machine's history, and figures of another
machine (or of the same one under other load) are not comparable anyway.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.report import RESULTS_DIR, ROOT, ScenarioResult, columns

HISTORY_FILE = RESULTS_DIR / "history.jsonl"
REGRESSION_PCT = 10.0  # a ratio that fell by more than this, in %, is flagged
# run_meta keys that shape the main table: two runs are comparable only when all of them are equal
COMPARED_OPTIONS = (
    "workers",
    "pool_size",
    "duration_s",
    "rounds",
    "warmup_s",
    "connections",
    "products",
    "load_tool",
    "self_test",
    "dxapi_auth",
)


def git_commit(root: Path = ROOT) -> str:
    """The checked-out commit, "-dirty" when the tree has changes; "unknown" outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if status else "")


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (what `uptime` prints)."""
    return [round(value, 2) for value in os.getloadavg()]


def scenario_entry(result: ScenarioResult) -> dict[str, Any]:
    """What the history keeps of one scenario: the ratio and both servers' throughput, p99 and RSS."""
    entry: dict[str, Any] = {"ratio": None if result.ratio is None else round(result.ratio, 4)}
    for slot in ("reference", "dxapi"):
        m = getattr(result, slot)
        ok = m.status == "ok"
        entry[slot] = {
            "status": m.status,
            "requests_per_s": round(m.requests_per_s, 1) if ok else None,
            "rows_per_s": round(m.rows_per_s) if ok and m.rows_per_s is not None else None,
            "p99_ms": round(m.p99_ms, 2) if ok else None,
            "rss_mb": round(m.rss_mb, 1) if ok else None,
        }
    return entry


def make_entry(
    meta: Mapping[str, Any],
    results: Sequence[ScenarioResult],
    load_before: Sequence[float],
    load_after: Sequence[float],
    commit: str,
) -> dict[str, Any]:
    """One history line: when, which commit, the load of the machine, the options, every scenario."""
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "load_average_start": list(load_before),
        "load_average_end": list(load_after),
        "options": {key: meta.get(key) for key in COMPARED_OPTIONS},
        "scenarios": {r.name: scenario_entry(r) for r in results},
    }


def comparable(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> bool:
    """Same options and the same set of scenarios."""
    return earlier.get("options") == later.get("options") and set(earlier.get("scenarios", {})) == set(
        later.get("scenarios", {})
    )


def previous(history: Iterable[Mapping[str, Any]], entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The last entry of `history` comparable with `entry`, or None."""
    found = None
    for earlier in history:
        if comparable(earlier, entry):
            found = earlier
    return found


@dataclass(frozen=True, slots=True)
class Change:
    scenario: str
    before: float | None
    after: float | None

    @property
    def pct(self) -> float | None:
        """How much the ratio moved, in %; None when either run has no ratio."""
        if self.before is None or self.after is None or self.before <= 0:
            return None
        return 100.0 * (self.after / self.before - 1.0)

    def regression(self, threshold_pct: float = REGRESSION_PCT) -> bool:
        """The ratio fell by more than `threshold_pct`, or a run that had a ratio has none now."""
        if self.before is not None and self.after is None:
            return True
        change = self.pct
        return change is not None and change < -threshold_pct


def compare(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> list[Change]:
    """Per scenario of `later`, in its order: the ratio before and after."""
    before = earlier.get("scenarios", {})
    return [
        Change(name, (before.get(name) or {}).get("ratio"), scenario.get("ratio"))
        for name, scenario in later.get("scenarios", {}).items()
    ]


def render_changes(changes: Sequence[Change], earlier: Mapping[str, Any], threshold_pct: float = REGRESSION_PCT) -> str:
    """The comparison as printed after the table: one line per scenario, REGRESSION where it fell too far."""

    def ratio(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    rows = [("scenario", "ratio before", "ratio now", "change", "")]
    for c in changes:
        pct = "n/a" if c.pct is None else f"{c.pct:+.1f} %"
        flag = f"REGRESSION (fell > {threshold_pct:.0f} %)" if c.regression(threshold_pct) else ""
        rows.append((c.scenario, ratio(c.before), ratio(c.after), pct, flag))
    load = earlier.get("load_average_start") or ["?"]
    title = (
        f"against the previous comparable run: {earlier.get('time')}, commit {earlier.get('commit')}, "
        f"load average {load[0]} at its start"
    )
    return "\n".join([title, *(line.rstrip() for line in columns(rows).splitlines())])


def read_history(path: Path = HISTORY_FILE) -> list[dict[str, Any]]:
    """Every entry of the file, oldest first; lines that are not a JSON object (a cut-off write) are skipped."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def append_entry(entry: Mapping[str, Any], path: Path = HISTORY_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as output:
        output.write(orjson.dumps(entry) + b"\n")


def record(entry: Mapping[str, Any], threshold_pct: float = REGRESSION_PCT, path: Path = HISTORY_FILE) -> bool:
    """Print the comparison with the previous comparable run, then append `entry` → whether a ratio regressed."""
    earlier = previous(read_history(path), entry)
    print()
    if earlier is None:
        print(f"history: no earlier comparable run in {display(path)} (same options and scenarios); nothing to compare")
        regressed = False
    else:
        changes = compare(earlier, entry)
        print(render_changes(changes, earlier, threshold_pct))
        regressed = any(c.regression(threshold_pct) for c in changes)
    append_entry(entry, path)
    print(f"history: appended to {display(path)}")
    return regressed


def display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
