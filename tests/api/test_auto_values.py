"""Maintained timestamps (DESIGN §4b, issue 11): a field's ``"autoValue": "createdAt" | "updatedAt"``.

dxapi sets such a field to the *database's* clock on every insert it makes (both kinds) and on every update
(``updatedAt``): batches, nested children, collection PATCH and PUT, per-item mode, and an update whose body
changes nothing else. A client value for it is 1304 on POST, PATCH and PUT, nested too, and nothing is written.
The configuration refuses what makes no sense (a non-date field, the identifier, a creatable/editable or
required one, a relation key), on import, ``dxapi config import``/``check`` and the snapshot; import and
export round-trip the key; the OpenAPI document marks the fields ``readOnly``.

Every test runs on SQLite, PostgreSQL and MariaDB against this module's own tables: ``av_parent`` (date-times
with microseconds, NOT NULL without any default, and a date), ``av_child`` (whole seconds on MariaDB, one column
with time zone), ``av_keyed`` (an identifier the client chooses, for PUT), ``av_loose`` (for a stored broken
configuration). Values are checked against the database's own ``now`` read before and after each request.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from dxapi.registry.installer import entry_to_json
from dxapi.registry.model import ConfigError
from dxapi.registry.snapshot import Stamp
from dxapi.registry.store import export_entities, parse_import, save_entities
from dxapi.registry.tables import dx_config_version, dx_entity
from dxapi.sql.clock import stamp_values
from tests.api.write_fixtures import PER_ITEM, check_response, expect_error, success
from tests.conftest import Backend, only_on, serving, unconfigure

API = "/dynamic-entity"
PARENTS, CHILDREN, KEYED = "av-parents", "av-children", "av-keyed"
# Date-times with microseconds everywhere (MariaDB's plain DATETIME keeps whole seconds).
PRECISE = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
SLACK = dt.timedelta(seconds=2)  # whole-second columns, and the round trip around a request
OLD = "2001-02-03T04:05:06"  # a value a client might send (and the one rows seeded behind dxapi carry)
_DIALECTS = {"postgresql": postgresql.dialect(), "mysql": mysql.dialect(), "sqlite": sqlite.dialect()}
_SCRIPT = Path(sys.executable).parent / "dxapi"
DXAPI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dxapi.cli"]


def av_metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "av_parent",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("name", sa.String(50), nullable=True),
        # NOT NULL and no default: only dxapi fills these in, so an insert without them cannot pass unnoticed.
        sa.Column("created_at", PRECISE, nullable=False),
        sa.Column("updated_at", PRECISE, nullable=False),
        sa.Column("touched_on", sa.Date, nullable=True),
        sa.UniqueConstraint("code", name="uq_av_parent_code"),
    )
    sa.Table(
        "av_child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fk_parent", sa.Integer, sa.ForeignKey("av_parent.id", name="fk_av_child_parent"), nullable=False),
        sa.Column("label", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    )
    sa.Table(
        "av_keyed",
        metadata,
        sa.Column("code", sa.String(20), primary_key=True),
        sa.Column("title", sa.String(50), nullable=False),
        sa.Column("created_at", PRECISE, nullable=False),  # a PUT that creates must fill it in
        sa.Column("updated_at", PRECISE, nullable=True),
        sa.Column("changed_day", sa.DateTime, nullable=True),  # served as a `date`: midnight of the day
    )
    sa.Table(
        "av_loose",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stamp", sa.Integer, nullable=True),
    )
    return metadata


META = av_metadata()
PARENT, CHILD, KEYED_TABLE = META.tables["av_parent"], META.tables["av_child"], META.tables["av_keyed"]


def field(column: str, visible: str, kind: str, *, creatable: bool = True, editable: bool = True, **extra: Any) -> Any:
    return {
        "fieldName": column,
        "fieldVisibleName": visible,
        "type": kind,
        "isCreatable": creatable,
        "isEditable": editable,
        "validation": extra.pop("validation", {"isRequired": False}),  # the normalised form export writes
        **extra,
    }


def stamp(column: str, visible: str, kind: str, auto: str) -> Any:
    return field(column, visible, kind, creatable=False, editable=False, autoValue=auto)


CONFIG: list[dict[str, Any]] = [
    {
        "tableName": "av_child",
        "tableAlias": CHILDREN,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": False,
            "fields": [
                field("id", "id", "integer", creatable=False, editable=False),
                field("fk_parent", "fkParent", "integer", validation={"isRequired": True}),
                field("label", "label", "string", validation={"isRequired": True}),
                stamp("created_at", "createdAt", "datetime", "createdAt"),
                stamp("updated_at", "updatedAt", "datetime", "updatedAt"),
            ],
        },
        "childRelations": [],
    },
    {
        "tableName": "av_parent",
        "tableAlias": PARENTS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": False,
            "fields": [
                field("id", "id", "integer", creatable=False, editable=False),
                field("code", "code", "string", validation={"isRequired": True}),
                field("name", "name", "string"),
                stamp("created_at", "createdAt", "datetime", "createdAt"),
                stamp("updated_at", "updatedAt", "datetime", "updatedAt"),
                stamp("touched_on", "touchedOn", "date", "updatedAt"),
            ],
        },
        "childRelations": [
            {
                "name": "children",
                "isEditable": True,
                "childDynamicEntityConfiguration": {"tableAlias": CHILDREN},
                "relationFieldMappings": [{"childFieldName": "fk_parent", "parentFieldName": "id"}],
            }
        ],
    },
    {
        "tableName": "av_keyed",
        "tableAlias": KEYED,
        "isActive": True,
        "definition": {
            "identifier": "code",
            "isDeletable": False,
            "fields": [
                field("code", "code", "string", editable=False),
                field("title", "title", "string", validation={"isRequired": True}),
                stamp("created_at", "createdAt", "datetime", "createdAt"),
                stamp("updated_at", "updatedAt", "datetime", "updatedAt"),
                stamp("changed_day", "changedDay", "date", "updatedAt"),
            ],
        },
        "childRelations": [],
    },
]


@pytest.fixture(scope="module")
def served(backend: Backend) -> Iterator[Backend]:
    with serving(backend, META, CONFIG):
        yield backend


@pytest.fixture
def av(served: Backend) -> Iterator[Backend]:
    """Empty tables before every test."""
    served.sql(sa.delete(CHILD))
    served.sql(sa.delete(PARENT))
    served.sql(sa.delete(KEYED_TABLE))
    yield served


# --- helpers ----------------------------------------------------------------------------------------------------

_NOW_SQL = {
    "sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
    "postgresql": "SELECT timezone('UTC', clock_timestamp())",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
}


def db_now(backend: Backend) -> dt.datetime:
    """The database's clock (naive UTC), not this process's."""
    value = backend.sql(_NOW_SQL[backend.name])[0][0]
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def instant(text: str) -> dt.datetime:
    """An answered date-time as naive UTC (a column with time zone answers an offset)."""
    moment = dt.datetime.fromisoformat(text)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def assert_between(text: str, before: dt.datetime, after: dt.datetime) -> dt.datetime:
    moment = instant(text)
    assert before - SLACK <= moment <= after + SLACK, (text, before, after)
    return moment


def send(api: httpx.Client, method: str, path: str, data: Any, headers: dict[str, str] | None = None) -> Any:
    response = api.request(method, f"{API}{path}", json={"data": data}, headers=headers)
    check_response(response)
    return response


def dump(backend: Backend) -> list[list[tuple[Any, ...]]]:
    return [
        [tuple(r) for r in backend.sql(sa.select(table).order_by(*table.primary_key.columns))]
        for table in (PARENT, CHILD, KEYED_TABLE)
    ]


def get_one(api: httpx.Client, alias: str, key: Any, **params: str) -> dict[str, Any]:
    response = api.get(f"{API}/{alias}/{key}", params=params)
    found: dict[str, Any] = success(response, 200)
    return found


def strip_children(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "children"}


# --- the SQL, without a database ---------------------------------------------------------------------------------

_CLOCK_COLUMNS = sa.Table(
    "clock",
    sa.MetaData(),
    sa.Column("naive", sa.DateTime),
    sa.Column("aware", sa.DateTime(timezone=True)),
    sa.Column("day", sa.Date),
    sa.Column("whole", mysql.DATETIME()),
    sa.Column("milli", mysql.DATETIME(fsp=3)),
)


@pytest.mark.parametrize(
    ("dialect", "column", "day", "sql"),
    [
        ("postgresql", "naive", False, "timezone('UTC', now())"),
        ("postgresql", "aware", False, "now()"),
        ("postgresql", "day", True, "CAST(timezone('UTC', now()) AS DATE)"),
        ("postgresql", "naive", True, "date_trunc('day', timezone('UTC', now()))"),
        ("postgresql", "aware", True, "timezone('UTC', date_trunc('day', timezone('UTC', now())))"),
        ("mysql", "whole", False, "UTC_TIMESTAMP()"),
        ("mysql", "milli", False, "UTC_TIMESTAMP(3)"),
        ("mysql", "day", True, "UTC_DATE()"),
        ("sqlite", "naive", False, "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"),
        ("sqlite", "day", True, "date('now')"),
        ("sqlite", "naive", True, "(date('now') || ' 00:00:00.000000')"),
    ],
)
def test_the_clock_is_written_as_each_backend_reads_the_column(dialect: str, column: str, day: bool, sql: str) -> None:
    stamp = Stamp(_CLOCK_COLUMNS.c[column], day=day, on_update=True)
    statement = sa.update(_CLOCK_COLUMNS).values(stamp_values([stamp]))
    compiled = str(statement.compile(dialect=_DIALECTS[dialect]))
    assert compiled.endswith(f"SET {column}={sql}"), compiled


# --- inserts ----------------------------------------------------------------------------------------------------


def test_post_batch_with_nested_children_is_stamped_from_the_database_clock(av: Backend) -> None:
    body = [{"code": f"P{i}", "name": f"parent {i}", "children": [{"label": "a"}, {"label": "b"}]} for i in range(3)]
    before = db_now(av)
    saved = success(send(av.client, "POST", f"/{PARENTS}", body), 201)
    after = db_now(av)

    assert [p["code"] for p in saved] == ["P0", "P1", "P2"]
    moments = []
    for parent in saved:
        assert parent["createdAt"] == parent["updatedAt"], parent  # one insert: one instant
        moments.append(assert_between(parent["createdAt"], before, after))
        assert parent["touchedOn"] in (before.date().isoformat(), after.date().isoformat()), parent
        assert len(parent["children"]) == 2
        for child in parent["children"]:
            assert child["fkParent"] == parent["id"]
            assert instant(child["createdAt"]) == instant(child["updatedAt"]), child
            moments.append(assert_between(child["createdAt"], before, after))
        # The answer is what the table holds: a GET shows the very same values.
        again = get_one(av.client, PARENTS, parent["id"], include="children")
        assert again == parent
    if av.name == "postgresql":
        # now() is the transaction's start: the whole request wrote one instant — the database's, not a
        # value computed per row by the worker.
        assert len(set(moments)) == 1, moments
    stored = av.sql(sa.select(sa.func.count()).select_from(CHILD).where(CHILD.c.created_at.is_(None)))
    assert stored[0][0] == 0


def test_a_plain_post_batch_into_a_filled_table_writes_each_row_once_with_one_stamp(av: Backend) -> None:
    """Plain rows (no children): on PostgreSQL one `INSERT … SELECT unnest(…)` with the clock in its select
    list. The rows already in the table must not multiply the batch."""
    success(send(av.client, "POST", f"/{PARENTS}", [{"code": f"OLD{i}"} for i in range(5)]), 201)
    count = sa.select(sa.func.count()).select_from(PARENT)
    (before_count,) = av.sql(count)[0]
    before = db_now(av)
    saved = success(
        send(av.client, "POST", f"/{PARENTS}", [{"code": f"NEW{i}", "name": f"n{i}"} for i in range(50)]), 201
    )
    after = db_now(av)
    assert [p["code"] for p in saved] == [f"NEW{i}" for i in range(50)]
    assert [p["id"] for p in saved] == sorted(p["id"] for p in saved)
    assert av.sql(count)[0][0] == before_count + 50
    for parent in saved:
        assert parent["createdAt"] == parent["updatedAt"], parent
        assert_between(parent["createdAt"], before, after)
    if av.name == "postgresql":
        assert len({p["createdAt"] for p in saved}) == 1
    assert [get_one(av.client, PARENTS, p["id"]) for p in saved[::10]] == [strip_children(p) for p in saved[::10]]


def test_post_of_one_item_without_a_body_value_fills_not_null_columns(av: Backend) -> None:
    """``created_at``/``updated_at`` are NOT NULL without a default: dxapi's values are what let it pass."""
    before = db_now(av)
    (saved,) = success(send(av.client, "POST", f"/{PARENTS}", [{"code": "ONE"}]), 201)
    after = db_now(av)
    assert saved["createdAt"] == saved["updatedAt"]
    assert_between(saved["updatedAt"], before, after)
    assert get_one(av.client, PARENTS, saved["id"]) == strip_children(saved)


