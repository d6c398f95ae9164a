"""Back-office hardening (issue 9, items 9, 11, 18 and 20).

- Bodies: an admin request body is read only after the session, the origin and (for uploads) the CSRF token
  were checked, and never beyond a cap: 1 MiB for forms, ``DXAPI_ADMIN_MAX_IMPORT_BYTES`` for a configuration
  upload. "Not read" is measured on a raw socket: the headers promise a huge body, a few bytes follow, and the
  answer must arrive while the rest of the body is still missing; a chunked body is answered 413 as soon as it
  crosses the cap, before it ends.
- Form values: numbers out of range, text where a number belongs, over-long names and NUL characters answer
  the page again with 400 and a message, never 500, and nothing is stored.
- Relations added on the page follow the import's name rule; new endpoints do not offer timestamps the
  database maintains as creatable or editable.
- Cookies: behind a trusted TLS-terminating proxy (``DXAPI_TRUSTED_PROXIES``) the session cookie is
  ``__Host-``-prefixed and ``Secure``; ``X-Forwarded-Proto`` from any other peer is ignored.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import sqlalchemy as sa

from dxapi.admin.sessions import COOKIE
from dxapi.registry.store import parse_import
from dxapi.schema.typemap import maintained_by_database
from dxapi.settings import Settings
from tests.admin.conftest import (
    AdminHttp,
    Browser,
    Scratch,
    admin_state,
    config_state,
    logged_in,
    new_account,
    next_source_address,
    on_admin_backends,
    principal_state,
    redirects_to_login,
    session_cookie,
    stored_entities,
)
from tests.conftest import Backend, _start_server

ADMIN_BACKENDS = on_admin_backends()
MIB = 1024 * 1024
FORM_CAP = MIB  # the documented cap of an admin form post
PROMPT = 2.0  # seconds: an answer that does not wait for the body arrives well within this
REFUSED = "This request did not come from this page; nothing changed."
TARGET = "hard-targets"
TRUSTED_NET = "127.0.200.0/24"  # the proxy network of the proxied server; the conftest never hands these out
TRUSTED_PEER = "127.0.200.7"
UNTRUSTED_PEER = "127.0.201.7"


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(backend: Backend, scratch: Scratch) -> str:
    """An endpoint of this module's own (grid and relation tests change it) over a table with a child table."""
    scratch.create_table(
        sa.Table(
            "hard_target",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("label", sa.String(40), nullable=True),
            sa.Column("weight", sa.Float, nullable=True),
            sa.Column("price", sa.Numeric(8, 2), nullable=True),
        ),
        [{"label": "kept", "weight": 1.5, "price": "2.50"}],
    )
    scratch.create_table(
        sa.Table(
            "hard_child",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("fk_target", sa.Integer, nullable=True),
        )
    )
    fields = [
        {"fieldName": "id", "fieldVisibleName": "id", "type": "integer", "isCreatable": False, "isEditable": False},
        {"fieldName": "label", "fieldVisibleName": "label", "type": "string", "isCreatable": True, "isEditable": True},
        {"fieldName": "weight", "fieldVisibleName": "weight", "type": "float", "isCreatable": True, "isEditable": True},
        {"fieldName": "price", "fieldVisibleName": "price", "type": "decimal", "isCreatable": True, "isEditable": True},
    ]
    scratch.import_config(
        [
            {
                "tableName": "hard_target",
                "tableAlias": TARGET,
                "isActive": True,
                "definition": {"identifier": "id", "fields": fields},
            },
            {
                "tableName": "hard_child",
                "tableAlias": "hard-children",
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
                            "fieldName": "fk_target",
                            "fieldVisibleName": "fkTarget",
                            "type": "integer",
                            "isCreatable": True,
                            "isEditable": True,
                        },
                    ],
                },
            },
        ]
    )
    return TARGET


@pytest.fixture(scope="module")
def admin(backend: Backend, target: str) -> Iterator[AdminHttp]:
    """A logged-in admin of this module (the login throttle counts every login per email: one is enough)."""
    client = logged_in(backend, new_account(backend, "admin"))
    try:
        yield client
    finally:
        client.close()


