"""``/health/ready`` tells anonymous probes only counts, and reports a schema drift as soon as requests meet it.

* An anonymous caller (a load balancer) gets ``status``, ``snapshotVersion`` and counts — no alias, table or
  column name; an authenticated operator gets the problems, for the entities its scopes cover.
* A configured column dropped with plain SQL (no version bump): the first request that meets it answers
  503/5004, and readiness asked right after lists the entity as unavailable (with detail for an operator, as a
  count for anonymous callers); later requests answer 5003. Once the column is back, the entity serves again
  without a restart or a version bump.

The table of this module (``hh_gizmo``) and its entity belong to it alone and are removed afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dxapi.auth.principals import add_client
from dxapi.registry.tables import dx_config_version, dx_entity
from tests.conftest import Backend, fetch_token
from tests.reload.processes import API, error_code

TABLE, ALIAS = "hh_gizmo", "gizmos"
ANONYMOUS_KEYS = {"status", "snapshotVersion", "unavailableEntityCount", "problemCount"}
RECOVER_WITHIN = 5.0

GIZMOS: dict[str, Any] = {
    "tableName": TABLE,
    "tableAlias": ALIAS,
    "isActive": True,
    "definition": {
        "identifier": "id",
        "isDeletable": False,
        "fields": [
            {"fieldName": name, "fieldVisibleName": name, "type": kind, "isCreatable": True, "isEditable": True}
            for name, kind in (("id", "integer"), ("name", "string"), ("shade", "string"))
        ],
    },
}


def _metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("shade", sa.String(20), nullable=True),
    )
    return metadata


def _bump_version(backend: Backend) -> None:
    backend.sql(
        sa.update(dx_config_version).where(dx_config_version.c.id == 1).values(version=dx_config_version.c.version + 1)
    )
    backend.wait_for_version(int(backend.sql(sa.select(dx_config_version.c.version))[0][0]))


@pytest.fixture
def gizmos(backend: Backend) -> Iterator[None]:
    metadata = _metadata()

    async def create(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            await conn.execute(metadata.tables[TABLE].insert(), [{"id": 1, "name": "cog", "shade": "grey"}])

    async def drop(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.delete(dx_entity).where(dx_entity.c.table_alias == ALIAS))
            await conn.run_sync(metadata.drop_all)

    backend.with_engine(create)
    try:
        backend.import_config([GIZMOS])
        yield
    finally:
        backend.with_engine(drop)
        _bump_version(backend)


def _anonymous_ready(backend: Backend) -> dict[str, Any]:
    response = httpx.get(f"{backend.base_url}/health/ready", timeout=10)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _token(backend: Backend, scopes: frozenset[str]) -> str:
    client_id, secret = backend.with_engine(lambda engine: add_client(engine, "health probe", scopes))
    return fetch_token(backend.base_url, client_id, secret)


def _break(backend: Backend) -> None:
    """Drop the configured column behind dxapi's back and without a version bump."""
    backend.sql(f"ALTER TABLE {TABLE} DROP COLUMN shade")
    assert backend.sql(f"SELECT * FROM {TABLE}") == [(1, "cog")]


