"""The back office refuses what the configuration checks refuse: unsafe identifiers and views.

The identifier select offers only the columns that can identify a row (the single-column primary key, NOT NULL
columns with a single-column UNIQUE constraint or unique index); a new endpoint on a table whose primary key
spans several columns gets such a column as its identifier, or is refused when there is none. The "New endpoint"
list offers no view (a view declares no keys, and one over ``dx_user`` would serve password hashes). A crafted
form that names an ineligible identifier, or a view, is refused with the check's message, and nothing is saved.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from selenium.webdriver.support.ui import Select

from dxapi.registry.tables import dx_config_version, dx_entity
from tests.admin.conftest import (
    AdminHttp,
    Browser,
    Scratch,
    config_state,
    logged_in,
    new_account,
    on_admin_backends,
    stored_entities,
)
from tests.conftest import Backend

pytestmark = on_admin_backends()

RULE = "The identifier must be the primary key or a single-column UNIQUE NOT NULL key"
VIEWS = {
    "adm_user_view": "SELECT id, email, password_hash FROM dx_user",
    "adm_keyed_view": "SELECT id, sku, name FROM adm_keyed",
}


def keyed_table() -> sa.Table:
    """Every kind of column: primary key, UNIQUE NOT NULL, UNIQUE but nullable, unique index, not unique."""
    metadata = sa.MetaData()
    table = sa.Table(
        "adm_keyed",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sku", sa.String(20), nullable=False),
        sa.Column("ean", sa.String(20), nullable=True),
        sa.Column("ref", sa.Integer, nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.UniqueConstraint("sku", name="uq_adm_keyed_sku"),
        sa.UniqueConstraint("ean", name="uq_adm_keyed_ean"),
    )
    sa.Index("ux_adm_keyed_ref", table.c.ref, unique=True)
    return table


def line_table() -> sa.Table:
    """A composite primary key, and a single-column UNIQUE NOT NULL key besides."""
    return sa.Table(
        "adm_line",
        sa.MetaData(),
        sa.Column("store", sa.String(10), primary_key=True),
        sa.Column("sku", sa.String(20), primary_key=True),
        sa.Column("line_code", sa.String(20), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.UniqueConstraint("line_code", name="uq_adm_line_code"),
    )


def pair_table() -> sa.Table:
    """A composite primary key and nothing else unique."""
    return sa.Table(
        "adm_pair",
        sa.MetaData(),
        sa.Column("store", sa.String(10), primary_key=True),
        sa.Column("sku", sa.String(20), primary_key=True),
        sa.Column("qty", sa.Integer, nullable=False),
    )


KEYED_FIELDS = [("id", "integer"), ("sku", "string"), ("ean", "string"), ("ref", "integer"), ("name", "string")]
KEYED_ENTRY: dict[str, Any] = {
    "tableName": "adm_keyed",
    "tableAlias": "adm-keyed",
    "isActive": True,
    "definition": {
        "identifier": "id",
        "isDeletable": True,
        "fields": [
            {
                "fieldName": column,
                "fieldVisibleName": column,
                "type": kind,
                "isCreatable": column != "id",
                "isEditable": column != "id",
            }
            for column, kind in KEYED_FIELDS
        ],
    },
}


@pytest.fixture(scope="module")
def tables(backend: Backend, scratch: Scratch) -> Iterator[None]:
    """This module's tables, one endpoint on ``adm_keyed``, and two views (removed before the tables)."""
    scratch.create_table(
        keyed_table(),
        [
            {"id": 1, "sku": "A-1", "ean": None, "ref": 10, "name": "same"},
            {"id": 2, "sku": "A-2", "ean": "4006381333931", "ref": 20, "name": "same"},
        ],
    )
    scratch.create_table(line_table(), [{"store": "A", "sku": "x", "line_code": "L1", "qty": 1}])
    scratch.create_table(pair_table(), [{"store": "A", "sku": "x", "qty": 1}, {"store": "A", "sku": "y", "qty": 2}])
    for view, select in VIEWS.items():
        backend.sql(f"DROP VIEW IF EXISTS {view}")
        backend.sql(f"CREATE VIEW {view} AS {select}")
    scratch.endpoint("lines")
    scratch.endpoint("pairs")
    scratch.endpoint("adm-users")
    scratch.import_config([KEYED_ENTRY])
    try:
        yield
    finally:
        for view in VIEWS:
            backend.sql(f"DROP VIEW IF EXISTS {view}")


