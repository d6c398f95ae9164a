"""The change feed (DESIGN §4b): `GET /{alias}/_changes` on every backend, through the real HTTP stack.

Writes come from the API and straight from SQL (as another application would make them); the feed must show
both, deletes included, with exactly the configured fields.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dxapi.feed.retention import prune_tombstones
from dxapi.registry.capture import capture_names, capture_problems, remove_capture, sync_captures
from dxapi.registry.snapshot import load_snapshot
from dxapi.registry.store import load_entities
from tests.conftest import Backend, add_client, config_field, fetch_token, only_on, serving

PREFIX = "/dynamic-entity"
ALIAS = "feed-items"
META = sa.MetaData()
ITEMS = sa.Table(
    "feed_item",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sku", sa.String(40), nullable=False, unique=True),
    sa.Column("name", sa.String(80), nullable=True),
    sa.Column("price", sa.Numeric(10, 2), nullable=True),
    sa.Column("secret", sa.String(40), nullable=True),  # in the table, never configured
    sa.Column("note", sa.String(40), nullable=True),  # configured but not enabled
)


def config(*, feed: bool = True) -> list[dict[str, Any]]:
    definition: dict[str, Any] = {
        "identifier": "id",
        "isDeletable": True,
        "fields": [
            config_field("id", "integer", isCreatable=False, isEditable=False),
            config_field("sku"),
            config_field("name"),
            config_field("price", "decimal"),
            config_field("note", isEnabled=False),
        ],
    }
    if feed:
        definition["changeFeed"] = True
    return [{"tableName": "feed_item", "tableAlias": ALIAS, "isActive": True, "definition": definition}]


@pytest.fixture(scope="module")
def feed(backend: Backend) -> Iterator[Backend]:
    with serving(backend, META, config()):
        yield backend


@pytest.fixture
def env(feed: Backend) -> Backend:
    feed.sql(sa.delete(ITEMS))
    return feed


def changes(api: httpx.Client, since: str | None = None, limit: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if since is not None:
        params["since"] = since
    if limit is not None:
        params["page[limit]"] = limit
    response = api.get(f"{PREFIX}/{ALIAS}/_changes", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert list(body) == ["data", "meta"] and list(body["meta"]) == ["cursor", "hasMore"], body
    return body


def follow(api: httpx.Client, since: str | None, limit: int = 100) -> tuple[list[dict[str, Any]], str]:
    """Every page until `hasMore` is false: the ops in order and the last cursor."""
    ops: list[dict[str, Any]] = []
    for _ in range(1000):
        body = changes(api, since, limit)
        keys = [op["id"] for op in body["data"]]
        assert len(keys) == len(set(keys)), f"a key twice in one page: {keys}"
        ops += body["data"]
        since = body["meta"]["cursor"]
        if not body["meta"]["hasMore"]:
            return ops, since
        if not body["data"]:
            time.sleep(0.05)  # MariaDB holds the newest second back: nothing to read yet
    raise AssertionError("the feed never caught up")


def apply(copy: dict[Any, dict[str, Any]], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        if op["op"] == "delete":
            copy.pop(op["id"], None)
        else:
            assert op["op"] == "upsert" and op["data"]["id"] == op["id"]
            copy[op["id"]] = op["data"]


def table_state(backend: Backend) -> dict[int, dict[str, Any]]:
    rows = backend.sql(sa.select(ITEMS.c.id, ITEMS.c.sku, ITEMS.c.name, ITEMS.c.price))
    return {r.id: {"sku": r.sku, "name": r.name, "price": None if r.price is None else str(r.price)} for r in rows}


def stripped(copy: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {"sku": v["sku"], "name": v["name"], "price": v["price"]} for k, v in copy.items()}


def post(api: httpx.Client, *items: dict[str, Any]) -> list[dict[str, Any]]:
    response = api.post(f"{PREFIX}/{ALIAS}", json={"data": list(items)})
    assert response.status_code == 201, response.text
    created: list[dict[str, Any]] = response.json()["data"]
    return created


def test_existing_rows_then_api_and_sql_writes_with_deletes(env: Backend, api: httpx.Client) -> None:
    # ids far from the serial's: PostgreSQL's sequence does not see explicit ones
    env.sql(sa.insert(ITEMS), id=9001, sku="a", name="first", price="1.50", secret="s1", note="n1")
    env.sql(sa.insert(ITEMS).values(id=9002, sku="b", name="second", secret="s2"))
    copy: dict[Any, dict[str, Any]] = {}
    ops, cursor = follow(api, None)
    apply(copy, ops)
    assert stripped(copy) == table_state(env)
    ops = [op for op in ops if op["op"] == "upsert"]  # MariaDB: the fixture's deletes may still be recent
    # exactly the configured, enabled fields: no `secret` (not configured), no `note` (disabled)
    assert all(set(op["data"]) == {"id", "sku", "name", "price"} for op in ops)

    created = post(api, {"sku": "c", "name": "third"}, {"sku": "d"})
    response = api.patch(f"{PREFIX}/{ALIAS}/9001", json={"data": {"name": "renamed"}})
    assert response.status_code == 200, response.text
    assert api.delete(f"{PREFIX}/{ALIAS}/9002").status_code == 204
    env.sql("UPDATE feed_item SET price = 9.99 WHERE sku = 'c'")  # another application
    env.sql("INSERT INTO feed_item (id, sku) VALUES (9100, 'sql')")
    env.sql(f"DELETE FROM feed_item WHERE id = {created[1]['id']}")
    ops, cursor = follow(api, cursor)
    apply(copy, ops)
    assert stripped(copy) == table_state(env)
    assert {"op": "delete", "id": 9002} in ops and {"op": "delete", "id": created[1]["id"]} in ops
    assert len(ops) == 5  # 9001 renamed, 9002 deleted, c, d (deleted), 9100: one entry per key

    # caught up: nothing more, the cursor stays usable
    body = changes(api, cursor)
    assert body["data"] == [] and body["meta"]["hasMore"] is False


def test_small_pages_and_since_now(env: Backend, api: httpx.Client) -> None:
    post(api, *({"sku": f"p{i}"} for i in range(25)))
    ops, cursor = follow(api, None, limit=4)
    # Taken once caught up (MariaDB's head trails the newest second): the posted rows are before it.
    head = changes(api, "now")
    assert head["data"] == [] and head["meta"]["hasMore"] is False
    assert sorted(op["data"]["sku"] for op in ops if op["op"] == "upsert") == sorted(f"p{i}" for i in range(25))
    first = changes(api, None, 4)
    assert len(first["data"]) == 4 and first["meta"]["hasMore"] is True

    env.sql("UPDATE feed_item SET name = 'x' WHERE sku IN ('p3', 'p7')")
    after_head, _ = follow(api, head["meta"]["cursor"])
    assert sorted(op["data"]["sku"] for op in after_head) == ["p3", "p7"]
    again, _ = follow(api, cursor)
    assert sorted(op["data"]["sku"] for op in again) == ["p3", "p7"]


def test_an_identifier_moved_by_sql_is_a_delete_and_an_upsert(env: Backend, api: httpx.Client) -> None:
    post(api, {"sku": "m"})
    _, cursor = follow(api, None)
    [row] = env.sql(sa.select(ITEMS.c.id))
    env.sql(f"UPDATE feed_item SET id = {row.id + 1000} WHERE id = {row.id}")
    ops, _ = follow(api, cursor)
    assert sorted((op["op"], op["id"]) for op in ops) == [("delete", row.id), ("upsert", row.id + 1000)]


def test_replaying_from_an_older_cursor_is_safe(env: Backend, api: httpx.Client) -> None:
    post(api, {"sku": "r1"}, {"sku": "r2"})
    _, old = follow(api, None)
    post(api, {"sku": "r3"})
    env.sql("DELETE FROM feed_item WHERE sku = 'r1'")
    first, _ = follow(api, old)
    second, _ = follow(api, old)
    assert first == second
    copy: dict[Any, dict[str, Any]] = {}
    everything, _ = follow(api, None)
    apply(copy, everything)
    assert stripped(copy) == table_state(env)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"since": "not-a-cursor"}, 400, "6002"),
        ({"since": "W1siYSJdXQ"}, 400, "6002"),
        ({"page[limit]": "0"}, 400, "2003"),
        ({"page[limit]": "100000"}, 400, None),
        ({"filter[feed-items.sku]": "a"}, 400, None),
    ],
)
def test_bad_parameters_are_refused(
    feed: Backend, api: httpx.Client, params: dict[str, str], status: int, code: str | None
) -> None:
    response = api.get(f"{PREFIX}/{ALIAS}/_changes", params=params)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()[0]["code"] == code


def test_scopes_and_entities_without_a_feed(feed: Backend, api: httpx.Client) -> None:
    async def writer_only(engine: Any) -> tuple[str, str]:
        return await add_client(engine, "feed writer", [f"{ALIAS}:write"])

    client_id, secret = feed.with_engine(writer_only)
    token = fetch_token(feed.base_url, client_id, secret)
    response = httpx.get(
        f"{feed.base_url}{PREFIX}/{ALIAS}/_changes", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 403 and response.json()[0]["code"] == "4003"
    assert httpx.get(f"{feed.base_url}{PREFIX}/{ALIAS}/_changes", timeout=10).status_code == 401
    response = api.get(f"{PREFIX}/products/_changes")
    assert response.status_code == 404 and response.json()[0]["code"] == "6001"
    assert api.get(f"{PREFIX}/no-such-alias/_changes").status_code == 404


def _prune(backend: Backend, retention: float) -> int:
    async def go(engine: Any) -> int:
        snapshot = await load_snapshot(engine)
        async with engine.begin() as conn:
            removed: int = await conn.run_sync(prune_tombstones, snapshot.entities[ALIAS], retention)
            return removed

    removed: int = backend.with_engine(go)
    return removed


def test_a_cursor_older_than_pruned_tombstones_answers_410(env: Backend, api: httpx.Client) -> None:
    post(api, {"sku": "t1"}, {"sku": "t2"}, {"sku": "t3"})
    _, before_delete = follow(api, None)
    env.sql("DELETE FROM feed_item WHERE sku = 't1'")
    _, after_delete = follow(api, before_delete)
    assert _prune(env, 3600) == 0  # young tombstones stay
    assert changes(api, before_delete)["data"] == [{"op": "delete", "id": _deleted_id(env, api, before_delete)}]
    env.sql("DELETE FROM feed_item WHERE sku = 't2'")
    _, before_second = follow(api, after_delete)
    time.sleep(1.1)
    assert _prune(env, 1.0) >= 2  # these two and those of the tests before
    response = api.get(f"{PREFIX}/{ALIAS}/_changes", params={"since": before_delete})
    assert response.status_code == 410, response.text
    assert response.json()[0]["code"] == "6003"
    # a cursor that had seen both deletes goes on; so does a fresh start, which no longer lists them
    assert changes(api, before_second)["meta"]["hasMore"] is False
    ops, _ = follow(api, None)
    assert [op["data"]["sku"] for op in ops if op["op"] == "upsert"] == ["t3"]


def _deleted_id(env: Backend, api: httpx.Client, since: str) -> Any:
    [op] = changes(api, since)["data"]
    return op["id"]


def test_disabling_removes_the_capture_and_reenabling_expires_cursors(feed: Backend, api: httpx.Client) -> None:
    _, cursor = follow(api, None)
    names = capture_names("feed_item")
    feed.import_config(config(feed=False))
    try:
        response = api.get(f"{PREFIX}/{ALIAS}/_changes")
        assert response.status_code == 404 and response.json()[0]["code"] == "6001"

        async def has_change_table(engine: Any) -> bool:
            async with engine.connect() as conn:
                found: bool = await conn.run_sync(lambda sync: sa.inspect(sync).has_table(names.table))
                return found

        assert feed.with_engine(has_change_table) is False
    finally:
        feed.import_config(config())
    response = api.get(f"{PREFIX}/{ALIAS}/_changes", params={"since": cursor})
    assert response.status_code == 410 and response.json()[0]["code"] == "6003"


def test_config_check_reports_a_missing_trigger(feed: Backend) -> None:
    names = capture_names("feed_item")
    on = " ON feed_item" if feed.name == "postgresql" else ""

    async def problems(engine: Any) -> dict[str, list[str]]:
        async with engine.connect() as conn:
            configs, _ = await load_entities(conn)
            found: dict[str, list[str]] = await conn.run_sync(capture_problems, configs)
            return found

    assert feed.with_engine(problems) == {}
    feed.sql(f"DROP TRIGGER {names.trigger_stem}_del{on}")
    try:
        found = feed.with_engine(problems)
        assert list(found) == [ALIAS] and "_del" in found[ALIAS][0] and "dxapi init" in found[ALIAS][0]
    finally:
        feed.import_config(config(feed=False))
        feed.import_config(config())


@only_on("postgresql")
def test_truncate_is_a_delete_of_every_row(env: Backend, api: httpx.Client) -> None:
    created = post(api, {"sku": "x1"}, {"sku": "x2"})
    _, cursor = follow(api, None)
    env.sql("TRUNCATE feed_item")
    ops, _ = follow(api, cursor)
    assert sorted((op["op"], op["id"]) for op in ops) == sorted(("delete", row["id"]) for row in created)


def test_a_rolled_back_transaction_leaves_no_entry(env: Backend, api: httpx.Client) -> None:
    _, cursor = follow(api, None)

    async def rolled_back(engine: Any) -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.insert(ITEMS).values(sku="never"))
            await conn.rollback()

    env.with_engine(rolled_back)
    post(api, {"sku": "kept"})
    ops, _ = follow(api, cursor)
    assert [op["data"]["sku"] for op in ops] == ["kept"]


def test_a_write_refused_by_the_api_leaves_the_feed_as_it_was(env: Backend, api: httpx.Client) -> None:
    post(api, {"sku": "dup"})
    _, cursor = follow(api, None)
    response = api.post(f"{PREFIX}/{ALIAS}", json={"data": [{"sku": "fresh"}, {"sku": "dup"}]})
    assert response.status_code == 400, response.text
    body = changes(api, cursor)
    assert body["data"] == [] and body["meta"]["hasMore"] is False


def test_openapi_documents_the_feed_of_entities_that_have_one(feed: Backend, api: httpx.Client) -> None:
    document = api.get(f"{PREFIX}/openapi.json").json()
    operation = document["paths"][f"{PREFIX}/{ALIAS}/_changes"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["since", "page[limit]"]
    assert {"200", "400", "410"} <= set(operation["responses"])
    assert f"{PREFIX}/products/_changes" not in document["paths"]


@only_on("postgresql")
def test_another_role_without_grants_on_the_change_table_is_captured(env: Backend, api: httpx.Client) -> None:
    """The capture functions run as their definer: a writer needs rights on its table only."""
    role = f"dx_feed_writer_{secrets.token_hex(4)}"
    env.sql(f"CREATE ROLE {role} LOGIN")
    try:
        env.sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON feed_item TO {role}")
        env.sql(f"GRANT USAGE ON SEQUENCE feed_item_id_seq TO {role}")
        _, cursor = follow(api, None)
        other = dataclasses.replace(env, url=str(sa.make_url(env.url).set(username=role)))
        other.sql("INSERT INTO feed_item (sku) VALUES ('by-another-role')")
        ops, _ = follow(api, cursor)
        assert [op["data"]["sku"] for op in ops] == ["by-another-role"]
    finally:
        env.sql(f"DROP OWNED BY {role}")
        env.sql(f"DROP ROLE {role}")


CODES = sa.MetaData()
sa.Table(
    "feed_code",
    CODES,
    sa.Column("code", sa.String(40), primary_key=True),
    sa.Column("label", sa.String(80), nullable=True),
)
CODE_CONFIG = [
    {
        "tableName": "feed_code",
        "tableAlias": "feed-codes",
        "isActive": True,
        "definition": {
            "identifier": "code",
            "isDeletable": True,
            "changeFeed": True,
            "fields": [config_field("code", isEditable=False), config_field("label")],
        },
    }
]


def test_a_string_identifier_keys_the_feed(backend: Backend, api: httpx.Client) -> None:
    with serving(backend, CODES, CODE_CONFIG):
        url = f"{PREFIX}/feed-codes"
        response = api.post(url, json={"data": [{"code": "zürich-1", "label": "a"}, {"code": "b 2"}]})
        assert response.status_code == 201, response.text
        backend.sql("UPDATE feed_code SET label = 'sql' WHERE code = 'b 2'")

        def pull(since: str | None) -> tuple[list[dict[str, Any]], str]:
            ops: list[dict[str, Any]] = []
            for _ in range(200):
                body = api.get(f"{url}/_changes", params={"since": since} if since else {}).json()
                ops += body["data"]
                since = body["meta"]["cursor"]
                if not body["meta"]["hasMore"]:
                    return ops, since
                time.sleep(0.05)
            raise AssertionError("the feed never caught up")

        ops, cursor = pull(None)
        assert {op["id"]: op["data"]["label"] for op in ops} == {"zürich-1": "a", "b 2": "sql"}
        assert api.delete(f"{url}/zürich-1").status_code == 204
        ops, _ = pull(cursor)
        assert ops == [{"op": "delete", "id": "zürich-1"}]


def test_a_missing_capture_answers_503_until_init_repairs_it(feed: Backend, api: httpx.Client) -> None:
    async def drop(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(remove_capture, "feed_item")

    async def init(engine: Any) -> list[str]:  # what `dxapi init` does
        async with engine.begin() as conn:
            configs, _ = await load_entities(conn)
            installed: list[str] = await conn.run_sync(sync_captures, configs)
            return installed

    feed.with_engine(drop)
    response = api.get(f"{PREFIX}/{ALIAS}/_changes")
    assert response.status_code == 503 and response.json()[0]["code"] == "6004", response.text
    assert feed.with_engine(init) == ["feed_item"]
    assert feed.with_engine(init) == []  # idempotent
    ops, _ = follow(api, None)
    assert {op["id"] for op in ops if op["op"] == "upsert"} == set(table_state(feed))
