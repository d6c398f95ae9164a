"""A configuration broken behind dxapi's back takes down that entity only — with 503/5003, never a 500.

An operator drops a configured column with plain SQL and bumps ``dx_config_version``, or writes a malformed
``definition`` straight into ``dx_entity``. The running server (the shared harness server of each backend)
must then answer 503 with code 5003 for that entity, keep serving every other entity, and list the problem
in ``/health/ready`` under ``unavailableEntities``; once the schema fits again, the entity comes back without
a restart. The tables of this module (``reload_gadget``, ``reload_widget``) and their entities belong to it
alone and are removed afterwards, so the shop data other modules rely on is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dxapi.db import create_engine
from dxapi.registry.model import ConfigError
from dxapi.registry.tables import dx_config_version, dx_entity
from tests.conftest import Backend, shop_config
from tests.reload.processes import API, error_code

GADGET, WIDGET = "reload_gadget", "reload_widget"


def _metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        GADGET,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("color", sa.String(20), nullable=True),
    )
    sa.Table(
        WIDGET,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("gadget_id", sa.Integer, nullable=True),
        sa.Column("label", sa.String(50), nullable=True),
    )
    return metadata


def _field(column: str, kind: str, *, creatable: bool = True) -> dict[str, Any]:
    return {
        "fieldName": column,
        "fieldVisibleName": column,
        "type": kind,
        "isCreatable": creatable,
        "isEditable": creatable,
    }


GADGETS: dict[str, Any] = {
    "tableName": GADGET,
    "tableAlias": "gadgets",
    "isActive": True,
    "definition": {
        "identifier": "id",
        "isDeletable": False,
        "fields": [
            _field("id", "integer"),
            _field("name", "string"),
            _field("color", "string"),
        ],
    },
    "childRelations": [
        {
            "name": "gadgetWidgets",
            "isEditable": False,
            "childDynamicEntityConfiguration": {"tableAlias": "widgets"},
            "relationFieldMappings": [{"childFieldName": "gadget_id", "parentFieldName": "id"}],
        }
    ],
}
WIDGETS: dict[str, Any] = {
    "tableName": WIDGET,
    "tableAlias": "widgets",
    "isActive": True,
    "definition": {
        "identifier": "id",
        "isDeletable": False,
        "fields": [
            _field("id", "integer"),
            _field("gadget_id", "integer"),
            _field("label", "string"),
        ],
    },
}


def bump_version(backend: Backend) -> int:
    """What an operator does after changing things by hand: move the version so every worker rebuilds."""
    backend.sql(
        sa.update(dx_config_version).where(dx_config_version.c.id == 1).values(version=dx_config_version.c.version + 1)
    )
    version = int(backend.sql(sa.select(dx_config_version.c.version))[0][0])
    backend.wait_for_version(version)
    return version


def ddl(backend: Backend, statement: str) -> None:
    """A schema change with the backend's own quoting rules (plain identifiers only in this module)."""
    backend.sql(statement)


@pytest.fixture
def gadgets(backend: Backend) -> Iterator[None]:
    """Two small configured tables of this module; removed with their entities afterwards."""
    metadata = _metadata()

    async def create() -> None:
        engine = create_engine(backend.url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.drop_all)
                await conn.run_sync(metadata.create_all)
                await conn.execute(
                    metadata.tables[GADGET].insert(),
                    [
                        {"id": 1, "name": "lamp", "color": "red"},
                        {"id": 2, "name": "fan", "color": None},
                    ],
                )
                await conn.execute(
                    metadata.tables[WIDGET].insert(),
                    [
                        {"id": 1, "gadget_id": 1, "label": "bulb"},
                        {"id": 2, "gadget_id": 2, "label": "blade"},
                    ],
                )
        finally:
            await engine.dispose()

    async def drop() -> None:
        engine = create_engine(backend.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.delete(dx_entity).where(dx_entity.c.table_alias.in_(["gadgets", "widgets"])))
                await conn.run_sync(metadata.drop_all)
        finally:
            await engine.dispose()

    backend.run(create())
    try:
        backend.import_config([WIDGETS, GADGETS])
        yield
    finally:
        backend.run(drop())
        bump_version(backend)


def assert_unavailable(response: httpx.Response, alias: str) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert error_code(response) == "5003", response.text
    assert alias in response.json()[0]["message"], response.text


def assert_serving(api: httpx.Client) -> None:
    """The entities not involved keep answering."""
    for path in (f"{API}/products?page[limit]=2", f"{API}/products/1", f"{API}/countries?page[limit]=2"):
        response = api.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])


