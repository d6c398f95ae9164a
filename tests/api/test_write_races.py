"""Writes racing other transactions: a batch whose picture of the table went stale before its INSERT."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import Backend, config_field, only_on, serving

PREFIX = "/dynamic-entity"
ALIAS = "race-items"
META = sa.MetaData()
ITEMS = sa.Table(
    "race_item",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("qty", sa.Integer, nullable=True),
)
CONFIG = [
    {
        "tableName": "race_item",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [config_field("id", "integer", isEditable=False), config_field("qty", "integer")],
        },
    }
]


@pytest.fixture(scope="module")
def races(backend: Backend) -> Iterator[Backend]:
    with serving(backend, META, CONFIG):
        yield backend


def test_a_put_batch_racing_an_insert_of_one_of_its_keys_is_no_500(races: Backend, api: httpx.Client) -> None:
    """The PUT looks keys 7 and 8 up (missing), then its INSERT meets 7 committed by another transaction.
    It used to answer 500 1302: the replay that names failing items found none. Now the batch runs again
    from what is there (7 updated, 8 inserted) — or, on SQLite, whose writer lock orders the two, waits."""
    body = {"data": [{"id": 7, "qty": 2}, {"id": 8, "qty": 3}]}

    async def go(engine: Any) -> httpx.Response:
        async with engine.connect() as conn:
            await conn.begin()
            await conn.execute(sa.insert(ITEMS).values(id=7, qty=1))
            put = asyncio.get_running_loop().run_in_executor(None, lambda: api.put(f"{PREFIX}/{ALIAS}", json=body))
            await asyncio.sleep(0.5)  # the PUT has looked its keys up and waits on 7 in its INSERT
            await conn.commit()
            return await put

    races.sql(sa.delete(ITEMS))
    response: httpx.Response = races.with_engine(go)
    assert response.status_code in (200, 409), response.text
    if response.status_code == 200:
        assert sorted(races.sql(sa.select(ITEMS.c.id, ITEMS.c.qty))) == [(7, 2), (8, 3)]
    else:
        assert response.json()[0]["code"] == "3004"


@only_on("mysql")
def test_a_per_item_write_that_loses_a_deadlock_is_retried_whole(races: Backend, api: httpx.Client) -> None:
    """InnoDB undoes a deadlock victim's whole transaction, savepoints included. The per-item write used to
    answer item 2 with 500 and report item 1 (id 300) saved although it had been undone; now the request is
    retried whole and answers from what is there after the other transaction: every item a duplicate."""
    body = {"data": [{"id": 60, "qty": 1}, {"id": 300, "qty": 1}, {"id": 100, "qty": 1}]}

    async def go(engine: Any) -> httpx.Response:
        async with engine.connect() as conn:
            await conn.begin()
            # many rows changed: InnoDB picks the API's lighter transaction as the deadlock victim
            await conn.execute(sa.update(ITEMS).where(ITEMS.c.id <= 50).values(qty=ITEMS.c.qty + 1))
            await conn.execute(sa.update(ITEMS).where(ITEMS.c.id == 100).values(qty=ITEMS.c.qty + 1))
            post = asyncio.get_running_loop().run_in_executor(
                None, lambda: api.post(f"{PREFIX}/{ALIAS}", json=body, headers={"X-Is-Transactional": "false"})
            )
            await asyncio.sleep(0.5)  # the API has inserted 300 and waits on 100
            await conn.execute(sa.insert(ITEMS).values(id=300, qty=7))  # waits on the API's 300: deadlock
            await conn.commit()
            return await post

    races.sql(sa.delete(ITEMS))
    races.sql(sa.insert(ITEMS).values([{"id": i, "qty": 0} for i in [*range(1, 61), 100]]))
    response: httpx.Response = races.with_engine(go)
    answer = response.json()
    assert all(e["status"] < 500 for e in answer["errors"]), response.text
    saved = {row["id"]: row["qty"] for row in answer["data"]}
    stored = dict(races.sql(sa.select(ITEMS.c.id, ITEMS.c.qty).where(ITEMS.c.id.in_([100, 300]))))
    assert all(stored[key] == qty for key, qty in saved.items()), (saved, stored)  # nothing reported saved is gone
    assert stored[300] == 7