def test_an_explicit_null_on_post_is_dropped_and_the_clock_applies(av: Backend) -> None:
    """As for any field a client may not create (DESIGN §4: a POST null is dropped), the stamp is written."""
    before = db_now(av)
    (saved,) = success(send(av.client, "POST", f"/{PARENTS}", [{"code": "NUL", "createdAt": None}]), 201)
    assert_between(saved["createdAt"], before, db_now(av))


@only_on("sqlite")
def test_sqlite_stores_the_form_its_date_time_codec_reads(av: Backend) -> None:
    (saved,) = success(send(av.client, "POST", f"/{PARENTS}", [{"code": "TXT"}]), 201)
    raw = av.sql("SELECT created_at, updated_at, touched_on FROM av_parent WHERE id = :id", id=saved["id"])[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", raw[0]), raw
    assert raw[0] == raw[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", raw[2]), raw
    # A filter on the answered value finds the row (the read path normalises the same text).
    listed = av.client.get(f"{API}/{PARENTS}", params={"filter[p.createdAt]": saved["createdAt"]})
    assert [p["id"] for p in success(listed, 200)] == [saved["id"]]


# --- updates ----------------------------------------------------------------------------------------------------


def test_patch_moves_updated_at_and_keeps_created_at(av: Backend) -> None:
    (first, second) = success(
        send(av.client, "POST", f"/{PARENTS}", [{"code": "A", "children": [{"label": "c"}]}, {"code": "B"}]), 201
    )
    child = first["children"][0]
    time.sleep(1.1)  # the child's columns keep whole seconds on MariaDB

    # A collection PATCH: two parents sending different columns (two UPDATE groups), one with a nested child.
    body = [
        {"id": first["id"], "name": "renamed", "children": [{"id": child["id"], "label": "d"}]},
        {"id": second["id"]},
    ]
    before = db_now(av)
    patched = success(send(av.client, "PATCH", f"/{PARENTS}", body), 200)
    after = db_now(av)
    for old, new in zip((first, second), patched, strict=True):
        assert new["createdAt"] == old["createdAt"], (old, new)
        assert instant(new["updatedAt"]) > instant(old["updatedAt"]), (old, new)
        assert_between(new["updatedAt"], before, after)
        assert get_one(av.client, PARENTS, new["id"]) == strip_children(new)
    new_child = patched[0]["children"][0]
    assert new_child["label"] == "d" and new_child["createdAt"] == child["createdAt"]
    assert instant(new_child["updatedAt"]) > instant(child["updatedAt"])
    assert_between(new_child["updatedAt"], before, after)
    assert get_one(av.client, CHILDREN, child["id"]) == new_child

    # An update whose body changes nothing else still moves updatedAt: it is a write dxapi made.
    time.sleep(0.05)
    unchanged = success(send(av.client, "PATCH", f"/{PARENTS}/{second['id']}", {}), 200)
    assert unchanged["name"] is None and unchanged["createdAt"] == second["createdAt"]
    assert instant(unchanged["updatedAt"]) > instant(patched[1]["updatedAt"])
    assert get_one(av.client, PARENTS, second["id"]) == unchanged


def test_patch_of_a_missing_row_with_an_empty_body_is_still_404(av: Backend) -> None:
    response = send(av.client, "PATCH", f"/{PARENTS}/999999", {})
    expect_error(response, 404, "1303")
    assert dump(av) == [[], [], []]


def test_put_creates_then_replaces_with_stamps(av: Backend) -> None:
    before = db_now(av)
    (created,) = success(send(av.client, "PUT", f"/{KEYED}", [{"code": "K1", "title": "one"}]), 200)
    after = db_now(av)
    assert created["createdAt"] == created["updatedAt"]
    assert_between(created["createdAt"], before, after)
    assert created["changedDay"] in (before.date().isoformat(), after.date().isoformat()), created
    (midnight,) = av.sql(sa.select(KEYED_TABLE.c.changed_day).where(KEYED_TABLE.c.code == "K1"))[0]
    assert midnight.time() == dt.time(0) and midnight.date().isoformat() == created["changedDay"]
    time.sleep(0.05)

    before = db_now(av)
    body = [{"code": "K1", "title": "uno"}, {"code": "K2", "title": "two"}]
    replaced, inserted = success(send(av.client, "PUT", f"/{KEYED}", body), 200)
    after = db_now(av)
    assert replaced["title"] == "uno" and replaced["createdAt"] == created["createdAt"]
    assert instant(replaced["updatedAt"]) > instant(created["updatedAt"])
    assert_between(replaced["updatedAt"], before, after)
    assert inserted["createdAt"] == inserted["updatedAt"]
    assert_between(inserted["createdAt"], before, after)
    time.sleep(0.05)

    one = success(send(av.client, "PUT", f"/{KEYED}/K1", {"title": "eins"}), 200)
    assert one["createdAt"] == created["createdAt"] and instant(one["updatedAt"]) > instant(replaced["updatedAt"])
    for row in (one, inserted):
        assert get_one(av.client, KEYED, row["code"]) == row

    # PUT of a parent with nested children: the parent is replaced, a new child inserted.
    (parent,) = success(send(av.client, "POST", f"/{PARENTS}", [{"code": "PP"}]), 201)
    time.sleep(1.1)
    body = {"code": "PP", "name": "put", "children": [{"label": "new"}]}
    before = db_now(av)
    put = success(send(av.client, "PUT", f"/{PARENTS}/{parent['id']}", body), 200)
    after = db_now(av)
    assert put["createdAt"] == parent["createdAt"] and instant(put["updatedAt"]) > instant(parent["updatedAt"])
    (child,) = put["children"]
    assert instant(child["createdAt"]) == instant(child["updatedAt"])
    assert_between(child["createdAt"], before, after)


def test_per_item_mode_stamps_what_it_saves(av: Backend) -> None:
    success(send(av.client, "POST", f"/{PARENTS}", [{"code": "DUP"}]), 201)
    body = [{"code": "N1"}, {"code": "DUP"}, {"code": "N2", "children": [{"label": "x"}]}]
    before = db_now(av)
    response = send(av.client, "POST", f"/{PARENTS}", body, PER_ITEM)
    after = db_now(av)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert [e["code"] for e in answer["errors"]] == ["1309"], answer
    assert [p["code"] for p in answer["data"]] == ["N1", "N2"]
    for parent in answer["data"]:
        assert parent["createdAt"] == parent["updatedAt"]
        assert_between(parent["createdAt"], before, after)
    (child,) = answer["data"][1]["children"]
    assert_between(child["updatedAt"], before, after)

    time.sleep(0.05)
    first = answer["data"][0]
    body = [{"id": first["id"], "name": "kept"}, {"id": 999999, "name": "missing"}]
    response = send(av.client, "PATCH", f"/{PARENTS}", body, PER_ITEM)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [e["code"] for e in answer["errors"]] == ["1303"], answer
    (patched,) = answer["data"]
    assert patched["createdAt"] == first["createdAt"] and instant(patched["updatedAt"]) > instant(first["updatedAt"])
    assert get_one(av.client, PARENTS, first["id"]) == strip_children(patched)


# --- client values ----------------------------------------------------------------------------------------------


@pytest.fixture
def seeded(av: Backend) -> dict[str, int]:
    """One parent with one child and one keyed row, written behind dxapi with old stamps."""
    old = dt.datetime.fromisoformat(OLD)
    av.sql(sa.insert(PARENT).values(code="S", name="s", created_at=old, updated_at=old, touched_on=old.date()))
    parent = int(av.sql(sa.select(PARENT.c.id))[0][0])
    av.sql(sa.insert(CHILD).values(fk_parent=parent, label="c", created_at=old, updated_at=old))
    child = int(av.sql(sa.select(CHILD.c.id))[0][0])
    av.sql(sa.insert(KEYED_TABLE).values(code="K", title="k", created_at=old, updated_at=old, changed_day=old))
    return {"parent": parent, "child": child}


CLIENT_VALUES = [
    pytest.param("POST", "/av-parents", [{"code": "X", "createdAt": OLD}], "av-parents[0].createdAt", id="post"),
    pytest.param(
        "POST", "/av-parents", [{"code": "X", "touchedOn": "2001-02-03"}], "av-parents[0].touchedOn", id="post-date"
    ),
    pytest.param(
        "POST",
        "/av-parents",
        [{"code": "X", "children": [{"label": "c", "updatedAt": OLD}]}],
        "av-parents[0].av-children[0].updatedAt",
        id="post-nested",
    ),
    pytest.param("PATCH", "/av-parents/{parent}", {"updatedAt": OLD}, "av-parents[0].updatedAt", id="patch-one"),
    pytest.param("PATCH", "/av-parents/{parent}", {"updatedAt": None}, "av-parents[0].updatedAt", id="patch-null"),
    pytest.param(
        "PATCH", "/av-parents", [{"id": "{parent}", "createdAt": OLD}], "av-parents[0].createdAt", id="patch-collection"
    ),
    pytest.param(
        "PATCH",
        "/av-parents",
        [{"id": "{parent}", "children": [{"id": "{child}", "createdAt": OLD}]}],
        "av-parents[0].av-children[0].createdAt",
        id="patch-nested",
    ),
    pytest.param(
        "PUT", "/av-keyed", [{"code": "K", "title": "t", "updatedAt": OLD}], "av-keyed[0].updatedAt", id="put-update"
    ),
    pytest.param(
        "PUT", "/av-keyed", [{"code": "NEW", "title": "t", "createdAt": OLD}], "av-keyed[0].createdAt", id="put-create"
    ),
    pytest.param("PUT", "/av-keyed/K", {"title": "t", "createdAt": OLD}, "av-keyed[0].createdAt", id="put-one"),
    pytest.param(
        "PUT",
        "/av-parents/{parent}",
        {"code": "S", "children": [{"label": "n", "createdAt": OLD}]},
        "av-parents[0].av-children[0].createdAt",
        id="put-nested",
    ),
]


def _fill(value: Any, keys: dict[str, int]) -> Any:
    if isinstance(value, str) and value in ("{parent}", "{child}"):
        return keys[value[1:-1]]
    if isinstance(value, list):
        return [_fill(v, keys) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, keys) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "data", "where"), CLIENT_VALUES)
