"""Back-office security (reference §4; T38 and T40 to T43): CSRF, sessions, headers, roles, login abuse.

Every unsafe request must come from the admin's own origin and carry its session's CSRF token, or change
nothing: scripted attacks (httpx, with the victim's real session cookie) and a real cross-site page in Chromium,
served from another loopback port, whose script submits forms to the admin. Each refusal is checked by
re-reading the stored configuration and principals, not only by the status code. Sessions: cookie attributes,
a new id at every login, logout ends the session on the server. Roles: a viewer sees but changes nothing, an
editor cannot reach users, clients or keys. Login: one answer for every kind of failure, throttled per email.
"""

from __future__ import annotations

import datetime as dt
import html
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from selenium.webdriver.common.by import By

from dxapi.auth import principals
from dxapi.auth.passwords import digest
from dxapi.registry.tables import dx_audit, dx_session
from tests.admin.conftest import (
    OWN,
    AdminHttp,
    Browser,
    Own,
    Scratch,
    admin_state,
    logged_in,
    new_account,
    on_admin_backends,
    on_db,
    principal_state,
    redirects_to_login,
    session_cookie,
    stored_entities,
)
from tests.conftest import Backend

pytestmark = on_admin_backends()

TARGET = "adm-targets"
REFUSED = "This request did not come from this page; nothing changed."


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(backend: Backend, scratch: Scratch) -> str:
    """An active endpoint of this module's own, so a CSRF that got through could not break other tests; and
    a table no endpoint serves yet (for create attempts)."""
    scratch.create_table(
        sa.Table(
            "adm_target",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("label", sa.String(40), nullable=True),
        ),
        [{"label": "kept"}],
    )
    scratch.create_table(
        sa.Table(
            "adm_free",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        )
    )
    scratch.endpoint("adm-free")
    scratch.import_config(
        [
            {
                "tableName": "adm_target",
                "tableAlias": TARGET,
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
                        },
                    ],
                },
            }
        ]
    )
    return TARGET


@pytest.fixture
def victim(backend: Backend, target: str) -> Iterator[AdminHttp]:
    """A session of a fresh admin, as the attacked browser holds it (a fresh account each time: the login
    throttle counts every attempt per email, successful ones included)."""
    client = logged_in(backend, new_account(backend, "admin"))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def stranger(backend: Backend) -> Iterator[AdminHttp]:
    """Another admin's session: its CSRF token is valid, but not for the victim's session."""
    client = logged_in(backend, new_account(backend, "admin"))
    try:
        yield client
    finally:
        client.close()


@dataclass
class EvilSite:
    """A page server on another loopback port: same host as the admin (so same *site*), another *origin*."""

    server: ThreadingHTTPServer
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Where the pages are served."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def auto_submit(self, name: str, action: str, fields: dict[str, str]) -> str:
        """Publish a page whose script submits a hidden form to ``action`` on load; return its URL."""
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields.items()
        )
        self.pages[f"/{name}.html"] = (
            f'<!doctype html><title>win a prize</title><form method="post" action="{html.escape(action)}">{inputs}'
            "</form><script>document.forms[0].submit()</script>"
        )
        return f"{self.base_url}/{name}.html"

    def frame(self, name: str, src: str) -> str:
        """Publish a page that frames ``src``; return its URL."""
        self.pages[f"/{name}.html"] = f'<!doctype html><iframe id="victim" src="{html.escape(src)}"></iframe>'
        return f"{self.base_url}/{name}.html"


