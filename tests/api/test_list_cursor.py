"""Tie-safe list cursors (issue 11, DESIGN §4b): ``page[cursor]`` pages a list by keyset, on every backend.

A connector follows ``links.next`` from ``page[cursor]=`` until a page links none; it must see every row exactly
once however many rows share a sort value, whatever the filters and the sort (directions, several keys, NULLs,
which each backend orders its own way), also when rows come and go between pages. Expectations are one unpaged
list of the same request, or the rows written. A deep page is the same statement as the second one, only with
other bound values: no OFFSET.

The module works on its own table ``lc_row`` (entity ``lc-rows``), emptied before each test; the demo shop's
``products`` show that ``include`` survives the links.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql

from dxapi.plan.build import build_read_plan
from dxapi.registry.snapshot import load_snapshot
from dxapi.request.params import parse_read_request
from dxapi.sql.build import build_read, read_parameters
from tests.conftest import PRODUCTS, Backend, only_on, serving

PREFIX = "/dynamic-entity"
ALIAS = "lc-rows"
META = sa.MetaData()
MOMENT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")  # MariaDB keeps microseconds only so
LC = sa.Table(
    "lc_row",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("updated_at", MOMENT, nullable=False),
    sa.Column("grp", sa.Integer),
    sa.Column("price", sa.Numeric(12, 4)),
    sa.Column("name", sa.String(100)),
    sa.Column("ts", MOMENT),
    sa.Column("tag", sa.String(20)),
    sa.Index("lc_row_updated", "updated_at", "id"),
)
CODES = sa.Table(  # a string field on a NUMERIC column: the driver hands over a number for it
    "lc_code",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("code", sa.Numeric(10, 0)),
)


def _field(column: str, visible: str, kind: str) -> dict[str, Any]:
    return {"fieldName": column, "fieldVisibleName": visible, "type": kind, "isCreatable": True, "isEditable": True}


CONFIG = [
    {
        "tableName": "lc_row",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [
                _field("id", "id", "integer"),
                _field("updated_at", "updatedAt", "datetime"),
                _field("grp", "group", "integer"),
                _field("price", "price", "decimal"),
                _field("name", "name", "string"),
                _field("ts", "ts", "datetime"),
                _field("tag", "tag", "string"),
            ],
        },
    },
    {
        "tableName": "lc_code",
        "tableAlias": "lc-codes",
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [_field("id", "id", "integer"), _field("code", "code", "string")],
        },
    },
]
SHARED = dt.datetime(2026, 3, 1, 12, 0, 0, 250000)  # the one `updatedAt` of the rows that tie
ALL = "500"  # an unpaged list (max_page_limit of the test servers)


class Env:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def api(self) -> httpx.Client:
        return self.backend.client

    def get(self, path: str, params: Any = None) -> httpx.Response:
        response = self.api.get(path, params=params)
        assert response.status_code < 500, response.text
        return response

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """Rows written by SQL, as another application would (every column given, so one statement shape)."""
        empty = {"updated_at": SHARED, "grp": None, "price": None, "name": None, "ts": None, "tag": None}
        full = [{**empty, **row} for row in rows]
        for start in range(0, len(full), 100):
            self.backend.sql(sa.insert(LC).values(full[start : start + 100]))

    def unpaged(self, params: dict[str, str]) -> list[dict[str, Any]]:
        response = self.get(f"{PREFIX}/{ALIAS}", {**params, "page[limit]": ALL})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["data"]
        assert len(items) < int(ALL), "the reference list must fit one page"
        return items

    def pages(self, params: dict[str, str], path: str = f"{PREFIX}/{ALIAS}") -> list[list[dict[str, Any]]]:
        """Every page from ``page[cursor]=`` through ``links.next`` until a page links none."""
        return list(self.follow(params, path))

    def follow(self, params: dict[str, str], path: str = f"{PREFIX}/{ALIAS}") -> Iterator[list[dict[str, Any]]]:
        response = self.get(path, {**params, "page[cursor]": ""})
        for _ in range(2000):
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {"data", "links"} and set(body["links"]) <= {"next"}, body.keys()
            yield body["data"]
            link = body["links"].get("next")
            if link is None:
                return
            assert link.startswith(f"{path}?"), link  # relative to the server: path and query
            response = self.get(link)
        raise AssertionError("links.next never ended")


@pytest.fixture(scope="module")
def module_env(backend: Backend) -> Iterator[Env]:
    with serving(backend, META, CONFIG):
        yield Env(backend)


@pytest.fixture
def env(module_env: Env) -> Env:
    module_env.backend.sql(sa.delete(LC))
    return module_env


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


def flat(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page]


def query_of(link: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(link).query, keep_blank_values=True))


def cursor_document(link_or_cursor: str) -> Any:
    text = query_of(link_or_cursor)["page[cursor]"] if "?" in link_or_cursor else link_or_cursor
    return orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def encode(document: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(document)).rstrip(b"=").decode()


def assert_error(response: httpx.Response, status: int, code: str, *mentions: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert [e["code"] for e in body] == [code], body
    assert response.headers["X-Dxapi-Error-Code"] == code
    for text in mentions:
        assert text in body[0]["message"], body


# --- ties: the reason cursors exist ------------------------------------------------------------------------------


def test_600_rows_sharing_one_updated_at_are_each_seen_exactly_once_in_12_pages(env: Env) -> None:
    env.insert([{"id": i} for i in range(1, 601)])
    pages = env.pages({"sort": "updatedAt", "page[limit]": "50"})
    assert [len(page) for page in pages] == [50] * 12  # the last page is full and links no next one
    seen = ids(flat(pages))
    assert len(seen) == 600 and sorted(seen) == list(range(1, 601))
    assert seen == list(range(1, 601)), "ties in identifier order"
    assert {item["updatedAt"] for item in flat(pages)} == {SHARED.isoformat()}


def test_a_short_last_page_and_an_empty_list_link_no_next_page(env: Env) -> None:
    assert env.pages({"sort": "updatedAt"}) == [[]]
    env.insert([{"id": i} for i in range(1, 8)])
    assert [ids(page) for page in env.pages({"sort": "updatedAt", "page[limit]": "3"})] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [ids(page) for page in env.pages({"page[limit]": "7"})] == [list(range(1, 8))]


def test_without_page_cursor_the_answer_is_as_before(env: Env) -> None:
    env.insert([{"id": i} for i in range(1, 8)])
    body = env.get(f"{PREFIX}/{ALIAS}", {"sort": "updatedAt", "page[limit]": "3"}).json()
    assert set(body) == {"data"} and ids(body["data"]) == [1, 2, 3]
    assert ids(env.get(f"{PREFIX}/{ALIAS}", {"page[limit]": "3", "page[offset]": "3"}).json()["data"]) == [4, 5, 6]


def test_links_next_keeps_the_callers_filters_sort_limit_and_include(env: Env) -> None:
    params = {
        "filter[products.price]": json.dumps({"gte": "10"}),
        "filter[products.isActive]": "true",
        "sort": "-updatedAt,name",
        "include": "productStocks",
        "page[limit]": "17",
    }
    first = env.get(f"{PREFIX}/products", {**params, "page[cursor]": ""}).json()
    link = first["links"]["next"]
    assert link.startswith(f"{PREFIX}/products?") and "page[limit]=17" in link  # brackets of names stay readable
    assert {k: v for k, v in query_of(link).items() if k != "page[cursor]"} == params
    pages = env.pages(params, f"{PREFIX}/products")
    assert flat(pages) == _unpaged_products(env, params)
    assert all("productStocks" in item for item in flat(pages))
    assert all(len(page) == 17 for page in pages[:-1]) and 0 < len(pages[-1]) <= 17


def _unpaged_products(env: Env, params: dict[str, str]) -> list[dict[str, Any]]:
    response = env.get(f"{PREFIX}/products", {**params, "page[limit]": ALL})
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["data"]
    assert 17 < len(items) < PRODUCTS
    return items


# --- any sort, NULLs included ---------------------------------------------------------------------------------

SORTS = ["group", "-group", "group,-price", "-price,name", "name,-group,price", "-ts", "ts,group", "-id", "price"]


@pytest.fixture
def mixed(env: Env) -> Env:
    """Rows with NULLs in every nullable sort column, repeated values and ties on every key but the identifier."""
    names = ["Zoë", "zoe", "Émile", "emile", "Ärger", "a", "b", None, "🚀", "Straße"]
    rows = []
    for i in range(1, 121):
        rows.append(
            {
                "id": i,
                "grp": None if i % 7 == 0 else i % 4,
                "price": None if i % 5 == 0 else Decimal(i % 6) + Decimal("0.1250"),
                "name": names[i % len(names)],
                "ts": None if i % 3 == 0 else dt.datetime(2026, 1, 1, 8, 0, 0, (i % 9) * 111111),
                "tag": "even" if i % 2 == 0 else "odd",
                "updated_at": SHARED + dt.timedelta(microseconds=i % 4),
            }
        )
    env.insert(rows)
    return env


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("limit", ["1", "7", "50"])
def test_pages_of_any_sort_concatenate_to_the_unpaged_list(mixed: Env, sort: str, limit: str) -> None:
    params = {"sort": sort}
    reference = mixed.unpaged(params)
    assert len(reference) == 120
    pages = mixed.pages({**params, "page[limit]": limit})
    assert flat(pages) == reference
    assert all(len(page) == int(limit) for page in pages[:-1])


@pytest.mark.parametrize("sort", ["group", "-price,name", "-ts"])
def test_filters_with_a_cursor_page_exactly_the_filtered_rows(mixed: Env, sort: str) -> None:
    params = {
        "filter[lc.tag]": "even",
        "filter[lc.group]": json.dumps({"ne": 2}),  # NULLs stay in: `ne` counts NULL as not equal
        "sort": sort,
    }
    reference = mixed.unpaged(params)
    assert 0 < len(reference) < 60 and any(item["group"] is None for item in reference)
    assert flat(mixed.pages({**params, "page[limit]": "4"})) == reference


# Few distinct values, so ties and NULLs are common; text in several scripts and cases, microsecond neighbours.
_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(1, 10_000),
            "grp": st.none() | st.integers(0, 3),
            "price": st.none() | st.sampled_from([Decimal("-1.5000"), Decimal("0"), Decimal("0.0001"), Decimal("7")]),
            "name": st.none() | st.sampled_from(["a", "A", "b", "é", "e\u0301", "Ω", "🚀", "a ", ""]),
            "ts": st.none() | st.sampled_from([SHARED, SHARED + dt.timedelta(microseconds=1), dt.datetime(2025, 1, 1)]),
            "updated_at": st.sampled_from([SHARED, SHARED - dt.timedelta(days=1)]),
        }
    ),
    max_size=30,
    unique_by=lambda row: row["id"],
)
_SORT = st.lists(
    st.tuples(st.sampled_from(["group", "price", "name", "ts", "updatedAt", "id"]), st.booleans()),
    max_size=4,
    unique_by=lambda key: key[0],
).map(lambda keys: ",".join(("-" if down else "") + name for name, down in keys))


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=_ROWS, sort=_SORT, limit=st.integers(1, 8))
def test_property_any_rows_any_sort_any_limit_pages_to_the_unpaged_list(
    module_env: Env, rows: list[dict[str, Any]], sort: str, limit: int
) -> None:
    module_env.backend.sql(sa.delete(LC))
    module_env.insert(rows)
    params = {"sort": sort} if sort else {}
    pages = module_env.pages({**params, "page[limit]": str(limit)})
    assert flat(pages) == module_env.unpaged(params)
    assert all(len(page) == limit for page in pages[:-1]) and len(pages) == max(1, -(-len(rows) // limit))


# --- rows that come and go between pages --------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["updatedAt", "-group,name", "price"])
def test_rows_inserted_and_deleted_between_pages_skip_or_repeat_no_untouched_row(mixed: Env, sort: str) -> None:
    params = {"sort": sort, "page[limit]": "9"}
    before = ids(mixed.unpaged({"sort": sort}))
    deleted = set(before[5:110:4])  # some already answered, some still to come
    added = itertools.count(1000)
    seen: list[int] = []
    for number, page in enumerate(mixed.follow(params)):
        seen.extend(ids(page))
        if number in (1, 4, 7):
            mixed.backend.sql(sa.delete(LC).where(LC.c.id.in_([key for key in deleted if key not in seen][:5])))
            fresh = [next(added) for _ in range(6)]  # values before and after the cursor's position
            mixed.insert(
                [
                    {"id": key, "grp": key % 4, "price": Decimal(key % 6), "name": "zz" if key % 2 else "aa"}
                    for key in fresh
                ]
            )
        if number == 9:
            mixed.backend.sql(sa.delete(LC).where(LC.c.id.in_(deleted)))
    assert len(seen) == len(set(seen)), "a row answered twice"
    untouched = [key for key in before if key not in deleted]
    assert all(key in seen for key in untouched), "an untouched row was skipped"
    assert [key for key in seen if key in set(untouched)] == untouched, "untouched rows keep their order"


# --- values round-trip exactly ----------------------------------------------------------------------------------


def test_decimal_datetime_and_unicode_cursor_values_round_trip_exactly(env: Env) -> None:
    """Neighbours a microsecond, a ten-thousandth or one code point apart: a value that came back other than it was
    answered would skip or repeat one of them at page limit 1."""
    moment = dt.datetime(2026, 5, 17, 23, 59, 59, 999998)
    rows = [
        {"id": 1, "ts": moment, "price": Decimal("12.3456"), "name": "e\u0301"},
        {"id": 2, "ts": moment + dt.timedelta(microseconds=1), "price": Decimal("12.3457"), "name": "é"},
        {"id": 3, "ts": moment + dt.timedelta(microseconds=2), "price": Decimal("-0.0001"), "name": "🚀"},
        {"id": 4, "ts": moment - dt.timedelta(microseconds=1), "price": Decimal("99999999.9999"), "name": "🚀 "},
        {"id": 5, "ts": moment, "price": Decimal("12.3456"), "name": "ß"},
        {"id": 6, "ts": dt.datetime(2026, 5, 18), "price": Decimal("0"), "name": "\u00a0"},
    ]
    env.insert(rows)
    for sort in ("ts", "-ts", "price,ts", "-price,-ts", "name,ts", "ts,price,name"):
        params = {"sort": sort}
        reference = env.unpaged(params)
        pages = env.pages({**params, "page[limit]": "1"})
        assert flat(pages) == reference, sort
        assert len(pages) == 6, sort
    first = env.get(f"{PREFIX}/{ALIAS}", {"sort": "price,ts,name", "page[limit]": "1", "page[cursor]": ""}).json()
    version, _fingerprint, values = cursor_document(first["links"]["next"])
    item = first["data"][0]
    assert version == 1 and values == [item["price"], item["ts"], item["name"], item["id"]]
    assert values == ["-0.0001", "2026-05-18T00:00:00", "🚀", 3]  # a whole second, answered without a fraction


@only_on("sqlite")  # only SQLite keeps date-times as the writer's text and decimals with more digits than their scale
def test_sqlite_text_forms_of_one_moment_and_extra_decimal_digits_page_by_their_answered_values(env: Env) -> None:
    forms = [
        "2026-12-01 18:25:32",
        "2026-12-01T18:25:32",
        "2026-12-01 18:25:32.000000",
        "2026-12-01T18:25:32Z",
        "2026-12-01 19:25:32+01:00",
        "2026-12-01 18:25:32.5",
        "garbage",
        None,
    ]
    for key, (text, digits) in enumerate(zip(forms, ["1.00004", "1.00001", "1.0000", None] * 2, strict=True), 1):
        env.backend.sql(
            "INSERT INTO lc_row (id, updated_at, ts, price) VALUES (:id, :u, :ts, :price)",
            id=key,
            u="not a date" if key > 6 else "2026-01-01 00:00:00",  # NULL as answered, though the column is NOT NULL
            ts=text,
            price=digits,
        )
    for sort in ("ts", "-ts", "price,-ts", "-price,ts", "-updatedAt", "updatedAt,-ts"):
        pages = env.pages({"sort": sort, "page[limit]": "1"})
        seen = flat(pages)
        if "price" not in sort:  # unpaged, decimals order by their stored digits; by cursor, by the answered ones
            assert seen == env.unpaged({"sort": sort}), sort
        assert sorted(ids(seen)) == list(range(1, 9)), sort
        answered = [(item["ts"], item["price"]) for item in seen]
        assert [item["ts"] for item in seen].count(None) == 2  # `garbage` reads as NULL, as everywhere
        assert {ts for ts, _ in answered} == {"2026-12-01T18:25:32", "2026-12-01T18:25:32.500000", None}
    ascending = [item["ts"] for item in flat(env.pages({"sort": "ts,id", "page[limit]": "3"}))]
    assert ascending == [None, None] + ["2026-12-01T18:25:32"] * 5 + ["2026-12-01T18:25:32.500000"]


def test_a_string_field_on_a_numeric_column_pages_by_its_numbers(env: Env) -> None:
    env.backend.sql(sa.delete(CODES))
    codes = [5, 3, 3, None, 10, 7, 3]
    env.backend.sql(sa.insert(CODES).values([{"id": i, "code": c} for i, c in enumerate(codes, 1)]))
    expected = [row[0] for row in env.backend.sql(sa.select(CODES.c.id).order_by(CODES.c.code, CODES.c.id))]
    for limit in ("1", "2"):
        pages = env.pages({"sort": "code", "page[limit]": limit}, f"{PREFIX}/lc-codes")
        assert ids(flat(pages)) == expected, limit


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("!!!", id="not-base64url"),
        pytest.param("abc", id="not-json"),
        pytest.param(encode({"v": 1}), id="not-a-list"),
        pytest.param(encode([2, "x", [1]]), id="unknown-version"),
        pytest.param("AAAA", id="binary"),
        pytest.param(encode([1, "0" * 12, [SHARED.isoformat(), 1]]), id="wrong-fingerprint"),
    ],
)
def test_malformed_cursor_is_2020(env: Env, cursor: str) -> None:
    response = env.get(f"{PREFIX}/{ALIAS}", {"sort": "updatedAt", "page[cursor]": cursor})
    assert_error(response, 400, "2020", "page[cursor]")


def test_tampered_cursor_values_are_2020(env: Env) -> None:
    env.insert([{"id": i} for i in range(1, 4)])
    first = env.get(f"{PREFIX}/{ALIAS}", {"sort": "updatedAt", "page[limit]": "1", "page[cursor]": ""}).json()
    version, fingerprint, values = cursor_document(first["links"]["next"])
    for bad in (["yesterday", 1], [values[0], "one"], [values[0]], [values[0], 1, 2], [values[0], [1]]):
        response = env.get(
            f"{PREFIX}/{ALIAS}", {"sort": "updatedAt", "page[cursor]": encode([version, fingerprint, bad])}
        )
        assert_error(response, 400, "2020", "page[cursor]")


def test_cursor_of_another_sort_or_entity_is_2020(env: Env) -> None:
    env.insert([{"id": i} for i in range(1, 4)])
    first = env.get(f"{PREFIX}/{ALIAS}", {"sort": "updatedAt", "page[limit]": "1", "page[cursor]": ""}).json()
    cursor = query_of(first["links"]["next"])["page[cursor]"]
    assert env.get(f"{PREFIX}/{ALIAS}", {"sort": "updatedAt", "page[cursor]": cursor}).status_code == 200
    for sort in ("-updatedAt", "updatedAt,group", "group", "id"):
        response = env.get(f"{PREFIX}/{ALIAS}", {"sort": sort, "page[cursor]": cursor})
        assert_error(response, 400, "2020", "another entity or another `sort`")
    response = env.get(f"{PREFIX}/{ALIAS}", {"page[cursor]": cursor})  # no sort: the identifier's order
    assert_error(response, 400, "2020")
    other = env.get(f"{PREFIX}/products", {"sort": "updatedAt", "page[cursor]": cursor})
    assert_error(other, 400, "2020", "another entity or another `sort`")


def test_cursor_with_offset_is_2017(env: Env) -> None:
    for cursor in ("", encode([1, "x", []])):
        response = env.get(f"{PREFIX}/{ALIAS}", {"page[cursor]": cursor, "page[offset]": "0"})
        assert_error(response, 400, "2017", "page[offset]", "page[cursor]")


def test_cursor_on_a_single_row_or_a_delete_is_2017(env: Env) -> None:
    env.insert([{"id": 1, "tag": "kept"}])
    assert_error(env.get(f"{PREFIX}/{ALIAS}/1", {"page[cursor]": ""}), 400, "2017", "page[cursor]")
    response = env.api.delete(f"{PREFIX}/{ALIAS}", params={"filter[lc.tag]": "kept", "page[cursor]": ""})
    assert_error(response, 400, "2017", "page[cursor]")
    assert env.backend.sql(sa.select(sa.func.count()).select_from(LC))[0][0] == 1, "nothing deleted"


# --- a deep page costs what the first does ---------------------------------------------------------------------


def _statement(env: Env, link: str) -> tuple[str, dict[str, Any], sa.Select[Any]]:
    """The SQL text, bound values and statement the server builds for ``link``, from the live configuration."""
    pairs = parse_qsl(urlsplit(link).query, keep_blank_values=True)
    backend = env.backend

    async def build(engine: Any) -> tuple[str, dict[str, Any], sa.Select[Any]]:
        snapshot = await load_snapshot(engine)
        read = parse_read_request(pairs, backend.settings.max_filter_values)
        plan = build_read_plan(snapshot, snapshot.entities[ALIAS], read, backend.settings, allows=lambda a, b: True)
        statement = build_read(plan)
        return str(statement.compile(dialect=engine.dialect)), read_parameters(plan), statement

    built: tuple[str, dict[str, Any], sa.Select[Any]] = backend.with_engine(build)
    return built


def _links(env: Env, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The links to pages 2 … ``count + 1`` of 600 tied rows by 50, and the rows of the last of them."""
    env.insert([{"id": i} for i in range(1, 601)])
    links = []
    response = env.get(f"{PREFIX}/{ALIAS}", {"sort": "updatedAt", "page[limit]": "50", "page[cursor]": ""})
    for _ in range(count):
        links.append(response.json()["links"]["next"])
        response = env.get(links[-1])
    page: list[dict[str, Any]] = response.json()["data"]
    return links, page


