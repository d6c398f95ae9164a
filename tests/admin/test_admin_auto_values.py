"""The edit grid's maintained timestamps and change-feed switch, in a real headless Chromium (issue 11).

A new endpoint for a table with ``created_at`` / ``last_modified`` date-time columns arrives with ``autoValue``
pre-selected for them (their create, edit and required boxes cleared and locked by the page's script), nothing
for an integer column named ``updated`` or for text; the entity-level "Change feed" checkbox and the selects
survive a save and a reload of the page; the API then stamps the rows and refuses a client value (1304). A
stored endpoint whose column only *looks* like a timestamp gets a hint, never a changed configuration. A grid
that contradicts itself (forced past the script) is refused next to its row and saves nothing.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.admin.conftest import (
    Browser,
    Scratch,
    config_state,
    error_codes,
    on_admin_backends,
    poll,
    stored_entities,
)
from tests.admin.test_admin_browser import cell, grid_row, set_checked
from tests.conftest import Backend

pytestmark = on_admin_backends()

API = "/dynamic-entity"


def auto_select(browser: Browser, column: str) -> Select:
    return Select(cell(grid_row(browser, column), "auto"))


def auto_selects(browser: Browser, column: str) -> int:
    return len(grid_row(browser, column).find_elements(By.CSS_SELECTOR, '[name$="-auto"]'))


def locked(browser: Browser, column: str) -> list[tuple[bool, bool]]:
    """(checked, enabled) of the create, edit and required boxes of ``column``."""
    row = grid_row(browser, column)
    return [(cell(row, k).is_selected(), cell(row, k).is_enabled()) for k in ("creatable", "editable", "required")]


def definition(backend: Backend, alias: str) -> dict[str, object]:
    found: dict[str, object] = orjson.loads(stored_entities(backend)[alias][1])
    return found


def auto_values(backend: Backend, alias: str) -> dict[str, object]:
    fields = definition(backend, alias)["fields"]
    assert isinstance(fields, list)
    return {f["fieldName"]: f.get("autoValue") for f in fields}


def test_timestamps_are_suggested_and_the_change_feed_switch_round_trips(
    browser: Browser, admin_session: str, backend: Backend, scratch: Scratch
) -> None:
    browser.adopt_session(admin_session)
    scratch.create_table(
        sa.Table(
            "adm_stamped",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("title", sa.String(40), nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),  # no default: dxapi fills it in
            sa.Column("last_modified", sa.DateTime, nullable=True),
            sa.Column("updated", sa.Integer, nullable=True),  # an epoch number: named like one, not a date
        )
    )
    alias = scratch.endpoint("stampeds")  # the suggested alias
    browser.open("/admin/entities/new")
    Select(browser.find("form#create select[name=table]")).select_by_value("adm_stamped")
    browser.submit(browser.find("form#create button[type=submit]"))
    assert browser.path() == f"/admin/entities/{alias}", browser.path()

    # Pre-selected on the new entity's grid, and so stored; no select where dxapi could not write a time.
    assert auto_select(browser, "created_at").first_selected_option.text == "createdAt"
    assert auto_select(browser, "last_modified").first_selected_option.text == "updatedAt"
    assert auto_selects(browser, "title") == 0 and auto_selects(browser, "updated") == 0
    assert auto_values(backend, alias) == {
        "id": None,
        "title": None,
        "created_at": "createdAt",
        "last_modified": "updatedAt",
        "updated": None,
    }
    assert locked(browser, "created_at") == [(False, False)] * 3
    change_feed = browser.find("form#edit input[name=change_feed]")
    assert not change_feed.is_selected() and "Change feed" in browser.find("form#edit .settings").text
    browser.shot("edit-auto-values")

    # Choosing none frees the boxes; choosing a value again clears and locks them.
    auto_select(browser, "last_modified").select_by_value("")
    assert [enabled for _, enabled in locked(browser, "last_modified")] == [True, True, True]
    set_checked(cell(grid_row(browser, "last_modified"), "editable"), True)
    auto_select(browser, "last_modified").select_by_value("updatedAt")
    assert locked(browser, "last_modified") == [(False, False)] * 3

    # Save with the change feed on; the reloaded page shows what was saved.
    set_checked(browser.find("form#edit input[name=is_active]"), True)
    set_checked(change_feed, True)
    browser.submit(browser.find("button#save"))
    assert browser.path() == f"/admin/entities/{alias}?saved=1", browser.path()
    browser.open(f"/admin/entities/{alias}")
    assert browser.find("form#edit input[name=change_feed]").is_selected()
    assert auto_select(browser, "created_at").first_selected_option.text == "createdAt"
    assert auto_select(browser, "last_modified").first_selected_option.text == "updatedAt"
    assert definition(backend, alias)["changeFeed"] is True

    # Live: dxapi stamps the rows and refuses a client value.
    api = backend.client
    created = poll(
        lambda: api.post(f"{API}/{alias}", json={"data": [{"title": "first"}]}), lambda r: r.status_code == 201
    )
    assert created.status_code == 201, created.text
    (row,) = created.json()["data"]
    assert row["createdAt"] is not None and row["lastModified"] is not None, row
    refused = api.patch(f"{API}/{alias}/{row['id']}", json={"data": {"lastModified": "2001-01-01T00:00:00"}})
    assert refused.status_code == 400 and error_codes(refused) == ["1304"], refused.text

    # Switched off again through the same checkbox: saved and shown as off.
    set_checked(browser.find("form#edit input[name=change_feed]"), False)
    browser.submit(browser.find("button#save"))
    assert browser.path() == f"/admin/entities/{alias}?saved=1", browser.path()
    browser.open(f"/admin/entities/{alias}")
    assert not browser.find("form#edit input[name=change_feed]").is_selected()
    assert "changeFeed" not in definition(backend, alias)
    assert browser.console_errors() == []


def test_a_stored_endpoint_gets_a_hint_and_never_a_silent_change(
    browser: Browser, admin_session: str, backend: Backend, scratch: Scratch
) -> None:
    browser.adopt_session(admin_session)
    scratch.create_table(
        sa.Table(
            "adm_logged",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("modified_at", sa.DateTime, nullable=True),
        ),
        [{"modified_at": None}],
    )
    field = {"fieldName": "modified_at", "fieldVisibleName": "modifiedAt", "type": "datetime"}
    scratch.import_config(
        [
            {
                "tableName": "adm_logged",
                "tableAlias": "logged",
                "isActive": True,
                "definition": {
                    "identifier": "id",
                    "fields": [
                        {"fieldName": "id", "fieldVisibleName": "id", "type": "integer"}
                        | {"isCreatable": False, "isEditable": False},
                        field | {"isCreatable": True, "isEditable": True},
                    ],
                },
            }
        ]
    )
    before = config_state(backend)
    browser.open("/admin/entities/logged")
    assert auto_select(browser, "modified_at").first_selected_option.text == "none"
    hint = grid_row(browser, "modified_at").find_element(By.CSS_SELECTOR, "small.suggested")
    assert hint.text == "suggested: updatedAt" and hint.get_attribute("data-suggested") == "updatedAt"
    assert locked(browser, "modified_at") == [(True, True), (True, True), (False, True)]
    browser.shot("edit-auto-hint")
    assert config_state(backend) == before  # looking changes nothing

    # A grid that contradicts itself (the script's lock forced open): refused next to its row, nothing saved.
    auto_select(browser, "modified_at").select_by_value("updatedAt")
    box = cell(grid_row(browser, "modified_at"), "creatable")
    browser.driver.execute_script("arguments[0].disabled = false; arguments[0].checked = true;", box)
    browser.submit(browser.find("button#save"))
    problems = {row.get_attribute("data-column"): row.text for row in browser.find_all("tr.row-problem")}
    assert set(problems) == {"modified_at"}, problems
    assert "dxapi sets this field itself" in problems["modified_at"], problems
    assert config_state(backend) == before
    assert all("status of 400" in e for e in browser.console_errors())

    # Saved as the page shows it after choosing the suggestion: stored, and only then.
    browser.open("/admin/entities/logged")
    auto_select(browser, "modified_at").select_by_value("updatedAt")
    browser.submit(browser.find("button#save"))
    assert browser.path() == "/admin/entities/logged?saved=1", browser.path()
    assert auto_values(backend, "logged") == {"id": None, "modified_at": "updatedAt"}
    assert not grid_row(browser, "modified_at").find_elements(By.CSS_SELECTOR, "small.suggested")
    assert browser.console_errors() == []
