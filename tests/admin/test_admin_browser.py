"""The back office in a real headless Chromium, through the real server (DESIGN §6; T39).

Each test walks pages as a person would: log in, create an endpoint for a table that had none, shape its fields
in the grid, switch it on and off, and checks through the public API (bearer token) that the change is live
without a restart. Invalid grids must show each problem next to its row and save nothing. Hostile table and
column names from the database must appear as text, never as markup: no dialog, no console error.
Screenshots of every page visited land in ``test-artifacts/screenshots/<backend>-<page>.png``.
"""

from __future__ import annotations

import sqlalchemy as sa
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from dxapi.admin.sessions import COOKIE
from dxapi.registry.tables import dx_audit
from tests.admin.conftest import (
    Account,
    Browser,
    Scratch,
    config_state,
    error_codes,
    on_admin_backends,
    poll,
    stored_entities,
)
from tests.conftest import Backend

pytestmark = on_admin_backends()

API = "/dynamic-entity"
HOSTILE_TABLE = "<img src=x onerror=alert(2)>"
HOSTILE_COLUMN = "<img src=x onerror=alert(1)>"
HOSTILE_VALUE = "<script>alert(3)</script>"
HOSTILE_DESCRIPTION = '"><img src=y onerror=alert(4)>{{7*7}}'


def grid_row(browser: Browser, column: str) -> WebElement:
    """The edit-grid row of ``column`` (not its problem row)."""
    return browser.find(f'table#fields tr[data-column="{column}"]:not(.row-problem)')


def cell(row: WebElement, key: str) -> WebElement:
    """The input or select of one grid cell, by the suffix of its name (``f-<i>-<key>``)."""
    return row.find_element(By.CSS_SELECTOR, f'[name$="-{key}"]')


def set_checked(box: WebElement, wanted: bool) -> None:
    """Tick or untick a checkbox by clicking it, as a person would."""
    if box.is_selected() != wanted:
        box.click()


def retype(box: WebElement, text: str) -> None:
    """Replace the text of an input."""
    box.clear()
    box.send_keys(text)


def widget_table() -> sa.Table:
    """A table no endpoint serves yet."""
    return sa.Table(
        "adm_widget",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("colour", sa.String(20), nullable=True),
        sa.Column("weight", sa.Numeric(6, 2), nullable=True),
        sa.Column("secret_note", sa.Text, nullable=True),
    )