def test_page_10_is_the_statement_of_page_2_with_other_values_and_no_offset(env: Env) -> None:
    links, page_10 = _links(env, 9)
    text_2, values_2, _ = _statement(env, links[0])
    text_10, values_10, statement = _statement(env, links[8])
    assert text_10 == text_2, "one shape for every page: the cached statement serves them all"
    assert set(values_10) == set(values_2) == {"limit", "k0", "k1"} and values_10["limit"] == 51
    assert values_10["k1"] == 450 and values_2["k1"] == 50
    if env.backend.name != "sqlite":  # SQLite's compiler always writes `OFFSET 0`, as a constant
        assert "OFFSET" not in text_10.upper()
    assert statement._offset_clause is None  # what the statement says, not only its text
    # The statement as built, run directly: the rows of the page the server answered, and one to spare.
    rows = env.backend.sql(statement, **values_10)
    assert ids(page_10) == list(range(451, 501))
    assert [row[0] for row in rows] == [*ids(page_10), 501]


@only_on("postgresql")  # the one backend whose EXPLAIN ANALYZE counts the rows a scan read
def test_page_10_reads_as_many_index_rows_as_page_2_on_postgresql(env: Env) -> None:
    """With an index on the keys (``updated_at, id``) a page reads its rows and the one to spare, however deep."""
    links, _ = _links(env, 9)
    env.backend.sql("ANALYZE lc_row")

    def rows_read(link: str) -> int:
        _text, values, statement = _statement(env, link)

        async def explain(engine: Any) -> Any:
            async with engine.connect() as conn:
                # This session only: 600 rows fit a few pages, where a whole scan is as cheap as the index.
                await conn.execute(sa.text("SET enable_seqscan = off"))
                await conn.execute(sa.text("SET enable_bitmapscan = off"))
                compiled = statement.compile(dialect=engine.dialect)
                sql = f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}"
                result = await conn.exec_driver_sql(sql, _positional(compiled, values))
                return result.scalar_one()

        plan = env.backend.with_engine(explain)
        return _scanned(plan[0]["Plan"] if isinstance(plan, list) else orjson.loads(plan)[0]["Plan"])

    assert rows_read(links[8]) == rows_read(links[0]) == 51


