"""Values that must never poison an entity (issue 9, items 1 and 11), on every backend.

A JSON value is bounded before anything is written: at most ``JSON_MAX_DEPTH`` nested arrays/objects, integers
in the signed 64-bit range, finite numbers, no NUL in keys (1306). A float field refuses what no double holds
(1306). Sorting on a json field, too many sort keys and duplicate keys in a filter's operator object are
refused with their own codes. And what another application already wrote — JSON too deep to answer, numbers
beyond the double range, text that is no JSON at all — never takes down a collection: the field reads as
null and the server logs one WARNING for it.

The module works on its own table ``vt_doc`` and entity ``vt-docs``, created here and removed at the end; every
test starts from an empty table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dxapi.request.params import MAX_SORT_KEYS
from dxapi.types import JSON_MAX_DEPTH, JSON_RENDER_MAX_DEPTH
from tests.conftest import Backend, only_on, serving

PREFIX = "/dynamic-entity"
ALIAS = "vt-docs"
META = sa.MetaData()
DOC = sa.Table(
    "vt_doc",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("label", sa.String(50), nullable=True),
    sa.Column("doc", sa.JSON, nullable=True),  # PostgreSQL json, MariaDB JSON (a checked LONGTEXT), SQLite text
    sa.Column("docb", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
    sa.Column("text_doc", sa.Text, nullable=True),  # a json field on a plain text column
    sa.Column("ratio", sa.Double, nullable=True),
)
JSON_FIELDS = {"doc": "doc", "docb": "docb", "textDoc": "text_doc"}


def _field(column: str, visible: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "fieldName": column,
        "fieldVisibleName": visible,
        "type": kind,
        "isCreatable": True,
        "isEditable": True,
        **extra,
    }


CONFIG = [
    {
        "tableName": "vt_doc",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [
                _field("id", "id", "integer", isCreatable=False, isEditable=False),
                _field("label", "label", "string"),
                _field("doc", "doc", "json"),
                _field("docb", "docb", "json"),
                _field("text_doc", "textDoc", "json"),
                _field("ratio", "ratio", "float"),
            ],
        },
    }
]


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` arrays around ``leaf``, alternating with objects so both kinds count."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# --- the module's table and entity -----------------------------------------------------------------------------


class Env:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def api(self) -> httpx.Client:
        return self.backend.client

    def post(self, item: dict[str, Any] | None = None, raw: bytes | None = None) -> httpx.Response:
        content = raw if raw is not None else json.dumps({"data": [item]}).encode()
        return self.api.post(f"{PREFIX}/{ALIAS}", content=content, headers={"Content-Type": "application/json"})

    def get(self, path: str = "", params: Any = None) -> httpx.Response:
        return self.api.get(f"{PREFIX}/{ALIAS}{path}", params=params)

    def count(self) -> int:
        return int(self.backend.sql(sa.select(sa.func.count()).select_from(DOC))[0][0])

    def insert_text(self, **columns: str | None) -> int:
        """One row written by SQL as another application would, JSON columns given as raw text."""
        names = ", ".join(columns)
        values = ", ".join(f":{name}" for name in columns)
        self.backend.sql(f"INSERT INTO vt_doc ({names}) VALUES ({values})", **columns)
        return int(self.backend.sql(sa.select(sa.func.max(DOC.c.id)))[0][0])


@pytest.fixture(scope="module")
def env_module(backend: Backend) -> Iterator[Env]:
    with serving(backend, META, CONFIG):
        yield Env(backend)


@pytest.fixture
def env(env_module: Env) -> Env:
    env_module.backend.sql(sa.delete(DOC))
    return env_module


def error_codes(response: httpx.Response, status: int) -> list[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, list) and body, body
    assert response.headers["x-dxapi-error-code"] == body[0]["code"]
    return [item["code"] for item in body]


def data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["data"], body
    return body["data"]


def assert_collection_still_served(env: Env) -> None:
    """The entity answers its collection and every row (the symptom of a poison value was a 500 for all)."""
    items = data(env.get())
    for item in items:
        assert data(env.get(f"/{item['id']}"))["id"] == item["id"]


# --- item 1: JSON depth and number range are bounded before anything is written ---------------------------------


def test_json_limits_are_what_mariadb_json_columns_hold() -> None:
    # MariaDB's JSON check refuses a 32nd nested level; the limit is the same on every backend.
    assert JSON_MAX_DEPTH == 31
    assert JSON_RENDER_MAX_DEPTH > JSON_MAX_DEPTH


def nested_text(depth: int) -> str:
    """The JSON text of ``nested(depth)``, for depths the encoder's recursion limit would refuse."""
    opening = "".join("[" if level % 2 else '{"k":' for level in reversed(range(depth)))
    closing = "".join("]" if level % 2 else "}" for level in range(depth))
    return opening + "1" + closing