def test_create_shape_activate_and_deactivate_an_endpoint(
    browser: Browser, backend: Backend, admin_account: Account, scratch: Scratch
) -> None:
    """Log in; create an endpoint for a new table; untick, rename and require fields; activate; the API serves
    exactly that field set and rule at once; deactivate from the list and the API answers 404 (007)."""
    # Log in through the form, from a clean slate.
    browser.driver.delete_all_cookies()
    browser.open("/admin/login")
    assert browser.find("h1").text == "Log in to the back office"
    browser.shot("login")
    browser.login(admin_account)
    cookie = browser.driver.get_cookie(COOKIE)
    assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
    assert browser.driver.execute_script("return document.cookie") == "", "the session cookie is readable by JS"

    # The list shows the configured endpoints.
    listed = {row.get_attribute("data-alias") for row in browser.find_all("table#entities tr[data-alias]")}
    assert {"products", "orders", "MixedCase", "parked"} <= listed, listed
    assert browser.find('tr[data-alias="parked"] td.status').text == "inactive"
    assert browser.find('tr[data-alias="products"] td.status').text == "active"
    assert "widgets" not in listed

    # A new table appears on the "New endpoint" page; create an endpoint for it with the suggested alias.
    widgets = widget_table()
    scratch.create_table(widgets, [{"name": "seed", "colour": "red", "weight": "1.50", "secret_note": "hidden"}])
    scratch.endpoint("widgets")
    browser.find("a#create").click()
    assert browser.path() == "/admin/entities/new"
    tables = Select(browser.find("form#create select[name=table]"))
    offered = [option.get_attribute("value") for option in tables.options]
    assert "adm_widget" in offered and "shop_product" not in offered, offered  # tables already served are not
    tables.select_by_value("adm_widget")
    browser.shot("create")
    browser.submit(browser.find("form#create button[type=submit]"))
    assert browser.path() == "/admin/entities/widgets", browser.path()

    # Every column is pre-filled, types guessed from the database, keys read-only, NOT NULL required.
    columns = [row.get_attribute("data-column") for row in browser.find_all("table#fields tbody tr[data-column]")]
    assert columns == ["id", "name", "colour", "weight", "secret_note"]
    expected = {  # column: (visible name, type, creatable, required, max length)
        "id": ("id", "integer", False, False, ""),
        "name": ("name", "string", True, True, "40"),
        "colour": ("colour", "string", True, False, "20"),
        "weight": ("weight", "decimal", True, False, ""),
        "secret_note": ("secretNote", "string", True, False, ""),
    }
    for column, (visible, kind, creatable, required, max_length) in expected.items():
        row = grid_row(browser, column)
        found = (
            cell(row, "name").get_attribute("value"),
            Select(cell(row, "type")).first_selected_option.text,
            cell(row, "creatable").is_selected(),
            cell(row, "required").is_selected(),
            cell(row, "max_length").get_attribute("value"),
        )
        assert found == (visible, kind, creatable, required, max_length), (column, found)
        assert cell(row, "enabled").is_selected(), column
    assert not browser.find("form#edit input[name=is_active]").is_selected()  # starts inactive for review
    assert Select(browser.find("form#edit select[name=identifier]")).first_selected_option.text == "id"
    browser.shot("edit")

    # Untick secret_note, rename colour → color and require it, activate, save.
    set_checked(cell(grid_row(browser, "secret_note"), "enabled"), False)
    retype(cell(grid_row(browser, "colour"), "name"), "color")
    set_checked(cell(grid_row(browser, "colour"), "required"), True)
    set_checked(browser.find("form#edit input[name=is_active]"), True)
    before_save = backend.sql(sa.select(sa.func.max(dx_audit.c.id)))[0][0]
    browser.submit(browser.find("button#save"))
    assert browser.path() == "/admin/entities/widgets?saved=1", browser.path()
    assert browser.find("p.ok[role=status]").text.startswith("Saved.")
    assert browser.find("form#edit input[name=is_active]").is_selected()
    assert cell(grid_row(browser, "colour"), "name").get_attribute("value") == "color"
    audit = backend.sql(
        sa.select(dx_audit.c.actor, dx_audit.c.action, dx_audit.c.table_alias)
        .where(dx_audit.c.id > before_save)
        .order_by(dx_audit.c.id)
    )
    assert [tuple(a) for a in audit] == [(admin_account.email, "update", "widgets")], audit

    # Live without a restart: exactly the chosen field set, and `color` is now required.
    api = backend.client
    listing = poll(lambda: api.get(f"{API}/widgets"), lambda r: r.status_code == 200)
    assert listing.status_code == 200, listing.text
    (seed,) = listing.json()["data"]
    assert set(seed) == {"id", "name", "color", "weight"}, seed
    assert seed["color"] == "red" and "hidden" not in listing.text
    missing = api.post(f"{API}/widgets", json={"data": [{"name": "no colour", "weight": "2.50"}]})
    assert missing.status_code == 400 and error_codes(missing) == ["1307"], missing.text
    assert "color" in missing.json()[0]["message"]
    created = api.post(f"{API}/widgets", json={"data": [{"name": "blue one", "color": "blue", "weight": "2.50"}]})
    assert created.status_code == 201, created.text
    assert set(created.json()["data"][0]) == {"id", "name", "color", "weight"}
    stored = backend.sql(
        sa.select(widgets.c.name, widgets.c.colour, widgets.c.secret_note).where(widgets.c.name == "blue one")
    )
    assert [tuple(r) for r in stored] == [("blue one", "blue", None)]

    # Deactivate from the list: the API answers as for an unknown alias.
    browser.open("/admin/entities")
    assert browser.find('tr[data-alias="widgets"] td.status').text == "active"
    browser.shot("list")
    browser.submit(browser.find('tr[data-alias="widgets"] form.toggle button'))
    assert browser.path() == "/admin/entities"
    assert browser.find('tr[data-alias="widgets"] td.status').text == "inactive"
    assert stored_entities(backend)["widgets"][0] is False
    gone = poll(lambda: api.get(f"{API}/widgets"), lambda r: r.status_code == 404)
    assert gone.status_code == 404 and error_codes(gone) == ["007"], gone.text
    assert browser.console_errors() == []