@pytest.fixture
def editor(backend: Backend, tables: None) -> Iterator[AdminHttp]:
    client = logged_in(backend, new_account(backend, "editor"))
    try:
        yield client
    finally:
        client.close()


def grid(identifier: str) -> dict[str, str]:
    """The edit grid of ``adm-keyed`` as the page submits it, with ``identifier`` chosen."""
    form = {"alias": "adm-keyed", "identifier": identifier, "is_active": "on", "is_deletable": "on"}
    for i, (column, kind) in enumerate(KEYED_FIELDS):
        form |= {f"f-{i}-column": column, f"f-{i}-name": column, f"f-{i}-type": kind, f"f-{i}-enabled": "on"}
        if column != "id":
            form |= {f"f-{i}-creatable": "on", f"f-{i}-editable": "on"}
    return form


def identifier_options(browser: Browser) -> list[tuple[str, bool]]:
    """(value, disabled) of every option of the identifier select on the current page."""
    select = Select(browser.find("form#edit select[name=identifier]"))
    return [(str(o.get_attribute("value")), not o.is_enabled()) for o in select.options]


# --- the identifier select --------------------------------------------------------------------------------------


def test_identifier_select_offers_only_eligible_columns(browser: Browser, admin_session: str, tables: None) -> None:
    browser.adopt_session(admin_session)
    browser.open("/admin/entities/adm-keyed")
    assert identifier_options(browser) == [("id", False), ("sku", False), ("ref", False)]
    assert Select(browser.find("form#edit select[name=identifier]")).first_selected_option.text == "id"
    browser.shot("identifier-select")
    assert browser.console_errors() == []


def test_new_endpoint_on_a_composite_key_table_gets_its_unique_column_as_identifier(
    browser: Browser, admin_session: str, backend: Backend, tables: None
) -> None:
    browser.adopt_session(admin_session)
    browser.open("/admin/entities/new")
    Select(browser.find("form#create select[name=table]")).select_by_value("adm_line")
    browser.find("form#create input[name=alias]").send_keys("lines")
    browser.submit(browser.find("form#create button[type=submit]"))
    assert browser.path() == "/admin/entities/lines", browser.path()
    assert identifier_options(browser) == [("line_code", False)]
    assert '"identifier":"line_code"' in stored_entities(backend)["lines"][1].replace(" ", "")


def test_new_endpoint_on_a_composite_key_table_without_unique_column_is_refused(
    browser: Browser, admin_session: str, backend: Backend, tables: None
) -> None:
    browser.adopt_session(admin_session)
    before = config_state(backend)
    browser.open("/admin/entities/new")
    Select(browser.find("form#create select[name=table]")).select_by_value("adm_pair")
    browser.find("form#create input[name=alias]").send_keys("pairs")
    browser.submit(browser.find("form#create button[type=submit]"))
    assert browser.path() == "/admin/entities/new", browser.path()
    assert browser.find("p.error[role=alert]").text == (
        "`pairs`: identifier `store` is not a unique key of `adm_pair`: it is part of the composite primary key "
        f"(store, sku), and composite keys are not supported as identifiers. {RULE}; eligible here: none"
    )
    assert config_state(backend) == before
    assert all("status of 400" in e for e in browser.console_errors())


# --- views ------------------------------------------------------------------------------------------------------