def test_a_client_value_for_a_maintained_field_is_1304_and_nothing_is_written(
    av: Backend, seeded: dict[str, int], method: str, path: str, data: Any, where: str
) -> None:
    before = dump(av)
    response = send(av.client, method, path.format(**seeded), _fill(data, seeded))
    expect_error(response, 400, "1304", message=f"Modification of immutable field `{where}` is prohibited")
    assert dump(av) == before


# --- configuration --------------------------------------------------------------------------------------------


def _variant(alias: str, column: str, **changes: Any) -> list[dict[str, Any]]:
    entries = copy.deepcopy(CONFIG)
    entry = next(e for e in entries if e["tableAlias"] == alias)
    target = next(f for f in entry["definition"]["fields"] if f["fieldName"] == column)
    target.update(changes)
    return entries


REFUSED = [
    pytest.param(
        _variant(PARENTS, "name", type="string", isCreatable=False, isEditable=False, autoValue="updatedAt"),
        "`av-parents`: field `name`: `autoValue: updatedAt` needs a field of type date or datetime, not `string`",
        id="string-field",
    ),
    pytest.param(
        _variant(KEYED, "title", type="integer", isCreatable=False, isEditable=False, autoValue="createdAt"),
        "`av-keyed`: field `title`: `autoValue: createdAt` needs a field of type date or datetime, not `integer`",
        id="integer-field",
    ),
    pytest.param(
        _variant(PARENTS, "id", autoValue="createdAt"),
        "`av-parents`: field `id`: `autoValue: createdAt` is not possible on the identifier",
        id="identifier",
    ),
    pytest.param(
        _variant(PARENTS, "created_at", isCreatable=True),
        "`av-parents`: field `created_at`: `autoValue: createdAt`: dxapi sets this field itself, so `isCreatable` "
        "and `isEditable` must be false (a client value is refused with 1304)",
        id="creatable",
    ),
    pytest.param(
        _variant(PARENTS, "updated_at", isEditable=True),
        "`av-parents`: field `updated_at`: `autoValue: updatedAt`: dxapi sets this field itself",
        id="editable",
    ),
    pytest.param(
        _variant(PARENTS, "touched_on", validation={"isRequired": True}),
        "`av-parents`: field `touched_on`: `autoValue: updatedAt`: `isRequired` cannot hold",
        id="required",
    ),
    pytest.param(
        _variant(PARENTS, "touched_on", autoValue="deletedAt"),
        "entry[1]: definition.fields[5].autoValue: 'deletedAt' is not one of ['createdAt', 'updatedAt']",
        id="unknown-kind",
    ),
]