def test_invalid_grid_shows_problems_next_to_rows_and_saves_nothing(
    browser: Browser, admin_session: str, backend: Backend, scratch: Scratch
) -> None:
    """min length > max length and a visible name with a dot: both reported on their own rows, nothing saved."""
    browser.adopt_session(admin_session)
    scratch.create_table(
        sa.Table(
            "adm_gadget",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("label", sa.String(30), nullable=False),
            sa.Column("size", sa.Integer, nullable=True),
        ),
        [{"label": "first", "size": 3}],
    )
    scratch.import_config(
        [
            {
                "tableName": "adm_gadget",
                "tableAlias": "gadgets",
                "isActive": True,
                "definition": {
                    "identifier": "id",
                    "fields": [
                        {
                            "fieldName": "id",
                            "fieldVisibleName": "id",
                            "type": "integer",
                            "isCreatable": False,
                            "isEditable": False,
                        },
                        {
                            "fieldName": "label",
                            "fieldVisibleName": "label",
                            "type": "string",
                            "isCreatable": True,
                            "isEditable": True,
                            "validation": {"isRequired": True, "maxLength": 30},
                        },
                        {
                            "fieldName": "size",
                            "fieldVisibleName": "size",
                            "type": "integer",
                            "isCreatable": True,
                            "isEditable": True,
                        },
                    ],
                },
            }
        ]
    )
    before = config_state(backend)
    served = backend.client.get(f"{API}/gadgets")
    assert served.status_code == 200 and set(served.json()["data"][0]) == {"id", "label", "size"}

    browser.open("/admin/entities/gadgets")
    retype(cell(grid_row(browser, "label"), "min_length"), "50")  # max length stays 30
    retype(cell(grid_row(browser, "size"), "name"), "size.cm")
    set_checked(browser.find("form#edit input[name=is_active]"), False)  # would switch it off if saved
    browser.submit(browser.find("button#save"))

    assert browser.path() == "/admin/entities/gadgets", browser.path()
    assert "Nothing was saved" in browser.find("p.error[role=alert]").text
    problems = {row.get_attribute("data-column"): row.text for row in browser.find_all("tr.row-problem")}
    assert set(problems) == {"label", "size"}, problems
    assert "minLength" in problems["label"] and "maxLength" in problems["label"], problems
    assert "size.cm" in problems["size"], problems
    for column in problems:  # each problem row sits right under the row it is about
        above = browser.driver.find_element(
            By.XPATH, f'//tr[contains(@class, "row-problem") and @data-column="{column}"]/preceding-sibling::tr[1]'
        )
        assert above.get_attribute("data-column") == column and "row-problem" not in (
            above.get_attribute("class") or ""
        )
        assert "invalid" in (above.get_attribute("class") or "")
    # What was typed is still there to fix.
    assert cell(grid_row(browser, "label"), "min_length").get_attribute("value") == "50"
    assert cell(grid_row(browser, "size"), "name").get_attribute("value") == "size.cm"
    browser.shot("edit-problems")

    assert config_state(backend) == before
    again = backend.client.get(f"{API}/gadgets")
    assert again.status_code == 200 and again.json() == served.json()
    # The refused save answers 400, which Chromium logs; nothing else may show up.
    assert all("status of 400" in e for e in browser.console_errors())