@pytest.fixture(scope="module")
def evil_site() -> Iterator[EvilSite]:
    """Serve attacker pages from 127.0.0.1 on a free port, in a thread, for this module."""
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write((body or "not here").encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield EvilSite(server, pages)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- helpers --------------------------------------------------------------------------------------------------


def hijacked_grid() -> dict[str, str]:
    """An edit-grid submission that would switch the target off and rename its field, if it were accepted."""
    return {
        "alias": TARGET,
        "identifier": "id",
        "f-0-column": "id",
        "f-0-name": "id",
        "f-0-type": "integer",
        "f-0-enabled": "on",
        "f-1-column": "label",
        "f-1-name": "hijacked",
        "f-1-type": "string",
        "f-1-enabled": "on",
        "f-1-creatable": "on",
        "f-1-editable": "on",
    }


def unsafe_actions() -> dict[str, tuple[str, dict[str, str]]]:
    """Name → (path, form) of state-changing admin requests an attacker would want."""
    return {
        "toggle": (f"/admin/entities/{TARGET}/toggle", {}),
        "save-grid": (f"/admin/entities/{TARGET}", hijacked_grid()),
        "create-endpoint": ("/admin/entities/new", {"table": "adm_free", "alias": "adm-free"}),
        "add-relation": (
            f"/admin/entities/{TARGET}/relations",
            {"name": "loop", "child": TARGET, "parent_field": "id", "child_field": "id"},
        ),
        "add-user": (
            "/admin/users",
            {"email": f"evil-{secrets.token_hex(4)}@example.com", "password": "correct horse battery", "role": "admin"},
        ),
        "add-client": ("/admin/clients", {"name": "evil", "scopes": "*:read *:write *:delete"}),
        "add-key": ("/admin/keys", {"name": "evil", "scopes": "*:read *:write *:delete"}),
        "import": ("/admin/config/import", {"document": orjson.dumps([]).decode()}),
    }


def assert_refused(response: httpx.Response, backend: Backend, before: dict[str, Any], what: str) -> None:
    """403 with the refusal page, and nothing stored changed."""
    assert response.status_code == 403, (what, response.status_code, response.text[:500])
    assert admin_state(backend) == before, what


# --- CSRF -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    """How a forged request differs from a genuine one."""

    origin: str | Own | None = OWN
    csrf: str | Own | None = OWN
    headers: dict[str, str] = field(default_factory=dict)
    stolen_token: bool = False  # use another session's (valid) token


ATTACKS = {
    "foreign-origin": Attack(origin="https://evil.example"),
    "null-origin": Attack(origin="null"),
    "other-port-origin": Attack(origin="http://127.0.0.1:1"),
    "cross-site-fetch": Attack(headers={"Sec-Fetch-Site": "cross-site"}),
    "same-site-fetch": Attack(headers={"Sec-Fetch-Site": "same-site"}),
    "no-origin-no-referer": Attack(origin=None),
    "foreign-referer-only": Attack(origin=None, headers={"Referer": "https://evil.example/page"}),
    "no-token": Attack(csrf=None),
    "empty-token": Attack(csrf=""),
    "wrong-token": Attack(csrf="x" * 43),
    "other-sessions-token": Attack(stolen_token=True),
}


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
def test_forged_requests_change_nothing(backend: Backend, victim: AdminHttp, stranger: AdminHttp, attack: str) -> None:
    """T38: each unsafe request with the victim's session cookie but a forged origin or token → 403, no change;
    a forged logout does not end the session."""
    forged = ATTACKS[attack]
    csrf = stranger.csrf_token() if forged.stolen_token else forged.csrf
    before = admin_state(backend)
    for what, (path, form) in [*unsafe_actions().items(), ("logout", ("/admin/logout", {}))]:
        response = victim.post(path, form, origin=forged.origin, csrf=csrf, headers=forged.headers)
        assert_refused(response, backend, before, what)
        assert REFUSED in response.text, what
    assert victim.get("/admin/entities").status_code == 200  # the forged logout did not log the victim out


def test_genuine_requests_pass_the_same_checks(backend: Backend, victim: AdminHttp, target: str) -> None:
    """The control for the forgeries: the same toggle, from this origin with this session's token, works."""
    assert stored_entities(backend)[TARGET][0] is True
    for wanted in (False, True):
        response = victim.post(f"/admin/entities/{TARGET}/toggle")
        assert response.status_code == 303 and response.headers["location"] == "/admin/entities", response.text
        assert stored_entities(backend)[TARGET][0] is wanted


def test_get_requests_change_nothing(backend: Backend, victim: AdminHttp, target: str) -> None:
    """GETs have no side effects: every page, and GET on every unsafe route (405, not an action)."""
    before = admin_state(backend)
    latest = backend.sql(sa.select(sa.func.max(dx_audit.c.id)))[0][0]
    for path in (
        "/admin/entities",
        f"/admin/entities/{TARGET}",
        "/admin/entities/new",
        "/admin/users",
        "/admin/clients",
        "/admin/keys",
        "/admin/audit",
        f"/admin/audit/{latest}",
        "/admin/config",
        "/admin/config/export",
    ):
        assert victim.get(path).status_code == 200, path
    for path, _ in unsafe_actions().values():
        if path not in (
            "/admin/entities/new",
            "/admin/users",
            "/admin/clients",
            "/admin/keys",
            f"/admin/entities/{TARGET}",
        ):  # these also have a page under GET, seen above
            assert victim.get(path).status_code == 405, path
    for path in ("/admin/logout", f"/admin/audit/{latest}/revert"):
        assert victim.get(path).status_code == 405, path
    assert admin_state(backend) == before


def test_cross_site_page_in_chromium_changes_nothing(
    browser: Browser, backend: Backend, victim: AdminHttp, target: str, evil_site: EvilSite
) -> None:
    """A page on another loopback port auto-submits forms to the admin in the logged-in browser: the browser
    sends the session cookie (same site), the admin refuses every one (403 page), nothing is stored —
    even when the attacker somehow knows the victim's CSRF token. (The browser adopts a scripted login's
    session: this is about forged requests, not about the login form.)"""
    browser.adopt_session(victim.session or "")
    token = browser.find("form#logout input[name=csrf]").get_attribute("value") or ""
    assert len(token) >= 32
    before = admin_state(backend)
    actions = unsafe_actions()
    attempts = {
        "toggle": (*actions["toggle"], False),
        "toggle-with-leaked-token": (*actions["toggle"], True),
        "save-grid-with-leaked-token": (*actions["save-grid"], True),
        "add-user-with-leaked-token": (*actions["add-user"], True),
        "add-key-with-leaked-token": (*actions["add-key"], True),
    }
    for name, (path, form, leaked) in attempts.items():
        fields = {**form, "csrf": token} if leaked else form
        browser.driver.get(evil_site.auto_submit(name, browser.url(path), fields))
        browser.wait_for(path)  # the attacker's script navigates to the admin's answer
        assert browser.find("p.error[role=alert]").text == REFUSED, name
        # The refusal page shows who is logged in: the browser did send the session cookie (the pages are
        # same-site), so it is the origin check, not a missing cookie, that stopped the request.
        assert browser.find_all("form#logout"), name
        assert admin_state(backend) == before, name
    browser.shot("csrf-refused")
    browser.open("/admin/entities")
    assert browser.path() == "/admin/entities"  # still logged in: the attack did not end the session either


def test_admin_pages_cannot_be_framed(browser: Browser, evil_site: EvilSite) -> None:
    """T40: another site framing the admin gets nothing: Chromium refuses (frame-ancestors 'none'), whether the
    browser is logged in (the list) or not (the redirect to the login page)."""
    browser.console()
    browser.driver.get(evil_site.frame("frame", browser.url("/admin/entities")))
    frame = browser.driver.find_element(By.ID, "victim")
    messages: list[str] = []
    for _ in range(60):
        messages += [str(e["message"]) for e in browser.console()]
        if any("frame-ancestors" in m for m in messages):
            break
        time.sleep(0.05)
    assert any("frame-ancestors" in m and "'none'" in m for m in messages), messages
    browser.driver.switch_to.frame(frame)
    try:
        assert browser.find_all("table#entities, form#logout, form#login") == []
    finally:
        browser.driver.switch_to.default_content()


# --- integrity ------------------------------------------------------------------------------------------------


def test_new_endpoint_with_a_taken_alias_replaces_nothing(backend: Backend, scratch: Scratch) -> None:
    """ "New endpoint" creates; it must never overwrite the live endpoint that already has the alias (which
    would switch it off and point it at another table). Expected: refused on the create page, nothing stored."""
    scratch.create_table(
        sa.Table(
            "adm_keep",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("note", sa.String(20), nullable=True),
        ),
        [{"note": "live"}],
    )
    scratch.create_table(
        sa.Table(
            "adm_spare",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        )
    )
    scratch.import_config(
        [
            {
                "tableName": "adm_keep",
                "tableAlias": "adm-keep",
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
                            "fieldName": "note",
                            "fieldVisibleName": "note",
                            "type": "string",
                            "isCreatable": True,
                            "isEditable": True,
                        },
                    ],
                },
            }
        ]
    )
    editor = logged_in(backend, new_account(backend, "editor"))
    try:
        before = admin_state(backend)
        response = editor.post("/admin/entities/new", {"table": "adm_spare", "alias": "adm-keep"})
        stored = backend.sql("SELECT table_name, is_active FROM dx_entity WHERE table_alias = 'adm-keep'")
        assert [tuple(r) for r in stored] == [("adm_keep", True)], f"the live endpoint was replaced: {stored}"
        assert response.status_code == 400 and 'id="create"' in response.text, response.status_code
        assert admin_state(backend) == before
    finally:
        editor.close()


