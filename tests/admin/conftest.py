"""Fixtures of the back-office suite: a real headless Chromium, scripted admin sessions, scratch tables.

The admin pages are exercised through the server the root ``backend`` fixture starts, on SQLite and PostgreSQL
only (``ADMIN_BACKENDS``; the pages sit above the store and are the same on every database, two backends keep
the module fast). Two kinds of client:

- ``chromium``: one Debian Chromium for the whole session, driven by Debian's ChromeDriver (selenium is never
  allowed to fetch a browser or a driver). ``Browser`` points it at one backend: log in through the form (or
  adopt the session of a scripted login, for tests about something else), wait for the next page after a
  submit, take screenshots into ``test-artifacts/screenshots/<backend>-<page>.png``, look for JavaScript dialogs
  and console errors.
- ``AdminHttp``: a scripted client (httpx) that keeps the session cookie itself, so a test can replay, drop or
  swap it, and that sends ``Origin`` and the CSRF token as the test says.

Every scripted client connects from its own loopback source address (127.0.x.y): all test servers run in this
process and share the login throttle's per-address counter (20 attempts a minute), which would otherwise couple
unrelated tests. Tables and endpoints a test creates are registered with ``Scratch`` and removed at the end of
the module, so the rest of the suite sees the database as the root fixture built it.
"""

from __future__ import annotations

import enum
import itertools
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.admin.sessions import COOKIE
from dxapi.auth import principals
from dxapi.registry.tables import dx_config_version, dx_entity
from tests.conftest import BACKENDS, ROOT, Backend, unconfigure

T = TypeVar("T")

ADMIN_BACKENDS = [name for name in BACKENDS if name != "mysql"]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
WINDOW = (1700, 1000)
CROSS_ORIGIN_REFUSAL = "This request did not come from this page; nothing changed."
LIVE_WITHIN = 2.0  # seconds: a saved change must reach the API this fast (DESIGN §7 promises one second)


def on_admin_backends() -> pytest.MarkDecorator:
    """Run a module's tests on SQLite and PostgreSQL only (MySQL is left out for the back office on purpose)."""
    return pytest.mark.parametrize("backend", ADMIN_BACKENDS, indirect=True)


# --- database access ------------------------------------------------------------------------------------------


