"""The write rules (DESIGN.md §4 and its rule table; Spryker reference §2.5-2.10, §3, Appendix A) on every backend.

Every row of the rule table is a test for POST, PATCH, PUT of an existing row (``PUT-update``) and PUT of a
missing row (``PUT-create``); then the field types and rules (1305/1306/1316, including the column's own
limits that SQLite would not enforce), the response shape, DELETE, database refusals (1309, 3002, 1317),
nested writes through relations, and hostile bodies.

Each test asserts the status, the error code, the error path in the message (``wt-parents[0].name``) and the
database state afterwards, read back with direct SQL: on every refusal the private tables are exactly what
they were (:meth:`WriteEnv.dump`). Tables and entities come from ``write_fixtures``; nothing here touches the
demo shop.
"""

from __future__ import annotations

import json
import socket
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.api import write_fixtures
from tests.api.write_fixtures import (
    CHILD,
    CHILD_NAMES,
    CHILDREN,
    KEYED,
    KEYED_TABLE,
    PARENT,
    PARENT_NAMES,
    PARENTS,
    PER_ITEM,
    WriteEnv,
    check_json_types,
    error_list,
    expect_error,
    expect_errors,
    render,
    success,
)

write_env, wt = write_fixtures.write_env, write_fixtures.wt  # the fixtures, for this module

CONTEXTS = ["POST", "PATCH", "PUT-update", "PUT-create"]
OLD = "OLD1"  # the code of the row that exists in every context


# --- the four contexts of the rule table ----------------------------------------------------------------------------


def seed_existing(wt: WriteEnv) -> int:
    """The existing row every context starts with (every nullable field set, so resets are visible)."""
    return wt.parent(
        OLD,
        "old name",
        price=Decimal("5.00"),
        active=False,
        born=None,
        small=3,
        big=4,
        rank=5,
        notes="kept",
        url="/old",
        status="new",
        create_only="c0",
        edit_only="e0",
        readonly_col="r0",
        counter=9,
    )


def base_item(context: str, existing: int) -> dict[str, Any]:
    """A valid item of ``context``; a test adds or removes keys."""
    if context == "POST":
        return {"code": "NEW1", "name": "new name"}
    if context == "PATCH":
        return {"id": existing}
    if context == "PUT-update":
        return {"id": existing, "code": OLD, "name": "old name", "active": False, "counter": 9}
    return {"code": "NEW1", "name": "new name"}  # PUT-create: no identifier → insert


def send(wt: WriteEnv, context: str, item: dict[str, Any], **kw: Any) -> httpx.Response:
    method = "POST" if context == "POST" else context.split("-")[0]
    return wt.send(method, f"/{PARENTS}", {"data": [item]}, **kw)


def ok_status(context: str) -> int:
    return 201 if context == "POST" else 200


def saved_one(wt: WriteEnv, context: str, existing: int, response: httpx.Response) -> dict[str, Any]:
    """Assert a success with one item that equals its row in the database; return that row."""
    items = success(response, ok_status(context))
    assert isinstance(items, list) and len(items) == 1, items
    if context in ("PATCH", "PUT-update"):
        assert items[0]["id"] == existing
        assert wt.count(PARENT) == 1
    else:
        assert items[0]["id"] != existing
        assert wt.count(PARENT) == 2
    row = wt.row(PARENT, items[0]["id"])
    assert row is not None
    assert items[0] == render(PARENTS, row)
    assert list(items[0]) == PARENT_NAMES
    check_json_types(PARENTS, items[0])
    return row


def refused(wt: WriteEnv, before: Any) -> None:
    assert wt.dump() == before, "a refused write changed the database"


# --- unknown keys: 1311 (1313 for an array under an unknown name) -----------------------------------------------------


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("key", ["bogus", "seen_at", "ID", "code "])
def test_unknown_key_is_1311(wt: WriteEnv, context: str, key: str) -> None:
    """A key that is no visible name (the column name `seen_at` of `seenAt` neither) → 1311, nothing written."""
    existing = seed_existing(wt)
    before = wt.dump()
    response = send(wt, context, {**base_item(context, existing), key: 1})
    expect_error(response, 400, "1311", message=f"The provided `{PARENTS}[0].{key}` is incorrect or invalid.")
    refused(wt, before)


@pytest.mark.parametrize("context", CONTEXTS)
def test_unknown_relation_is_1313(wt: WriteEnv, context: str) -> None:
    existing = seed_existing(wt)
    before = wt.dump()
    response = send(wt, context, {**base_item(context, existing), "nope": [{"label": "x"}]})
    expect_error(
        response,
        400,
        "1313",
        message="Relation `nope` not found. Please check the requested relation name and try again.",
    )
    refused(wt, before)


def test_every_error_of_every_item_is_reported_together(wt: WriteEnv) -> None:
    """Appendix A: `{"foo":1}` → 1311 and 1307 together; errors of several items in item order."""
    before = wt.dump()
    response = wt.post(PARENTS, [{"code": "A1", "name": "ok"}, {"foo": 1}, {"code": "A3", "name": "n", "small": "x"}])
    expect_errors(
        response,
        400,
        [
            ("1311", f"`{PARENTS}[1].foo`"),
            ("1307", f"Field: `{PARENTS}[1].code`"),
            ("1307", f"Field: `{PARENTS}[1].name`"),
            ("1305", f"Invalid data type `{PARENTS}[2]` for field `small`"),
        ],
    )
    refused(wt, before)


