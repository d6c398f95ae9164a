"""Rate limits through the real HTTP stack, on every backend (and on Redis): the request past a limit is refused
with exact headers, the window ends and admits again, per-entity limits, a client's own limit from the CLI,
a refused write writes nothing, no limit costs no header, and a store that is down admits everything.

Each test serves with a server of its own (``tests.auth.conftest.serve``: it starts with no counted request)
and counts with a client of its own, so no other test's requests share its counters.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dxapi import cli
from dxapi.settings import Settings
from tests.auth.conftest import access_token, bearer, client_token, new_client, serve, settings_for
from tests.conftest import Backend, _free_port
from tests.limits.conftest import API, REDIS_URL

ITEM = f"{API}/products/1"
T = re.compile(r'"(principal|entity)";r=(\d+);t=(\d+)')


def _limited(backend: Backend, request: pytest.FixtureRequest, store: str, **changes: Any) -> Settings:
    """The backend's settings with ``changes``, counting in the database or (``store == "redis"``) in Redis."""
    if store == "redis":
        changes |= {"redis_url": REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}
    return settings_for(backend, principal_cache_seconds=0, **changes)


def _client(backend: Backend, base_url: str, scopes: str = "*:read *:write") -> httpx.Client:
    token = access_token(client_token(base_url, *new_client(backend, scopes, name="limits suite")))
    return httpx.Client(base_url=base_url, timeout=30, headers=bearer(token))


def _standing(response: httpx.Response) -> list[tuple[str, int, int]]:
    """``RateLimit`` as (policy, remaining, reset) per policy."""
    return [(p, int(r), int(t)) for p, r, t in T.findall(response.headers.get("ratelimit", ""))]


@pytest.mark.parametrize("store", ["database", "redis"])
def test_the_request_past_the_limit_is_refused_with_the_headers(
    backend: Backend, request: pytest.FixtureRequest, store: str
) -> None:
    with serve(_limited(backend, request, store, rate_limit="3/minute")) as base_url, _client(backend, base_url) as api:
        answers = [api.get(ITEM), api.get(ITEM), api.get(f"{API}/products/99999999")]
        assert [a.status_code for a in answers] == [200, 200, 404]  # an error after the count carries it too
        for answer, remaining in zip(answers, [2, 1, 0], strict=True):
            assert answer.headers["ratelimit-policy"] == '"principal";q=3;w=60'
            [(policy, left, reset)] = _standing(answer)
            assert (policy, left) == ("principal", remaining) and 58 <= reset <= 60, answer.headers
        refused = api.get(ITEM)
        assert refused.status_code == 429, refused.text
        reset = int(refused.headers["retry-after"])
        assert 57 <= reset <= 60
        assert refused.headers["ratelimit-policy"] == '"principal";q=3;w=60'
        assert refused.headers["ratelimit"] == f'"principal";r=0;t={reset}'
        assert refused.headers["x-dxapi-error-code"] == "4291"
        assert refused.json() == [
            {
                "code": "4291",
                "status": 429,
                "message": "Too many requests: the limit is 3 per 60 seconds for these credentials. "
                f"Retry in {reset} seconds.",
                "requestId": refused.headers["x-request-id"],
            }
        ]
        assert api.get(f"{API}/countries").status_code == 429  # the limit is the principal's, on every entity
        with _client(backend, base_url) as other:
            assert other.get(ITEM).status_code == 200  # another principal counts on its own
    # the harness's server has no limit: no header, nothing counted
    plain = backend.client.get(ITEM)
    assert plain.status_code == 200 and "ratelimit" not in plain.headers and "ratelimit-policy" not in plain.headers


def test_the_window_ends_and_admits_again(backend: Backend, request: pytest.FixtureRequest) -> None:
    with (
        serve(_limited(backend, request, "database", rate_limit="2/second")) as base_url,
        _client(backend, base_url) as api,
    ):
        assert [api.get(ITEM).status_code for _ in range(2)] == [200, 200]
        refused = api.get(ITEM)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        time.sleep(1.05)
        again = api.get(ITEM)
        assert again.status_code == 200
        assert _standing(again)[0][:2] == ("principal", 1)