def test_nested_text_is_the_text_of_nested() -> None:
    assert json.loads(nested_text(7)) == nested(7)


@pytest.mark.parametrize("field", list(JSON_FIELDS))
@pytest.mark.parametrize("depth", [JSON_MAX_DEPTH + 1, 253, 900])
def test_json_nested_deeper_than_the_limit_is_1306_and_nothing_is_written(env: Env, field: str, depth: int) -> None:
    response = env.post(raw=f'{{"data":[{{"label":"deep","{field}":{nested_text(depth)}}}]}}'.encode())
    assert error_codes(response, 400) == ["1306"]
    assert f"`{field}`" in response.json()[0]["message"]
    assert env.count() == 0
    assert_collection_still_served(env)


def test_json_nested_beyond_what_a_body_may_hold_is_1301(env: Env) -> None:
    response = env.post(raw=f'{{"data":[{{"label":"deep","doc":{nested_text(5000)}}}]}}'.encode())
    assert error_codes(response, 400) == ["1301"]
    assert env.count() == 0


@pytest.mark.parametrize("field", list(JSON_FIELDS))
def test_json_nested_to_the_limit_is_stored_and_read_back(env: Env, field: str) -> None:
    value = nested(JSON_MAX_DEPTH - 1, leaf=[])  # the innermost empty array is the last level
    saved = data(env.post({"label": "at the limit", field: value}), 201)[0]
    assert saved[field] == value
    assert data(env.get(f"/{saved['id']}"))[field] == value
    assert data(env.get())[0][field] == value


@pytest.mark.parametrize("field", list(JSON_FIELDS))
@pytest.mark.parametrize(
    "value",
    [2**64, 2**63, -(2**63) - 1, {"n": 2**64}, [1, [10**30]], 10**400],
    ids=["2^64", "2^63", "-2^63-1", "in-object", "in-array", "400-digits"],
)
def test_json_integer_outside_the_signed_64_bit_range_is_1306(env: Env, field: str, value: Any) -> None:
    assert error_codes(env.post({"label": "big", field: value}), 400) == ["1306"]
    assert env.count() == 0
    assert_collection_still_served(env)


@pytest.mark.parametrize("field", list(JSON_FIELDS))
def test_json_integers_at_the_edges_of_the_64_bit_range_round_trip(env: Env, field: str) -> None:
    value = {"max": 2**63 - 1, "min": -(2**63), "list": [0, -1, 2**53 + 1]}
    saved = data(env.post({field: value}), 201)[0]
    assert saved[field] == value
    assert data(env.get(f"/{saved['id']}"))[field] == value


@pytest.mark.parametrize("field", list(JSON_FIELDS))
@pytest.mark.parametrize("number", ["1e400", "-1e400", "1e-400", "[1.5, 2e308]"])
def test_json_number_outside_the_double_range_is_1306_never_null(env: Env, field: str, number: str) -> None:
    raw = f'{{"data":[{{"label":"huge","{field}":{{"n":{number}}}}}]}}'.encode()
    assert error_codes(env.post(raw=raw), 400) == ["1306"]
    assert env.count() == 0


@pytest.mark.parametrize("field", list(JSON_FIELDS))
def test_json_fractions_are_stored_as_numbers(env: Env, field: str) -> None:
    raw = f'{{"data":[{{"{field}":{{"a":1.5,"b":-0.25,"c":1e300,"d":5e-324}}}}]}}'.encode()
    saved = data(env.post(raw=raw), 201)[0]
    assert saved[field] == {"a": 1.5, "b": -0.25, "c": 1e300, "d": 5e-324}
    assert data(env.get(f"/{saved['id']}"))[field] == saved[field]


