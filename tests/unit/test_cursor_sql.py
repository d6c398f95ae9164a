"""List cursors without a database: the cursor text, the keyset SQL per dialect, the links (issue 11).

The behaviour on real databases is ``tests/api/test_list_cursor.py``; here the statements are compiled and
compared, as SQLAlchemy's ``assert_compile`` does: which predicate each backend gets for its NULL order, that a
keyset page has no OFFSET and asks for one row to spare, that every page of a list shares one statement shape.
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Dialect, make_url

from dxapi import errors
from dxapi.plan.build import build_read_plan
from dxapi.plan.cursor import next_cursor, parse_cursor
from dxapi.plan.types import ReadPlan
from dxapi.registry.installer import parse_entry
from dxapi.registry.snapshot import Snapshot, build_snapshot
from dxapi.request.params import link_with, parse_read_request
from dxapi.settings import Settings
from dxapi.sql.build import build_read, read_parameters, read_shape

DIALECTS = {"sqlite": "sqlite+aiosqlite://", "postgresql": "postgresql+asyncpg://", "mysql": "mysql+asyncmy://"}
SETTINGS = Settings(database_url="sqlite:///unused.db", default_page_limit=100, max_page_limit=500)


def _table() -> sa.Table:
    return sa.Table(
        "ev",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("grp", sa.Integer),
        sa.Column("price", sa.Numeric(10, 2)),
        sa.Column("code", sa.String(20), nullable=False),
    )


def _field(name: str, visible: str, kind: str) -> dict[str, Any]:
    return {"fieldName": name, "fieldVisibleName": visible, "type": kind, "isCreatable": True, "isEditable": True}


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    entry = {
        "tableName": "ev",
        "tableAlias": "events",
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [
                _field("id", "id", "integer"),
                _field("at", "at", "datetime"),
                _field("grp", "group", "integer"),
                _field("price", "price", "decimal"),
                _field("code", "code", "string"),
            ],
        },
    }
    config, problems = parse_entry(entry, "entry[0]")
    assert config is not None and not problems
    return build_snapshot(1, [config], {"ev": _table()})


def plan(snapshot: Snapshot, *pairs: tuple[str, str]) -> ReadPlan:
    read = parse_read_request(list(pairs), 50)
    return build_read_plan(snapshot, snapshot.entities["events"], read, SETTINGS, allows=lambda a, b: True)


def after(snapshot: Snapshot, sort: str, last: dict[str, Any]) -> ReadPlan:
    """The plan of the page after the one whose last item is ``last``, as the endpoint would link it."""
    first = plan(snapshot, ("sort", sort), ("page[cursor]", ""))
    row = {"id": 7, "at": dt.datetime(2026, 1, 2, 3, 4, 5, 6), "group": 3, "price": "1.50", "code": "a", **last}
    return plan(snapshot, ("sort", sort), ("page[cursor]", next_cursor(first, row)))


def fingerprint(page: ReadPlan) -> str:
    assert page.cursor is not None
    return page.cursor.fingerprint


def sql(statement: sa.Select[Any], backend: str) -> str:
    dialect: Dialect = make_url(DIALECTS[backend]).get_dialect()()
    text = " ".join(str(statement.compile(dialect=dialect)).split())
    return text[text.index(" FROM ") :]


def test_cursor_holds_the_answered_values_and_reads_back_as_bound_values(snapshot: Snapshot) -> None:
    first = plan(snapshot, ("sort", "price,-at"), ("page[cursor]", ""))
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 6)
    text = next_cursor(first, {"id": 7, "at": moment, "group": None, "price": "1.50", "code": "ä"})
    assert "=" not in text and "+" not in text and "/" not in text  # base64url without padding: URL-safe as is
    document = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    assert document == [1, fingerprint(first), ["1.50", "2026-01-02T03:04:05.000006", 7]]
    read = parse_cursor(first.entity, first.order, text)
    assert read.after == (Decimal("1.50"), moment, 7) and read.fingerprint == fingerprint(first)


def test_fingerprint_names_entity_sort_fields_and_directions(snapshot: Snapshot) -> None:
    prints = {
        sort: fingerprint(plan(snapshot, ("sort", sort), ("page[cursor]", "")))
        for sort in ("", "at", "-at", "at,group", "group,at", "id", "-id")
    }
    assert prints[""] == prints["id"]  # no sort is the identifier's order
    assert len(set(prints.values())) == len(prints) - 1


@pytest.mark.parametrize("text", ["!", "a b", "=", "WzFd", "bnVsbA", "W10"])
def test_anything_else_is_2020(snapshot: Snapshot, text: str) -> None:
    with pytest.raises(errors.ApiError) as caught:
        plan(snapshot, ("page[cursor]", text))
    assert [item.code for item in caught.value.items] == ["2020"]


def test_a_not_null_key_gets_one_row_comparison_where_it_cannot_be_null(snapshot: Snapshot) -> None:
    page = after(snapshot, "at", {})
    # A date-time column is never NULL on PostgreSQL and MariaDB; on SQLite text that is no date reads as NULL.
    assert sql(build_read(page), "postgresql") == (
        " FROM ev WHERE (ev.at >= $1::TIMESTAMP WITHOUT TIME ZONE AND (ev.at, ev.id) > ($1::TIMESTAMP WITHOUT TIME"
        " ZONE, $2::INTEGER)) ORDER BY ev.at ASC, ev.id ASC LIMIT $3::BIGINT"
    )
    assert "(ev.at, ev.id) > (%s, %s)" in sql(build_read(page), "mysql")
    sqlite = sql(build_read(page), "sqlite")
    assert " OR " in sqlite and "IS NULL" not in sqlite  # NULL sorts first there: nothing NULL comes after


def test_a_nullable_key_places_null_where_each_backend_sorts_it(snapshot: Snapshot) -> None:
    ascending, descending = after(snapshot, "group", {}), after(snapshot, "-group", {})
    # Ascending, NULL comes last on PostgreSQL (so after any value), first on SQLite and MariaDB.
    assert "ev.grp > $1::INTEGER OR ev.grp IS NULL OR" in sql(build_read(ascending), "postgresql")
    for backend in ("sqlite", "mysql"):
        text = sql(build_read(ascending), backend)
        assert "IS NULL" not in text and "ev.grp >= ? AND" in text.replace("%s", "?"), backend
    # Descending, the other way round.
    assert "IS NULL" not in sql(build_read(descending), "postgresql")
    for backend in ("sqlite", "mysql"):
        assert "ev.grp < ? OR ev.grp IS NULL OR" in sql(build_read(descending), backend).replace("%s", "?")


def test_a_null_position_is_part_of_the_shape_and_binds_no_value(snapshot: Snapshot) -> None:
    valued, null = after(snapshot, "group", {"group": 4}), after(snapshot, "group", {"group": None})
    assert read_shape(valued) != read_shape(null)
    assert read_parameters(null) == {"limit": 101, "k1": 7}
    # After a NULL: ascending on PostgreSQL only NULLs with a larger identifier; elsewhere also every value.
    assert "WHERE (ev.grp IS NULL AND ev.id > $1::INTEGER) ORDER BY" in sql(build_read(null), "postgresql")
    assert "WHERE (ev.grp IS NOT NULL OR ev.grp IS NULL AND ev.id > ?) ORDER BY" in sql(build_read(null), "sqlite")


def test_every_page_shares_one_statement_and_none_has_an_offset(snapshot: Snapshot) -> None:
    page_2 = after(snapshot, "code,-price", {"code": "b", "id": 2})
    page_9 = after(snapshot, "code,-price", {"code": "x", "id": 9000, "price": "0.01"})
    assert read_shape(page_2) == read_shape(page_9)
    assert read_parameters(page_9) == {"limit": 101, "k0": "x", "k1": Decimal("0.01"), "k2": 9000}
    for backend in DIALECTS:
        assert sql(build_read(page_2), backend) == sql(build_read(page_9), backend)
    for backend in ("postgresql", "mysql"):  # SQLite's compiler always writes the constant `OFFSET 0`
        assert "OFFSET" not in sql(build_read(page_9), backend)
    first = plan(snapshot, ("sort", "code,-price"), ("page[cursor]", ""), ("page[limit]", "20"))
    assert read_parameters(first) == {"limit": 21} and "WHERE" not in sql(build_read(first), "postgresql")


def test_without_a_cursor_the_statement_is_as_before(snapshot: Snapshot) -> None:
    offset = plan(snapshot, ("sort", "price"), ("page[offset]", "10"))
    assert read_parameters(offset) == {"limit": 100, "offset": 10}
    text = sql(build_read(offset), "postgresql")
    assert text.endswith("ORDER BY ev.price ASC, ev.id ASC LIMIT $1::BIGINT OFFSET $2::BIGINT")


def test_sqlite_keyset_orders_decimals_by_their_answered_value(snapshot: Snapshot) -> None:
    text = sql(build_read(after(snapshot, "price", {})), "sqlite")
    assert text.count("round(ev.price, 2)") >= 3  # compared and ordered in the same rounded form
    assert "ORDER BY (CASE typeof(ev.price)" in text
    assert "ORDER BY ev.price ASC" in sql(build_read(plan(snapshot, ("sort", "price"))), "sqlite")


def test_link_with_replaces_the_cursor_in_place_and_escapes_values() -> None:
    pairs = [("filter[e.code]", '{"in":["a&b","c d"]}'), ("page[cursor]", ""), ("sort", "-at")]
    assert link_with("/dynamic-entity/events", pairs, "page[cursor]", "WzEs_-") == (
        "/dynamic-entity/events?filter[e.code]=%7B%22in%22%3A%5B%22a%26b%22%2C%22c%20d%22%5D%7D"
        "&page[cursor]=WzEs_-&sort=-at"
    )
    assert link_with("/p", [("sort", "x")], "page[cursor]", "Y") == "/p?sort=x&page[cursor]=Y"
