"""``Idempotency-Key`` (DESIGN §4b, issue 12): a retried write answers its first execution's record.

On SQLite, PostgreSQL and MariaDB, against this module's own table ``ik_item``: replay byte for byte with
``Idempotency-Replayed: true`` and nothing written twice (POST, PATCH, PUT, DELETE, per-item mode); the same key
with another request (body, query, path, method, ``X-Is-Transactional``) → 422 6102; keys per principal; a
malformed key → 6101; what is recorded (answers of an executed write, 2xx and 4xx) and what is not (refusals
before any write, 5xx); pruning after ``DXAPI_IDEMPOTENCY_TTL``; the running-key 409 (6103) from a lock held by
another transaction.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dxapi.auth.accounts import add_client
from dxapi.idempotency import Keeper, prune
from dxapi.registry.tables import dx_idempotency
from tests.conftest import Backend, config_field, fetch_token, serving

API = "/dynamic-entity"
ALIAS = "ik-items"
PATH = f"{API}/{ALIAS}"
META = sa.MetaData()
ITEMS = sa.Table(
    "ik_item",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(40), nullable=False, unique=True),
    sa.Column("qty", sa.Integer, nullable=True),
)
CONFIG = [
    {
        "tableName": "ik_item",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [
                config_field("id", "integer", isCreatable=False, isEditable=False),
                config_field("name", validation={"isRequired": True}),
                config_field("qty", "integer", validation={"min": 0}),
            ],
        },
    }
]
_KEYS = itertools.count()


def new_key() -> str:
    return f"key-{time.time_ns()}-{next(_KEYS)}"


@pytest.fixture(scope="module")
def items(backend: Backend) -> Iterator[Backend]:
    with serving(backend, META, CONFIG):
        yield backend


def count(backend: Backend) -> int:
    return int(backend.sql(sa.select(sa.func.count()).select_from(ITEMS))[0][0])


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


def rows(prefix: str, n: int) -> dict[str, Any]:
    return {"data": [{"name": f"{prefix}-{i}", "qty": i} for i in range(n)]}


def assert_replay(first: httpx.Response, again: httpx.Response) -> None:
    assert again.status_code == first.status_code, again.text
    assert again.content == first.content
    assert again.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers.get("x-dxapi-error-code") == first.headers.get("x-dxapi-error-code")


def test_a_five_row_post_sent_twice_with_one_key_is_written_once(items: Backend, api: httpx.Client) -> None:
    before = count(items)
    key = new_key()
    first = api.post(PATH, json=rows("five", 5), headers=keyed(key))
    assert first.status_code == 201, first.text
    again = api.post(PATH, json=rows("five", 5), headers=keyed(key))
    assert_replay(first, again)
    assert count(items) == before + 5
    assert len(items.sql(sa.select(ITEMS.c.id).where(ITEMS.c.name.like("five-%")))) == 5


def test_the_same_key_with_another_request_is_422_and_writes_nothing(items: Backend, api: httpx.Client) -> None:
    key = new_key()
    assert api.post(PATH, json=rows("other", 2), headers=keyed(key)).status_code == 201
    before = count(items)
    variants = [
        api.post(PATH, json=rows("other-b", 2), headers=keyed(key)),  # another body
        api.post(f"{PATH}?include=", json=rows("other", 2), headers=keyed(key)),  # another query
        api.put(PATH, json=rows("other", 2), headers=keyed(key)),  # another method
        api.post(PATH, json=rows("other", 2), headers=keyed(key, **{"X-Is-Transactional": "false"})),
    ]
    for response in variants:
        assert response.status_code == 422, response.text
        assert response.json()[0]["code"] == "6102"
        assert "idempotency-replayed" not in response.headers
    assert count(items) == before


def test_keys_belong_to_their_principal(items: Backend, api: httpx.Client) -> None:
    """Another client's request with the same key is its own: executed, not answered from the first."""

    async def client(engine: Any) -> tuple[str, str]:
        return await add_client(engine, "idempotency other", frozenset({"*:read", "*:write"}))

    client_id, secret = items.with_engine(client)
    other = {"Authorization": f"Bearer {fetch_token(items.base_url, client_id, secret)}"}
    key = new_key()
    first = api.post(PATH, json=rows("mine", 1), headers=keyed(key))
    theirs = httpx.post(items.base_url + PATH, json=rows("theirs", 1), headers={**other, **keyed(key)}, timeout=30)
    assert first.status_code == theirs.status_code == 201, theirs.text
    assert "idempotency-replayed" not in theirs.headers
    assert theirs.json()["data"][0]["name"] == "theirs-0"


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_key_is_6101_and_nothing_is_written(items: Backend, api: httpx.Client, key: str) -> None:
    before = count(items)
    response = api.post(PATH, json=rows("bad-key", 1), headers={"Idempotency-Key": key.encode()})
    assert response.status_code == 400, response.text
    assert response.json()[0]["code"] == "6101"
    assert count(items) == before


