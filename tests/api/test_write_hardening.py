"""Hardening of the write and delete paths (issue 9, items 6, 10, 12, 13, 20) on every backend.

* Write scope is not read scope: a write answer shows field values only where the principal may read the
  entity (each nested level by its own alias); otherwise each saved item is its identifier (plus the nested
  relations, judged the same way). A DELETE without read scope selects rows by identifier only (`eq`/`in`), so a
  1317 never tells a delete-only principal which rows match a filter on values.
* 1317 names the configured child entity (only one the principal has a scope on), never a table name; the
  delete scope is checked before the entity's deletable flag; blocking children are found set-based.
* A by-id write whose body carries a different, non-editable identifier is 1304 (Spryker), 2016 only when the
  identifier is editable.
* The per-item envelope carries `X-Dxapi-Error-Code` when it lists errors; a database refusal inside a nested
  child is reported at the child's path.

Besides the ``write_fixtures`` tables, the module has its own: ``wh_note`` (an unconfigured table referencing
``wt_parent``), ``wh_tag`` (referencing it ``ON DELETE CASCADE``), ``wh_box``/``wh_item`` (a parent and child
with a unique key and a second foreign key in the child), ``wh_code`` (an editable identifier) and ``wh_node``
(a self-reference). Clients with limited scopes are minted per module (``scoped``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dxapi.auth.principals import add_client, parse_scopes
from dxapi.registry.tables import dx_config_version
from tests.api import write_fixtures
from tests.api.write_fixtures import (
    CHILD,
    CHILDREN,
    KEYED,
    KEYED_TABLE,
    PARENT,
    PARENTS,
    PER_ITEM,
    PREFIX,
    WriteEnv,
    check_error_items,
    check_response,
    error_list,
    expect_error,
    expect_errors,
    render,
    success,
)
from tests.conftest import Backend, fetch_token, unconfigure

write_env = write_fixtures.write_env  # the fixture, for this module

BOXES, ITEMS, CODES, NODES = "wh-boxes", "wh-items", "wh-codes", "wh-nodes"
Scoped = Callable[[str], httpx.Client]


# --- the module's own tables and entities ------------------------------------------------------------------------


def _metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    PARENT.to_metadata(metadata)  # only as the target of the foreign keys; created by write_fixtures
    KEYED_TABLE.to_metadata(metadata)
    sa.Table(
        "wh_note",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fk_parent", sa.Integer, sa.ForeignKey("wt_parent.id", name="fk_wh_note_parent"), nullable=False),
        sa.Column("text", sa.String(20), nullable=True),
    )
    sa.Table(
        "wh_tag",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "fk_parent",
            sa.Integer,
            sa.ForeignKey("wt_parent.id", name="fk_wh_tag_parent", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    sa.Table(
        "wh_box",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("label", sa.String(20), nullable=False),
    )
    sa.Table(
        "wh_item",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fk_box", sa.Integer, sa.ForeignKey("wh_box.id", name="fk_wh_item_box"), nullable=False),
        sa.Column("sku", sa.String(10), nullable=False),
        sa.Column("fk_keyed", sa.String(20), sa.ForeignKey("wt_keyed.code", name="fk_wh_item_keyed"), nullable=True),
        sa.UniqueConstraint("sku", name="uq_wh_item_sku"),
    )
    sa.Table(
        "wh_code",
        metadata,
        sa.Column("code", sa.String(20), primary_key=True),
        sa.Column("title", sa.String(50), nullable=False),
    )
    sa.Table(
        "wh_node",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("fk_up", sa.Integer, sa.ForeignKey("wh_node.id", name="fk_wh_node_up"), nullable=True),
    )
    return metadata


META = _metadata()
NOTE, TAG, BOX, ITEM, CODE, NODE = (
    META.tables[n] for n in ("wh_note", "wh_tag", "wh_box", "wh_item", "wh_code", "wh_node")
)
OWN_TABLES = [NOTE, TAG, ITEM, BOX, CODE, NODE]  # in delete order


def _field(column: str, visible: str, kind: str, *, creatable: bool = True, editable: bool = True) -> dict[str, Any]:
    return {
        "fieldName": column,
        "fieldVisibleName": visible,
        "type": kind,
        "isCreatable": creatable,
        "isEditable": editable,
    }


OWN_CONFIG: list[dict[str, Any]] = [
    {
        "tableName": "wh_item",
        "tableAlias": ITEMS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [
                _field("id", "id", "integer", creatable=False, editable=False),
                _field("fk_box", "fkBox", "integer"),
                _field("sku", "sku", "string"),
                _field("fk_keyed", "keyed", "string"),
            ],
        },
    },
    {
        "tableName": "wh_box",
        "tableAlias": BOXES,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [
                _field("id", "id", "integer", creatable=False, editable=False),
                _field("label", "label", "string"),
            ],
        },
        "childRelations": [
            {
                "name": "items",
                "isEditable": True,
                "childDynamicEntityConfiguration": {"tableAlias": ITEMS},
                "relationFieldMappings": [{"childFieldName": "fk_box", "parentFieldName": "id"}],
            }
        ],
    },
    {
        "tableName": "wh_code",
        "tableAlias": CODES,
        "isActive": True,
        "definition": {
            "identifier": "code",
            "isDeletable": True,
            "fields": [
                _field("code", "code", "string"),  # an editable identifier
                _field("title", "title", "string"),
            ],
        },
    },
    {
        "tableName": "wh_node",
        "tableAlias": NODES,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [
                _field("id", "id", "integer"),
                _field("fk_up", "up", "integer"),
            ],
        },
    },
]


async def _own_tables(engine: Any, create: bool) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: META.drop_all(sync, tables=OWN_TABLES))
        if create:
            await conn.run_sync(lambda sync: META.create_all(sync, tables=list(reversed(OWN_TABLES))))


@pytest.fixture(scope="module")
def own_env(write_env: WriteEnv) -> Iterator[WriteEnv]:
    backend = write_env.backend
    backend.run(unconfigure(write_env.engine, [entry["tableAlias"] for entry in OWN_CONFIG]))
    backend.run(_own_tables(write_env.engine, create=True))
    backend.import_config(OWN_CONFIG)
    try:
        yield write_env
    finally:
        backend.run(unconfigure(write_env.engine, [entry["tableAlias"] for entry in OWN_CONFIG]))
        version = int(write_env.sql(sa.select(dx_config_version.c.version).where(dx_config_version.c.id == 1))[0][0])
        backend.wait_for_version(version)
        backend.run(_own_tables(write_env.engine, create=False))


@pytest.fixture
def hw(own_env: WriteEnv) -> WriteEnv:
    """Every private table empty (the module's own first: they reference the others)."""

    async def go() -> None:
        async with own_env.engine.begin() as conn:
            await conn.execute(sa.update(NODE).values(fk_up=None))
            for table in OWN_TABLES:
                await conn.execute(sa.delete(table))

    own_env.backend.run(go())
    own_env.clean()
    return own_env


@pytest.fixture(scope="module")
def scoped(backend: Backend) -> Iterator[Scoped]:
    """``scoped("wt-parents:write")``: a client carrying a token with exactly those scopes."""
    made: dict[str, httpx.Client] = {}

    def make(scopes: str) -> httpx.Client:
        if scopes not in made:
            client_id, secret = backend.with_engine(
                lambda engine: add_client(engine, "hardening suite", parse_scopes(scopes))
            )
            token = fetch_token(backend.base_url, client_id, secret)
            made[scopes] = httpx.Client(
                base_url=backend.base_url + PREFIX, timeout=30, headers={"Authorization": f"Bearer {token}"}
            )
        return made[scopes]

    yield make
    for client in made.values():
        client.close()


def call(
    client: httpx.Client,
    method: str,
    path: str,
    data: Any = None,
    *,
    params: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A request with a scoped client; never a 5xx, never internals in the body."""
    content = json.dumps({"data": data}).encode() if data is not None else None
    sent = {
        "Accept": "application/json",
        **({"Content-Type": "application/json"} if content else {}),
        **(headers or {}),
    }
    response = client.request(method, path, content=content, params=params, headers=sent)
    check_response(response, content)
    return response


def state(env: WriteEnv) -> tuple[Any, ...]:
    own = tuple(tuple(tuple(r) for r in env.sql(sa.select(t).order_by(*t.primary_key.columns))) for t in OWN_TABLES)
    return (env.dump(), own)


def insert(env: WriteEnv, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    env.sql(sa.insert(table), rows)


def forbidden(response: httpx.Response, scope: str) -> None:
    expect_error(response, 403, "4003", message=f"Not allowed: the credentials lack the scope `{scope}`.")


# --- item 6: write scope does not read ---------------------------------------------------------------------------

WRITE_ONLY = f"{PARENTS}:write"
WRITE_READ = f"{PARENTS}:write {PARENTS}:read"


@pytest.mark.parametrize("form", ["POST", "PATCH", "PATCH-by-id", "PUT", "PUT-by-id"])
def test_write_answer_without_read_scope_is_the_identifier_only(hw: WriteEnv, scoped: Scoped, form: str) -> None:
    """The no-op PATCH of a write-only principal used to answer every field of any row."""
    secret = hw.parent("SECRET", "secret name", notes="private")
    client = scoped(WRITE_ONLY)
    if form == "POST":
        data = success(call(client, "POST", f"/{PARENTS}", [{"code": "NEW1", "name": "new"}]), 201)
        created = hw.rows(PARENT, PARENT.c.code == "NEW1")
        assert data == [{"id": created[0]["id"]}]
        return
    if form == "PATCH":
        answer = call(client, "PATCH", f"/{PARENTS}", [{"id": secret}])
    elif form == "PATCH-by-id":
        answer = call(client, "PATCH", f"/{PARENTS}/{secret}", {})
    elif form == "PUT":
        answer = call(
            client,
            "PUT",
            f"/{PARENTS}",
            [{"id": secret, "code": "SECRET", "name": "secret name", "active": True, "counter": 1}],
        )
    else:
        answer = call(
            client,
            "PUT",
            f"/{PARENTS}/{secret}",
            {"code": "SECRET", "name": "secret name", "active": True, "counter": 1},
        )
    data = success(answer, 200)
    assert data == ({"id": secret} if form.endswith("by-id") else [{"id": secret}])
    assert "private" not in answer.text and "secret name" not in answer.text


def test_write_answer_with_read_scope_is_the_saved_row(hw: WriteEnv, scoped: Scoped) -> None:
    secret = hw.parent("SECRET", "secret name", notes="private")
    data = success(call(scoped(WRITE_READ), "PATCH", f"/{PARENTS}", [{"id": secret}]), 200)
    assert data == [render(PARENTS, hw.row(PARENT, secret))]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scopes", "parent_shown", "child_shown"),
    [
        (f"{PARENTS}:write {CHILDREN}:write", False, False),
        (f"{PARENTS}:write {CHILDREN}:write {PARENTS}:read", True, False),
        (f"{PARENTS}:write {CHILDREN}:write {CHILDREN}:read", False, True),
        (f"{PARENTS}:write {CHILDREN}:write {PARENTS}:read {CHILDREN}:read", True, True),
    ],
)
def test_nested_write_answer_follows_the_read_scope_of_each_entity(
    hw: WriteEnv, scoped: Scoped, scopes: str, parent_shown: bool, child_shown: bool
) -> None:
    data = success(
        call(
            scoped(scopes),
            "POST",
            f"/{PARENTS}",
            [{"code": "NEST", "name": "n", "children": [{"label": "a"}, {"label": "b"}]}],
        ),
        201,
    )
    parent = hw.rows(PARENT)[0]
    children = hw.rows(CHILD)
    expected: dict[str, Any] = render(PARENTS, parent) if parent_shown else {"id": parent["id"]}
    expected["children"] = [render(CHILDREN, c) if child_shown else {"id": c["id"]} for c in children]
    assert data == [expected]


def test_per_item_write_answer_without_read_scope_is_the_identifier_only(hw: WriteEnv, scoped: Scoped) -> None:
    response = call(
        scoped(WRITE_ONLY), "POST", f"/{PARENTS}", [{"code": "OK1", "name": "ok"}, {"code": "!"}], headers=PER_ITEM
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["data"] == [{"id": hw.rows(PARENT)[0]["id"]}]
    assert [e["code"] for e in check_error_items(body["errors"])] == ["1306", "1307"]


def test_duplicate_error_never_echoes_the_other_rows_values(hw: WriteEnv, scoped: Scoped) -> None:
    hw.parent("TAKEN", "someone else's")
    mine = hw.parent("MINE", "mine")
    before = state(hw)
    response = call(scoped(WRITE_ONLY), "PATCH", f"/{PARENTS}", [{"id": mine, "code": "TAKEN"}])
    expect_error(
        response,
        400,
        "1309",
        message=(
            f"Failed to persist the data for `{PARENTS}[0].code`. Please verify the provided data and try again. "
            "Entry is duplicated."
        ),
    )
    assert "someone" not in response.text
    assert state(hw) == before


DELETE_ONLY = f"{PARENTS}:delete"


@pytest.mark.parametrize(
    "filters",
    [
        {f"filter[{PARENTS}.code]": "BLOCKED"},
        {f"filter[{PARENTS}.name]": json.dumps({"like": "b%"})},
        {f"filter[{PARENTS}.id]": json.dumps({"gt": 0})},
        {f"filter[{PARENTS}.id]": json.dumps({"ne": 0})},
        {f"filter[{PARENTS}.id]": "{id}", f"filter[{PARENTS}.code]": "BLOCKED"},
    ],
)
def test_delete_without_read_scope_cannot_filter_on_values(
    hw: WriteEnv, scoped: Scoped, filters: dict[str, str]
) -> None:
    """A blocked filtered DELETE deletes nothing: its 1317 would answer "does any row match?" for free."""
    blocked = hw.parent("BLOCKED", "blocked")
    hw.child(blocked, "c")
    before = state(hw)
    params = {k: v.replace("{id}", str(blocked)) for k, v in filters.items()}
    forbidden(call(scoped(DELETE_ONLY), "DELETE", f"/{PARENTS}", params=params), f"{PARENTS}:read")
    assert state(hw) == before
    # with read scope the same request is answered as always
    response = call(scoped(f"{DELETE_ONLY} {PARENTS}:read"), "DELETE", f"/{PARENTS}", params=params)
    expect_error(response, 400, "1317", f"`{PARENTS}.id = {blocked}`")
    assert state(hw) == before


def test_delete_without_read_scope_by_identifier_names_only_the_keys_sent(hw: WriteEnv, scoped: Scoped) -> None:
    blocked = hw.parent("BLOCKED", "blocked")
    free = hw.parent("FREE", "free")
    hw.child(blocked, "c")
    client = scoped(DELETE_ONLY)
    before = state(hw)
    response = call(
        client, "DELETE", f"/{PARENTS}", params={f"filter[{PARENTS}.id]": json.dumps({"in": [blocked, free]})}
    )
    expect_error(
        response,
        400,
        "1317",
        message=(
            f"Failed to delete the data for `{PARENTS}.id = {blocked}`. The entity has a child entity and can not be "
            "deleted. Other rows reference it."
        ),
    )  # no scope on the child entity: not named
    assert state(hw) == before
    assert call(client, "DELETE", f"/{PARENTS}", params={f"filter[{PARENTS}.id]": str(free)}).status_code == 204
    assert hw.row(PARENT, free) is None and hw.row(PARENT, blocked) is not None
    expect_error(call(client, "DELETE", f"/{PARENTS}", params={f"filter[{PARENTS}.id]": str(free)}), 404, "1303")


# --- item 10: 1317 names configured entities only; scope before the deletable flag --------------------------------


def test_delete_blocked_names_the_configured_child_entity(hw: WriteEnv) -> None:
    parent = hw.parent("P1", "p")
    hw.child(parent, "c")
    before = state(hw)
    response = hw.send("DELETE", f"/{PARENTS}/{parent}", content_type=None)
    expect_error(
        response,
        400,
        "1317",
        message=(
            f"Failed to delete the data for `{PARENTS}.id = {parent}`. The entity has a child entity and can not be "
            f"deleted. Child entity: `{CHILDREN}`."
        ),
    )
    assert state(hw) == before


def test_delete_blocked_by_an_unconfigured_table_names_no_table(hw: WriteEnv) -> None:
    parent = hw.parent("P1", "p")
    insert(hw, NOTE, [{"fk_parent": parent, "text": "n"}])
    before = state(hw)
    for path, params in [(f"/{PARENTS}/{parent}", None), (f"/{PARENTS}", {f"filter[{PARENTS}.code]": "P1"})]:
        response = hw.send("DELETE", path, content_type=None, params=params)
        expect_error(
            response,
            400,
            "1317",
            message=(
                f"Failed to delete the data for `{PARENTS}.id = {parent}`. The entity has a child entity and "
                "can not be deleted. Other rows reference it."
            ),
        )
        assert "wh_note" not in response.text
    assert state(hw) == before


def test_delete_blocked_names_the_child_entity_only_for_a_principal_with_a_scope_on_it(
    hw: WriteEnv, scoped: Scoped
) -> None:
    parent = hw.parent("P1", "p")
    hw.child(parent, "c")
    before = state(hw)
    hidden = call(scoped(DELETE_ONLY), "DELETE", f"/{PARENTS}/{parent}")
    expect_error(hidden, 400, "1317", "Other rows reference it.")
    assert CHILDREN not in hidden.text and "wt_child" not in hidden.text
    named = call(scoped(f"{DELETE_ONLY} {CHILDREN}:write"), "DELETE", f"/{PARENTS}/{parent}")
    expect_error(named, 400, "1317", f"Child entity: `{CHILDREN}`.")
    assert state(hw) == before


def test_delete_blocked_by_the_same_table_names_the_entity_itself(hw: WriteEnv) -> None:
    insert(hw, NODE, [{"id": 1, "fk_up": None}, {"id": 2, "fk_up": 1}, {"id": 3, "fk_up": None}])
    before = state(hw)
    response = hw.send(
        "DELETE", f"/{NODES}", content_type=None, params={f"filter[{NODES}.id]": json.dumps({"in": [1, 3]})}
    )
    expect_error(
        response,
        400,
        "1317",
        message=(
            f"Failed to delete the data for `{NODES}.id = 1`. The entity has a child entity and can not be deleted. "
            f"Child entity: `{NODES}`."
        ),
    )
    assert state(hw) == before


def test_a_cascading_reference_does_not_block_a_delete(hw: WriteEnv) -> None:
    tagged = hw.parent("TAGGED", "t")
    both = hw.parent("BOTH", "b")
    insert(hw, TAG, [{"fk_parent": tagged}, {"fk_parent": both}])
    hw.child(both, "c")
    before = state(hw)
    response = hw.send(
        "DELETE",
        f"/{PARENTS}",
        content_type=None,
        params={f"filter[{PARENTS}.code]": json.dumps({"in": ["TAGGED", "BOTH"]})},
    )
    expect_errors(
        response,
        400,
        [
            (
                "1317",
                f"`{PARENTS}.id = {both}`. The entity has a child entity and can not be "
                f"deleted. Child entity: `{CHILDREN}`.",
            )
        ],
    )
    assert state(hw) == before
    assert hw.send("DELETE", f"/{PARENTS}/{tagged}", content_type=None).status_code == 204
    assert hw.row(PARENT, tagged) is None
    assert [r["fk_parent"] for r in hw.rows(TAG)] == [both]


def test_delete_scope_is_checked_before_the_deletable_flag(hw: WriteEnv, scoped: Scoped) -> None:
    insert(hw, KEYED_TABLE, [{"code": "K1", "title": "t"}])
    before = state(hw)
    reader = scoped(f"{KEYED}:read {KEYED}:write")
    for path, params in [(f"/{KEYED}/K1", None), (f"/{KEYED}", {f"filter[{KEYED}.code]": "K1"})]:
        forbidden(call(reader, "DELETE", path, params=params), f"{KEYED}:delete")
        expect_error(call(scoped(f"{KEYED}:delete"), "DELETE", path, params=params), 405, "1318")
        expect_error(call(reader, "DELETE", path.replace(KEYED, "no-such-alias"), params=params), 404, "007")
    assert state(hw) == before


# --- item 12: blocking children found set-based ----------------------------------------------------------------


def test_filtered_delete_of_2000_blocked_rows_answers_quickly_and_deletes_nothing(hw: WriteEnv) -> None:
    ids = hw.parents(2000, prefix="S")
    hw.insert(CHILD, [{"fk_parent": i, "label": "c"} for i in ids])
    started = time.monotonic()
    response = hw.send(
        "DELETE", f"/{PARENTS}", content_type=None, params={f"filter[{PARENTS}.code]": json.dumps({"like": "S%"})}
    )
    elapsed = time.monotonic() - started
    items = error_list(response, 400)
    assert [i["code"] for i in items] == ["1317"] * 2000
    assert [i["message"] for i in items[:2]] == [
        f"Failed to delete the data for `{PARENTS}.id = {key}`. The entity has a child entity and can not be "
        f"deleted. Child entity: `{CHILDREN}`."
        for key in ids[:2]
    ]
    assert elapsed < 3, f"the blocked DELETE took {elapsed:.1f}s"
    assert hw.count(PARENT) == 2000 and hw.count(CHILD) == 2000


# --- item 13: a different identifier in a by-id body -------------------------------------------------------------


def test_put_by_id_with_another_non_editable_identifier_is_1304(hw: WriteEnv) -> None:
    insert(hw, KEYED_TABLE, [{"code": "K1", "title": "one"}, {"code": "K2", "title": "two"}])
    before = state(hw)
    for method in ("PUT", "PATCH"):
        response = hw.send(method, f"/{KEYED}/K1", {"data": {"code": "K2", "title": "x"}})
        expect_error(response, 400, "1304", message=f"Modification of immutable field `{KEYED}[0].code` is prohibited")
    existing = hw.parent("P1", "p")
    other = hw.parent("P2", "q")
    before = state(hw)
    response = hw.send(
        "PUT",
        f"/{PARENTS}/{existing}",
        {"data": {"id": other, "code": "P1", "name": "x", "active": True, "counter": 1}},
    )
    expect_error(response, 400, "1304", message=f"Modification of immutable field `{PARENTS}[0].id` is prohibited")
    assert state(hw) == before


def test_by_id_with_another_editable_identifier_is_2016(hw: WriteEnv) -> None:
    insert(hw, CODE, [{"code": "C1", "title": "one"}])
    before = state(hw)
    for method in ("PUT", "PATCH"):
        response = hw.send(method, f"/{CODES}/C1", {"data": {"code": "C2", "title": "x"}})
        expect_error(response, 400, "2016", message=f"The identifier in `{CODES}[0]` differs from the one in the URL.")
    assert state(hw) == before
    data = success(hw.send("PUT", f"/{CODES}/C1", {"data": {"code": "C1", "title": "same key"}}), 200)
    assert data == {"code": "C1", "title": "same key"}


# --- item 20: per-item error header; nested database errors at the child's path ---------------------------------


def test_per_item_envelope_with_errors_carries_the_error_code_header(hw: WriteEnv) -> None:
    partly = hw.post(PARENTS, [{"code": "OK1", "name": "ok"}, {"code": "!", "name": "bad"}], headers=PER_ITEM)
    assert partly.status_code == 201, partly.text
    assert [e["code"] for e in partly.json()["errors"]] == ["1306"]
    assert partly.headers["x-dxapi-error-code"] == "1306"
    nothing = hw.post(PARENTS, [{"name": "no code"}], headers=PER_ITEM)
    assert nothing.status_code == 400, nothing.text
    assert nothing.headers["x-dxapi-error-code"] == "1307"
    clean = hw.post(PARENTS, [{"code": "OK2", "name": "ok"}], headers=PER_ITEM)
    assert clean.status_code == 201 and clean.json()["errors"] == []
    assert "x-dxapi-error-code" not in clean.headers


@pytest.mark.parametrize("transactional", [True, False])
def test_database_error_in_a_nested_child_is_reported_at_the_childs_path(hw: WriteEnv, transactional: bool) -> None:
    box = int(hw.sql(sa.insert(BOX).values(label="seed").returning(BOX.c.id))[0][0])
    insert(hw, ITEM, [{"fk_box": box, "sku": "TAKEN"}])
    before = state(hw)
    headers = {} if transactional else PER_ITEM
    body = [
        {"label": "first", "items": [{"sku": "A1"}, {"sku": "TAKEN"}]},
        {"label": "second", "items": [{"sku": "B1"}, {"sku": "B2"}, {"sku": "B1"}]},
        {"label": "third", "items": [{"sku": "C1"}, {"sku": "C2", "keyed": "no-such-key"}]},
    ]
    response = hw.post(BOXES, body, headers=headers)
    expected = [
        ("1309", f"`{BOXES}[0].{ITEMS}[1].sku`"),
        ("1309", f"`{BOXES}[1].{ITEMS}[2].sku`"),
        ("3002", f"`{BOXES}[2].{ITEMS}[1]"),
    ]
    if transactional:
        expect_errors(response, 400, expected)
    else:
        assert response.status_code == 400, response.text
        found = check_error_items(response.json()["errors"])
        assert [(e["code"]) for e in found] == [c for c, _ in expected], found
        for item, (_, text) in zip(found, expected, strict=True):
            assert text in item["message"], item
    assert state(hw) == before