# --- creatable / editable: 1304 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "field", "refused_code"),
    [
        ("POST", "editOnly", "1304"),
        ("POST", "readonlyCol", "1304"),
        ("POST", "createOnly", None),
        ("PUT-create", "editOnly", "1304"),
        ("PUT-create", "readonlyCol", "1304"),
        ("PUT-create", "createOnly", None),
        ("PATCH", "createOnly", "1304"),
        ("PATCH", "readonlyCol", "1304"),
        ("PATCH", "editOnly", None),
        ("PUT-update", "createOnly", "1304"),
        ("PUT-update", "readonlyCol", "1304"),
        ("PUT-update", "editOnly", None),
    ],
)
def test_creatable_governs_inserts_and_editable_governs_updates(
    wt: WriteEnv, context: str, field: str, refused_code: str | None
) -> None:
    """POST/PUT-create: a non-null value for a non-creatable field → 1304; PATCH/PUT-update: non-editable → 1304.
    The other flag does not matter (`createOnly` may be created, `editOnly` may be edited)."""
    existing = seed_existing(wt)
    before = wt.dump()
    response = send(wt, context, {**base_item(context, existing), field: "given"})
    if refused_code is None:
        row = saved_one(wt, context, existing, response)
        column = {"createOnly": "create_only", "editOnly": "edit_only"}[field]
        assert row[column] == "given"
        return
    expect_error(
        response, 400, refused_code, message=f"Modification of immutable field `{PARENTS}[0].{field}` is prohibited"
    )
    refused(wt, before)


def test_post_with_a_non_creatable_identifier_is_1304(wt: WriteEnv) -> None:
    missing = wt.missing_id()
    before = wt.dump()
    response = wt.post(PARENTS, [{"id": missing, "code": "A1", "name": "n"}])
    expect_error(response, 400, "1304", message=f"Modification of immutable field `{PARENTS}[0].id` is prohibited")
    refused(wt, before)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_identifier_in_a_collection_body_is_exempt_from_editable(wt: WriteEnv, method: str) -> None:
    existing = seed_existing(wt)
    item = {"id": existing, "name": "renamed"}
    if method == "PUT":
        item.update(code=OLD, active=True, counter=1)
    data = success(wt.send(method, f"/{PARENTS}", {"data": [item]}), 200)
    assert data[0]["id"] == existing and data[0]["name"] == "renamed"
    assert wt.row(PARENT, existing)["name"] == "renamed"  # type: ignore[index]