# --- sessions -------------------------------------------------------------------------------------------------


def test_session_cookie_attributes_and_a_new_id_at_each_login(backend: Backend) -> None:
    """T41: HttpOnly, SameSite=Strict, scoped to /admin, no Domain; a planted id is replaced, never adopted;
    each login gets its own id; the database keeps only a digest of it."""
    admin_account = new_account(backend, "admin")
    planted = secrets.token_urlsafe(32)
    first = AdminHttp(backend.base_url, session=planted)
    second = AdminHttp(backend.base_url)
    try:
        response = first.login(admin_account.email, admin_account.password)
        assert response.status_code == 303 and response.headers["location"] == "/admin/entities"
        cookie = session_cookie(response)
        assert cookie is not None
        assert cookie["httponly"] is True and cookie["samesite"].lower() == "strict", cookie.OutputString()
        assert cookie["path"] == "/admin" and cookie["domain"] == "", cookie.OutputString()
        assert cookie.value != planted and len(cookie.value) >= 32
        attacker = AdminHttp(backend.base_url, session=planted)
        try:
            assert redirects_to_login(attacker.get("/admin/entities"))
        finally:
            attacker.close()

        second.login(admin_account.email, admin_account.password)
        assert second.session is not None and second.session != cookie.value
        for client in (first, second):
            assert client.get("/admin/entities").status_code == 200
        stored = {str(r[0]) for r in backend.sql("SELECT id_digest FROM dx_session")}
        assert cookie.value not in stored and second.session not in stored
    finally:
        first.close()
        second.close()


