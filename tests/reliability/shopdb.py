"""A demo shop database of a test module's own on the suite's cluster, with the products' change feed on.

Feeds ``test_replicas`` and ``test_pgbouncer``: the shop of ``tests.conftest._prepare`` (300 products, a client
allowed everything: the *writer*) plus a second client allowed everything (the *reader*), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from dxapi.auth.principals import add_client
from dxapi.db import create_engine
from dxapi.registry.store import parse_import, save_entities
from tests.conftest import ALL_SCOPES, _prepare, shop_config
from tests.reliability.cluster import Cluster, Session


@dataclass(frozen=True)
class ShopDatabase:
    name: str
    url: str  # direct, to the primary
    writer: tuple[str, str]  # client id and secret
    reader: tuple[str, str]


def with_feed(entry: dict[str, object], feed: bool = True) -> dict[str, object]:
    definition = dict(entry["definition"])  # type: ignore[call-overload]
    definition["changeFeed"] = feed
    return {**entry, "definition": definition}


async def _prepare_shop(url: str) -> tuple[tuple[str, str], tuple[str, str]]:
    writer = await _prepare(url)
    engine = create_engine(url)
    try:
        products = next(e for e in shop_config() if e["tableAlias"] == "products")
        await save_entities(engine, parse_import([with_feed(products)]), actor="test", action="import")
        reader = await add_client(engine, "reader", ALL_SCOPES)
    finally:
        await engine.dispose()
    return writer, reader


@contextlib.contextmanager
def shop_database(cluster: Cluster, prefix: str) -> Iterator[ShopDatabase]:
    name = f"{prefix}_{secrets.token_hex(3)}"
    with Session(cluster.url("postgres")) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        writer, reader = asyncio.run(_prepare_shop(cluster.url(name)))
        yield ShopDatabase(name, cluster.url(name), writer, reader)
    finally:
        with Session(cluster.url("postgres")) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