def on_db(backend: Backend, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work(engine)`` on the test's event loop with a throw-away engine on the backend's database."""
    result: T = backend.with_engine(work)
    return result


def config_version(backend: Backend) -> int:
    """The stored configuration version (bumped by every saved change)."""
    return int(backend.sql(sa.select(dx_config_version.c.version).where(dx_config_version.c.id == 1))[0][0])


def stored_entities(backend: Backend) -> dict[str, tuple[bool, str]]:
    """Every stored endpoint: alias → (is_active, definition JSON text), exactly as in ``dx_entity``."""
    rows = backend.sql(sa.select(dx_entity.c.table_alias, dx_entity.c.is_active, dx_entity.c.definition))
    return {str(row.table_alias): (bool(row.is_active), str(row.definition)) for row in rows}


_CONFIG_QUERIES = {
    "version": "SELECT version FROM dx_config_version",
    "entities": "SELECT table_alias, is_active, definition FROM dx_entity ORDER BY table_alias",
    "relations": "SELECT parent_entity_id, name, child_entity_id FROM dx_relation ORDER BY id",
}
_PRINCIPAL_QUERIES = {
    "users": "SELECT email, role, is_active FROM dx_user ORDER BY email",
    "clients": "SELECT client_id, is_active FROM dx_client ORDER BY client_id",
    "keys": "SELECT prefix, revoked_at FROM dx_api_key ORDER BY prefix",
}


def _read(backend: Backend, queries: Mapping[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Run several read queries on one connection (a state snapshot is taken often: keep it cheap)."""

    async def go(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
        async with engine.connect() as conn:
            return {name: [tuple(r) for r in await conn.execute(sa.text(sql))] for name, sql in queries.items()}

    return on_db(backend, go)


def config_state(backend: Backend) -> dict[str, list[tuple[Any, ...]]]:
    """Version, endpoints and relations as stored: what any configuration change would alter."""
    return _read(backend, _CONFIG_QUERIES)


def principal_state(backend: Backend) -> dict[str, list[tuple[Any, ...]]]:
    """Users, OAuth clients and API keys as stored: what any principal change would alter."""
    return _read(backend, _PRINCIPAL_QUERIES)


def admin_state(backend: Backend) -> dict[str, list[tuple[Any, ...]]]:
    """Everything an admin request could change: configuration and principals, in one snapshot."""
    return _read(backend, {**_CONFIG_QUERIES, **_PRINCIPAL_QUERIES})


def _drop_table(sync: sa.Connection, table: sa.Table) -> None:
    table.drop(sync, checkfirst=True)


@dataclass
class Scratch:
    """Tables and endpoints one module creates on one backend; ``clean`` takes them all away again."""

    backend: Backend
    aliases: list[str] = field(default_factory=list)
    tables: list[sa.Table] = field(default_factory=list)

    def create_table(self, table: sa.Table, rows: Iterable[Mapping[str, Any]] = ()) -> sa.Table:
        """Create ``table`` (dropped first if an earlier run left it) and insert ``rows``."""
        data = [dict(r) for r in rows]

        async def go(engine: AsyncEngine) -> None:
            async with engine.begin() as conn:
                await conn.run_sync(_drop_table, table)
                await conn.run_sync(table.create)
                if data:
                    await conn.execute(table.insert(), data)

        on_db(self.backend, go)
        self.tables.append(table)
        return table

    def endpoint(self, alias: str) -> str:
        """Register an endpoint a test is about to create (through the pages or an import)."""
        self.aliases.append(alias)
        return alias

    def import_config(self, entries: list[dict[str, Any]]) -> None:
        """Store endpoints as ``dxapi config import`` does and wait until the server serves them."""
        for entry in entries:
            self.endpoint(entry["tableAlias"])
        self.backend.import_config(entries)

    def clean(self) -> None:
        """Remove the endpoints behind dxapi's back (it has no delete yet), wait for the reload, drop tables."""
        aliases = list(dict.fromkeys(self.aliases))

        async def drop(engine: AsyncEngine) -> None:
            async with engine.begin() as conn:
                for table in reversed(self.tables):
                    await conn.run_sync(_drop_table, table)

        if aliases:
            self.backend.wait_for_version(on_db(self.backend, lambda engine: unconfigure(engine, aliases)))
        on_db(self.backend, drop)


@pytest.fixture(scope="module")
def scratch(backend: Backend) -> Iterator[Scratch]:
    """A per-module, per-backend register of created tables and endpoints, cleaned up afterwards."""
    found = Scratch(backend)
    try:
        yield found
    finally:
        found.clean()


def poll(
    fetch: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool], timeout: float = LIVE_WITHIN
) -> httpx.Response:
    """Call ``fetch`` until ``done`` holds or ``timeout`` passes; return the last response either way."""
    deadline = time.monotonic() + timeout
    while True:
        response = fetch()
        if done(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def error_codes(response: httpx.Response) -> list[str]:
    """The codes of an API error body (a JSON array of ``{"code", "status", "message"}``)."""
    body = response.json()
    assert isinstance(body, list), body
    return [str(item["code"]) for item in body]


# --- accounts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """A back-office user created through ``principals.add_user``."""

    email: str
    password: str
    role: str


def new_account(backend: Backend, role: str) -> Account:
    """A fresh active back-office user with ``role`` (admin, editor or viewer)."""
    account = Account(f"{role}-{secrets.token_hex(5)}@example.com", secrets.token_urlsafe(18), role)
    on_db(backend, lambda engine: principals.add_user(engine, account.email, account.password, role))
    return account


@pytest.fixture(scope="session")
def admin_account(backend: Backend) -> Account:
    """One admin per backend, shared by the browser tests (the browser logs in once and stays logged in)."""
    return new_account(backend, "admin")


@pytest.fixture(scope="module")
def admin_session(backend: Backend) -> str:
    """The session id of a fresh admin, logged in by a scripted client, for a browser to adopt."""
    client = logged_in(backend, new_account(backend, "admin"))
    client.close()
    assert client.session is not None
    return client.session


# --- scripted client ------------------------------------------------------------------------------------------

_SOURCES = itertools.count()


def next_source_address() -> str:
    """A loopback address no other client of this run uses: 127.0.0.10, 127.0.0.11, … (Linux routes 127/8)."""
    n = next(_SOURCES)
    return f"127.0.{n // 240}.{10 + n % 240}"


def session_cookie(response: httpx.Response) -> Morsel[str] | None:
    """The admin session cookie a response sets (or deletes), with its attributes; None if it sets none."""
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if COOKIE in jar:
            return jar[COOKIE]
    return None


class Own(enum.Enum):
    """Marker: send the client's own Origin or CSRF token (the default of ``AdminHttp.post``)."""

    OWN = "own"


OWN = Own.OWN
_CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')


class AdminHttp:
    """A scripted back-office client: explicit session cookie, explicit ``Origin`` and CSRF token.

    >>> client = AdminHttp(backend.base_url); client.login(email, password)   # doctest: +SKIP
    >>> client.post("/admin/entities/x/toggle", {})                             # doctest: +SKIP
    """

    def __init__(self, base_url: str, session: str | None = None) -> None:
        self.origin = base_url
        self.source = next_source_address()
        self.session = session
        self._token: tuple[str | None, str] | None = None  # (session, its CSRF token)
        self.http = httpx.Client(
            base_url=base_url,
            timeout=30,
            follow_redirects=False,
            transport=httpx.HTTPTransport(local_address=self.source),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(
        self, method: str, path: str, *, data: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Send with this client's session cookie (if any) and nothing else from a cookie jar."""
        sent = dict(headers or {})
        if self.session is not None:
            sent["Cookie"] = f"{COOKIE}={self.session}"
        response = self.http.request(method, path, data=data, headers=sent)
        self.http.cookies.clear()  # the session is the test's to manage, never the jar's
        return response

    def get(self, path: str) -> httpx.Response:
        """A GET as a same-origin navigation would send it."""
        return self.request("GET", path)

    def login(self, email: str, password: str) -> httpx.Response:
        """Post the login form from this origin; keep the session cookie the answer sets."""
        response = self.request(
            "POST", "/admin/login", data={"email": email, "password": password}, headers={"Origin": self.origin}
        )
        issued = session_cookie(response)
        if issued is not None and issued.value:
            self.session = issued.value
        return response

    def csrf_token(self) -> str:
        """This session's CSRF token, read from a page as a browser would (the logout form is on every page);
        read once per session."""
        if self._token is None or self._token[0] != self.session:
            page = self.get("/admin/entities")
            assert page.status_code == 200, (page.status_code, page.headers.get("location"))
            found = _CSRF_INPUT.search(page.text)
            assert found is not None, "no CSRF token on the page"
            self._token = (self.session, found.group(1))
        return self._token[1]

    def post(
        self,
        path: str,
        data: Mapping[str, str] | None = None,
        *,
        origin: str | Own | None = OWN,
        csrf: str | Own | None = OWN,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Post a form: by default from this origin with this session's token; ``None`` leaves either out."""
        form = dict(data or {})
        if csrf is OWN:
            form["csrf"] = self.csrf_token()
        elif csrf is not None:
            form["csrf"] = csrf
        sent = dict(headers or {})
        if origin is OWN:
            sent["Origin"] = self.origin
        elif origin is not None:
            sent["Origin"] = origin
        return self.request("POST", path, data=form, headers=sent)


def logged_in(backend: Backend, account: Account) -> AdminHttp:
    """A scripted client with a fresh session of ``account`` (asserts the login worked)."""
    client = AdminHttp(backend.base_url)
    response = client.login(account.email, account.password)
    assert response.status_code == 303 and response.headers["location"] == "/admin/entities", response.text
    return client


def redirects_to_login(response: httpx.Response) -> bool:
    """True for the answer to a page request without a valid session."""
    return response.status_code == 303 and response.headers.get("location") == "/admin/login"


# --- browser --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[WebDriver]:
    """Debian's headless Chromium through Debian's ChromeDriver, a fresh profile, console logs kept."""
    with tempfile.TemporaryDirectory(prefix="dxapi-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(20)
        try:
            yield driver
        finally:
            driver.quit()


@dataclass
class Browser:
    """The session's Chromium pointed at one backend's server."""

    driver: WebDriver
    backend: Backend

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this backend's server."""
        return f"{self.backend.base_url}{path}"

    def open(self, path: str) -> None:
        """Navigate to ``path`` and wait for the load event."""
        self.driver.get(self.url(path))

    def find(self, css: str) -> WebElement:
        """The one element matching ``css`` on the current page."""
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        """Every element matching ``css`` on the current page."""
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def path(self) -> str:
        """The current URL without scheme, host and port."""
        current: str = self.driver.current_url
        return current.removeprefix(self.backend.base_url)

    def submit(self, button: WebElement) -> None:
        """Click a submit button and wait until the next page (after any redirect) has loaded."""
        page = self.find("html")
        button.click()

        def replaced(driver: WebDriver) -> bool:
            try:
                page.is_enabled()
            except WebDriverException:  # stale, or "node does not belong to the document" mid-navigation
                return True
            return False

        wait = WebDriverWait(self.driver, 10, poll_frequency=0.02, ignored_exceptions=(WebDriverException,))
        wait.until(replaced)
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        refusals = [e.text for e in self.find_all("p.error[role=alert]") if e.text == CROSS_ORIGIN_REFUSAL]
        if refusals:
            self.shot("post-refused")
            raise AssertionError(
                f"the admin refused Chromium's own same-origin form post as cross-origin: "
                f"{refusals[0]!r} (at {self.path()})"
            )

    def wait_for(self, path: str, timeout: float = 5.0) -> None:
        """Wait until the browser shows ``path`` of this server, fully loaded (after a script navigated)."""
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.02, ignored_exceptions=(WebDriverException,))
        try:
            wait.until(lambda d: self.path() == path and d.execute_script("return document.readyState") == "complete")
        except TimeoutException:
            raise AssertionError(f"expected {path}, the browser shows {self.driver.current_url}") from None

    def login(self, account: Account) -> None:
        """Log in through the form on the login page; land on the endpoint list."""
        self.open("/admin/login")
        self.find("form#login input[name=email]").send_keys(account.email)
        self.find("form#login input[name=password]").send_keys(account.password)
        self.submit(self.find("form#login button[type=submit]"))
        if self.path() != "/admin/entities":
            self.shot("login-refused")
            shown = [e.text for e in self.find_all("[role=alert]")]
            raise AssertionError(
                f"login through the form in Chromium was refused: now at {self.path()}, page says {shown}"
            )

    def adopt_session(self, session: str) -> None:
        """Hold ``session`` as the login form would have set it (a test of something other than the login
        form gets its session from a scripted login, then browses with it)."""
        self.open("/admin/login")
        self.driver.delete_cookie(COOKIE)
        self.driver.add_cookie(
            {"name": COOKIE, "value": session, "path": "/admin", "httpOnly": True, "sameSite": "Strict"}
        )
        self.open("/admin/entities")
        assert self.path() == "/admin/entities", self.path()
        self.console()

    def session(self) -> str | None:
        """The value of the admin session cookie the browser holds for this host."""
        cookie = self.driver.get_cookie(COOKIE)
        return str(cookie["value"]) if cookie else None

    def raw(self, path: str) -> httpx.Response:
        """The page as the server sent it (not the DOM): fetched with this browser's session cookie."""
        client = AdminHttp(self.backend.base_url, self.session())
        try:
            return client.get(path)
        finally:
            client.close()

    def shot(self, page: str) -> Path:
        """Save a full-height screenshot as ``test-artifacts/screenshots/<backend>-<page>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        self.driver.set_window_size(WINDOW[0], min(max(WINDOW[1], height + 40), 4000))
        target = SCREENSHOTS / f"{self.backend.name}-{page}.png"
        try:
            assert self.driver.save_screenshot(str(target)), target
        finally:
            self.driver.set_window_size(*WINDOW)
        return target

    def dialog_text(self, wait: float = 0.3) -> str | None:
        """The text of a JavaScript dialog that opens within ``wait`` seconds (dismissed), else None."""
        try:
            WebDriverWait(self.driver, wait, poll_frequency=0.02).until(expected_conditions.alert_is_present())
        except TimeoutException:
            return None
        alert = self.driver.switch_to.alert
        text = str(alert.text)
        alert.dismiss()
        return text

    def console(self) -> list[dict[str, Any]]:
        """Console entries since the last call (reading drains the log)."""
        return list(self.driver.get_log("browser"))  # type: ignore[no-untyped-call]

    def console_errors(self) -> list[str]:
        """SEVERE console messages since the last call, except the browser's own favicon request."""
        return [
            str(e["message"])
            for e in self.console()
            if e.get("level") == "SEVERE" and "favicon.ico" not in str(e["message"])
        ]


@pytest.fixture
def browser(chromium: WebDriver, backend: Backend) -> Browser:
    """Chromium on this backend's server, in whatever state earlier tests left it."""
    return Browser(chromium, backend)