@pytest.mark.parametrize("field", list(JSON_FIELDS))
@pytest.mark.parametrize(
    "value", [{"a\u0000b": 1}, {"ok": [{"\u0000": True}]}, {"k": "v\u0000"}], ids=["key", "nested-key", "string"]
)
def test_json_nul_in_a_key_or_string_is_1306(env: Env, field: str, value: Any) -> None:
    assert error_codes(env.post({"label": "nul", field: value}), 400) == ["1306"]
    assert env.count() == 0


# --- item 11: a float field refuses what no double holds ---------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["1" + "0" * 400, "-" + "9" * 400, "1e400", "-1e400", "1e-400"],
    ids=["400-digits", "minus-400-digits", "1e400", "-1e400", "1e-400"],
)
def test_float_field_outside_the_double_range_is_1306(env: Env, number: str) -> None:
    response = env.post(raw=f'{{"data":[{{"label":"f","ratio":{number}}}]}}'.encode())
    assert error_codes(response, 400) == ["1306"]
    assert "`ratio`" in response.json()[0]["message"]
    assert env.count() == 0


def test_float_field_keeps_extreme_finite_doubles(env: Env) -> None:
    for number in ["1.7976931348623157e308", "-2.2250738585072014e-308", "0", "12345678901234567890"]:
        saved = data(env.post(raw=f'{{"data":[{{"ratio":{number}}}]}}'.encode()), 201)[0]
        assert saved["ratio"] == float(number), number


# --- item 11: sort and filter syntax that used to answer 500 or 503, or silently kept the last key ---------------


def test_sort_on_a_json_field_is_refused(env: Env) -> None:
    for sort in ["doc", "-docb", "label,textDoc"]:
        response = env.get(params={"sort": sort})
        assert error_codes(response, 400) == ["2018"], sort
        assert "json" in response.json()[0]["message"]


@pytest.mark.parametrize("count", [MAX_SORT_KEYS + 1, 2001])
def test_too_many_sort_keys_is_refused(env: Env, count: int) -> None:
    sort = ",".join((["label", "-ratio"] * count)[:count])
    response = env.get(params={"sort": sort})
    assert error_codes(response, 400) == ["2019"]
    assert str(MAX_SORT_KEYS) in response.json()[0]["message"]


def test_sort_keys_up_to_the_maximum_are_served(env: Env) -> None:
    env.insert_text(label="a")
    sort = ",".join((["label", "-ratio", "id"] * MAX_SORT_KEYS)[:MAX_SORT_KEYS])
    assert len(data(env.get(params={"sort": sort}))) == 1


@pytest.mark.parametrize("value", ['{"gt":1,"gt":2}', '{"gt":1,"GT":2}', '{"in":[1],"lt":5,"In":[2]}'])
def test_duplicate_keys_in_a_filter_operator_object_are_refused(env: Env, value: str) -> None:
    response = env.get(params={f"filter[{ALIAS}.ratio]": value})
    assert error_codes(response, 400) == ["2001"]
    assert "twice" in response.json()[0]["message"]


def test_filter_operands_keep_exact_numbers(env: Env) -> None:
    env.backend.sql(sa.insert(DOC).values(label="a", ratio=0.1))
    params = {f"filter[{ALIAS}.ratio]": '{"gte":0.1,"lte":0.1}'}
    assert [i["label"] for i in data(env.get(params=params))] == ["a"]
    huge = {f"filter[{ALIAS}.ratio]": '{"gt":' + "9" * 400 + "}"}
    assert error_codes(env.get(params=huge), 400) == ["2001"]


# --- item 1: what is already in the database is always rendered -------------------------------------------------


def _json_columns_for_raw_text(backend: Backend) -> list[str]:
    """Columns that accept any JSON text written by SQL: MariaDB's JSON check refuses 32 levels and more."""
    return ["text_doc"] if backend.name == "mysql" else ["doc", "docb", "text_doc"]


