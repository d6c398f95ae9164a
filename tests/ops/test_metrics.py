"""``GET /metrics`` (DXAPI_METRICS): parsed with ``prometheus_client.parser``, the counters moving exactly with
the requests made, on every backend through the real HTTP stack.

The pool sampler's numbers are checked against real pools held from the test: SQLAlchemy's on every backend,
asyncpg's on PostgreSQL — both are read from the libraries' queues (``dxapi.metrics._waiting``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dxapi.db import create_driver_pool, create_engine
from dxapi.metrics import driver_pool, sqlalchemy_pool
from tests.conftest import BACKENDS, Backend, _start_server, config_field, only_on, serving, unconfigure
from tests.ops.conftest import METRICS_TOKEN, Observed, samples, value

PREFIX = "/dynamic-entity"
SERVERS = [name for name in BACKENDS if name != "sqlite"]
ALIAS = "ops-items"
META = sa.MetaData()
sa.Table(
    "ops_item",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(40), nullable=False),
)
CONFIG = [
    {
        "tableName": "ops_item",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "changeFeed": True,
            "fields": [config_field("id", "integer", isCreatable=False, isEditable=False), config_field("name")],
        },
    }
]


@pytest.fixture(scope="module")
def items(observed: Observed) -> Iterator[Observed]:
    with serving(observed.backend, META, CONFIG):
        _wait_until_served(observed.client)
        yield observed


def _wait_until_served(client: httpx.Client) -> None:
    """The metrics server sees the new entity within its reload interval; wait for it, boundedly."""
    deadline = time.monotonic() + 10
    while client.get(f"{PREFIX}/{ALIAS}").status_code != 200:
        assert time.monotonic() < deadline, "the metrics server never served the new entity"
        time.sleep(0.05)


def _post(client: httpx.Client, *names: str) -> list[int]:
    response = client.post(f"{PREFIX}/{ALIAS}", json={"data": [{"name": name} for name in names]})
    assert response.status_code == 201, response.text
    return [row["id"] for row in response.json()["data"]]


def test_metrics_are_off_unless_enabled(backend: Backend) -> None:
    response = httpx.get(f"{backend.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 404
    assert response.headers["x-dxapi-error-code"] == "007"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x"])
def test_metrics_refuse_a_missing_or_wrong_token(observed: Observed, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{observed.base_url}/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["x-dxapi-error-code"] == "4011"
    assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "dxapi_requests_total" not in response.text


def test_counters_move_exactly_with_the_requests(items: Observed) -> None:
    client = items.client
    before = items.scrape()
    ids = _post(client, "a", "b", "c", "d")
    for identifier in ids[:3]:
        assert client.get(f"{PREFIX}/{ALIAS}/{identifier}").status_code == 200
    listed = client.get(f"{PREFIX}/{ALIAS}", params={"page[limit]": "2"})
    assert listed.status_code == 200 and len(listed.json()["data"]) == 2
    assert client.get(f"{PREFIX}/no-such-alias").status_code == 404
    after = items.scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dxapi_requests_total", entity=ALIAS, method="GET", status="2xx") == 4
    assert delta("dxapi_requests_total", entity=ALIAS, method="POST", status="2xx") == 1
    # An unknown alias is no label of its own: the URL's text never becomes a series.
    assert delta("dxapi_requests_total", entity="", method="GET", status="4xx") == 1
    assert not any(dict(labels).get("entity") == "no-such-alias" for _, labels in after)
    assert delta("dxapi_request_duration_seconds_count", entity=ALIAS, method="GET") == 4
    assert delta("dxapi_request_duration_seconds_sum", entity=ALIAS, method="GET") > 0
    assert delta("dxapi_rows_read_total", entity=ALIAS) == 3 + 2
    assert delta("dxapi_rows_written_total", entity=ALIAS) == 4
    assert delta("dxapi_batch_items_count", entity=ALIAS, method="POST") == 1
    assert delta("dxapi_batch_items_sum", entity=ALIAS, method="POST") == 4
    assert delta("dxapi_batch_items_bucket", entity=ALIAS, method="POST", le="5.0") == 1
    assert delta("dxapi_batch_items_bucket", entity=ALIAS, method="POST", le="2.0") == 0


def test_a_configuration_reload_is_counted_and_its_version_shown(items: Observed) -> None:
    before = items.scrape()
    version = items.backend.with_engine(lambda engine: unconfigure(engine, []))  # the version moves, nothing else
    deadline = time.monotonic() + 5
    while True:
        after = items.scrape()
        if value(after, "dxapi_config_version") == version:
            break
        assert time.monotonic() < deadline, f"version {version} never shown: {value(after, 'dxapi_config_version')}"
        time.sleep(0.2)
    assert value(after, "dxapi_config_reloads_total") >= value(before, "dxapi_config_reloads_total") + 1
    assert value(after, "dxapi_config_reload_failures_total") == value(before, "dxapi_config_reload_failures_total")


def test_the_change_feed_lag_is_the_age_of_what_a_reader_has_not_caught_up_with(items: Observed) -> None:
    client = items.client
    head = client.get(f"{PREFIX}/{ALIAS}/_changes", params={"since": "now"}).json()["meta"]["cursor"]
    _post(client, "x", "y", "z")
    time.sleep(1.2)
    first = client.get(f"{PREFIX}/{ALIAS}/_changes", params={"since": head, "page[limit]": "1"})
    assert first.status_code == 200 and first.json()["meta"]["hasMore"] is True
    behind = value(items.scrape(), "dxapi_change_feed_lag_seconds", entity=ALIAS)
    assert 1.0 <= behind < 60, behind
    rest = client.get(f"{PREFIX}/{ALIAS}/_changes", params={"since": first.json()["meta"]["cursor"]})
    assert rest.status_code == 200 and rest.json()["meta"]["hasMore"] is False
    assert value(items.scrape(), "dxapi_change_feed_lag_seconds", entity=ALIAS) == 0


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_the_pools_are_sampled(items: Observed) -> None:
    assert items.client.get(f"{PREFIX}/{ALIAS}").status_code == 200
    deadline = time.monotonic() + 5
    while value(scraped := items.scrape(), "dxapi_db_pool_open", pool="control") < 1:
        assert time.monotonic() < deadline, "no pool sample within 5 s"
        time.sleep(0.2)
    # PostgreSQL reads go through the driver's pool; the request pool opens its first connection for a write.
    read_pool = "driver" if items.backend.name == "postgresql" else "requests"
    assert value(scraped, "dxapi_db_pool_open", pool=read_pool) >= 1
    assert value(scraped, "dxapi_db_pool_waiting", pool=read_pool) == 0
    assert ("dxapi_db_pool_in_use", frozenset({("pool", "requests")})) in scraped


@only_on("sqlite")
def test_sqlite_has_no_pool_to_show(items: Observed) -> None:
    """SQLite opens a connection per use (NullPool): no pool series, rather than zeros that look like idle."""
    assert items.client.get(f"{PREFIX}/{ALIAS}").status_code == 200
    deadline = time.monotonic() + 5
    while value(scraped := items.scrape(), "dxapi_config_version") == 0:  # a sample has been taken
        assert time.monotonic() < deadline, "no sample within 5 s"
        time.sleep(0.2)
    assert not [name for name, _ in scraped if name.startswith("dxapi_db_pool")]


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_request_waiting_for_a_connection_is_seen_waiting(backend: Backend) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        engine = create_engine(backend.url, pool_size=1, pool_timeout=10)
        try:
            async with engine.connect() as held:
                await held.execute(sa.text("SELECT 1"))
                waiter = asyncio.create_task(_connect_once(engine))
                await asyncio.sleep(0.2)
                waiting = sqlalchemy_pool("requests", engine.pool)
            await waiter
            done = sqlalchemy_pool("requests", engine.pool)
            assert waiting is not None and done is not None
            return held, waiting, done
        finally:
            await engine.dispose()

    _, waiting, done = backend.run(scenario())
    assert (waiting.in_use, waiting.waiting) == (1, 1)
    assert (done.in_use, done.waiting) == (0, 0)
    assert done.open == 1


@only_on("postgresql")
def test_a_read_waiting_for_a_driver_connection_is_seen_waiting(backend: Backend) -> None:
    async def scenario() -> tuple[Any, Any]:
        pool = await create_driver_pool(backend.url, size=1, timeout=10)
        assert pool is not None
        try:
            async with pool.acquire() as held:
                await held.fetchval("SELECT 1")
                waiter = asyncio.create_task(_acquire_once(pool))
                await asyncio.sleep(0.2)
                waiting = driver_pool("driver", pool.pool)
            await waiter
            return waiting, driver_pool("driver", pool.pool)
        finally:
            await pool.close()

    waiting, done = backend.run(scenario())
    assert (waiting.in_use, waiting.open, waiting.waiting) == (1, 1, 1)
    assert (done.in_use, done.waiting) == (0, 0)


async def _connect_once(engine: Any) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def _acquire_once(pool: Any) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")


def test_rate_limit_refusals_are_counted(backend: Backend) -> None:
    """A server of its own with a short limit (the counters are shared through the database: no other test
    limits this principal, and the window is over before the module's next run)."""
    settings = backend.settings.model_copy(
        update={"metrics": True, "metrics_token": SecretStr(METRICS_TOKEN), "rate_limit": "3/10s"}
    )
    server, thread, base_url = _start_server(settings)
    try:
        with httpx.Client(base_url=base_url, headers={"Authorization": backend.client.headers["authorization"]}) as c:
            statuses = [c.get(f"{PREFIX}/countries", params={"page[limit]": "1"}).status_code for _ in range(5)]
            scraped = samples(
                httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert statuses == [200, 200, 200, 429, 429]
    assert value(scraped, "dxapi_rate_limited_total", scope="principal") == 2
    assert value(scraped, "dxapi_requests_total", entity="countries", method="GET", status="2xx") == 3
