"""The /token section of the benchmark: its arithmetic, the request body, the worker's command, the verdicts.

No database and no server.
"""

from __future__ import annotations

import urllib.parse

import pytest

from benchmarks.tokens import (
    GOAL_P99_MS,
    NEW_PREFIX,
    PROVEN_PREFIX,
    SHARED_CLIENT,
    TokenLoad,
    TokenSection,
    client_ids,
    expected_repeats,
    section_command,
    token_form,
)


def test_expected_repeats() -> None:
    assert expected_repeats(0, 20_000) == 0.0
    assert expected_repeats(1, 20_000) == pytest.approx(0.0)
    assert expected_repeats(2, 1) == pytest.approx(1.0)  # one client: every pick after the first repeats
    assert expected_repeats(100, 20_000) == pytest.approx(100 * 99 / 2 / 20_000, rel=0.01)


def test_token_form_keeps_the_placeholder_and_encodes_the_rest() -> None:
    body = token_form(f"{NEW_PREFIX}{{id}}", "dxs_a+b/c")
    assert f"client_id={NEW_PREFIX}{{id}}" in body
    assert dict(urllib.parse.parse_qsl(body.replace("{id}", "7"))) == {
        "grant_type": "client_credentials",
        "client_id": f"{NEW_PREFIX}7",
        "client_secret": "dxs_a+b/c",
    }


def test_client_ids_do_not_overlap() -> None:
    ids = client_ids(20, 100)
    assert len(ids) == len(set(ids)) == 121
    assert ids[0] == SHARED_CLIENT and f"{PROVEN_PREFIX}20" in ids and f"{NEW_PREFIX}100" in ids
    assert all(len(i) <= 64 for i in client_ids(20, 20_000))  # dx_client.client_id is String(64)


def test_section_command_takes_its_own_port_and_one_worker() -> None:
    command = ["dxapi", "--database-url", "u", "serve", "--host", "127.0.0.1", "--port", "8101", "--workers", "4"]
    assert section_command(command, 9000)[-4:] == ["--port", "9000", "--workers", "1"]
    assert command[-3] == "8101"  # the run's command stays as it was


def test_goal_needs_every_answer_2xx() -> None:
    fast = TokenLoad("token-new", "", 20, p99_ms=GOAL_P99_MS, requests=10)
    assert fast.meets_goal() is True
    assert TokenLoad("token-shared", "", 20, p99_ms=20.0, requests=10, non_2xx=1).meets_goal() is False
    assert TokenLoad("token-new", "", 20, p99_ms=GOAL_P99_MS + 1, requests=10).meets_goal() is False
    assert TokenLoad("get-by-id-before", "", 16, p99_ms=1.0, requests=10).meets_goal() is None


def test_reads_change_against_the_mean_of_before_and_after() -> None:
    section = TokenSection(20, 3.0)
    section.loads = [
        TokenLoad("get-by-id-before", "", 16, requests_per_s=3000.0, p50_ms=4.0, p99_ms=10.0, requests=9000),
        TokenLoad("get-by-id-during", "", 16, requests_per_s=1000.0, p50_ms=12.0, p99_ms=40.0, requests=3000),
        TokenLoad("get-by-id-after", "", 16, requests_per_s=1000.0, p50_ms=8.0, p99_ms=30.0, requests=3000),
        TokenLoad("token-new", "", 20, requests=50),
        TokenLoad("token-new-with-reads", "", 20, requests=30),
    ]
    change = section.reads_change()
    assert change["requests_per_s"] == pytest.approx(-50.0)
    assert change["p50_ms"] == pytest.approx(100.0)
    assert change["p99_ms"] == pytest.approx(100.0)
    assert section.new_client_requests() == 80
    assert TokenSection(20, 3.0).reads_change() == dict.fromkeys(("p50_ms", "p99_ms", "requests_per_s"))
