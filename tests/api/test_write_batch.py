"""Batches (DESIGN.md §4 "Transactions" and limits; Spryker reference §3.6) on every backend.

A transactional batch (the default) is all or nothing: one bad item of 1000 — invalid, duplicating a row in
the table, or duplicating another item of the same batch — and nothing is written, while the errors name the
failing index. ``X-Is-Transactional: false`` (or ``0``; nothing else) saves every good item and answers
``{"data": [...saved...], "errors": [...]}`` with the normal success status, or the status of the first error
when nothing was saved. Limits: at most 10,000 items (2013), at most 32 MiB of body (413/2012). Large PATCH and
PUT batches update exactly the rows they name, read back with direct SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.api import write_fixtures
from tests.api.write_fixtures import (
    PARENT,
    PARENTS,
    PER_ITEM,
    WriteEnv,
    check_error_items,
    error_list,
    expect_error,
    expect_errors,
    render,
    success,
)

write_env, wt = write_fixtures.write_env, write_fixtures.wt  # the fixtures, for this module

BATCH = 1000
BAD = 517
SEEDED = 3  # rows in the table before every batch, so "unchanged" is more than "empty"


def items(count: int = BATCH, prefix: str = "B") -> list[dict[str, Any]]:
    return [{"code": f"{prefix}{i:04d}", "name": f"item {i}", "price": f"{i}.50"} for i in range(count)]


def codes(wt: WriteEnv) -> list[str]:
    return [r[0] for r in wt.sql(sa.select(PARENT.c.code).order_by(PARENT.c.code))]


def per_item_body(response: httpx.Response, status: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The per-item envelope `{"data": […], "errors": […]}` with ``status``; return (data, errors)."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text[:2000]}"
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["data", "errors"], str(body)[:500]
    assert isinstance(body["data"], list) and isinstance(body["errors"], list)
    if body["errors"]:
        check_error_items(body["errors"])
    return body["data"], body["errors"]


@pytest.fixture
def seeded(wt: WriteEnv) -> Iterator[WriteEnv]:
    wt.parents(SEEDED, prefix="S")
    yield wt


# --- all or nothing ---------------------------------------------------------------------------------------------


def test_transactional_batch_with_one_invalid_item_writes_nothing(seeded: WriteEnv) -> None:
    batch = items()
    batch[BAD]["price"] = "not a number"
    before = seeded.dump()
    response = seeded.post(PARENTS, batch)
    expect_error(response, 400, "1305", message=f"Invalid data type `{PARENTS}[{BAD}]` for field `price`")
    assert seeded.dump() == before
    assert seeded.count(PARENT) == SEEDED


def test_transactional_batch_reports_every_error_of_every_item(seeded: WriteEnv) -> None:
    batch = items()
    batch[5]["small"] = "x"
    del batch[BAD]["name"]
    batch[900]["bogus"] = 1
    before = seeded.dump()
    response = seeded.post(PARENTS, batch)
    expect_errors(
        response,
        400,
        [("1305", f"`{PARENTS}[5]`"), ("1307", f"`{PARENTS}[{BAD}].name`"), ("1311", f"`{PARENTS}[900].bogus`")],
    )
    assert seeded.dump() == before


def test_a_valid_batch_is_saved_once_in_request_order(seeded: WriteEnv) -> None:
    """A plain batch (on PostgreSQL one array INSERT): every item once, the answer in request order with
    growing keys, and the answer is what the table holds."""
    batch = items()
    batch[7]["price"] = None  # a null among the values of a column
    data = success(seeded.post(PARENTS, batch), 201)
    assert [d["code"] for d in data] == [b["code"] for b in batch]
    ids = [d["id"] for d in data]
    assert ids == sorted(ids) and len(set(ids)) == BATCH
    assert seeded.count(PARENT) == SEEDED + BATCH
    rows = {r["code"]: r for r in seeded.rows(PARENT, PARENT.c.code.like("B%"))}
    assert data == [render(PARENTS, rows[d["code"]]) for d in data]
    assert data[7]["price"] is None and data[8]["price"] == "8.50"


@pytest.mark.parametrize("header", ["false", "0"])
def test_per_item_batch_saves_every_good_item(seeded: WriteEnv, header: str) -> None:
    batch = items()
    batch[BAD]["price"] = "not a number"
    response = seeded.post(PARENTS, batch, headers={"X-Is-Transactional": header})
    data, found = per_item_body(response, 201)
    assert len(data) == BATCH - 1
    assert [d["code"] for d in data] == [b["code"] for i, b in enumerate(batch) if i != BAD]
    assert [e["code"] for e in found] == ["1305"]
    assert f"`{PARENTS}[{BAD}]`" in found[0]["message"]
    assert seeded.count(PARENT) == SEEDED + BATCH - 1
    rows = {r["code"]: r for r in seeded.rows(PARENT, PARENT.c.code.like("B%"))}
    assert data == [render(PARENTS, rows[d["code"]]) for d in data]
    assert f"B{BAD:04d}" not in rows


@pytest.mark.parametrize("header", ["no", "FALSE", "False", "true", "1", "", "00", "off", "false,false"])
def test_any_other_header_value_is_transactional(seeded: WriteEnv, header: str) -> None:
    """Spryker: only exactly `false` or `0` switches the per-item mode on."""
    batch = items(20)
    batch[7]["price"] = "not a number"
    before = seeded.dump()
    response = seeded.post(PARENTS, batch, headers={"X-Is-Transactional": header})
    expect_error(response, 400, "1305", f"`{PARENTS}[7]`")
    assert seeded.dump() == before


def test_header_name_is_case_insensitive(seeded: WriteEnv) -> None:
    batch = items(20)
    batch[7]["price"] = "not a number"
    data, found = per_item_body(seeded.post(PARENTS, batch, headers={"x-is-transactional": "false"}), 201)
    assert len(data) == 19 and len(found) == 1


# --- refusals only the database can tell ------------------------------------------------------------------------


def test_transactional_duplicate_of_an_existing_row_names_the_item(seeded: WriteEnv) -> None:
    batch = items()
    batch[57]["code"] = "S0001"  # a seeded row has it
    before = seeded.dump()
    response = seeded.post(PARENTS, batch)
    expect_error(
        response,
        400,
        "1309",
        message=(
            f"Failed to persist the data for `{PARENTS}[57].code`. Please verify the provided data and try again. "
            "Entry is duplicated."
        ),
    )
    assert seeded.count(PARENT) == SEEDED, "a refused transactional batch wrote rows"
    assert seeded.dump() == before


def test_transactional_duplicate_within_the_batch_names_the_later_item(seeded: WriteEnv) -> None:
    batch = items()
    batch[20]["code"] = batch[10]["code"]
    before = seeded.dump()
    response = seeded.post(PARENTS, batch)
    expect_error(response, 400, "1309", f"`{PARENTS}[20].code`")
    assert seeded.count(PARENT) == SEEDED, "a refused transactional batch wrote rows"
    assert seeded.dump() == before


def test_per_item_duplicate_of_an_existing_row(seeded: WriteEnv) -> None:
    batch = items()
    batch[57]["code"] = "S0001"
    data, found = per_item_body(seeded.post(PARENTS, batch, headers=PER_ITEM), 201)
    assert len(data) == BATCH - 1
    assert [(e["code"], f"`{PARENTS}[57].code`" in e["message"]) for e in found] == [("1309", True)]
    assert seeded.count(PARENT) == SEEDED + BATCH - 1
    assert codes(seeded).count("S0001") == 1


def test_per_item_duplicates_within_the_batch_and_with_the_table(seeded: WriteEnv) -> None:
    """Item 20 repeats item 10's key (the first one wins), item 57 repeats a row of the table: 998 saved."""
    batch = items()
    batch[20]["code"] = batch[10]["code"]
    batch[20]["name"] = "the second"
    batch[57]["code"] = "S0002"
    data, found = per_item_body(seeded.post(PARENTS, batch, headers=PER_ITEM), 201)
    assert len(data) == BATCH - 2
    assert [d["code"] for d in data] == [b["code"] for i, b in enumerate(batch) if i not in (20, 57)]
    assert [e["code"] for e in found] == ["1309", "1309"]
    assert f"`{PARENTS}[20].code`" in found[0]["message"] and f"`{PARENTS}[57].code`" in found[1]["message"]
    assert seeded.count(PARENT) == SEEDED + BATCH - 2
    kept = seeded.rows(PARENT, PARENT.c.code == batch[10]["code"])
    assert [r["name"] for r in kept] == ["item 10"]