def test_logout_ends_the_session_on_the_server(backend: Backend, target: str) -> None:
    """T41: after logout, replaying the old cookie gets the login page, and its old token changes nothing."""
    client = logged_in(backend, new_account(backend, "admin"))
    try:
        old_session, old_token = client.session, client.csrf_token()
        response = client.post("/admin/logout", csrf=old_token)
        assert redirects_to_login(response), response.text
        cleared = session_cookie(response)
        assert cleared is not None and cleared.value == "", "logout does not clear the cookie"

        replay = AdminHttp(backend.base_url, session=old_session)
        try:
            for path in ("/admin/entities", f"/admin/entities/{TARGET}", "/admin/users"):
                assert redirects_to_login(replay.get(path)), path
            before = admin_state(backend)
            forged = replay.post(f"/admin/entities/{TARGET}/toggle", csrf=old_token)
            assert_refused(forged, backend, before, "toggle with a logged-out session")
        finally:
            replay.close()
    finally:
        client.close()


@pytest.mark.parametrize(
    ("idle", "age"),
    [(dt.timedelta(minutes=31), dt.timedelta(minutes=31)), (dt.timedelta(seconds=0), dt.timedelta(hours=8, minutes=1))],
    ids=["idle-31-min", "absolute-8-h-1-min"],
)
def test_sessions_expire_when_idle_or_too_old(backend: Backend, idle: dt.timedelta, age: dt.timedelta) -> None:
    """T41: a session unused for 31 minutes, or logged in 8 h 1 min ago though in use, is over: the login page,
    and its row is gone. (Time travel: the session's timestamps are moved back in the database.)"""
    client = logged_in(backend, new_account(backend, "viewer"))
    try:
        assert client.get("/admin/entities").status_code == 200
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
        row = dx_session.c.id_digest == digest(client.session or "")
        backend.sql(sa.update(dx_session).where(row).values(created_at=now - age, seen_at=now - idle))
        assert redirects_to_login(client.get("/admin/entities"))
        assert backend.sql(sa.select(dx_session.c.id).where(row)) == []
    finally:
        client.close()