@pytest.mark.parametrize(("entries", "problem"), REFUSED)
def test_configurations_that_make_no_sense_are_refused(entries: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_import(entries)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_a_relation_key_cannot_be_maintained(served: Backend) -> None:
    """Known only against both tables: the child field of a relation is filled in from its parent."""
    entries = copy.deepcopy(CONFIG)
    entries[0]["definition"]["fields"][1] = field("fk_parent", "fkParent", "datetime")  # types must match
    parent = entries[1]
    parent["definition"]["fields"][3] = field(
        "created_at", "createdAt", "datetime", creatable=False, editable=False, autoValue="createdAt"
    )
    parent["childRelations"][0]["relationFieldMappings"] = [
        {"childFieldName": "fk_parent", "parentFieldName": "created_at"}
    ]
    version = served.sql(sa.select(dx_config_version.c.version))[0][0]

    async def go(engine: Any) -> int:
        return await save_entities(engine, parse_import(entries), actor="test", action="import")

    with pytest.raises(ConfigError) as caught:
        served.with_engine(go)
    assert (
        "`av-parents`: relation `children`: parent field `created_at` has an `autoValue`: a relation key must not "
        "change" in caught.value.problems
    ), caught.value.problems
    assert served.sql(sa.select(dx_config_version.c.version))[0][0] == version


def _dxapi(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXAPI_")}
    command = [*DXAPI, "--database-url", backend.url, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_cli_import_reports_the_problem_and_changes_nothing(served: Backend, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(_variant(KEYED, "title", type="integer", autoValue="createdAt")))
    version = served.sql(sa.select(dx_config_version.c.version))[0][0]
    done = _dxapi(served, "config", "import", str(bad))
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert any("field `title`: `autoValue: createdAt` needs a field of type date or datetime" in x for x in lines)
    assert any("`isCreatable` and `isEditable` must be false" in x for x in lines), lines
    assert "Traceback" not in done.stderr
    assert served.sql(sa.select(dx_config_version.c.version))[0][0] == version


def test_a_stored_broken_definition_is_unavailable_and_reported_by_config_check(served: Backend) -> None:
    """Written into dx_entity behind dxapi's back: the snapshot serves it as 503 5003, `config check` names it."""
    definition = {
        "identifier": "id",
        "fields": [
            field("id", "id", "integer", creatable=False, editable=False),
            stamp("stamp", "stamp", "integer", "updatedAt"),
        ],
    }
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    served.sql(
        sa.insert(dx_entity).values(
            table_alias="av-loose",
            table_name="av_loose",
            is_active=True,
            definition=orjson.dumps(definition).decode(),
            created_at=now,
            updated_at=now,
            updated_by="sql",
        )
    )
    served.sql(sa.update(dx_config_version).values(version=dx_config_version.c.version + 1))
    try:
        served.wait_for_version(int(served.sql(sa.select(dx_config_version.c.version))[0][0]))
        response = served.client.get(f"{API}/av-loose")
        assert response.status_code == 503 and response.json()[0]["code"] == "5003", response.text
        done = _dxapi(served, "config", "check")
        assert done.returncode == 1, done.stdout
        mine = [line for line in done.stdout.splitlines() if "av-loose" in line]
        assert mine == [
            "`av-loose`: field `stamp`: `autoValue: updatedAt` needs a field of type date or datetime, not "
            "`integer`: dxapi writes the time"
        ], done.stdout
    finally:
        served.wait_for_version(served.with_engine(lambda engine: unconfigure(engine, ["av-loose"])))


def test_import_and_export_round_trip_the_key(served: Backend) -> None:
    exported = {e["tableAlias"]: e for e in served.with_engine(export_entities)}
    for entry in CONFIG:
        assert exported[entry["tableAlias"]] == entry
        assert entry_to_json(parse_import([entry])[0]) == entry
    # Only where it is set: a field without it exports without the key (Spryker's files stay as they came).
    countries = exported["countries"]["definition"]["fields"]
    assert countries and not [f for f in countries if "autoValue" in f]
    products = {f["fieldName"]: f.get("autoValue") for f in exported["products"]["definition"]["fields"]}
    assert products["created_at"] == "createdAt" and products["updated_at"] == "updatedAt"
    assert products["name"] is None


# --- documentation ------------------------------------------------------------------------------------------------


def test_openapi_marks_maintained_fields_read_only(served: Backend) -> None:
    response = served.client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    schemas = response.json()["components"]["schemas"]
    properties = schemas[PARENTS]["properties"]
    assert {name for name, s in properties.items() if s.get("readOnly")} == {"createdAt", "updatedAt", "touchedOn"}
    assert {name for name, s in schemas[CHILDREN]["properties"].items() if s.get("readOnly")} == {
        "createdAt",
        "updatedAt",
    }
    inputs = [name for name in schemas if name.startswith((f"{PARENTS}-", f"{KEYED}-", f"{PARENTS}."))]
    assert f"{PARENTS}-create" in inputs and f"{KEYED}-replace" in inputs, sorted(schemas)
    for name in inputs:
        assert not {"createdAt", "updatedAt", "touchedOn"} & set(schemas[name].get("properties", {})), name


# --- the demo -----------------------------------------------------------------------------------------------------


def test_the_demo_products_keep_their_timestamps(served: Backend) -> None:
    """The shop's `products` maintain createdAt/updatedAt; the row is put back afterwards for the read tests."""
    product = sa.table("shop_product", sa.column("id_product"), sa.column("updated_at"))
    last = int(served.sql(sa.select(sa.func.max(product.c.id_product)))[0][0])
    original = served.sql(sa.select(product.c.updated_at).where(product.c.id_product == last))[0][0]
    try:
        old = get_one(served.client, "products", last)
        before = db_now(served)
        patched = success(send(served.client, "PATCH", f"/products/{last}", {"name": old["name"]}), 200)
        assert patched["createdAt"] == old["createdAt"]
        assert_between(patched["updatedAt"], before, db_now(served))
        refused = send(served.client, "PATCH", f"/products/{last}", {"updatedAt": OLD})
        expect_error(refused, 400, "1304")
    finally:
        served.sql(sa.update(product).where(product.c.id_product == last).values(updated_at=original))