def test_new_endpoint_list_offers_no_view(browser: Browser, admin_session: str, tables: None) -> None:
    browser.adopt_session(admin_session)
    browser.open("/admin/entities/new")
    offered = [o.get_attribute("value") for o in Select(browser.find("form#create select[name=table]")).options]
    assert "adm_pair" in offered, offered  # the module's tables are there …
    assert "adm_user_view" not in offered and "adm_keyed_view" not in offered, offered  # … its views are not
    assert not any(str(name).startswith("dx_") for name in offered), offered


@pytest.mark.parametrize("view", list(VIEWS))
def test_crafted_create_on_a_view_is_refused(editor: AdminHttp, backend: Backend, view: str) -> None:
    before = config_state(backend)
    response = editor.post("/admin/entities/new", {"table": view, "alias": "adm-users"})
    assert response.status_code == 400, response.text
    assert "Choose one of the offered tables." in response.text
    assert config_state(backend) == before


# --- crafted grid posts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "reason"),
    [
        ("name", "no primary key, UNIQUE constraint or unique index covers exactly this column"),
        ("ean", "its UNIQUE key allows NULL"),
    ],
)
def test_crafted_grid_with_an_ineligible_identifier_is_refused(
    editor: AdminHttp, backend: Backend, identifier: str, reason: str
) -> None:
    before = config_state(backend)
    response = editor.post("/admin/entities/adm-keyed", grid(identifier))
    assert response.status_code == 400, response.text
    assert (
        f"`adm-keyed`: identifier `{identifier}` is not a unique key of `adm_keyed`: {reason}. {RULE}; "
        "eligible here: id, sku, ref"
    ) in html.unescape(response.text)
    assert config_state(backend) == before
    assert backend.client.get("/dynamic-entity/adm-keyed/2").json()["data"]["sku"] == "A-2"


def test_grid_with_an_eligible_unique_identifier_is_saved(editor: AdminHttp, backend: Backend) -> None:
    response = editor.post("/admin/entities/adm-keyed", grid("sku"))
    assert response.status_code == 303, response.text
    try:
        assert '"identifier":"sku"' in stored_entities(backend)["adm-keyed"][1].replace(" ", "")
    finally:
        assert editor.post("/admin/entities/adm-keyed", grid("id")).status_code == 303


def test_stored_ineligible_identifier_is_shown_and_must_be_replaced(
    browser: Browser, admin_session: str, backend: Backend, tables: None
) -> None:
    """An entity written straight into ``dx_entity`` with an ineligible identifier: listed as broken; its page
    shows the stored identifier as a choice that cannot be submitted, next to the eligible ones."""
    stored = backend.sql(sa.select(dx_entity.c.definition).where(dx_entity.c.table_alias == "adm-keyed"))[0][0]
    backend.sql(
        sa.update(dx_entity)
        .where(dx_entity.c.table_alias == "adm-keyed")
        .values(definition=stored.replace('"identifier":"id"', '"identifier":"name"'))
    )
    backend.sql(sa.update(dx_config_version).values(version=dx_config_version.c.version + 1))
    backend.wait_for_version(int(backend.sql(sa.select(dx_config_version.c.version))[0][0]))
    try:
        unavailable = backend.client.get("/dynamic-entity/adm-keyed")
        assert unavailable.status_code == 503 and unavailable.json()[0]["code"] == "5003", unavailable.text
        browser.adopt_session(admin_session)
        browser.open("/admin/entities")
        assert "broken" in browser.find('tr[data-alias="adm-keyed"]').text
        browser.open("/admin/entities/adm-keyed")
        assert identifier_options(browser) == [("name", True), ("id", False), ("sku", False), ("ref", False)]
    finally:
        backend.sql(sa.update(dx_entity).where(dx_entity.c.table_alias == "adm-keyed").values(definition=stored))
        backend.sql(sa.update(dx_config_version).values(version=dx_config_version.c.version + 1))
        backend.wait_for_version(int(backend.sql(sa.select(dx_config_version.c.version))[0][0]))