def test_admin_pages_send_strict_security_headers(backend: Backend, victim: AdminHttp, target: str) -> None:
    """T40: CSP without unsafe-inline/unsafe-eval and frame-ancestors 'none', X-Frame-Options DENY, nosniff,
    no-store and a referrer policy on every kind of admin answer (page, login, error, export)."""
    anonymous = AdminHttp(backend.base_url)
    try:
        answers = {
            "login": anonymous.get("/admin/login"),
            "list": victim.get("/admin/entities"),
            "edit": victim.get(f"/admin/entities/{TARGET}"),
            "users": victim.get("/admin/users"),
            "export": victim.get("/admin/config/export"),
            "not-found": victim.get("/admin/entities/no-such-alias"),
            "refused": victim.post(f"/admin/entities/{TARGET}/toggle", csrf=None),
            "no-session": anonymous.get("/admin/entities"),
        }
    finally:
        anonymous.close()
    for name, response in answers.items():
        headers = response.headers
        policy = headers.get("content-security-policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, (name, policy)
        assert directives.get("frame-ancestors") == ["'none'"], (name, policy)
        assert "script-src" in directives or "default-src" in directives, (name, policy)
        assert "*" not in directives.get("script-src", directives.get("default-src", [])), (name, policy)
        assert headers.get("x-frame-options") == "DENY", name
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("cache-control") == "no-store", name
        assert headers.get("referrer-policy") in ("no-referrer", "same-origin", "strict-origin"), name


# --- roles ----------------------------------------------------------------------------------------------------


def test_viewer_sees_pages_but_every_change_is_refused(backend: Backend, target: str) -> None:
    """T43: a viewer reads the list, an edit grid, the audit log; every change, even with a valid session, token
    and origin, is refused with 403 and nothing is stored. Their pages offer no buttons that change things."""
    viewer = logged_in(backend, new_account(backend, "viewer"))
    try:
        latest = backend.sql(sa.select(sa.func.max(dx_audit.c.id)))[0][0]
        for path in (
            "/admin/entities",
            f"/admin/entities/{TARGET}",
            "/admin/audit",
            f"/admin/audit/{latest}",
            "/admin/config",
            "/admin/config/export",
        ):
            assert viewer.get(path).status_code == 200, path
        for path in ("/admin/entities/new", "/admin/users", "/admin/clients", "/admin/keys"):
            assert viewer.get(path).status_code == 403, path
        listing, grid = viewer.get("/admin/entities").text, viewer.get(f"/admin/entities/{TARGET}").text
        assert 'class="toggle"' not in listing and 'id="create"' not in listing
        assert 'id="save"' not in grid and 'id="add-relation"' not in grid

        before = admin_state(backend)
        attempts = {
            **unsafe_actions(),
            "revert": (f"/admin/audit/{latest}/revert", {}),
            "disable-user": (f"/admin/users/{principal_state(backend)['users'][0][0]}/disable", {}),
        }
        for what, (path, form) in attempts.items():
            assert_refused(viewer.post(path, form), backend, before, what)
    finally:
        viewer.close()


def test_editor_cannot_reach_users_clients_or_keys(backend: Backend, target: str) -> None:
    """Only admins manage principals: an editor gets 403 on those pages and their forms, and no nav links."""
    editor = logged_in(backend, new_account(backend, "editor"))
    try:
        listing = editor.get("/admin/entities")
        assert listing.status_code == 200 and 'href="/admin/users"' not in listing.text
        assert editor.get(f"/admin/entities/{TARGET}").status_code == 200
        for path in ("/admin/users", "/admin/clients", "/admin/keys"):
            assert editor.get(path).status_code == 403, path
        before = admin_state(backend)
        actions = unsafe_actions()
        someone = principal_state(backend)["users"][0][0]
        for what, (path, form) in {
            "add-user": actions["add-user"],
            "add-client": actions["add-client"],
            "add-key": actions["add-key"],
            "disable-user": (f"/admin/users/{someone}/disable", {}),
        }.items():
            assert_refused(editor.post(path, form), backend, before, what)
    finally:
        editor.close()


# --- login abuse ----------------------------------------------------------------------------------------------


def test_failed_logins_all_answer_alike(backend: Backend) -> None:
    """T42: wrong password, unknown email and a disabled user's right password get the same status and body,
    and no cookie (no user enumeration)."""
    known = new_account(backend, "viewer")
    disabled = new_account(backend, "viewer")
    on_db(backend, lambda engine: principals.set_user(engine, disabled.email, is_active=False))
    answers = {}
    for name, (email, password) in {
        "wrong-password": (known.email, known.password + "x"),
        "unknown-email": (f"nobody-{secrets.token_hex(4)}@example.com", known.password),
        "disabled-user": (disabled.email, disabled.password),
    }.items():
        client = AdminHttp(backend.base_url)
        try:
            response = client.login(email, password)
        finally:
            client.close()
        assert session_cookie(response) is None, name
        answers[name] = (response.status_code, response.text)
    assert answers["wrong-password"][0] == 401
    assert answers["unknown-email"] == answers["wrong-password"] == answers["disabled-user"]


def test_login_is_throttled_per_email(backend: Backend) -> None:
    """T42: the 6th attempt for one email within a minute → 429, even with the right password, with the email
    in other case, or from another address; another email from the same address is not affected."""
    account = new_account(backend, "viewer")
    client, elsewhere = AdminHttp(backend.base_url), AdminHttp(backend.base_url)
    try:
        for attempt in range(5):
            assert client.login(account.email, f"wrong-{attempt}").status_code == 401, attempt
        refused = client.login(account.email, "wrong-6")
        assert refused.status_code == 429 and "Too many attempts" in refused.text
        for email, source in [
            (account.email, client),
            (account.email.upper(), client),
            (f"  {account.email} ", client),
            (account.email, elsewhere),
        ]:
            response = source.login(email, account.password)
            assert response.status_code == 429 and session_cookie(response) is None, (email, source.source)
        other = new_account(backend, "viewer")
        assert client.login(other.email, other.password).status_code == 303
    finally:
        client.close()
        elsewhere.close()