def test_per_item_mixed_failures_are_reported_in_item_order(seeded: WriteEnv) -> None:
    batch = items(100)
    batch[3]["small"] = "x"  # refused by the rules
    batch[20]["code"] = batch[10]["code"]  # refused by the database (same batch)
    batch[57]["code"] = "S0002"  # refused by the database (existing row)
    data, found = per_item_body(seeded.post(PARENTS, batch, headers=PER_ITEM), 201)
    assert len(data) == 97
    assert [e["code"] for e in found] == ["1305", "1309", "1309"]
    for error, index in zip(found, (3, 20, 57), strict=True):
        assert f"`{PARENTS}[{index}]" in error["message"], error
    assert seeded.count(PARENT) == SEEDED + 97


def test_per_item_all_invalid_answers_the_first_error_status_and_no_data(seeded: WriteEnv) -> None:
    before = seeded.dump()
    response = seeded.post(
        PARENTS, [{"code": "A1"}, {"name": "no code"}, {"code": "S0000", "name": "dup"}], headers=PER_ITEM
    )
    data, found = per_item_body(response, 400)
    assert data == []
    assert [e["code"] for e in found] == ["1307", "1307", "1309"]
    assert seeded.dump() == before


def test_per_item_all_failed_status_is_that_of_the_first_error(seeded: WriteEnv) -> None:
    missing = seeded.missing_id()
    before = seeded.dump()
    response = seeded.patch(PARENTS, [{"id": missing, "name": "x"}, {"name": "no id"}], headers=PER_ITEM)
    data, found = per_item_body(response, 404)
    assert data == []
    assert [e["code"] for e in found] == ["1303", "1310"]
    assert seeded.dump() == before