def test_a_key_of_255_printable_characters_is_taken(items: Backend, api: httpx.Client) -> None:
    key = ("~ !" * 100)[:254] + "k"
    first = api.post(PATH, json=rows("long-key", 1), headers=keyed(key))
    assert first.status_code == 201, first.text
    assert_replay(first, api.post(PATH, json=rows("long-key", 1), headers=keyed(key)))


def test_patch_put_and_delete_replay(items: Backend, api: httpx.Client) -> None:
    made = api.post(PATH, json=rows("verbs", 2)).json()["data"]
    one, two = made[0]["id"], made[1]["id"]
    key = new_key()
    patch = api.patch(f"{PATH}/{one}", json={"data": {"qty": 40}}, headers=keyed(key))
    assert patch.status_code == 200, patch.text
    items.sql(sa.update(ITEMS).where(ITEMS.c.id == one).values(qty=41))  # another application moves on
    again = api.patch(f"{PATH}/{one}", json={"data": {"qty": 40}}, headers=keyed(key))
    assert_replay(patch, again)
    assert again.headers["etag"] == patch.headers["etag"]
    assert items.sql(sa.select(ITEMS.c.qty).where(ITEMS.c.id == one))[0][0] == 41  # the replay wrote nothing

    key = new_key()
    body = {"data": [{"id": two, "name": "verbs-put", "qty": 3}]}
    put = api.put(PATH, json=body, headers=keyed(key))
    assert put.status_code == 200, put.text
    assert_replay(put, api.put(PATH, json=body, headers=keyed(key)))

    key = new_key()
    gone = api.delete(f"{PATH}/{two}", headers=keyed(key))
    assert gone.status_code == 204, gone.text
    again = api.delete(f"{PATH}/{two}", headers=keyed(key))
    assert again.status_code == 204 and again.headers["idempotency-replayed"] == "true"
    # Without the key, the same delete is a miss now: the replay above answered the record, not the table.
    assert api.delete(f"{PATH}/{two}").status_code == 404


def test_a_delete_by_filter_replays(items: Backend, api: httpx.Client) -> None:
    api.post(PATH, json=rows("filtered", 3))
    key = new_key()
    url = f'{PATH}?filter[{ALIAS}.name]={{"like":"filtered-%"}}'
    first = api.delete(url, headers=keyed(key))
    assert first.status_code == 204, first.text
    api.post(PATH, json=rows("filtered", 3))  # the same names again
    again = api.delete(url, headers=keyed(key))
    assert again.status_code == 204 and again.headers["idempotency-replayed"] == "true"
    assert len(items.sql(sa.select(ITEMS.c.id).where(ITEMS.c.name.like("filtered-%")))) == 3