def _visible(column: str) -> str:
    return next(name for name, col in JSON_FIELDS.items() if col == column)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("dxapi") and ALIAS in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 300 + "]" * 300, None),
        (json.dumps(nested(JSON_RENDER_MAX_DEPTH + 1)), None),
        (json.dumps(nested(JSON_RENDER_MAX_DEPTH)), nested(JSON_RENDER_MAX_DEPTH)),
        ('{"n": 1e400}', None),
    ],
    ids=["300-levels", "one-past-render-limit", "render-limit", "1e400"],
)
def test_json_written_by_sql_that_cannot_be_answered_reads_as_null_with_one_warning(
    env: Env, caplog: pytest.LogCaptureFixture, text: str, expected: Any
) -> None:
    env.backend.import_config(CONFIG)  # a fresh snapshot: warnings are once per field and snapshot
    columns = _json_columns_for_raw_text(env.backend)
    good = env.insert_text(label="good", text_doc='{"fine": true}')
    poisoned = env.insert_text(label="poisoned", **dict.fromkeys(columns, text))
    with caplog.at_level(logging.WARNING, logger="dxapi"):
        for _ in range(3):  # the collection, the row and a write answer: all served, one warning per field
            items = {i["id"]: i for i in data(env.get(params={"sort": "id"}))}
            assert items[good]["textDoc"] == {"fine": True} and items[good]["label"] == "good"
            row = data(env.get(f"/{poisoned}"))
            for column in columns:
                assert items[poisoned][_visible(column)] == expected
                assert row[_visible(column)] == expected
        patched = env.api.patch(f"{PREFIX}/{ALIAS}/{poisoned}", json={"data": {"label": "patched"}})
        assert data(patched)["label"] == "patched"
        for column in columns:
            assert data(patched)[_visible(column)] == expected
    assert env.backend.sql(sa.select(DOC.c.label).where(DOC.c.id == poisoned))[0][0] == "patched"
    warned = _warnings(caplog)
    if expected is None:
        for column in columns:
            assert len([w for w in warned if f"`{_visible(column)}`" in w]) <= 1, warned
        assert warned, "an unrenderable value is logged"
    else:
        assert warned == []


def test_invalid_json_text_reads_as_null(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.backend.import_config(CONFIG)
    columns = ["text_doc"] if env.backend.name != "sqlite" else ["doc", "docb", "text_doc"]
    poisoned = env.insert_text(label="broken", **dict.fromkeys(columns, "{not json"))
    with caplog.at_level(logging.WARNING, logger="dxapi"):
        item = data(env.get(f"/{poisoned}"))
        assert data(env.get())[0]["label"] == "broken"
        patched = data(env.api.patch(f"{PREFIX}/{ALIAS}/{poisoned}", json={"data": {"label": "patched"}}))
    for column in columns:
        assert item[_visible(column)] is None
        assert patched[_visible(column)] is None
    assert patched["label"] == "patched"
    assert _warnings(caplog)


def test_integers_beyond_64_bit_written_by_sql_read_as_numbers(env: Env) -> None:
    # PostgreSQL's json and jsonb hold them exactly; drivers and JSON encoders do not. They are answered the
    # way a JSON parser reads them: as the nearest double.
    columns = _json_columns_for_raw_text(env.backend)
    poisoned = env.insert_text(label="big", **dict.fromkeys(columns, '{"n": 18446744073709551616}'))
    item = data(env.get(f"/{poisoned}"))
    listed = data(env.get())[0]
    for column in columns:
        assert item[_visible(column)] == {"n": 1.8446744073709552e19}
        assert listed[_visible(column)] == {"n": 1.8446744073709552e19}
    patched = env.api.patch(f"{PREFIX}/{ALIAS}/{poisoned}", json={"data": {"label": "still served"}})
    assert data(patched)[_visible(columns[0])] == {"n": 1.8446744073709552e19}


@only_on("sqlite")  # only SQLite keeps a BLOB in a text column
def test_a_blob_in_a_text_column_reads_as_null(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    key = env.insert_text(label=None)
    env.backend.sql("UPDATE vt_doc SET label = X'00ff' WHERE id = :id", id=key)
    with caplog.at_level(logging.WARNING, logger="dxapi"):
        assert data(env.get(f"/{key}"))["label"] is None
        assert data(env.get())[0]["label"] is None