def test_identifier_in_a_patch_by_id_body_is_1304_when_not_editable(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    before = wt.dump()
    response = wt.patch(f"{PARENTS}/{existing}", {"id": existing, "name": "x"})
    expect_error(response, 400, "1304", message=f"Modification of immutable field `{PARENTS}[0].id` is prohibited")
    refused(wt, before)
    wt.insert(KEYED_TABLE, [{"code": "K1", "title": "t"}])
    before = wt.dump()
    response = wt.patch(f"{KEYED}/K1", {"code": "K1", "title": "x"})
    expect_error(response, 400, "1304", message=f"Modification of immutable field `{KEYED}[0].code` is prohibited")
    refused(wt, before)


# --- required: 1307 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("context", ["POST", "PUT-update", "PUT-create"])
@pytest.mark.parametrize("how", ["absent", "null"])
def test_required_field_absent_or_null_is_1307(wt: WriteEnv, context: str, how: str) -> None:
    existing = seed_existing(wt)
    item = base_item(context, existing)
    if how == "absent":
        del item["name"]
    else:
        item["name"] = None
    before = wt.dump()
    response = send(wt, context, item)
    expect_error(response, 400, "1307", message=f"The required field must not be empty. Field: `{PARENTS}[0].name`")
    refused(wt, before)


def test_required_is_not_checked_on_patch(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    response = send(wt, "PATCH", {"id": existing, "price": "6.00"})  # neither `code` nor `name` sent
    row = saved_one(wt, "PATCH", existing, response)
    assert row["price"] == Decimal("6.00") and row["name"] == "old name" and row["code"] == OLD


def test_patch_null_into_a_not_null_column_is_refused(wt: WriteEnv) -> None:
    """Required is not checked on PATCH, but an explicit null for a NOT NULL column cannot be written (3001)."""
    existing = seed_existing(wt)
    before = wt.dump()
    response = send(wt, "PATCH", {"id": existing, "name": None})
    expect_error(response, 400, "3001", f"`{PARENTS}[0].name`")
    refused(wt, before)


@pytest.mark.parametrize("context", CONTEXTS)
def test_empty_string_breaking_min_length_is_1306(wt: WriteEnv, context: str) -> None:
    existing = seed_existing(wt)
    before = wt.dump()
    response = send(wt, context, {**base_item(context, existing), "code": ""})
    expect_error(response, 400, "1306", f"Invalid data value `{PARENTS}[0]` for field: `code`", "min_length: 2")
    refused(wt, before)


@pytest.mark.parametrize("context", CONTEXTS)
def test_empty_string_in_a_required_field_without_min_length_is_stored(wt: WriteEnv, context: str) -> None:
    existing = seed_existing(wt)
    response = send(wt, context, {**base_item(context, existing), "name": ""})
    row = saved_one(wt, context, existing, response)
    assert row["name"] == ""


# --- identifier absent / given for a missing row -------------------------------------------------------------------


@pytest.mark.parametrize("context", ["POST", "PUT-create"])
def test_identifier_absent_inserts_with_a_generated_id(wt: WriteEnv, context: str) -> None:
    existing = seed_existing(wt)
    response = send(wt, context, base_item(context, existing))
    row = saved_one(wt, context, existing, response)
    assert isinstance(row["id"], int) and row["id"] != existing
    assert wt.count(PARENT) == 2


def test_patch_without_identifier_is_1310(wt: WriteEnv) -> None:
    seed_existing(wt)
    before = wt.dump()
    response = send(wt, "PATCH", {"name": "x"})
    expect_error(response, 400, "1310", message=f"Incomplete Request - missing identifier for `{PARENTS}[0]`")
    refused(wt, before)


def test_patch_of_a_missing_row_is_1303(wt: WriteEnv) -> None:
    seed_existing(wt)
    missing = wt.missing_id()
    before = wt.dump()
    response = send(wt, "PATCH", {"id": missing, "name": "x"})
    expect_error(response, 404, "1303", message=f"The entity `{PARENTS}[0]` could not be found in the database.")
    refused(wt, before)
    response = wt.patch(f"{PARENTS}/{missing}", {"name": "x"})
    expect_error(response, 404, "1303", message=f"The entity `{PARENTS}` could not be found in the database.")
    response = wt.patch(f"{PARENTS}/not-a-number", {"name": "x"})
    expect_error(response, 404, "1303", message=f"The entity `{PARENTS}` could not be found in the database.")
    refused(wt, before)


def test_put_of_a_missing_row_with_a_non_creatable_identifier_is_1308(wt: WriteEnv) -> None:
    seed_existing(wt)
    missing = wt.missing_id()
    before = wt.dump()
    response = send(wt, "PUT-create", {"id": missing, "code": "NEW1", "name": "n"})
    expect_error(
        response,
        400,
        "1308",
        message=(
            f"Entity `{PARENTS}[0].id: {missing}` not found by identifier, and new identifier can not be persisted. "
            "Please update the request."
        ),
    )
    refused(wt, before)
    response = wt.put(f"{PARENTS}/{missing}", {"code": "NEW1", "name": "n"})
    expect_error(response, 400, "1308", f"`{PARENTS}[0].id: {missing}`")
    refused(wt, before)


def test_post_with_a_creatable_identifier_inserts_that_key(wt: WriteEnv) -> None:
    data = success(wt.post(KEYED, [{"code": "K-9", "title": "nine", "weight": 9}]), 201)
    assert data == [{"code": "K-9", "title": "nine", "weight": 9}]
    assert wt.rows(KEYED_TABLE) == [{"code": "K-9", "title": "nine", "weight": 9}]


def test_put_of_a_missing_row_with_a_creatable_identifier_inserts_it(wt: WriteEnv) -> None:
    data = success(wt.put(KEYED, [{"code": "K-5", "title": "five"}]), 200)
    assert data == [{"code": "K-5", "title": "five", "weight": None}]
    data = success(wt.put(f"{KEYED}/K-6", {"title": "six", "weight": 6}), 200)
    assert data == {"code": "K-6", "title": "six", "weight": 6}
    assert wt.rows(KEYED_TABLE) == [
        {"code": "K-5", "title": "five", "weight": None},
        {"code": "K-6", "title": "six", "weight": 6},
    ]


def test_put_of_an_existing_keyed_row_updates_it(wt: WriteEnv) -> None:
    wt.insert(KEYED_TABLE, [{"code": "K1", "title": "one", "weight": 1}])
    data = success(wt.put(KEYED, [{"code": "K1", "title": "uno"}]), 200)
    assert data == [{"code": "K1", "title": "uno", "weight": None}]  # omitted `weight` reset
    assert wt.rows(KEYED_TABLE) == [{"code": "K1", "title": "uno", "weight": None}]


# --- omitted fields and explicit nulls ------------------------------------------------------------------------------


def test_post_omitted_fields_get_the_database_defaults(wt: WriteEnv) -> None:
    data = success(wt.post(PARENTS, [{"code": "A1", "name": "n"}]), 201)
    row = wt.rows(PARENT)[0]
    assert data == [render(PARENTS, row)]
    item = data[0]
    assert type(item["id"]) is int and item["id"] == row["id"]
    assert item["active"] is True and item["counter"] == 7 and item["readonlyCol"] == "ro"
    assert item["price"] is None and item["born"] is None and item["editOnly"] is None
    assert list(item) == PARENT_NAMES


def test_post_explicit_nulls_are_dropped_so_defaults_apply(wt: WriteEnv) -> None:
    data = success(
        wt.post(
            PARENTS,
            [
                {
                    "code": "A1",
                    "name": "n",
                    "active": None,
                    "counter": None,
                    "price": None,
                    "editOnly": None,
                    "readonlyCol": None,
                    "born": None,
                }
            ],
        ),
        201,
    )
    row = wt.rows(PARENT)[0]
    assert data == [render(PARENTS, row)]
    assert row["active"] is True and row["counter"] == 7 and row["readonly_col"] == "ro" and row["price"] is None


def test_patch_leaves_omitted_fields_untouched_and_writes_nulls(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    before = wt.row(PARENT, existing)
    assert before is not None
    response = send(wt, "PATCH", {"id": existing, "price": None, "notes": None, "name": "patched"})
    row = saved_one(wt, "PATCH", existing, response)
    assert row == {**before, "price": None, "notes": None, "name": "patched"}


def test_put_update_resets_omitted_editable_fields_to_null(wt: WriteEnv) -> None:
    """PUT replaces the row: every editable field not sent (or sent null) becomes NULL.

    Fields that are not editable (`createOnly`, `readonlyCol`) keep their values: resetting them would modify
    an immutable field (Spryker's resetter would NULL them too — dxapi decides otherwise)."""
    existing = seed_existing(wt)
    before = wt.row(PARENT, existing)
    assert before is not None
    response = send(
        wt, "PUT-update", {"id": existing, "code": "PUT1", "name": "put", "active": True, "counter": 2, "price": None}
    )
    row = saved_one(wt, "PUT-update", existing, response)
    nulls = dict.fromkeys(["price", "born", "seen_at", "small", "big", "rank", "notes", "url", "status", "edit_only"])
    assert row == {**before, **nulls, "code": "PUT1", "name": "put", "active": True, "counter": 2}
    assert row["create_only"] == "c0" and row["readonly_col"] == "r0"


def test_put_update_omitting_a_not_null_editable_field_is_refused(wt: WriteEnv) -> None:
    """`active` is NOT NULL (with a default): PUT resets it to NULL, which cannot be stored → 3001."""
    existing = seed_existing(wt)
    before = wt.dump()
    response = send(wt, "PUT-update", {"id": existing, "code": OLD, "name": "x", "counter": 1})
    expect_error(response, 400, "3001", f"`{PARENTS}[0].active`")
    refused(wt, before)


def test_put_create_omitted_fields_get_the_database_defaults_and_nulls_are_written(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    response = send(wt, "PUT-create", {"code": "NEW1", "name": "n", "price": None, "notes": None})
    row = saved_one(wt, "PUT-create", existing, response)
    assert row["active"] is True and row["counter"] == 7 and row["readonly_col"] == "ro"
    assert row["price"] is None and row["notes"] is None


# --- types and rules: 1305 / 1306 / 1316, on every context -----------------------------------------------------------

BAD_VALUES: list[tuple[str, Any, str]] = [
    ("small", "5", "1305"),
    ("small", 5.0, "1305"),
    ("counter", "7", "1305"),
    ("active", 1, "1305"),
    ("active", "true", "1305"),
    ("price", "1.234", "1306"),
    ("price", "1e5", "1305"),
    ("price", "+1.00", "1305"),
    ("price", "-0.50", "1306"),
    ("price", "1234567.00", "1306"),
    ("price", 12.345, "1306"),
    ("price", True, "1305"),
    ("name", "x" * 51, "1306"),  # no maxLength rule: the VARCHAR(50) is the limit, on SQLite too
    ("name", 12, "1305"),
    ("name", {"a": 1}, "1305"),
    ("notes", ["a"], "1305"),
    ("notes", 5, "1305"),
    ("notes", "a\x00b", "1306"),
    ("code", "ABCDEFGHIJK", "1306"),
    ("code", "a b", "1306"),
    ("status", "other", "1306"),
    ("url", "http://example.com/x", "1316"),
    ("url", "shop/x", "1316"),
    ("small", 40000, "1306"),  # SMALLINT
    ("small", -32769, "1306"),
    ("small", 2**64, "1306"),
    ("big", 2**63, "1306"),
    ("big", -(2**63) - 1, "1306"),
    ("big", 10**30, "1306"),
    ("rank", 0, "1306"),
    ("rank", 101, "1306"),
    ("born", "2026-13-01", "1306"),
    ("born", "2026-02-30", "1306"),
    ("born", "1899-12-31", "1306"),
    ("born", 20260101, "1305"),
    ("seenAt", "yesterday", "1306"),
    ("seenAt", 5, "1305"),
    ("ratio", "0.5", "1305"),
    ("ratio", False, "1305"),
]


def _value_id(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 20 else text[:17] + "..."


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize(
    ("field", "value", "code"), [pytest.param(*case, id=f"{case[0]}={_value_id(case[1])}") for case in BAD_VALUES]
)
def test_wrong_type_or_broken_rule_is_refused(wt: WriteEnv, context: str, field: str, value: Any, code: str) -> None:
    existing = seed_existing(wt)
    before = wt.dump()
    response = send(wt, context, {**base_item(context, existing), field: value})
    if code == "1305":
        expect_error(response, 400, code, message=f"Invalid data type `{PARENTS}[0]` for field `{field}`")
    elif code == "1316":
        expect_error(
            response,
            400,
            code,
            message=f"The URL is invalid. `{PARENTS}[0]` field `{field}` must have a URL data format.",
        )
    else:
        expect_error(response, 400, code, f"Invalid data value `{PARENTS}[0]` for field: `{field}`. Field rules: ")
    refused(wt, before)


def test_rule_text_of_1306_lists_the_field_rules(wt: WriteEnv) -> None:
    before = wt.dump()
    response = wt.post(PARENTS, [{"code": "A1", "name": "n", "price": "-1.00"}])
    expect_error(
        response,
        400,
        "1306",
        message=(
            f"Invalid data value `{PARENTS}[0]` for field: `price`. Field rules: min: 0, precision: 8, scale: 2, "
            "is_required: 0"
        ),
    )
    refused(wt, before)


GOOD_VALUES: list[tuple[str, Any, str, Any]] = [
    # field, JSON value sent, column, value stored
    ("small", 32767, "small", 32767),
    ("small", -32768, "small", -32768),
    ("big", 2**63 - 1, "big", 2**63 - 1),
    ("big", -(2**63), "big", -(2**63)),
    ("rank", 100, "rank", 100),
    ("price", "123456.78", "price", Decimal("123456.78")),
    ("price", "0", "price", Decimal("0.00")),
    ("price", 12.5, "price", Decimal("12.50")),
    ("price", 7, "price", Decimal("7.00")),
    ("price", "1.230", "price", Decimal("1.23")),  # trailing zeros do not count against the scale
    ("active", True, "active", True),
    ("name", "x" * 50, "name", "x" * 50),
    ("name", "é" * 50, "name", "é" * 50),  # 50 characters, 100 bytes
    ("notes", "line 1\nline 2 ✓ 😀", "notes", "line 1\nline 2 ✓ 😀"),
    ("code", "Ab_9-", "code", "Ab_9-"),
    ("status", "done", "status", "done"),
    ("url", "/", "url", "/"),
    ("url", "/shop/Item-1?x=1", "url", "/shop/Item-1?x=1"),
    ("born", "2026-01-31", "born", "2026-01-31"),
    ("seenAt", "2026-05-01T10:20:30", "seen_at", "2026-05-01T10:20:30"),
    ("ratio", 0.25, "ratio", 0.25),
    ("ratio", -3, "ratio", -3.0),
]


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize(
    ("field", "value", "column", "stored"),
    [pytest.param(*case, id=f"{case[0]}={_value_id(case[1])}") for case in GOOD_VALUES],
)
def test_valid_value_is_stored_and_echoed(
    wt: WriteEnv, context: str, field: str, value: Any, column: str, stored: Any
) -> None:
    existing = seed_existing(wt)
    response = send(wt, context, {**base_item(context, existing), field: value})
    row = saved_one(wt, context, existing, response)
    found = row[column]
    if column in ("born", "seen_at"):
        found = found.isoformat()
    assert found == stored
    assert type(found) is type(stored)


def test_full_item_round_trip_has_every_field_with_its_json_type(wt: WriteEnv) -> None:
    item = {
        "code": "FULL",
        "name": "full",
        "price": "12.50",
        "active": False,
        "born": "2000-02-29",
        "seenAt": "2026-05-01T10:20:30",
        "small": -5,
        "big": 2**40,
        "rank": 50,
        "ratio": 1.5,
        "notes": "n",
        "url": "/full",
        "status": "new",
        "createOnly": "c",
        "counter": 3,
    }
    data = success(wt.post(PARENTS, [item]), 201)
    row = wt.rows(PARENT)[0]
    assert data == [{**item, "id": row["id"], "editOnly": None, "readonlyCol": "ro"}]
    assert list(data[0]) == PARENT_NAMES
    check_json_types(PARENTS, data[0])
    got = success(wt.get(f"/{PARENTS}/{row['id']}"), 200)
    assert got == data[0]


def test_fractional_seconds_are_stored_or_refused_never_cut(wt: WriteEnv) -> None:
    """`seenAt` is a DATETIME without fractional seconds on MariaDB: the value must be kept exactly or refused
    (like a string over its VARCHAR), never silently truncated to whole seconds."""
    before = wt.dump()
    response = wt.post(PARENTS, [{"code": "A1", "name": "n", "seenAt": "2026-05-01T10:20:30.7"}])
    if response.status_code >= 400:
        expect_error(response, 400, "1306", f"`{PARENTS}[0]`", "`seenAt`")
        refused(wt, before)
        return
    data = success(response, 201)
    stored = wt.rows(PARENT)[0]["seen_at"]
    assert stored.isoformat() == "2026-05-01T10:20:30.700000", stored
    assert data[0]["seenAt"] == "2026-05-01T10:20:30.700000"


def test_string_identifier_lookup_agrees_with_get(wt: WriteEnv) -> None:
    """Writes find a row by its key exactly when a GET of the same key does (MariaDB compares `k1` = `K1`)."""
    wt.insert(KEYED_TABLE, [{"code": "K1", "title": "one"}])
    found = wt.get(f"/{KEYED}/k1").status_code == 200
    response = wt.patch(f"{KEYED}/k1", {"title": "patched"})
    if found:
        assert success(response, 200)["code"] == "K1"
        assert wt.rows(KEYED_TABLE) == [{"code": "K1", "title": "patched", "weight": None}]
    else:
        expect_error(response, 404, "1303")
    response = wt.put(KEYED, [{"code": "k1", "title": "put"}])
    if response.status_code == 400:
        # An identifier is matched exactly, but MariaDB's case-insensitive unique key holds `K1` = `k1`.
        assert wt.backend.name == "mysql"
        expect_error(response, 400, "1309")
        assert wt.count(KEYED_TABLE) == 1
    else:
        success(response, 200)
        assert wt.count(KEYED_TABLE) == (1 if found else 2)


# --- response shapes ---------------------------------------------------------------------------------------------


def test_by_id_forms_answer_data_as_an_object(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    data = success(wt.patch(f"{PARENTS}/{existing}", {"name": "by id"}), 200)
    assert isinstance(data, dict) and data == render(PARENTS, wt.row(PARENT, existing))  # type: ignore[arg-type]
    data = success(wt.put(f"{PARENTS}/{existing}", {"code": "PUT2", "name": "put", "active": True, "counter": 1}), 200)
    row = wt.row(PARENT, existing)
    assert isinstance(data, dict) and data == render(PARENTS, row)  # type: ignore[arg-type]
    assert row is not None and row["code"] == "PUT2" and row["price"] is None


def test_by_id_form_refuses_a_list_and_a_collection_refuses_an_object(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    before = wt.dump()
    for method, path, data in [
        ("PATCH", f"/{PARENTS}/{existing}", [{"name": "x"}]),
        ("PUT", f"/{PARENTS}/{existing}", [{"name": "x"}]),
        ("POST", f"/{PARENTS}", {"code": "A1", "name": "x"}),
        ("PATCH", f"/{PARENTS}", {"id": existing, "name": "x"}),
    ]:
        expect_error(wt.send(method, path, {"data": data}), 400, "1301")
    refused(wt, before)


def test_identifier_in_body_differing_from_the_url_is_refused(wt: WriteEnv) -> None:
    """The identifier is not editable: 1304 as in Spryker (2016 only for an editable one, test_write_hardening)."""
    existing = seed_existing(wt)
    other = wt.parent("OTHER", "other")
    before = wt.dump()
    response = wt.put(f"{PARENTS}/{existing}", {"id": other, "code": OLD, "name": "x", "active": True, "counter": 1})
    items = error_list(response, 400)
    assert [i["code"] for i in items] == ["1304"], items
    refused(wt, before)


def test_post_on_a_by_id_path_is_405(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    before = wt.dump()
    expect_error(wt.send("POST", f"/{PARENTS}/{existing}", {"data": {"name": "x"}}), 405, "2010")
    refused(wt, before)


def test_per_item_header_on_a_by_id_path_is_ignored(wt: WriteEnv) -> None:
    """The by-id form is a single item: it answers `{"data": {…}}` or an error array, never the envelope."""
    existing = seed_existing(wt)
    data = success(wt.patch(f"{PARENTS}/{existing}", {"name": "x"}, headers=PER_ITEM), 200)
    assert isinstance(data, dict) and data["name"] == "x"
    before = wt.dump()
    expect_error(wt.patch(f"{PARENTS}/{existing}", {"small": "x"}, headers=PER_ITEM), 400, "1305")
    refused(wt, before)


# --- DELETE ------------------------------------------------------------------------------------------------------


def test_delete_by_id_then_get_is_404(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    other = wt.parent("OTHER", "other")
    response = wt.send("DELETE", f"/{PARENTS}/{existing}", content_type=None)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert wt.row(PARENT, existing) is None and wt.row(PARENT, other) is not None
    expect_error(
        wt.get(f"/{PARENTS}/{existing}"),
        404,
        "1303",
        message=f"The entity `{PARENTS}` could not be found in the database.",
    )
    expect_error(wt.send("DELETE", f"/{PARENTS}/{existing}", content_type=None), 404, "1303")


def test_delete_by_filter_deletes_exactly_the_matching_rows(wt: WriteEnv) -> None:
    ids = wt.parents(5)
    response = wt.send(
        "DELETE",
        f"/{PARENTS}",
        content_type=None,
        params={f"filter[{PARENTS}.code]": json.dumps({"in": ["S0001", "S0003"]})},
    )
    assert response.status_code == 204, response.text
    assert [r["id"] for r in wt.rows(PARENT)] == [ids[0], ids[2], ids[4]]


def test_delete_on_a_non_deletable_entity_is_405_1318(wt: WriteEnv) -> None:
    wt.insert(KEYED_TABLE, [{"code": "K1", "title": "t"}])
    before = wt.dump()
    for path, params in [(f"/{KEYED}/K1", None), (f"/{KEYED}", {f"filter[{KEYED}.code]": "K1"})]:
        response = wt.send("DELETE", path, content_type=None, params=params)
        expect_error(response, 405, "1318", message=f"Method not allowed for the entity `{KEYED}`.")
    refused(wt, before)


def test_delete_collection_without_filter_is_400_2014(wt: WriteEnv) -> None:
    wt.parents(3)
    before = wt.dump()
    expect_error(wt.send("DELETE", f"/{PARENTS}", content_type=None), 400, "2014", f"`{PARENTS}`")
    refused(wt, before)


def test_delete_of_a_referenced_parent_is_1317_and_deletes_nothing(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    wt.child(existing, "c1")
    before = wt.dump()
    response = wt.send("DELETE", f"/{PARENTS}/{existing}", content_type=None)
    expect_error(
        response,
        400,
        "1317",
        message=(
            f"Failed to delete the data for `{PARENTS}.id = {existing}`. The entity has a child entity and can not be "
            f"deleted. Child entity: `{CHILDREN}`."
        ),
    )
    refused(wt, before)


def test_delete_by_filter_with_blocked_rows_deletes_nothing(wt: WriteEnv) -> None:
    """One 1317 per blocked row; the free row matching the same filter survives too (all or nothing)."""
    blocked_a = wt.parent("BA", "blocked a")
    free = wt.parent("FREE", "free")
    blocked_b = wt.parent("BB", "blocked b")
    wt.child(blocked_a, "a")
    wt.child(blocked_b, "b")
    before = wt.dump()
    response = wt.send(
        "DELETE",
        f"/{PARENTS}",
        content_type=None,
        params={f"filter[{PARENTS}.code]": json.dumps({"in": ["BA", "FREE"]})},
    )
    expect_errors(response, 400, [("1317", f"`{PARENTS}.id = {blocked_a}`")])
    refused(wt, before)
    response = wt.send(
        "DELETE",
        f"/{PARENTS}",
        content_type=None,
        params={f"filter[{PARENTS}.code]": json.dumps({"in": ["BA", "FREE", "BB"]})},
    )
    expect_errors(response, 400, [("1317", f"`{PARENTS}.id = {blocked_a}`"), ("1317", f"`{PARENTS}.id = {blocked_b}`")])
    assert all(f"Child entity: `{CHILDREN}`." in i["message"] for i in response.json())
    refused(wt, before)
    assert wt.row(PARENT, free) is not None


# --- refusals found by the database: unique key, foreign key -------------------------------------------------------


@pytest.mark.parametrize("context", CONTEXTS)
def test_duplicate_unique_key_is_1309_naming_the_field(wt: WriteEnv, context: str) -> None:
    existing = seed_existing(wt)
    wt.parent("TAKEN", "taken")
    before = wt.dump()
    response = send(wt, context, {**base_item(context, existing), "code": "TAKEN"})
    expect_error(
        response,
        400,
        "1309",
        message=(
            f"Failed to persist the data for `{PARENTS}[0].code`. Please verify the provided data and try again. "
            "Entry is duplicated."
        ),
    )
    refused(wt, before)


def test_duplicate_creatable_key_is_1309(wt: WriteEnv) -> None:
    wt.insert(KEYED_TABLE, [{"code": "K1", "title": "one"}])
    before = wt.dump()
    response = wt.post(KEYED, [{"code": "K1", "title": "again"}])
    expect_error(response, 400, "1309", f"`{KEYED}[0]")
    refused(wt, before)


def test_foreign_key_to_a_missing_parent_is_3002(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    missing = wt.missing_id()
    before = wt.dump()
    response = wt.post(CHILDREN, [{"fkParent": missing, "label": "orphan"}])
    expect_error(response, 400, "3002", f"`{CHILDREN}[0]")
    refused(wt, before)
    child = wt.child(existing, "c1")
    before = wt.dump()
    response = wt.patch(CHILDREN, [{"id": child, "fkParent": missing}])
    expect_error(response, 400, "3002", f"`{CHILDREN}[0]")
    refused(wt, before)


# --- nested writes ---------------------------------------------------------------------------------------------------


def test_nested_post_saves_children_with_the_parent_key(wt: WriteEnv) -> None:
    """Children are written after the parent with `fkParent` taken from it — whatever the client sent."""
    response = wt.post(
        PARENTS,
        [{"code": "N1", "name": "nested", "children": [{"label": "a"}, {"label": "b", "qty": 3, "fkParent": 424242}]}],
    )
    data = success(response, 201)
    parent = wt.rows(PARENT)[0]
    children = wt.rows(CHILD)
    assert [c["fk_parent"] for c in children] == [parent["id"], parent["id"]]
    assert [(c["label"], c["qty"]) for c in children] == [("a", 0), ("b", 3)]
    assert data == [{**render(PARENTS, parent), "children": [render(CHILDREN, c) for c in children]}]
    assert list(data[0]["children"][0]) == CHILD_NAMES
    included = success(wt.get(f"/{PARENTS}/{parent['id']}", {"include": "children"}), 200)
    assert included == data[0]


def test_nested_write_through_a_non_editable_relation_is_422_1314(wt: WriteEnv) -> None:
    existing = seed_existing(wt)
    before = wt.dump()
    response = wt.post(PARENTS, [{"code": "N1", "name": "n", "childrenReadOnly": [{"label": "a"}]}])
    expect_error(response, 422, "1314", message="The relationship `childrenReadOnly` is not editable by configuration.")
    refused(wt, before)
    response = wt.patch(PARENTS, [{"id": existing, "childrenReadOnly": [{"label": "a"}]}])
    expect_error(response, 422, "1314")
    refused(wt, before)


def test_nested_child_errors_name_the_child_path_and_nothing_is_written(wt: WriteEnv) -> None:
    before = wt.dump()
    response = wt.post(
        PARENTS,
        [
            {
                "code": "N1",
                "name": "n",
                "children": [{"label": "ok"}, {"qty": 1}, {"label": "x" * 21}, {"label": "y", "qty": -1}],
            }
        ],
    )
    expect_errors(
        response,
        400,
        [
            ("1307", f"The required field must not be empty. Field: `{PARENTS}[0].{CHILDREN}[1].label`"),
            ("1306", f"Invalid data value `{PARENTS}[0].{CHILDREN}[2]` for field: `label`"),
            ("1306", f"Invalid data value `{PARENTS}[0].{CHILDREN}[3]` for field: `qty`"),
        ],
    )
    refused(wt, before)


def test_nested_relation_value_must_be_a_list_of_objects(wt: WriteEnv) -> None:
    before = wt.dump()
    for value in ({"label": "a"}, ["a"], "a"):
        response = wt.post(PARENTS, [{"code": "N1", "name": "n", "children": value}])
        expect_error(response, 400, "1305", f"`{PARENTS}[0]`", "`children`")
    refused(wt, before)


def test_nested_patch_updates_children_of_that_parent_only(wt: WriteEnv) -> None:
    mine = seed_existing(wt)
    other = wt.parent("OTHER", "other")
    my_child = wt.child(mine, "mine")
    their_child = wt.child(other, "theirs")
    data = success(wt.patch(PARENTS, [{"id": mine, "name": "p", "children": [{"id": my_child, "qty": 5}]}]), 200)
    assert data[0]["children"] == [render(CHILDREN, wt.row(CHILD, my_child))]  # type: ignore[arg-type]
    assert wt.row(CHILD, my_child)["qty"] == 5  # type: ignore[index]
    before = wt.dump()
    response = wt.patch(PARENTS, [{"id": mine, "children": [{"id": their_child, "label": "stolen"}]}])
    expect_error(response, 404, "1303", f"`{PARENTS}[0].{CHILDREN}[0]`")
    refused(wt, before)
    response = wt.patch(PARENTS, [{"id": mine, "children": [{"label": "no id"}]}])
    expect_error(
        response, 400, "1310", message=f"Incomplete Request - missing identifier for `{PARENTS}[0].{CHILDREN}[0]`"
    )
    refused(wt, before)


def test_nested_put_updates_existing_and_inserts_new_children(wt: WriteEnv) -> None:
    mine = seed_existing(wt)
    kept = wt.child(mine, "kept", qty=2)
    data = success(
        wt.put(
            PARENTS,
            [
                {
                    "id": mine,
                    "code": OLD,
                    "name": "p",
                    "active": True,
                    "counter": 1,
                    "children": [{"id": kept, "label": "kept2", "qty": 7}, {"label": "new", "qty": 4}],
                }
            ],
        ),
        200,
    )
    children = wt.rows(CHILD)
    assert [(c["id"] == kept, c["label"], c["qty"], c["fk_parent"]) for c in children] == [
        (True, "kept2", 7, mine),
        (False, "new", 4, mine),
    ]
    assert data[0]["children"] == [render(CHILDREN, c) for c in children]


def test_per_item_nested_saves_each_parent_with_its_children_or_nothing(wt: WriteEnv) -> None:
    response = wt.post(
        PARENTS,
        [
            {"code": "G1", "name": "good", "children": [{"label": "g"}]},
            {"code": "B1", "name": "bad", "children": [{"label": "ok"}, {"label": "x" * 21}]},
        ],
        headers=PER_ITEM,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"data", "errors"}
    assert [i["code"] for i in body["data"]] == ["G1"]
    assert [e["code"] for e in body["errors"]] == ["1306"]
    assert f"`{PARENTS}[1].{CHILDREN}[1]`" in body["errors"][0]["message"]
    assert [r["code"] for r in wt.rows(PARENT)] == ["G1"]
    assert [c["label"] for c in wt.rows(CHILD)] == ["g"]


# --- hostile input ---------------------------------------------------------------------------------------------------

HOSTILE_BODIES: list[tuple[str, bytes, int, str]] = [
    ("not-json", b"{not json", 400, "1301"),
    ("empty-body", b"", 400, "1301"),
    ("data-object-on-collection", b'{"data":{}}', 400, "1301"),
    ("data-empty-list", b'{"data":[]}', 400, "1301"),
    ("data-null", b'{"data":null}', 400, "1301"),
    ("data-item-not-object", b'{"data":[1]}', 400, "1301"),
    ("data-item-list", b'{"data":[[]]}', 400, "1301"),
    ("no-data-key", b'{"items":[{"code":"A1","name":"n"}]}', 400, "1301"),
    ("top-level-list", b'[{"data":[{"code":"A1","name":"n"}]}]', 400, "1301"),
    ("extra-top-level-key", b'{"data":[{"code":"A1","name":"n"}],"extra":1}', 400, "1301"),
    ("duplicate-keys-in-item", b'{"data":[{"code":"A1","code":"A2","name":"n"}]}', 400, "1301"),
    ("duplicate-data-key", b'{"data":[{"code":"A1","name":"n"}],"data":[{"code":"A2","name":"n"}]}', 400, "1301"),
    ("nan", b'{"data":[{"code":"A1","name":"n","ratio":NaN}]}', 400, "1301"),
    ("infinity", b'{"data":[{"code":"A1","name":"n","ratio":Infinity}]}', 400, "1301"),
    ("minus-infinity", b'{"data":[{"code":"A1","name":"n","ratio":-Infinity}]}', 400, "1301"),
    ("trailing-garbage", b'{"data":[{"code":"A1","name":"n"}]} x', 400, "1301"),
    ("invalid-utf8", b'{"data":[{"code":"A1","name":"\xff\xfe"}]}', 400, "1301"),
    ("nul-in-string", b'{"data":[{"code":"A1","name":"a\\u0000b"}]}', 400, "1306"),
    ("huge-number-literal", b'{"data":[{"code":"A1","name":"n","big":' + b"9" * 5000 + b"}]}", 400, "1301"),
    (
        "deep-nesting",
        b'{"data":[{"code":"A1","name":"n","notes":' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
        400,
        "1301",
    ),
]


@pytest.mark.parametrize(("body", "status", "code"), [pytest.param(*case[1:], id=case[0]) for case in HOSTILE_BODIES])
def test_hostile_body_is_a_clear_4xx_and_writes_nothing(wt: WriteEnv, body: bytes, status: int, code: str) -> None:
    seed_existing(wt)
    before = wt.dump()
    for method in ("POST", "PATCH", "PUT"):
        response = wt.send(method, f"/{PARENTS}", raw=body)
        error_list(response, status)
        if method == "POST" or code == "1301":
            expect_error(response, status, code)
    refused(wt, before)


@pytest.mark.parametrize("field", ["name", "notes"])
def test_lone_surrogate_in_a_value_is_a_4xx(wt: WriteEnv, field: str) -> None:
    before = wt.dump()
    other = "notes" if field == "name" else "name"
    raw = b'{"data":[{"code":"A1","%s":"n","%s":"x\\ud800y"}]}' % (other.encode(), field.encode())
    response = wt.send("POST", f"/{PARENTS}", raw=raw)
    # Valid JSON, but no storable text: the body is refused as a whole.
    expect_error(response, 400, "1301")
    refused(wt, before)


@pytest.mark.parametrize("raw_key", ["\\ud800", "bad\\udfffkey"])
def test_lone_surrogate_in_a_key_is_a_4xx(wt: WriteEnv, raw_key: str) -> None:
    """The unknown key is named in the 1311 message: it must still render as JSON (not a 500)."""
    before = wt.dump()
    for body in (b'{"data":[{"code":"A1","name":"n","%s":1}]}', b'{"data":[{"code":"A1","name":"n","%s":[{}]}]}'):
        response = wt.send("POST", f"/{PARENTS}", raw=body % raw_key.encode())
        items = error_list(response, 400)
        assert items[0]["code"] in ("1311", "1313", "1301"), items
    refused(wt, before)


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        (None, 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data", 415),
        ("application/jsonx", 415),
        ("application/json; charset=utf-8", 201),
        ("application/vnd.api+json", 201),
        ("APPLICATION/JSON", 201),
    ],
)
def test_content_type_must_be_json(wt: WriteEnv, content_type: str | None, status: int) -> None:
    before = wt.dump()
    response = wt.send("POST", f"/{PARENTS}", {"data": [{"code": "A1", "name": "n"}]}, content_type=content_type)
    if status == 415:
        expect_error(response, 415, "2011")
        refused(wt, before)
    else:
        success(response, 201)
        assert wt.count(PARENT) == 1


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_unknown_alias_is_404_007_whatever_the_body(wt: WriteEnv, method: str) -> None:
    before = wt.dump()
    for path in ("/wt-nothing", "/wt-nothing/1"):
        if method == "POST" and path.endswith("/1"):
            continue
        for raw, content_type in [(b"{not json", "application/json"), (b"x", "text/plain"), (b"", None)]:
            response = wt.send(method, path, raw=raw, content_type=content_type)
            expect_error(response, 404, "007", message="Not found")
    refused(wt, before)


def test_declared_body_size_over_the_limit_is_413_before_reading(wt: WriteEnv) -> None:
    """`Content-Length` over 32 MiB is refused at once, without waiting for (or reading) the body."""
    before = wt.dump()
    port = httpx.URL(wt.backend.base_url).port
    authorization = wt.api.headers["authorization"]
    request = (
        f"POST /dynamic-entity/{PARENTS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: {authorization}\r\n"
        f"Content-Length: {33 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
    ).encode() + b'{"data":['
    with socket.create_connection(("127.0.0.1", port or 80), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"]"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:500]
    assert b'"code":"2012"' in body, body[:500]
    refused(wt, before)


def test_each_test_starts_from_empty_private_tables(wt: WriteEnv) -> None:
    """Sanity of the fixture itself: a clean state per test, and the shop tables of other modules untouched."""
    assert wt.count(PARENT) == 0 and wt.count(CHILD) == 0 and wt.count(KEYED_TABLE) == 0
    assert wt.sql(sa.select(sa.func.count()).select_from(sa.table("shop_product")))[0][0] > 0