def test_a_per_item_mixed_answer_is_recorded_with_its_writes(items: Backend, api: httpx.Client) -> None:
    api.post(PATH, json={"data": [{"name": "taken-name"}]})
    before = count(items)
    body = {"data": [{"name": "mixed-new"}, {"name": "taken-name"}, {"qty": -1}]}
    key = new_key()
    headers = keyed(key, **{"X-Is-Transactional": "false"})
    first = api.post(PATH, json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert len(first.json()["data"]) == 1 and len(first.json()["errors"]) >= 2
    assert_replay(first, api.post(PATH, json=body, headers=headers))
    assert count(items) == before + 1


def test_a_refusal_from_the_database_is_recorded(items: Backend, api: httpx.Client) -> None:
    """A duplicate (1309) comes from executing: recorded, so the retry answers it even after the row that
    caused it is gone."""
    api.post(PATH, json={"data": [{"name": "dup-name"}]})
    key = new_key()
    body = {"data": [{"name": "dup-name"}]}
    first = api.post(PATH, json=body, headers=keyed(key))
    assert first.status_code == 400 and first.json()[0]["code"] == "1309", first.text
    items.sql(sa.delete(ITEMS).where(ITEMS.c.name == "dup-name"))
    again = api.post(PATH, json=body, headers=keyed(key))
    assert_replay(first, again)
    assert count_named(items, "dup-name") == 0


def count_named(backend: Backend, name: str) -> int:
    return len(backend.sql(sa.select(ITEMS.c.id).where(ITEMS.c.name == name)))


def test_a_missing_row_answer_is_recorded(items: Backend, api: httpx.Client) -> None:
    key = new_key()
    first = api.patch(f"{PATH}/999999", json={"data": {"qty": 1}}, headers=keyed(key))
    assert first.status_code == 404, first.text
    assert_replay(first, api.patch(f"{PATH}/999999", json={"data": {"qty": 1}}, headers=keyed(key)))


def test_a_refusal_before_any_write_is_not_recorded(items: Backend, api: httpx.Client) -> None:
    """Validation (the body alone) answers without executing: the retry is judged again, so a corrected
    configuration or a fixed server lets it through — and the key stays free for the request."""
    key = new_key()
    bad = api.post(PATH, json={"data": [{"qty": -5, "name": "valid-later"}]}, headers=keyed(key))
    assert bad.status_code == 400, bad.text
    assert (
        "idempotency-replayed"
        not in api.post(PATH, json={"data": [{"qty": -5, "name": "valid-later"}]}, headers=keyed(key)).headers
    )
    scope = items.run(_keeper_like_the_server(api, key, None)).scope
    assert not items.sql(sa.select(dx_idempotency.c.scope).where(dx_idempotency.c.scope == scope))
    assert count_named(items, "valid-later") == 0


# SQLite runs keyed writes one after the other (the write lock from BEGIN IMMEDIATE): a second one waits, then
# replays; tests/reload/test_idempotency_processes.py races them there.
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_a_key_running_in_another_transaction_answers_409_with_retry_after(items: Backend, api: httpx.Client) -> None:
    """A transaction of the test holds the key's lock, as a running first execution would."""

    key = new_key()
    body = rows("held", 1)

    async def hold(engine: Any) -> httpx.Response:
        keeper = await _keeper_like_the_server(api, key, body)
        async with engine.connect() as conn:
            await conn.begin()
            await keeper.enter(conn)
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    None, lambda: api.post(PATH, json=body, headers=keyed(key))
                )
            finally:
                await conn.rollback()
                await keeper.leave(conn)

    response: httpx.Response = items.with_engine(hold)
    assert response.status_code == 409, response.text
    assert response.json()[0]["code"] == "6103"
    assert response.headers["retry-after"] == "1"
    assert count_named(items, "held-0") == 0
    # Once the holder is gone the key executes.
    assert api.post(PATH, json=body, headers=keyed(key)).status_code == 201


async def _keeper_like_the_server(api: httpx.Client, key: str, body: Any) -> Keeper:
    """A keeper with the scope the server computes for this client (the fingerprint does not matter)."""
    import hashlib

    import jwt

    token = api.headers["authorization"].removeprefix("Bearer ")
    subject = jwt.decode(token, options={"verify_signature": False})["sub"]
    return Keeper(hashlib.sha256(f"{subject}\0{key}".encode()).hexdigest(), "held")


def test_records_older_than_the_ttl_are_pruned(items: Backend, api: httpx.Client) -> None:
    key = new_key()
    assert api.post(PATH, json=rows("pruned", 1), headers=keyed(key)).status_code == 201
    items.sql(sa.update(dx_idempotency).values(created_at=dx_idempotency.c.created_at - 10_000_000))

    async def go(engine: Any) -> int:
        return await prune(engine, 3600)

    assert items.with_engine(go) >= 1
    again = api.post(PATH, json=rows("pruned", 1), headers=keyed(key))
    assert "idempotency-replayed" not in again.headers  # executed again: the name is taken now
    assert again.status_code == 400 and again.json()[0]["code"] == "1309"


@pytest.mark.parametrize("name", ['it\'s \\ "quoted"', "zero\x00byte? no: tab\tand ünïcödé ✓", "'); DROP TABLE x; --"])
def test_a_lone_keyed_write_replays_any_text_byte_for_byte(items: Backend, api: httpx.Client, name: str) -> None:
    """A single keyed POST or PATCH records its answer in the statement that commits it (PostgreSQL inlines
    the record as hexadecimal): whatever the answer holds comes back unchanged."""
    name = name.replace("\x00", "")  # NUL is no text on PostgreSQL
    key = new_key()
    created = api.post(PATH, json={"data": [{"name": name[:40], "qty": 1}]}, headers=keyed(key))
    assert created.status_code == 201, created.text
    assert_replay(created, api.post(PATH, json={"data": [{"name": name[:40], "qty": 1}]}, headers=keyed(key)))
    row_id = created.json()["data"][0]["id"]
    key = new_key()
    patched = api.patch(f"{PATH}/{row_id}", json={"data": {"name": name[::-1][:40]}}, headers=keyed(key))
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["name"] == name[::-1][:40]
    again = api.patch(f"{PATH}/{row_id}", json={"data": {"name": name[::-1][:40]}}, headers=keyed(key))
    assert_replay(patched, again)
    assert again.headers["etag"] == patched.headers["etag"]
    assert items.sql(sa.select(ITEMS.c.name).where(ITEMS.c.id == row_id))[0][0] == name[::-1][:40]
