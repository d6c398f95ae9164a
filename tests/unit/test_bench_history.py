"""The benchmark history: which runs are comparable, how ratios are compared, when a regression is flagged.

No database and no server: entries are built from `ScenarioResult`s by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.history import (
    Change,
    append_entry,
    comparable,
    compare,
    make_entry,
    previous,
    read_history,
    record,
    render_changes,
)
from benchmarks.report import Measurement, ScenarioResult

META: dict[str, Any] = {
    "workers": 1,
    "pool_size": 10,
    "duration_s": 4.0,
    "rounds": 2,
    "warmup_s": 3.0,
    "connections": None,
    "products": 100_000,
    "load_tool": "wrk",
    "self_test": False,
    "dxapi_auth": "bearer token",
    "generated_at": "not an option",
}


def result(name: str, ratio: float | None, dxapi_status: str = "ok") -> ScenarioResult:
    reference = Measurement("ok", requests_per_s=1000.0, p99_ms=5.0, rss_mb=40.0)
    dxapi = Measurement(dxapi_status, requests_per_s=1000.0 * (ratio or 0), p99_ms=9.0, rss_mb=110.0)
    return ScenarioResult(name, "", 16, None, 1, reference, dxapi, ratio=ratio)


def entry(ratios: dict[str, float | None], **options: Any) -> dict[str, Any]:
    return make_entry({**META, **options}, [result(n, r) for n, r in ratios.items()], [1.0, 2.0, 3.0], [1, 2, 3], "c")


def test_entry_keeps_options_load_and_both_servers() -> None:
    made = entry({"get-by-id": 0.5})
    assert "generated_at" not in made["options"] and made["options"]["duration_s"] == 4.0
    assert made["load_average_start"] == [1.0, 2.0, 3.0]
    assert made["scenarios"]["get-by-id"] == {
        "ratio": 0.5,
        "reference": {"status": "ok", "requests_per_s": 1000.0, "rows_per_s": None, "p99_ms": 5.0, "rss_mb": 40.0},
        "dxapi": {"status": "ok", "requests_per_s": 500.0, "rows_per_s": None, "p99_ms": 9.0, "rss_mb": 110.0},
    }


def test_runs_with_other_options_or_scenarios_are_not_comparable() -> None:
    base = entry({"get-by-id": 0.5, "patch-one": 0.4})
    assert comparable(base, entry({"get-by-id": 0.3, "patch-one": 0.9}))
    assert not comparable(base, entry({"get-by-id": 0.5, "patch-one": 0.4}, duration_s=10.0))
    assert not comparable(base, entry({"get-by-id": 0.5}))
    assert not comparable(base, entry({"get-by-id": 0.5, "patch-one": 0.4, "post-batch": 0.3}))


def test_previous_is_the_last_comparable_entry() -> None:
    first, other, second = entry({"a": 0.1}), entry({"a": 0.2}, workers=2), entry({"a": 0.3})
    assert previous([first, other, second], entry({"a": 0.9})) is second
    assert previous([other], entry({"a": 0.9})) is None
    assert previous([], entry({"a": 0.9})) is None


def test_a_fall_of_more_than_ten_percent_is_a_regression() -> None:
    changes = compare(
        entry({"down-a-lot": 0.50, "down-a-little": 0.50, "up": 0.50, "lost": 0.50, "new": None}),
        entry({"down-a-lot": 0.44, "down-a-little": 0.46, "up": 0.70, "lost": None, "new": 0.4}),
    )
    found = {c.scenario: c for c in changes}
    assert round(found["down-a-lot"].pct or 0, 1) == -12.0
    assert found["down-a-lot"].regression()
    assert not found["down-a-little"].regression()  # -8 %
    assert not found["up"].regression()
    assert found["lost"].regression() and found["lost"].pct is None  # measured before, not now
    assert not found["new"].regression()
    assert found["down-a-little"].regression(threshold_pct=5.0)


def test_exactly_ten_percent_is_not_flagged() -> None:
    assert not Change("x", 0.5, 0.45).regression()


def test_rendered_lines_flag_regressions_only() -> None:
    earlier = entry({"get-by-id": 0.50, "patch-one": 0.40})
    text = render_changes(compare(earlier, entry({"get-by-id": 0.40, "patch-one": 0.41})), earlier)
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert "-20.0 %" in lines["get-by-id"] and "REGRESSION" in lines["get-by-id"]
    assert "+2.5 %" in lines["patch-one"] and "REGRESSION" not in lines["patch-one"]
    assert "commit c" in text.splitlines()[0]


def test_record_compares_with_the_file_then_appends(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "history.jsonl"
    assert not record(entry({"get-by-id": 0.5}), path=path)
    assert "nothing to compare" in capsys.readouterr().out
    assert record(entry({"get-by-id": 0.4}), path=path)
    assert "REGRESSION" in capsys.readouterr().out
    assert [e["scenarios"]["get-by-id"]["ratio"] for e in read_history(path)] == [0.5, 0.4]


def test_a_cut_off_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append_entry(entry({"a": 0.5}), path)
    with path.open("ab") as output:
        output.write(b'{"time": "2026-')
    assert len(read_history(path)) == 1
    assert read_history(tmp_path / "missing.jsonl") == []
