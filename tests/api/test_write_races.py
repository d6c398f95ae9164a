"""Writes racing other transactions: a batch whose picture of the table went stale before its INSERT."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import Backend, serving

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
            "fields": [
                {"fieldName": n, "fieldVisibleName": n, "type": "integer", "isCreatable": True, "isEditable": n != "id"}
                for n in ("id", "qty")
            ],
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