def grid(**row_values: str) -> dict[str, str]:
    """The target's edit grid as its page would post it, with ``<column>__<key>`` cells replaced."""
    rows = [("id", "integer"), ("label", "string"), ("weight", "float"), ("price", "decimal")]
    form = {"alias": TARGET, "identifier": "id", "is_active": "on"}
    for index, (column, kind) in enumerate(rows):
        form |= {
            f"f-{index}-column": column,
            f"f-{index}-name": column,
            f"f-{index}-type": kind,
            f"f-{index}-enabled": "on",
        }
        if column != "id":
            form |= {f"f-{index}-creatable": "on", f"f-{index}-editable": "on"}
        for name, value in row_values.items():
            wanted_column, key = name.split("__")
            if wanted_column == column:
                form[f"f-{index}-{key}"] = value
    return form


# --- raw HTTP -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawAnswer:
    """What came back on a raw connection: the status (None: nothing within the wait) and how long it took."""

    status: int | None
    head: str
    seconds: float


def _read_answer(sock: socket.socket, started: float, wait: float) -> RawAnswer:
    received = b""
    deadline = started + wait
    while b"\r\n\r\n" not in received:
        left = deadline - time.monotonic()
        if left <= 0:
            return RawAnswer(None, received.decode("latin-1"), time.monotonic() - started)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return RawAnswer(None, received.decode("latin-1"), time.monotonic() - started)
        if not chunk:
            break
        received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = int(head.split(" ", 2)[1]) if head.startswith("HTTP/1.1 ") else None
    return RawAnswer(status, head, time.monotonic() - started)


def raw_post(
    base_url: str,
    path: str,
    headers: dict[str, str],
    *,
    declared: int | None = None,
    sent: bytes = b"",
    chunked: int = 0,
    wait: float = PROMPT,
) -> RawAnswer:
    """POST on a raw socket. ``declared``: a Content-Length, of which only ``sent`` follows; ``chunked``: that
    many body bytes in chunks of up to 64 KiB, never the final chunk (the body does not end; the cap tests send
    one byte more than the cap, so the server has read all that was sent when it answers). Either way the
    request stays incomplete: an answer proves the server did not wait for (read) the rest."""
    url = urlsplit(base_url)
    lines = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append(f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked")
    with socket.create_connection(
        (url.hostname, url.port), timeout=wait, source_address=(next_source_address(), 0)
    ) as sock:
        started = time.monotonic()
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + sent)
        left = chunked
        while left > 0 and not select.select([sock], [], [], 0)[0]:  # answered: stop sending
            piece = b"x" * min(left, 65536)
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                break
            left -= len(piece)
        return _read_answer(sock, started, wait)


def cookie_header(client: AdminHttp) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={client.session}"}


def assert_prompt(answer: RawAnswer, status: int, what: str) -> None:
    assert answer.status is not None, f"{what}: no answer within {PROMPT}s: the server waited for the body"
    assert answer.status == status, (what, answer.head)
    assert answer.seconds < PROMPT, (what, answer.seconds)
    assert "connection: close" in answer.head.lower(), (what, answer.head)


# --- item 9: bodies read only after the checks, and bounded -----------------------------------------------------

MULTIPART = "multipart/form-data; boundary=xyz"
FORM = "application/x-www-form-urlencoded"


@ADMIN_BACKENDS
def test_unauthenticated_posts_are_refused_without_reading_the_body(backend: Backend, target: str) -> None:
    """No session: an upload and a form post that announce 50 MB are refused (403) at once, unread."""
    before = admin_state(backend)
    for path, kind in (("/admin/config/import", MULTIPART), ("/admin/users", FORM)):
        answer = raw_post(
            backend.base_url,
            path,
            {"Origin": backend.base_url, "Content-Type": kind},
            declared=50 * MIB,
            sent=b"--xyz\r\n",
        )
        assert_prompt(answer, 403, path)
    assert admin_state(backend) == before