def test_a_limit_per_entity_on_top_of_the_principals(backend: Backend, request: pytest.FixtureRequest) -> None:
    settings = _limited(backend, request, "database", rate_limit="100/minute", rate_limit_per_entity="2/30s")
    with serve(settings) as base_url, _client(backend, base_url) as api:
        first = api.get(ITEM)
        assert first.headers["ratelimit-policy"] == '"principal";q=100;w=60, "entity";q=2;w=30'
        assert [(p, r) for p, r, _ in _standing(first)] == [("principal", 99), ("entity", 1)]
        assert api.get(f"{API}/products").status_code == 200
        refused = api.get(ITEM)
        assert refused.status_code == 429
        reset = int(refused.headers["retry-after"])
        assert 28 <= reset <= 30
        assert refused.json()[0]["message"] == (
            f"Too many requests: the limit is 2 per 30 seconds for these credentials on this entity. "
            f"Retry in {reset} seconds."
        )
        countries = api.get(f"{API}/countries")  # another entity has a count of its own
        assert countries.status_code == 200
        assert [(p, r) for p, r, _ in _standing(countries)] == [("principal", 96), ("entity", 1)]


def test_a_refused_write_writes_nothing(backend: Backend, request: pytest.FixtureRequest) -> None:
    before = backend.sql("SELECT count(*) FROM shop_country")[0][0]
    row = {"iso2Code": "QZ", "iso3Code": "QZQ", "name": "Ratelimitland"}
    with (
        serve(_limited(backend, request, "database", rate_limit="1/minute")) as base_url,
        _client(backend, base_url) as api,
    ):
        assert api.get(ITEM).status_code == 200
        for method, path, body in [
            ("POST", f"{API}/countries", {"data": [row]}),
            ("PATCH", f"{API}/countries/1", {"data": {"name": "Renamed"}}),
            ("DELETE", f"{API}/countries/1", None),
        ]:
            refused = api.request(method, path, json=body)
            assert refused.status_code == 429 and refused.json()[0]["code"] == "4291", (method, refused.text)
    assert backend.sql("SELECT count(*) FROM shop_country")[0][0] == before
    assert backend.sql("SELECT count(*) FROM shop_country WHERE iso2_code = 'QZ' OR name = 'Renamed'")[0][0] == 0


def _dxapi(backend: Backend, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["--database-url", backend.url, "client", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_clients_own_limit_from_the_cli(
    backend: Backend, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _dxapi(backend, capsys, "add", "limited", "--scopes", "*:read", "--rate-limit", "2/minute")
    assert code == 0, out
    client_id, secret = re.findall(r"client_(?:id|secret)=(\S+)", out)
    with serve(_limited(backend, request, "database", rate_limit="50/minute")) as base_url:
        api = httpx.Client(
            base_url=base_url, timeout=30, headers=bearer(access_token(client_token(base_url, client_id, secret)))
        )
        with api:
            assert [api.get(ITEM).status_code for _ in range(3)] == [200, 200, 429]
            assert api.get(ITEM).headers["ratelimit-policy"] == '"principal";q=2;w=60'
            assert _dxapi(backend, capsys, "rate-limit", client_id, "default")[:2] == (
                0,
                f"client {client_id} rate limit: the default (DXAPI_RATE_LIMIT)\n",
            )
            back = api.get(ITEM)  # the same window, now against the default
            assert back.status_code == 200 and back.headers["ratelimit-policy"] == '"principal";q=50;w=60'
            assert _dxapi(backend, capsys, "rate-limit", client_id, "unlimited")[0] == 0
            free = api.get(ITEM)
            assert free.status_code == 200 and "ratelimit" not in free.headers
    code, _, err = _dxapi(backend, capsys, "rate-limit", client_id, "12/fortnight")
    assert code == 1 and "`12/fortnight` is not a rate" in err
    stored = backend.sql(sa.text("SELECT rate_limit FROM dx_client WHERE client_id = :id"), id=client_id)
    assert [row[0] for row in stored] == ["unlimited"]
    assert _dxapi(backend, capsys, "rate-limit", "dxc_nobody", "5/minute")[0] == 1


def test_a_store_that_is_down_admits_everything(
    backend: Backend, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail-open: Redis on a closed port; requests are answered as without a limit, /token still issues, and the
    outage is a warning (never a 500, never an ERROR)."""
    settings = settings_for(backend, rate_limit="1/minute", redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    with caplog.at_level(logging.WARNING, logger="dxapi.limits"), serve(settings) as base_url:
        with _client(backend, base_url) as api:
            answers = [api.get(ITEM) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert all("ratelimit" not in a.headers for a in answers)
    assert any("unavailable, requests are admitted uncounted" in r.getMessage() for r in caplog.records)