def test_dropped_column_makes_only_that_entity_unavailable(backend: Backend, api: httpx.Client, gadgets: None) -> None:
    before = api.get(f"{API}/gadgets/1")
    assert before.status_code == 200 and before.json()["data"]["color"] == "red", before.text

    ddl(backend, f"ALTER TABLE {GADGET} DROP COLUMN color")
    bump_version(backend)

    assert_unavailable(api.get(f"{API}/gadgets"), "gadgets")
    assert_unavailable(api.get(f"{API}/gadgets/1"), "gadgets")
    assert_unavailable(api.patch(f"{API}/gadgets/1", json={"data": {"name": "desk lamp"}}), "gadgets")
    assert_unavailable(api.post(f"{API}/gadgets", json={"data": [{"id": 3, "name": "radio"}]}), "gadgets")
    widgets = api.get(f"{API}/widgets")
    assert widgets.status_code == 200 and len(widgets.json()["data"]) == 2, widgets.text
    assert_serving(api)

    ready = api.get("/health/ready")
    assert ready.status_code == 200, ready.text  # one broken entity must not take the instance out of service
    document = ready.json()
    problems = document["unavailableEntities"].get("gadgets")
    assert problems and any("color" in p for p in problems), document
    assert "widgets" not in document["unavailableEntities"], document

    # The column comes back: the entity serves again, without a restart.
    ddl(backend, f"ALTER TABLE {GADGET} ADD COLUMN color VARCHAR(20)")
    bump_version(backend)
    after = api.get(f"{API}/gadgets/1")
    assert after.status_code == 200, after.text
    assert after.json()["data"] == {"id": 1, "name": "lamp", "color": None}
    assert "gadgets" not in api.get("/health/ready").json()["unavailableEntities"]


def test_saving_another_entity_while_one_is_broken(backend: Backend, api: httpx.Client, gadgets: None) -> None:
    """The other way a version moves after a manual change: a configuration save of some other entity.

    The store refuses a save that *breaks* a stored entity; an entity broken by hand before the save is not
    the save's doing, and refusing would leave the operator unable to change anything else — nor could the
    save bump the version that makes the workers notice.
    """
    ddl(backend, f"ALTER TABLE {GADGET} DROP COLUMN color")
    widgets = dict(WIDGETS, definition={**WIDGETS["definition"], "fields": WIDGETS["definition"]["fields"][:2]})
    try:
        backend.import_config([widgets])
    except ConfigError as exc:
        pytest.fail(f"saving `widgets` was refused because of the unrelated, already broken `gadgets`: {exc.problems}")
    assert_unavailable(api.get(f"{API}/gadgets"), "gadgets")
    assert set(api.get(f"{API}/widgets/1").json()["data"]) == {"id", "gadget_id"}
    assert_serving(api)


def test_malformed_definition_makes_only_that_entity_unavailable(
    backend: Backend, api: httpx.Client, gadgets: None
) -> None:
    backend.sql(
        sa.update(dx_entity)
        .where(dx_entity.c.table_alias == "widgets")
        .values(definition='{"identifier": "id", "fields": [{"fieldName": ')
    )
    bump_version(backend)

    assert_unavailable(api.get(f"{API}/widgets"), "widgets")
    assert_unavailable(api.get(f"{API}/widgets/1"), "widgets")
    gadgets_page = api.get(f"{API}/gadgets")
    assert gadgets_page.status_code == 200 and len(gadgets_page.json()["data"]) == 2, gadgets_page.text
    # The relation to the broken child is gone; asking for it is the client's mistake, not a server error.
    included = api.get(f"{API}/gadgets?include=gadgetWidgets")
    assert 400 <= included.status_code < 500, (included.status_code, included.text[:300])
    assert_serving(api)

    ready = api.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["unavailableEntities"].get("widgets"), ready.text
    assert "gadgets" not in ready.json()["unavailableEntities"], ready.text

    # Saving a good definition over it repairs the entity (the store skips the unreadable row, then replaces it).
    backend.import_config([WIDGETS])
    repaired = api.get(f"{API}/widgets/1")
    assert repaired.status_code == 200 and repaired.json()["data"]["label"] == "bulb", repaired.text


def test_shop_configuration_is_untouched(backend: Backend) -> None:
    """Nothing of this module leaks into the configuration other modules use."""
    aliases = {row[0] for row in backend.sql(sa.select(dx_entity.c.table_alias))}
    assert {e["tableAlias"] for e in shop_config()} <= aliases
    assert not aliases & {"gadgets", "widgets"}