def test_hostile_names_are_shown_as_text_and_never_run(
    browser: Browser, admin_session: str, backend: Backend, scratch: Scratch
) -> None:
    """A table and a column named ``<img src=x onerror=alert(…)>``, a row holding ``<script>``, a description
    with markup and ``{{7*7}}``: every page shows them as text, escaped in the HTML, and no dialog opens."""
    browser.adopt_session(admin_session)
    scratch.create_table(
        sa.Table(
            HOSTILE_TABLE,
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column(HOSTILE_COLUMN, sa.String(60), nullable=True),
        ),
        [{"id": 1, HOSTILE_COLUMN: HOSTILE_VALUE}],
    )

    def check_page(path: str, page: str, shows_names: bool = True, shot: bool = False) -> str:
        """Open ``path``: no dialog, no console error, no raw markup in the HTML the server sent, and (where
        the page shows table or column names) the hostile name escaped."""
        browser.open(path)
        assert browser.path() == path, browser.path()
        assert browser.dialog_text() is None
        raw = browser.raw(path)
        assert raw.status_code == 200, raw.status_code
        for markup in ("<img", "<script>"):  # the one legitimate script tag is <script src=…>
            assert markup not in raw.text, (page, markup)
        assert ("&lt;img src=x onerror=alert(" in raw.text) is shows_names, page
        assert browser.console_errors() == [], page
        if shot:
            browser.shot(page)
        return raw.text

    check_page("/admin/entities/new", "xss-create")
    options = [o.text for o in Select(browser.find("form#create select[name=table]")).options]
    assert HOSTILE_TABLE in options, options

    # An endpoint for it (stored as an import would: the pages that show it are under test, not the forms).
    scratch.import_config(
        [
            {
                "tableName": HOSTILE_TABLE,
                "tableAlias": "xss-probe",
                "isActive": True,
                "definition": {
                    "identifier": "id",
                    "fields": [
                        {
                            "fieldName": "id",
                            "fieldVisibleName": "id",
                            "type": "integer",
                            "isCreatable": False,
                            "isEditable": False,
                        },
                        {
                            "fieldName": HOSTILE_COLUMN,
                            "fieldVisibleName": "imgSrcXOnerrorAlert1",
                            "type": "string",
                            "isCreatable": True,
                            "isEditable": True,
                            "description": HOSTILE_DESCRIPTION,
                        },
                    ],
                },
            }
        ]
    )
    edit = check_page("/admin/entities/xss-probe", "xss-edit", shot=True)
    row = grid_row(browser, HOSTILE_COLUMN)
    assert row.find_element(By.CSS_SELECTOR, "td.column code").text == HOSTILE_COLUMN
    assert HOSTILE_TABLE in browser.find("h1 small").text
    assert cell(row, "description").get_attribute("value") == HOSTILE_DESCRIPTION
    assert "{{7*7}}" in edit and ">49<" not in edit  # shown literally, never evaluated as a template
    check_page("/admin/entities", "xss-list", shot=True)
    assert browser.find('tr[data-alias="xss-probe"] td.table').text == HOSTILE_TABLE
    check_page("/admin/audit", "xss-audit", shows_names=False)
    latest = browser.find("table#audit tbody tr a").get_attribute("href") or ""
    entry = check_page(latest.removeprefix(backend.base_url), "xss-audit-entry", shot=True)
    assert "{{7*7}}" in entry

    # The API hands the stored value over as JSON data, verbatim.
    served = backend.client.get(f"{API}/xss-probe")
    assert served.status_code == 200 and served.headers["content-type"] == "application/json", served.text
    assert served.json()["data"] == [{"id": 1, "imgSrcXOnerrorAlert1": HOSTILE_VALUE}]
    assert served.headers["x-content-type-options"] == "nosniff"
