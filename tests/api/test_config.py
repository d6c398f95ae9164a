"""Configuration import through the store on every backend: all or nothing, hostile names refused, versioned,
audited, upserted by alias, and served by the running server without a restart.

The server and its data are shared with other test modules, so every test that changes the configuration puts
the original back (the entries of ``examples/shop-config.json``) before it ends.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from dxapi.registry.model import ConfigError
from dxapi.registry.tables import dx_audit, dx_config_version, dx_entity, dx_relation
from tests.conftest import Backend

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop-config.json"
Entry = dict[str, Any]


def example() -> dict[str, Entry]:
    entries: list[Entry] = orjson.loads(EXAMPLE.read_bytes())
    return {e["tableAlias"]: e for e in entries}


ORIGINAL = example()


def entry(alias: str) -> Entry:
    return copy.deepcopy(ORIGINAL[alias])


def state(backend: Backend) -> dict[str, Any]:
    """Everything an import may write, read behind dxapi's back."""
    entities = backend.sql(
        sa.select(
            dx_entity.c.id,
            dx_entity.c.table_alias,
            dx_entity.c.table_name,
            dx_entity.c.is_active,
            dx_entity.c.definition,
            dx_entity.c.updated_at,
        ).order_by(dx_entity.c.id)
    )
    relations = backend.sql(sa.select(dx_relation).order_by(dx_relation.c.id))
    version = backend.sql(sa.select(dx_config_version.c.version).where(dx_config_version.c.id == 1))[0][0]
    audit = backend.sql(sa.select(sa.func.count()).select_from(dx_audit))[0][0]
    return {
        "entities": [tuple(r) for r in entities],
        "relations": [tuple(r) for r in relations],
        "version": int(version),
        "audit": int(audit),
    }


def stock_count(backend: Backend) -> int:
    return int(backend.sql("SELECT COUNT(*) FROM shop_stock")[0][0])