def _positional(compiled: Any, values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[name] for name in compiled.positiontup)


def _scanned(node: dict[str, Any]) -> int:
    """Rows the scans of a plan produced plus those their filters threw away."""
    own = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) if "Scan" in node["Node Type"] else 0
    return own + sum(_scanned(child) for child in node.get("Plans", []))


# --- OpenAPI ----------------------------------------------------------------------------------------------------


def test_openapi_documents_page_cursor_and_the_links_of_a_list(env: Env) -> None:
    document = env.get(f"{PREFIX}/openapi.json").json()
    listing = document["paths"][f"{PREFIX}/{ALIAS}"]["get"]
    cursor = [p for p in listing["parameters"] if p["name"] == "page[cursor]"]
    assert len(cursor) == 1 and cursor[0]["in"] == "query" and cursor[0]["schema"] == {"type": "string"}
    assert "links.next" in cursor[0]["description"] and "page[offset]" in cursor[0]["description"]
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert page["required"] == ["data"]  # `links` only with page[cursor]
    assert set(page["properties"]["links"]["properties"]) == {"next"}
    assert page["properties"]["links"]["properties"]["next"]["type"] == "string"
    one = document["paths"][f"{PREFIX}/{ALIAS}/{{id}}"]["get"]
    assert "page[cursor]" not in [p["name"] for p in one.get("parameters", [])]
    deleting = document["paths"][f"{PREFIX}/{ALIAS}"]["delete"]
    assert "page[cursor]" not in [p["name"] for p in deleting["parameters"]]