@ADMIN_BACKENDS
def test_uploads_need_origin_and_a_header_token_before_the_body_is_read(backend: Backend, admin: AdminHttp) -> None:
    """With a valid session: a foreign origin, a missing or wrong token, or a token only inside the multipart
    body (which would have to be read to find it) → 403 at once, unread; a viewer's upload likewise."""
    token = admin.csrf_token()
    base = {**cookie_header(admin), "Content-Type": MULTIPART}
    viewer = logged_in(backend, new_account(backend, "viewer"))
    before = admin_state(backend)
    cases = {
        "foreign-origin": ({**base, "Origin": "https://evil.example", "X-CSRF-Token": token}, ""),
        "cross-site-fetch": (
            {**base, "Origin": backend.base_url, "Sec-Fetch-Site": "cross-site", "X-CSRF-Token": token},
            "",
        ),
        "token-only-in-body": ({**base, "Origin": backend.base_url}, ""),
        "wrong-header-token": ({**base, "Origin": backend.base_url, "X-CSRF-Token": "x" * 43}, ""),
        "wrong-query-token": ({**base, "Origin": backend.base_url}, "?csrf=" + "x" * 43),
    }
    for what, (headers, query) in cases.items():
        body = b'--xyz\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n' + token.encode() + b"\r\n"
        answer = raw_post(backend.base_url, "/admin/config/import" + query, headers, declared=50 * MIB, sent=body)
        assert_prompt(answer, 403, what)
    try:
        answer = raw_post(
            backend.base_url,
            "/admin/config/import",
            {
                **cookie_header(viewer),
                "Content-Type": MULTIPART,
                "Origin": backend.base_url,
                "X-CSRF-Token": viewer.csrf_token(),
            },
            declared=50 * MIB,
        )
        assert_prompt(answer, 403, "viewer")
    finally:
        viewer.close()
    assert admin_state(backend) == before


@ADMIN_BACKENDS
def test_oversized_bodies_answer_413_before_reading(backend: Backend, admin: AdminHttp) -> None:
    """A declared length over the cap → 413 at once: an upload over the import setting, a form over 1 MiB,
    a login form over 1 MiB. Nothing stored changes."""
    cap = backend.settings.admin_max_import_bytes
    assert cap == 10 * MIB  # the documented default
    genuine = {**cookie_header(admin), "Origin": backend.base_url}
    before = admin_state(backend)
    cases = {
        "upload": (
            "/admin/config/import",
            {**genuine, "Content-Type": MULTIPART, "X-CSRF-Token": admin.csrf_token()},
            cap + 1,
        ),
        "form": ("/admin/users", {**genuine, "Content-Type": FORM}, FORM_CAP + 1),
        "login": ("/admin/login", {"Origin": backend.base_url, "Content-Type": FORM}, FORM_CAP + 1),
    }
    for what, (path, headers, size) in cases.items():
        answer = raw_post(backend.base_url, path, headers, declared=size, sent=b"csrf=")
        assert_prompt(answer, 413, what)
    assert admin_state(backend) == before


@ADMIN_BACKENDS
def test_chunked_bodies_are_cut_off_at_the_cap(backend: Backend, admin: AdminHttp) -> None:
    """No Content-Length: the server counts while it reads and answers 413 once the body passes the cap,
    without waiting for the body to end (it never does here)."""
    cap = backend.settings.admin_max_import_bytes
    genuine = {**cookie_header(admin), "Origin": backend.base_url}
    before = admin_state(backend)
    upload = raw_post(
        backend.base_url,
        "/admin/config/import",
        {**genuine, "Content-Type": MULTIPART, "X-CSRF-Token": admin.csrf_token()},
        chunked=cap + 1,
        wait=10,
    )
    assert upload.status == 413, upload.head
    form = raw_post(backend.base_url, "/admin/users", {**genuine, "Content-Type": FORM}, chunked=FORM_CAP + 1, wait=10)
    assert form.status == 413, form.head
    assert admin_state(backend) == before


def import_entry(alias: str) -> dict[str, object]:
    return {
        "tableName": "hard_child",
        "tableAlias": alias,
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
                    "fieldName": "fk_target",
                    "fieldVisibleName": "fkTarget",
                    "type": "integer",
                    "isCreatable": True,
                    "isEditable": True,
                },
            ],
        },
    }