def refused(backend: Backend, entries: list[Entry]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        backend.import_config(entries)
    assert caught.value.problems
    return caught.value.problems


@pytest.fixture
def restore(backend: Backend) -> Iterator[None]:
    """Put the example configuration of the shop back, whatever the test did to it."""
    yield
    backend.import_config(list(example().values()))
    rows = backend.sql(sa.select(dx_entity.c.table_alias, dx_entity.c.definition))
    stored = {row.table_alias: row.definition for row in rows}
    for alias, original in ORIGINAL.items():
        assert orjson.loads(stored[alias]) == original["definition"]


# --- all or nothing ------------------------------------------------------------------------------------------


def test_one_bad_entry_of_three_writes_nothing(backend: Backend, restore: None) -> None:
    countries = entry("countries")
    countries["definition"]["fields"][3]["description"] = "changed, but must not be saved"
    taxes = entry("tax-rates")
    taxes["definition"]["fields"][3]["fieldName"] = "rate_typo"
    stocks = entry("stocks")
    stocks["isActive"] = False
    before = state(backend)
    problems = refused(backend, [countries, taxes, stocks])
    assert problems == ["`tax-rates`: field `rate_typo`: no such column in table `shop_tax_rate`"]
    assert state(backend) == before


def test_every_problem_of_every_entry_is_reported_and_nothing_written(backend: Backend) -> None:
    countries = entry("countries")
    countries["definition"]["fields"][1]["validation"]["maxLength"] = 3  # iso2_code is VARCHAR(2)
    taxes = entry("tax-rates")
    taxes["definition"]["fields"][3].update(type="boolean", validation={})  # rate is NUMERIC
    ghost = {**entry("stocks"), "tableAlias": "ghosts", "tableName": "shop_ghost", "childRelations": []}
    before = state(backend)
    problems = refused(backend, [countries, taxes, ghost])
    assert len(problems) == 3, problems
    assert any(p.startswith("`countries`: field `iso2_code`: maxLength 3") for p in problems)
    assert any(p.startswith("`tax-rates`: field `rate`: type `boolean` does not fit") for p in problems)
    assert "`ghosts`: table `shop_ghost` does not exist" in problems
    assert state(backend) == before


def test_schema_problems_are_refused_before_the_database_is_touched(backend: Backend) -> None:
    bad = entry("countries")
    bad["definition"]["fields"][0]["isEditible"] = False
    before = state(backend)
    problems = refused(backend, [entry("stocks"), bad])
    assert len(problems) == 1 and problems[0].startswith("entry[1]: definition.fields[0]: ")
    assert state(backend) == before


def test_a_change_that_breaks_a_stored_relation_is_refused(backend: Backend) -> None:
    # tax-rates is the child of `countryTaxRates`; dropping its fk field breaks the stored parent.
    taxes = entry("tax-rates")
    taxes["definition"]["fields"] = [f for f in taxes["definition"]["fields"] if f["fieldName"] != "fk_country"]
    before = state(backend)
    problems = refused(backend, [taxes])
    assert any(p.startswith("`countries`: relation `countryTaxRates`: child field `fk_country`") for p in problems)
    assert state(backend) == before


def test_same_alias_twice_in_one_file_is_refused(backend: Backend, restore: None) -> None:
    bad = entry("stocks")
    bad["definition"]["fields"][3]["fieldName"] = "no_such_column"
    before = state(backend)
    with pytest.raises(ConfigError) as caught:
        backend.import_config([bad, entry("stocks")])
    assert any("stocks" in p for p in caught.value.problems)
    assert state(backend) == before


# --- hostile names -------------------------------------------------------------------------------------------

HOSTILE_TABLES = [
    "shop_product; DROP TABLE shop_stock; --",
    '"shop_product"',
    "`shop_product`",
    "../etc",
    "shop_stock' OR '1'='1",
    "shop_product\x00",
    "SHOP_STOCK",
    "public.shop_stock",
]


@pytest.mark.parametrize("table", HOSTILE_TABLES, ids=range(len(HOSTILE_TABLES)))
def test_hostile_table_name_is_refused(backend: Backend, table: str) -> None:
    rows = stock_count(backend)
    before = state(backend)
    hostile = {**entry("stocks"), "tableAlias": "hostile", "tableName": table, "childRelations": []}
    problems = refused(backend, [hostile])
    assert problems == [f"`hostile`: table `{table}` does not exist"]
    assert state(backend) == before
    assert stock_count(backend) == rows > 0


def test_hostile_column_name_is_refused(backend: Backend) -> None:
    rows = stock_count(backend)
    before = state(backend)
    stocks = entry("stocks")
    stocks["definition"]["fields"][3]["fieldName"] = "quantity; DROP TABLE shop_stock; --"
    problems = refused(backend, [stocks])
    assert problems == ["`stocks`: field `quantity; DROP TABLE shop_stock; --`: no such column in table `shop_stock`"]
    assert state(backend) == before
    assert stock_count(backend) == rows


def test_hostile_alias_is_refused(backend: Backend) -> None:
    before = state(backend)
    stocks = {**entry("stocks"), "tableAlias": "x'; DROP TABLE shop_stock; --"}
    (problem,) = refused(backend, [stocks])
    assert "Resource name `x'; DROP TABLE shop_stock; --` is not valid" in problem
    assert state(backend) == before


@pytest.mark.parametrize("table", ["dx_entity", "dx_audit", "DX_ENTITY", "dx_config_version"])
def test_deny_listed_table_is_refused(backend: Backend, table: str) -> None:
    before = state(backend)
    sneaky = {
        "tableName": table,
        "tableAlias": "sneaky",
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [
                {
                    "fieldName": "id",
                    "fieldVisibleName": "id",
                    "type": "integer",
                    "isCreatable": False,
                    "isEditable": False,
                },
            ],
        },
    }
    assert refused(backend, [sneaky]) == [f"`sneaky`: Table name is not allowed for dynamic entity. Table: {table}"]
    assert state(backend) == before


# --- a successful import -------------------------------------------------------------------------------------


def _audit_rows(backend: Backend, after_id: int) -> list[sa.Row[Any]]:
    return backend.sql(
        sa.select(dx_audit.c.actor, dx_audit.c.action, dx_audit.c.table_alias, dx_audit.c.before, dx_audit.c.after)
        .where(dx_audit.c.id > after_id)
        .order_by(dx_audit.c.id)
    )


def _last_audit_id(backend: Backend) -> int:
    return int(backend.sql(sa.select(sa.func.coalesce(sa.func.max(dx_audit.c.id), 0)))[0][0])