def test_anonymous_readiness_names_nothing(backend: Backend, api: httpx.Client, gizmos: None) -> None:
    healthy = _anonymous_ready(backend)
    assert set(healthy) == ANONYMOUS_KEYS, healthy
    assert healthy["status"] == "ok" and healthy["problemCount"] == 0, healthy
    _break(backend)
    _bump_version(backend)  # the reflection finds it now: the entity is unavailable with a named column

    anonymous = httpx.get(f"{backend.base_url}/health/ready", timeout=10)
    assert anonymous.status_code == 200, anonymous.text
    document = anonymous.json()
    assert set(document) == ANONYMOUS_KEYS, document
    assert document["unavailableEntityCount"] == healthy["unavailableEntityCount"] + 1, document
    assert isinstance(document["snapshotVersion"], int) and document["snapshotVersion"] >= 1, document
    for name in (TABLE, "shade", ALIAS):
        assert name not in anonymous.text, anonymous.text

    # An operator (any valid token) sees the problem, with the column it concerns.
    detailed = api.get("/health/ready").json()
    assert any("shade" in p for p in detailed["unavailableEntities"][ALIAS]), detailed
    assert detailed["unavailableEntityCount"] == document["unavailableEntityCount"], detailed
    # ... but only for the entities its scopes cover.
    narrow = httpx.get(
        f"{backend.base_url}/health/ready",
        timeout=10,
        headers={"Authorization": f"Bearer {_token(backend, frozenset({'products:read'}))}"},
    )
    assert narrow.status_code == 200 and ALIAS not in narrow.json()["unavailableEntities"], narrow.text
    assert "shade" not in narrow.text and TABLE not in narrow.text, narrow.text
    own = httpx.get(
        f"{backend.base_url}/health/ready",
        timeout=10,
        headers={"Authorization": f"Bearer {_token(backend, frozenset({'gizmos:write'}))}"},
    )
    assert any("shade" in p for p in own.json()["unavailableEntities"][ALIAS]), own.text
    # A bad token is no operator, and no reason to fail the probe.
    forged = httpx.get(f"{backend.base_url}/health/ready", timeout=10, headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 200 and set(forged.json()) == ANONYMOUS_KEYS, forged.text


def test_schema_drift_is_reported_as_soon_as_requests_meet_it(
    backend: Backend, api: httpx.Client, gizmos: None
) -> None:
    before = api.get("/health/ready").json()
    assert ALIAS not in before["unavailableEntities"], before
    version = before["snapshotVersion"]
    assert api.get(f"{API}/{ALIAS}/1").json()["data"] == {"id": 1, "name": "cog", "shade": "grey"}

    _break(backend)
    met = api.get(f"{API}/{ALIAS}")
    assert met.status_code == 503 and error_code(met) == "5004", met.text
    assert met.headers.get("retry-after"), met.headers

    ready = api.get("/health/ready")  # right away: no sleep, no version bump
    assert ready.status_code == 200, ready.text
    document = ready.json()
    assert any("shade" in p for p in document["unavailableEntities"].get(ALIAS, [])), document
    assert document["snapshotVersion"] == version, document  # the same configuration, reflected again
    anonymous = _anonymous_ready(backend)
    assert anonymous["unavailableEntityCount"] == before["unavailableEntityCount"] + 1, anonymous
    # Every later request knows it too, without touching the table.
    for response in (api.get(f"{API}/{ALIAS}/1"), api.patch(f"{API}/{ALIAS}/1", json={"data": {"name": "x"}})):
        assert response.status_code == 503 and error_code(response) == "5003", response.text
    assert backend.sql(f"SELECT * FROM {TABLE}") == [(1, "cog")]
    assert api.get(f"{API}/products/1").status_code == 200

    # The column is back: the entity serves again on its own.
    backend.sql(f"ALTER TABLE {TABLE} ADD COLUMN shade VARCHAR(20)")
    deadline = time.monotonic() + RECOVER_WITHIN
    while (back := api.get(f"{API}/{ALIAS}/1")).status_code != 200:
        assert time.monotonic() < deadline, (back.status_code, back.text)
        time.sleep(0.05)
    assert back.json()["data"] == {"id": 1, "name": "cog", "shade": None}
    recovered = api.get("/health/ready").json()
    assert ALIAS not in recovered["unavailableEntities"], recovered
    assert recovered["unavailableEntityCount"] == before["unavailableEntityCount"], recovered
    assert _anonymous_ready(backend)["unavailableEntityCount"] == before["unavailableEntityCount"]


def test_schema_drift_met_by_a_write(backend: Backend, api: httpx.Client, gizmos: None) -> None:
    _break(backend)
    write = api.patch(f"{API}/{ALIAS}/1", json={"data": {"shade": "blue"}})
    assert write.status_code == 503 and error_code(write) == "5004", write.text
    document = api.get("/health/ready").json()
    assert any("shade" in p for p in document["unavailableEntities"].get(ALIAS, [])), document
    assert backend.sql(f"SELECT * FROM {TABLE}") == [(1, "cog")]