@ADMIN_BACKENDS
def test_genuine_uploads_pass_with_the_token_in_a_header_or_the_query(backend: Backend, admin: AdminHttp) -> None:
    """The control: the same upload with the token in ``X-CSRF-Token`` or in ``?csrf=`` is imported; an
    unreadable multipart body is a 400 page, not a 500."""
    entry = import_entry("hard-children")
    document = orjson.dumps([entry])
    token = admin.csrf_token()
    cookies = {**cookie_header(admin), "Origin": backend.base_url}
    for path, headers in (
        ("/admin/config/import", {**cookies, "X-CSRF-Token": token}),
        (f"/admin/config/import?csrf={token}", cookies),
    ):
        response = admin.http.post(path, files={"file": ("config.json", document, "application/json")}, headers=headers)
        assert response.status_code == 200, response.text
        assert "Imported 1 endpoints" in response.text
    broken = admin.http.post(
        "/admin/config/import",
        content=b"--nope",
        headers={**cookies, "X-CSRF-Token": token, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert broken.status_code == 400, broken.text


@ADMIN_BACKENDS
def test_the_import_form_works_in_chromium(
    browser: Browser, admin_session: str, backend: Backend, target: str, tmp_path: Path
) -> None:
    """The page's own import form (no script) sends the token the way the server now wants it."""
    browser.adopt_session(admin_session)
    document = tmp_path / "config.json"
    document.write_bytes(orjson.dumps([import_entry("hard-children")]))
    version = config_state(backend)["version"]
    browser.open("/admin/config")
    browser.find("form#import input[type=file]").send_keys(str(document))
    browser.submit(browser.find("form#import button[type=submit]"))
    assert "Imported 1 endpoints" in browser.find("p.ok[role=status]").text
    assert config_state(backend)["version"] != version
    browser.shot("import-done")


# --- item 11: every form value validated, 400 and never 500 -----------------------------------------------------

BAD_GRIDS = {
    "huge-min-length": grid(label__min_length="1" + "0" * 30),
    "negative-max-length": grid(label__max_length="-1"),
    "text-in-max-length": grid(label__max_length="ten"),
    "fraction-in-min-length": grid(label__min_length="1.5"),
    "huge-integer-min": grid(id__min="9" * 30),
    "huge-integer-enum": grid(id__enum="1, " + "9" * 30),
    "infinite-float-max": grid(weight__max="1e400"),
    "nan-float-min": grid(weight__min="nan"),
    "text-in-float-min": grid(weight__min="heavy"),
    "negative-precision": grid(price__precision="-3"),
    "huge-scale": grid(price__precision="10", price__scale="1" + "0" * 25),
    "bad-pattern": grid(label__pattern="(unclosed"),
    "nul-in-description": grid(label__description="a\x00b"),
}


@ADMIN_BACKENDS
@pytest.mark.parametrize("case", list(BAD_GRIDS), ids=list(BAD_GRIDS))
def test_out_of_range_grid_values_answer_400_and_save_nothing(backend: Backend, admin: AdminHttp, case: str) -> None:
    """Out-of-range or non-numeric numbers, a broken pattern, a NUL: the grid again (400) with the problem
    on its row, nothing stored, the endpoint still served."""
    before = config_state(backend)
    response = admin.post(f"/admin/entities/{TARGET}", BAD_GRIDS[case])
    assert response.status_code == 400, response.text[-2000:]
    assert 'id="fields"' in response.text and 'class="row-problem"' in response.text, response.text[-3000:]
    assert config_state(backend) == before
    assert backend.client.get(f"/dynamic-entity/{TARGET}").status_code == 200


@ADMIN_BACKENDS
def test_a_sane_grid_still_saves(backend: Backend, admin: AdminHttp) -> None:
    """The control for the grid cases: ordinary numbers in the same cells are stored as numbers."""
    form = grid(
        label__min_length="1",
        label__max_length="40",
        weight__min="-1.5",
        weight__max="1e3",
        price__precision="8",
        price__scale="2",
        id__min="1",
        id__enum="1, 2, 3",
    )
    response = admin.post(f"/admin/entities/{TARGET}", form)
    assert response.status_code == 303, response.text[-2000:]
    definition = orjson.loads(stored_entities(backend)[TARGET][1])
    rules = {
        f["fieldName"]: {k: v for k, v in f.get("validation", {}).items() if k != "isRequired"}
        for f in definition["fields"]
    }
    assert rules["label"] == {"minLength": 1, "maxLength": 40}
    assert rules["weight"] == {"min": -1.5, "max": 1000.0}
    assert rules["price"] == {"precision": 8, "scale": 2}
    assert rules["id"] == {"min": 1, "enum": [1, 2, 3]}


BAD_PRINCIPAL_FORMS = {
    "key-days-huge": ("/admin/keys", {"name": "k", "scopes": "*:read", "days": "1" + "0" * 30}),
    "key-days-negative": ("/admin/keys", {"name": "k", "scopes": "*:read", "days": "-5"}),
    "key-days-zero": ("/admin/keys", {"name": "k", "scopes": "*:read", "days": "0"}),
    "key-days-text": ("/admin/keys", {"name": "k", "scopes": "*:read", "days": "soon"}),
    "key-days-fraction": ("/admin/keys", {"name": "k", "scopes": "*:read", "days": "1.5"}),
    "key-name-too-long": ("/admin/keys", {"name": "k" * 256, "scopes": "*:read"}),
    "key-name-nul": ("/admin/keys", {"name": "a\x00b", "scopes": "*:read"}),
    "key-name-missing": ("/admin/keys", {"scopes": "*:read"}),
    "key-scope-bad": ("/admin/keys", {"name": "k", "scopes": "everything"}),
    "client-name-too-long": ("/admin/clients", {"name": "c" * 256, "scopes": "*:read"}),
    "client-name-nul": ("/admin/clients", {"name": "a\x00b", "scopes": "*:read"}),
    "client-scopes-nul": ("/admin/clients", {"name": "c", "scopes": "*:read\x00"}),
    "user-email-too-long": (
        "/admin/users",
        {"email": "u" * 250 + "@example.com", "password": "long enough secret", "role": "viewer"},
    ),
    "user-email-nul": (
        "/admin/users",
        {"email": "a\x00b@example.com", "password": "long enough secret", "role": "viewer"},
    ),
    "user-email-not-an-address": (
        "/admin/users",
        {"email": "nobody", "password": "long enough secret", "role": "viewer"},
    ),
    "user-password-short": ("/admin/users", {"email": "short@example.com", "password": "short", "role": "viewer"}),
    "user-password-huge": ("/admin/users", {"email": "huge@example.com", "password": "p" * 5000, "role": "viewer"}),
    "user-role-unknown": (
        "/admin/users",
        {"email": "role@example.com", "password": "long enough secret", "role": "root"},
    ),
}


@ADMIN_BACKENDS
@pytest.mark.parametrize("case", list(BAD_PRINCIPAL_FORMS), ids=list(BAD_PRINCIPAL_FORMS))
def test_principal_forms_validate_every_value(backend: Backend, admin: AdminHttp, case: str) -> None:
    """User, client and key forms: each bad value → 400 with a message naming the field, nothing stored."""
    path, form = BAD_PRINCIPAL_FORMS[case]
    before = principal_state(backend)
    response = admin.post(path, form)
    assert response.status_code == 400, response.text[-2000:]
    assert 'role="alert"' in response.text
    assert principal_state(backend) == before


@ADMIN_BACKENDS
def test_a_sane_key_still_gets_its_expiry(backend: Backend, admin: AdminHttp) -> None:
    """The control: a key valid for 30 days is created with an expiry 30 days ahead."""
    response = admin.post("/admin/keys", {"name": "thirty-days", "scopes": "*:read", "days": "30"})
    assert response.status_code == 200 and 'id="secret"' in response.text, response.text[-2000:]
    rows = backend.sql("SELECT expires_at FROM dx_api_key WHERE name = 'thirty-days'")
    assert len(rows) == 1 and rows[0][0] is not None


@ADMIN_BACKENDS
def test_out_of_range_path_values_answer_404(backend: Backend, admin: AdminHttp) -> None:
    """An audit id beyond 64 bits, and a NUL in a user, client or key in the path: 404, nothing changed."""
    before = admin_state(backend)
    huge = "9" * 30
    assert admin.get(f"/admin/audit/{huge}").status_code == 404
    for path in (
        f"/admin/audit/{huge}/revert",
        "/admin/users/a%00b/disable",
        "/admin/clients/a%00b/disable",
        "/admin/keys/a%00b/revoke",
    ):
        response = admin.post(path)
        assert response.status_code == 404, (path, response.text[-1000:])
    assert admin_state(backend) == before


# --- item 18: relation names and database-maintained timestamps ----------------------------------------------


@ADMIN_BACKENDS
@pytest.mark.parametrize(
    "name",
    ["has space", "-dash-first", "dot.name", "semi;colon", "r" * 256],
    ids=["space", "dash-first", "dot", "semicolon", "too-long"],
)
def test_relation_names_follow_the_import_rule(backend: Backend, admin: AdminHttp, name: str) -> None:
    """A relation name the import would refuse is refused on the page too (400, nothing stored)."""
    before = config_state(backend)
    response = admin.post(
        f"/admin/entities/{TARGET}/relations",
        {"name": name, "child": "hard-children", "parent_field": "id", "child_field": "fk_target"},
    )
    assert response.status_code == 400, response.text[-2000:]
    assert 'role="alert"' in response.text and "name" in response.text
    assert config_state(backend) == before


@ADMIN_BACKENDS
def test_an_added_relation_survives_export_and_import(backend: Backend, admin: AdminHttp) -> None:
    """The control: a valid name is stored, and the export holding it parses as an import."""
    response = admin.post(
        f"/admin/entities/{TARGET}/relations",
        {"name": "children_1", "child": "hard-children", "parent_field": "id", "child_field": "fk_target"},
    )
    assert response.status_code == 303, response.text[-2000:]
    exported = admin.get("/admin/config/export")
    assert exported.status_code == 200
    configs = {c.alias: c for c in parse_import(exported.json())}
    assert [r.name for r in configs[TARGET].relations] == ["children_1"]
    removed = admin.post(f"/admin/entities/{TARGET}/relations/children_1/delete")
    assert removed.status_code == 303


@ADMIN_BACKENDS
def test_new_endpoints_leave_database_maintained_timestamps_to_the_database(
    backend: Backend, admin: AdminHttp, scratch: Scratch
) -> None:
    """created_at/updated_at with a CURRENT_TIMESTAMP default are suggested neither creatable nor editable;
    a timestamp without a default and a text column with a default stay writable."""
    scratch.create_table(
        sa.Table(
            "hard_stamped",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("status", sa.String(20), nullable=False, server_default="new"),
            sa.Column("happened_at", sa.DateTime, nullable=True),
            sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
            sa.Column("updated_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
        )
    )
    alias = scratch.endpoint("hard-stamped")
    response = admin.post("/admin/entities/new", {"table": "hard_stamped", "alias": alias})
    assert response.status_code == 303, response.text[-2000:]
    definition = orjson.loads(stored_entities(backend)[alias][1])
    writable = {f["fieldName"]: (f["isCreatable"], f["isEditable"]) for f in definition["fields"]}
    assert writable == {
        "id": (False, False),
        "status": (True, True),
        "happened_at": (True, True),
        "created_at": (False, False),
        "updated_at": (False, False),
    }


def test_on_update_clauses_count_as_database_maintained() -> None:
    """MariaDB reflects ``ON UPDATE`` inside the default text; a computed column is the database's too."""
    assert maintained_by_database(
        sa.Column("changed", sa.DateTime, server_default=sa.text("current_timestamp() ON UPDATE current_timestamp()"))
    )
    assert maintained_by_database(sa.Column("stamp", sa.DateTime, server_default=sa.text("now()")))
    assert maintained_by_database(sa.Column("total", sa.Integer, sa.Computed("1 + 1")))
    assert not maintained_by_database(sa.Column("due", sa.DateTime, server_default=sa.text("'2030-01-01'")))
    assert not maintained_by_database(sa.Column("status", sa.String(9), server_default=sa.text("'now'")))


# --- item 20: the cookie behind a trusted TLS-terminating proxy ---------------------------------------------


@pytest.fixture(scope="module")
def proxied(backend: Backend, target: str) -> Iterator[str]:
    """A second server on the same database that trusts ``TRUSTED_NET`` as its reverse proxies."""
    settings = Settings(**{**backend.settings.model_dump(), "trusted_proxies": TRUSTED_NET})
    server, thread, base_url = _start_server(settings)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def from_peer(base_url: str, peer: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, timeout=30, follow_redirects=False, transport=httpx.HTTPTransport(local_address=peer)
    )


@ADMIN_BACKENDS
def test_behind_a_trusted_tls_proxy_the_cookie_is_host_prefixed_and_secure(backend: Backend, proxied: str) -> None:
    """X-Forwarded-Proto: https from a trusted proxy: ``__Host-`` cookie with Secure, Path=/ and no Domain;
    the session then works through the proxy (the page's https origin is its own), and logout clears it."""
    account = new_account(backend, "admin")
    https_origin = "https://" + urlsplit(proxied).netloc
    forwarded = {"X-Forwarded-Proto": "https"}
    with from_peer(proxied, TRUSTED_PEER) as client:
        response = client.post(
            "/admin/login",
            data={"email": account.email, "password": account.password},
            headers={**forwarded, "Origin": https_origin},
        )
        assert response.status_code == 303, response.text
        issued = [h for h in response.headers.get_list("set-cookie")]
        assert len(issued) == 1, issued
        name, _, rest = issued[0].partition("=")
        assert name == f"__Host-{COOKIE}", issued
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in rest.split(";")[1:]}
        assert attributes["path"] == "Path=/" and "secure" in attributes and "httponly" in attributes, issued
        assert "domain" not in attributes and attributes["samesite"].lower() == "samesite=strict", issued
        session = rest.split(";")[0]
        client.cookies.clear()
        secure_cookie = {"Cookie": f"__Host-{COOKIE}={session}"}
        page = client.get("/admin/entities", headers={**forwarded, **secure_cookie})
        assert page.status_code == 200
        # Over https only the __Host- cookie counts (a plain one could have been planted over http).
        assert redirects_to_login(client.get("/admin/entities", headers={**forwarded, "Cookie": f"{COOKIE}={session}"}))
        token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        toggled = client.post(
            f"/admin/entities/{TARGET}/toggle",
            data={"csrf": token},
            headers={**forwarded, **secure_cookie, "Origin": https_origin},
        )
        assert toggled.status_code == 303, toggled.text
        toggled = client.post(
            f"/admin/entities/{TARGET}/toggle",
            data={"csrf": token},
            headers={**forwarded, **secure_cookie, "Origin": https_origin},
        )
        assert toggled.status_code == 303, toggled.text
        out = client.post(
            "/admin/logout", data={"csrf": token}, headers={**forwarded, **secure_cookie, "Origin": https_origin}
        )
        assert redirects_to_login(out)
        cleared = out.headers.get_list("set-cookie")
        assert len(cleared) == 1 and cleared[0].startswith(f'__Host-{COOKIE}=""'), cleared
        assert "secure" in cleared[0].lower() and "path=/;" in cleared[0].lower() + ";", cleared


@ADMIN_BACKENDS
def test_forwarded_proto_from_an_untrusted_peer_is_ignored(backend: Backend, proxied: str) -> None:
    """The same header from a peer outside DXAPI_TRUSTED_PROXIES (and on a server that trusts none): the plain
    cookie scoped to /admin without Secure, and an https Origin is foreign to this http server."""
    account = new_account(backend, "admin")
    for base_url in (proxied, backend.base_url):
        https_origin = "https://" + urlsplit(base_url).netloc
        with from_peer(base_url, UNTRUSTED_PEER) as client:
            refused = client.post(
                "/admin/login",
                data={"email": account.email, "password": account.password},
                headers={"X-Forwarded-Proto": "https", "Origin": https_origin},
            )
            assert refused.status_code == 403 and REFUSED in refused.text, base_url
            response = client.post(
                "/admin/login",
                data={"email": account.email, "password": account.password},
                headers={"X-Forwarded-Proto": "https", "Origin": base_url},
            )
            assert response.status_code == 303, response.text
            cookie = session_cookie(response)
            assert cookie is not None and cookie["path"] == "/admin" and not cookie["secure"], base_url
            assert all(not h.startswith("__Host-") for h in response.headers.get_list("set-cookie"))