def test_import_bumps_version_once_audits_each_entity_and_is_served(
    backend: Backend, api: httpx.Client, restore: None
) -> None:
    taxes = entry("tax-rates")
    name_field = next(f for f in taxes["definition"]["fields"] if f["fieldName"] == "name")
    name_field["fieldVisibleName"] = "taxName"
    countries = entry("countries")
    before = state(backend)
    last_audit = _last_audit_id(backend)

    version = backend.import_config([taxes, countries])

    after = state(backend)
    assert version == before["version"] + 1 == after["version"]
    assert after["audit"] == before["audit"] + 2
    assert len(after["entities"]) == len(before["entities"])
    audit = _audit_rows(backend, last_audit)
    assert [(a.actor, a.action, a.table_alias) for a in audit] == [
        ("test", "import", "tax-rates"),
        ("test", "import", "countries"),
    ]
    assert orjson.loads(audit[0].before) == ORIGINAL["tax-rates"]
    assert orjson.loads(audit[0].after) == taxes
    assert orjson.loads(audit[1].before) == orjson.loads(audit[1].after) == ORIGINAL["countries"]

    response = api.get("/dynamic-entity/tax-rates", params={"page[limit]": "2"})
    assert response.status_code == 200, response.text
    rows = response.json()["data"]
    assert rows and all("taxName" in r and "name" not in r for r in rows)
    filtered = api.get("/dynamic-entity/tax-rates", params={"filter[t.taxName]": rows[0]["taxName"]})
    assert filtered.status_code == 200 and filtered.json()["data"]
    old_name = api.get("/dynamic-entity/tax-rates", params={"filter[t.name]": "x"})
    assert old_name.status_code == 400
    assert [e["code"] for e in old_name.json()] == ["1315"]


def test_reimport_of_an_alias_is_an_upsert(backend: Backend, api: httpx.Client, restore: None) -> None:
    before = state(backend)
    ids = {r[1]: r[0] for r in before["entities"]}
    countries = entry("countries")
    countries["childRelations"] = []
    countries["definition"]["fields"] = countries["definition"]["fields"][:4]  # drop the postal code fields

    backend.import_config([countries])

    after = state(backend)
    assert {r[1]: r[0] for r in after["entities"]} == ids  # same rows, same ids: replaced, not added
    assert len(after["relations"]) == len(before["relations"]) - 1
    stored = backend.sql(sa.select(dx_entity.c.definition).where(dx_entity.c.table_alias == "countries"))[0][0]
    assert orjson.loads(stored) == countries["definition"]
    response = api.get("/dynamic-entity/countries", params={"page[limit]": "1"})
    assert response.status_code == 200
    assert set(response.json()["data"][0]) == {"idCountry", "iso2Code", "iso3Code", "name"}
    include = api.get("/dynamic-entity/countries", params={"include": "countryTaxRates"})
    assert include.status_code == 400 and [e["code"] for e in include.json()] == ["1313"]


def test_import_of_a_new_alias_adds_it(backend: Backend, api: httpx.Client) -> None:
    backend.sql("CREATE TABLE cfg_note (id INTEGER PRIMARY KEY, note VARCHAR(50))")
    backend.sql("INSERT INTO cfg_note (id, note) VALUES (1, 'hello')")
    notes = {
        "tableName": "cfg_note",
        "tableAlias": "notes",
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": False,
            "fields": [
                {
                    "fieldName": "id",
                    "fieldVisibleName": "id",
                    "type": "integer",
                    "isCreatable": True,
                    "isEditable": False,
                    "validation": {"isRequired": False},
                },
                {
                    "fieldName": "note",
                    "fieldVisibleName": "note",
                    "type": "string",
                    "isCreatable": True,
                    "isEditable": True,
                    "validation": {"isRequired": False, "maxLength": 50},
                },
            ],
        },
        "childRelations": [],
    }
    before = state(backend)
    last_audit = _last_audit_id(backend)
    try:
        version = backend.import_config([notes])
        assert version == before["version"] + 1
        assert len(state(backend)["entities"]) == len(before["entities"]) + 1
        (audit,) = _audit_rows(backend, last_audit)
        assert (audit.action, audit.table_alias, audit.before) == ("create", "notes", None)
        assert orjson.loads(audit.after) == notes
        response = api.get("/dynamic-entity/notes")
        assert response.status_code == 200
        assert response.json()["data"] == [{"id": 1, "note": "hello"}]
    finally:
        # dxapi has no "remove an entity" yet: take it out behind its back, bump the version, wait for it.
        backend.sql(sa.delete(dx_entity).where(dx_entity.c.table_alias == "notes"))
        backend.sql(sa.update(dx_config_version).values(version=dx_config_version.c.version + 1))
        backend.wait_for_version(state(backend)["version"])
        backend.sql("DROP TABLE cfg_note")
    assert api.get("/dynamic-entity/notes").status_code == 404