def test_transactional_errors_from_rules_and_from_the_database_state_come_together(seeded: WriteEnv) -> None:
    ids = seeded.rows(PARENT)
    missing = seeded.missing_id()
    before = seeded.dump()
    response = seeded.patch(
        PARENTS,
        [{"id": ids[0]["id"], "small": "x"}, {"id": ids[1]["id"], "name": "fine"}, {"id": missing, "name": "gone"}],
    )
    expect_errors(response, 400, [("1305", f"`{PARENTS}[0]`"), ("1303", f"`{PARENTS}[2]`")])
    assert seeded.dump() == before


# --- limits ---------------------------------------------------------------------------------------------------------


def test_batch_over_the_item_limit_is_2013(seeded: WriteEnv) -> None:
    limit = seeded.backend.settings.max_batch_items
    assert limit == 10_000
    before = seeded.dump()
    response = seeded.send("POST", f"/{PARENTS}", raw=b'{"data":[' + b",".join([b"{}"] * (limit + 1)) + b"]}")
    expect_error(response, 400, "2013", message=f"The batch has {limit + 1} items; the maximum is {limit}.")
    assert seeded.dump() == before


def test_body_over_the_size_limit_is_413(seeded: WriteEnv) -> None:
    """A 33 MiB body is refused with 413 2012 (the declared Content-Length alone decides)."""
    limit = seeded.backend.settings.max_body_bytes
    assert limit == 32 * 1024 * 1024
    filler = json.dumps("x" * (limit + 1024 * 1024)).encode()
    body = b'{"data":[{"code":"BIG","name":"big","notes":' + filler + b"}]}"
    before = seeded.dump()
    # may be closed by the server
    with httpx.Client(base_url=seeded.backend.base_url, timeout=30, headers=seeded.api.headers) as client:
        try:
            response = client.post(
                f"/dynamic-entity/{PARENTS}", content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:  # the server answered and closed before the upload ended
            pytest.fail(f"no 413 answer to an oversized body: {exc!r}")
    expect_error(response, 413, "2012", message=f"The request body is larger than {limit} bytes.")
    assert seeded.dump() == before


def test_streamed_body_over_the_size_limit_is_413(seeded: WriteEnv) -> None:
    """Without Content-Length (chunked), the size is counted while reading."""
    limit = seeded.backend.settings.max_body_bytes
    chunk = b" " * (1024 * 1024)

    def chunks() -> Iterator[bytes]:
        yield b'{"data":[{"code":"BIG","name":"big"}]'
        for _ in range(limit // len(chunk) + 2):
            yield chunk
        yield b"}"

    before = seeded.dump()
    with httpx.Client(base_url=seeded.backend.base_url, timeout=30, headers=seeded.api.headers) as client:
        try:
            response = client.post(
                f"/dynamic-entity/{PARENTS}", content=chunks(), headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:
            pytest.fail(f"no 413 answer to an oversized chunked body: {exc!r}")
    expect_error(response, 413, "2012")
    assert seeded.dump() == before


# --- big PATCH and PUT batches ---------------------------------------------------------------------------------------


def test_patch_batch_of_200_rows_updates_all_of_them(wt: WriteEnv) -> None:
    ids = wt.parents(200)
    untouched = wt.parents(5, prefix="U")
    before_untouched = wt.rows(PARENT, PARENT.c.id.in_(untouched))
    batch = [{"id": key, "name": f"patched {i}", "price": f"{i}.25", "small": i} for i, key in enumerate(ids)]
    data = success(wt.patch(PARENTS, batch), 200)
    assert [d["id"] for d in data] == ids
    rows = {r["id"]: r for r in wt.rows(PARENT, PARENT.c.id.in_(ids))}
    for i, key in enumerate(ids):
        row = rows[key]
        assert (row["name"], row["price"], row["small"], row["code"]) == (
            f"patched {i}",
            Decimal(f"{i}.25"),
            i,
            f"S{i:04d}",
        )
        assert data[i] == render(PARENTS, row)
    assert wt.rows(PARENT, PARENT.c.id.in_(untouched)) == before_untouched


def test_patch_batch_with_one_missing_row_updates_nothing(wt: WriteEnv) -> None:
    ids = wt.parents(200)
    missing = wt.missing_id()
    batch: list[dict[str, Any]] = [{"id": key, "name": "patched"} for key in ids]
    batch[150] = {"id": missing, "name": "patched"}
    before = wt.dump()
    response = wt.patch(PARENTS, batch)
    expect_error(response, 404, "1303", message=f"The entity `{PARENTS}[150]` could not be found in the database.")
    assert wt.dump() == before


def test_put_batch_mixing_existing_and_new_rows(wt: WriteEnv) -> None:
    ids = wt.parents(100)
    batch: list[dict[str, Any]] = []
    for i, key in enumerate(ids):
        batch.append({"id": key, "code": f"S{i:04d}", "name": f"replaced {i}", "active": False, "counter": i})
        batch.append({"code": f"N{i:04d}", "name": f"new {i}", "small": i})
    data = success(wt.put(PARENTS, batch), 200)
    assert len(data) == 200
    assert wt.count(PARENT) == 200
    rows = {r["id"]: r for r in wt.rows(PARENT)}
    for i, key in enumerate(ids):
        old, new = data[2 * i], data[2 * i + 1]
        assert old["id"] == key and old == render(PARENTS, rows[key])
        assert (rows[key]["name"], rows[key]["price"], rows[key]["active"], rows[key]["counter"]) == (
            f"replaced {i}",
            None,
            False,
            i,
        )  # the seeded price was reset: PUT replaces
        assert new["id"] not in ids and new == render(PARENTS, rows[new["id"]])
        assert (rows[new["id"]]["code"], rows[new["id"]]["small"], rows[new["id"]]["counter"]) == (f"N{i:04d}", i, 7)


def test_put_batch_with_one_refused_item_writes_nothing(wt: WriteEnv) -> None:
    ids = wt.parents(50)
    missing = wt.missing_id()
    batch: list[dict[str, Any]] = [
        {"id": key, "code": f"S{i:04d}", "name": "replaced", "active": True, "counter": 1} for i, key in enumerate(ids)
    ]
    batch += [{"code": f"N{i:04d}", "name": "new"} for i in range(50)]
    batch[70] = {"id": missing, "code": "NX", "name": "not creatable"}
    before = wt.dump()
    response = wt.put(PARENTS, batch)
    expect_error(response, 400, "1308", f"`{PARENTS}[70].id: {missing}`")
    assert wt.dump() == before


def test_per_item_put_batch_saves_the_good_items(wt: WriteEnv) -> None:
    ids = wt.parents(10)
    missing = wt.missing_id()
    batch: list[dict[str, Any]] = [
        {"id": key, "code": f"S{i:04d}", "name": "replaced", "active": True, "counter": 1} for i, key in enumerate(ids)
    ]
    batch[4] = {"id": missing, "code": "NX", "name": "not creatable"}
    batch.append({"code": "NEW", "name": "new"})
    data, found = per_item_body(wt.put(PARENTS, batch, headers=PER_ITEM), 200)
    assert len(data) == 10 and [e["code"] for e in found] == ["1308"]
    assert wt.count(PARENT) == 11
    assert [r["name"] for r in wt.rows(PARENT, PARENT.c.id.in_(ids))] == [
        "seeded 4" if key == ids[4] else "replaced" for key in ids
    ]


def test_error_array_of_a_failed_batch_is_well_formed(seeded: WriteEnv) -> None:
    batch = items(50)
    for i in range(0, 50, 5):
        batch[i]["small"] = "x"
    items_found = error_list(seeded.post(PARENTS, batch), 400)
    assert [i["message"] for i in items_found] == [
        f"Invalid data type `{PARENTS}[{i}]` for field `small`" for i in range(0, 50, 5)
    ]
