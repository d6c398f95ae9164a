"""Configuration checks (``dxapi.registry.checks``, ``installer``) without a database.

``parse_entry`` (JSON Schema: every violation with its location), ``check_shape`` (names, identifier, rules per
type and their consistency, with Spryker's messages where Spryker has one), ``check_entities`` against
reflected-like ``Table`` objects (tables, columns, types, lengths, deny-list, uniqueness, relations; every
problem of every entry reported together), and the JSON round trip over ``examples/shop-config.json``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from dxapi.registry.checks import check_entities, check_shape
from dxapi.registry.installer import entry_to_json, parse_entry
from dxapi.registry.model import ConfigError, EntityConfig
from dxapi.registry.store import parse_import

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop-config.json"

Entry = dict[str, Any]


def field(name: str, visible: str | None = None, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {
        "fieldName": name,
        "fieldVisibleName": visible or name,
        "type": type_,
        "isCreatable": True,
        "isEditable": True,
        **extra,
    }


def entry(
    alias: str = "things",
    table: str = "thing",
    fields: list[dict[str, Any]] | None = None,
    identifier: str = "id",
    **extra: Any,
) -> Entry:
    return {
        "tableName": table,
        "tableAlias": alias,
        "isActive": True,
        "definition": {
            "identifier": identifier,
            "fields": fields if fields is not None else [field("id", type_="integer")],
        },
        **extra,
    }


def relation(name: str, child: str, parent_field: str, child_field: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "childDynamicEntityConfiguration": {"tableAlias": child},
        "relationFieldMappings": [{"childFieldName": child_field, "parentFieldName": parent_field}],
        **extra,
    }


def parsed(raw: Entry, label: str = "entry[0]") -> EntityConfig:
    config, problems = parse_entry(raw, label)
    assert config is not None, problems
    return config


def shape_problems(raw: Entry) -> list[str]:
    config, problems = parse_entry(raw, "entry[0]")
    assert config is not None, problems
    assert problems == check_shape(config)
    return problems


def schema_problems(raw: Any, label: str = "entry[4]") -> list[str]:
    config, problems = parse_entry(raw, label)
    assert config is None
    assert problems
    return problems


def mutated(change: Callable[[Entry], object]) -> Entry:
    raw = entry(fields=[field("id", type_="integer"), field("name", validation={"maxLength": 20})])
    raw = copy.deepcopy(raw)
    change(raw)
    return raw


def test_minimal_entry_is_fine() -> None:
    config, problems = parse_entry(entry(), "entry[0]")
    assert problems == []
    assert config is not None and config.alias == "things" and config.identifier == "id"


# --- JSON Schema ---------------------------------------------------------------------------------------------


def test_missing_definition() -> None:
    raw = entry()
    del raw["definition"]
    assert schema_problems(raw) == ["entry[4]: (entry): 'definition' is a required property"]


def test_unknown_key_names_its_location() -> None:
    raw = mutated(lambda e: e["definition"]["fields"][1].update(isEditible=False))
    (problem,) = schema_problems(raw)
    assert problem.startswith("entry[4]: definition.fields[1]: ")
    assert "isEditible" in problem


def test_misspelt_required_key_reports_both_unknown_and_missing() -> None:
    def change(e: Entry) -> None:
        f = e["definition"]["fields"][1]
        f["isEditible"] = f.pop("isEditable")

    problems = schema_problems(mutated(change))
    assert len(problems) == 2
    assert all(p.startswith("entry[4]: definition.fields[1]: ") for p in problems)
    assert any("isEditible" in p for p in problems)
    assert any("'isEditable' is a required property" in p for p in problems)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda e: e.update(isActive="yes"), "isActive"),
        (lambda e: e.update(tableName=5), "tableName"),
        (lambda e: e["definition"].update(isDeletable=1), "definition.isDeletable"),
        (lambda e: e["definition"].update(fields={}), "definition.fields"),
        (lambda e: e["definition"]["fields"][1].update(isCreatable="true"), "definition.fields[1].isCreatable"),
        (
            lambda e: e["definition"]["fields"][1]["validation"].update(maxLength="20"),
            "definition.fields[1].validation.maxLength",
        ),
        (
            lambda e: e["definition"]["fields"][1]["validation"].update(maxLength=-1),
            "definition.fields[1].validation.maxLength",
        ),
        (
            lambda e: e["definition"]["fields"][1]["validation"].update(isRequired="no"),
            "definition.fields[1].validation.isRequired",
        ),
    ],
)
def test_wrong_type_names_its_location(change: Callable[[Entry], object], where: str) -> None:
    (problem,) = schema_problems(mutated(change))
    assert problem.startswith(f"entry[4]: {where}: ")


def test_unknown_field_type() -> None:
    (problem,) = schema_problems(mutated(lambda e: e["definition"]["fields"][1].update(type="text")))
    assert problem.startswith("entry[4]: definition.fields[1].type: ")
    assert "'text'" in problem


@pytest.mark.parametrize(
    ("mapping", "where", "needle"),
    [
        ([{"childFieldName": "fk"}], "childRelations[0].relationFieldMappings[0]", "parentFieldName"),
        ([{"parentFieldName": "id"}], "childRelations[0].relationFieldMappings[0]", "childFieldName"),
        ([], "childRelations[0].relationFieldMappings", "non-empty"),
        ("id=fk", "childRelations[0].relationFieldMappings", "not of type 'array'"),
        (
            [{"childFieldName": "fk", "parentFieldName": "id", "extra": 1}],
            "childRelations[0].relationFieldMappings[0]",
            "extra",
        ),
        (
            [{"childFieldName": "", "parentFieldName": "id"}],
            "childRelations[0].relationFieldMappings[0].childFieldName",
            "",
        ),
    ],
)
def test_bad_relation_mapping(mapping: Any, where: str, needle: str) -> None:
    rel = relation("children", "others", "id", "fk")
    rel["relationFieldMappings"] = mapping
    (problem,) = schema_problems(entry(childRelations=[rel]))
    assert problem.startswith(f"entry[4]: {where}: ")
    assert needle in problem


def test_relation_without_child_alias() -> None:
    rel = relation("children", "others", "id", "fk")
    rel["childDynamicEntityConfiguration"] = {}
    (problem,) = schema_problems(entry(childRelations=[rel]))
    assert problem.startswith("entry[4]: childRelations[0].childDynamicEntityConfiguration: ")


def test_relation_name_with_a_dot_is_refused() -> None:
    (problem,) = schema_problems(entry(childRelations=[relation("a.b", "others", "id", "fk")]))
    assert problem.startswith("entry[4]: childRelations[0].name: ")


@pytest.mark.parametrize("raw", [None, [], "entry", 3, {}])
def test_entry_that_is_not_an_object(raw: Any) -> None:
    assert schema_problems(raw)[0].startswith("entry[4]: (entry): ")


def test_every_schema_problem_of_an_entry_is_reported() -> None:
    def change(e: Entry) -> None:
        e["isActive"] = "yes"
        e["definition"]["fields"][0]["type"] = "int"
        e["definition"]["fields"][1]["isEditible"] = True
        del e["tableName"]

    problems = schema_problems(mutated(change))
    places = sorted(p.split(": ")[1] for p in problems)
    assert places == ["(entry)", "definition.fields[0].type", "definition.fields[1]", "isActive"]


def test_import_reports_problems_of_every_entry() -> None:
    good = entry("good", "good_t")
    bad_schema = entry("bad1", "t1")
    del bad_schema["definition"]["identifier"]
    bad_shape = entry("bad 2", "t2")
    with pytest.raises(ConfigError) as caught:
        parse_import([good, bad_schema, bad_shape])
    problems = caught.value.problems
    assert any(p.startswith("entry[1]: definition: ") and "identifier" in p for p in problems)
    assert any("Resource name `bad 2` is not valid" in p for p in problems)
    assert not any("good" in p for p in problems)


def test_import_document_must_be_an_array() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_import({"tableAlias": "x"})
    assert caught.value.problems == ["the configuration file must hold a JSON array of entries"]


# --- shape checks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["x y", "x.y", "x/y", "ü", "a;b", "tax rates", "x\n"])
def test_alias_pattern(alias: str) -> None:
    problems = shape_problems(entry(alias=alias))
    assert problems == [f"`{alias}`: Resource name `{alias}` is not valid. Allowed characters: a-z, A-Z, 0-9, _ and -"]


@pytest.mark.parametrize("alias", ["tax-rates", "Products", "a_1", "0", "-"])
def test_valid_aliases(alias: str) -> None:
    assert shape_problems(entry(alias=alias)) == []


def test_duplicate_visible_names() -> None:
    raw = entry(fields=[field("id", type_="integer"), field("a", "name"), field("b", "name")])
    assert shape_problems(raw) == ["`things`: field `b`: visible name `name` is used twice"]


def test_duplicate_visible_name_of_a_disabled_field_is_allowed() -> None:
    raw = entry(fields=[field("id", type_="integer"), field("a", "name"), field("b", "name", isEnabled=False)])
    assert shape_problems(raw) == []


def test_column_configured_twice() -> None:
    raw = entry(fields=[field("id", type_="integer"), field("a", "x"), field("a", "y")])
    assert shape_problems(raw) == ["`things`: field `a`: configured twice"]


@pytest.mark.parametrize("visible", ["a.b", "-a", "a,b", "a[b]", "a b", "ä", "+a"])
def test_bad_visible_names(visible: str) -> None:
    raw = entry(fields=[field("id", type_="integer"), field("a", visible)])
    (problem,) = shape_problems(raw)
    assert problem.startswith(f"`things`: field `a`: visible name `{visible}` may only hold")


@pytest.mark.parametrize("visible", ["a-b", "_a", "A9", "9a", "iso2Code"])
def test_good_visible_names(visible: str) -> None:
    assert shape_problems(entry(fields=[field("id", type_="integer"), field("a", visible)])) == []


def test_identifier_not_configured() -> None:
    assert shape_problems(entry(identifier="id_thing")) == ["`things`: Identifier is not defined in field definitions."]


def test_identifier_disabled_counts_as_not_configured() -> None:
    raw = entry(fields=[field("id", type_="integer", isEnabled=False), field("a")])
    assert shape_problems(raw) == ["`things`: Identifier is not defined in field definitions."]


def test_identifier_matches_the_column_not_the_visible_name() -> None:
    raw = entry(identifier="idThing", fields=[field("id_thing", "idThing", "integer")])
    assert shape_problems(raw) == ["`things`: Identifier is not defined in field definitions."]


@pytest.mark.parametrize("type_", ["boolean", "decimal", "json", "date"])
def test_identifier_type(type_: str) -> None:
    assert shape_problems(entry(fields=[field("id", type_=type_)])) == [
        "`things`: the identifier must be of type integer, string or uuid"
    ]


@pytest.mark.parametrize(
    ("type_", "rules", "keys"),
    [
        ("integer", {"minLength": 1}, "minLength"),
        ("integer", {"minLength": 1, "maxLength": 5}, "maxLength, minLength"),
        ("boolean", {"min": 1}, "min"),
        ("string", {"min": 1}, "min"),
        ("string", {"precision": 5}, "precision"),
        ("float", {"precision": 5, "scale": 1}, "precision, scale"),
        ("date", {"pattern": "^x$"}, "pattern"),
        ("json", {"enum": ["a"]}, "enum"),
        ("uuid", {"format": "email"}, "format"),
    ],
)
def test_rule_not_allowed_for_type(type_: str, rules: dict[str, Any], keys: str) -> None:
    raw = entry(fields=[field("id", type_="integer"), field("v", type_=type_, validation=rules)])
    problems = shape_problems(raw)
    assert f"`things`: field `v`: Validation rule(s): `{keys}` is not allowed for field type `{type_}`." in problems


def test_spryker_message_for_min_length_on_integer() -> None:
    raw = entry(fields=[field("id", type_="integer"), field("n", type_="integer", validation={"minLength": 1})])
    assert shape_problems(raw) == [
        "`things`: field `n`: Validation rule(s): `minLength` is not allowed for field type `integer`."
    ]


@pytest.mark.parametrize(
    ("type_", "rules"),
    [("integer", {"minLength": 0}), ("boolean", {"min": 0}), ("boolean", {"maxLength": 0}), ("string", {"scale": 0})],
)
def test_rule_with_zero_value_not_allowed_for_type(type_: str, rules: dict[str, Any]) -> None:
    # A rule is "given" when present, whatever its value; `0` must not slip through as if absent.
    raw = entry(fields=[field("id", type_="integer"), field("v", type_=type_, validation=rules)])
    problems = shape_problems(raw)
    assert any("is not allowed for field type" in p for p in problems), problems


@pytest.mark.parametrize(
    ("type_", "rules", "message"),
    [
        ("integer", {"min": 10, "max": 1}, "`min` must not exceed `max`"),
        ("decimal", {"min": 10.5, "max": 1.25}, "`min` must not exceed `max`"),
        ("date", {"min": "2026-02-01", "max": "2026-01-01"}, "`min` must not exceed `max`"),
        ("string", {"minLength": 5, "maxLength": 2}, "`minLength` must not exceed `maxLength`"),
        ("decimal", {"precision": 5, "scale": 5}, "`scale` must be smaller than `precision`"),
        ("decimal", {"precision": 5, "scale": 7}, "`scale` must be smaller than `precision`"),
        ("decimal", {"scale": 2}, "`scale` needs `precision`"),
        ("integer", {"min": 1.5}, "`min` must be an integer"),
        ("decimal", {"max": "ten"}, "`max` must be a number"),
        ("date", {"min": 5}, "`min` must be an ISO 8601 date string"),
        ("integer", {"enum": ["a"]}, "every `enum` value must be an integer"),
        ("string", {"enum": [1]}, "every `enum` value must be a string"),
    ],
)
def test_inconsistent_rules(type_: str, rules: dict[str, Any], message: str) -> None:
    raw = entry(fields=[field("id", type_="integer"), field("v", type_=type_, validation=rules)])
    assert shape_problems(raw) == [f"`things`: field `v`: {message}"]


@pytest.mark.parametrize(
    ("type_", "rules"),
    [
        ("integer", {"min": 1, "max": 1}),
        ("string", {"minLength": 2, "maxLength": 2}),
        ("decimal", {"precision": 5, "scale": 4}),
        ("decimal", {"min": 0, "max": 99.5}),
    ],
)
def test_consistent_rules(type_: str, rules: dict[str, Any]) -> None:
    raw = entry(fields=[field("id", type_="integer"), field("v", type_=type_, validation=rules)])
    assert shape_problems(raw) == []


def test_min_above_max_across_int_and_float() -> None:
    raw = entry(fields=[field("id", type_="integer"), field("v", type_="decimal", validation={"min": 5, "max": 1.5})])
    assert shape_problems(raw) == ["`things`: field `v`: `min` must not exceed `max`"]


def test_date_rule_must_be_a_date() -> None:
    raw = entry(fields=[field("id", type_="integer"), field("d", type_="date", validation={"min": "not a date"})])
    problems = shape_problems(raw)
    assert len(problems) == 1 and "ISO 8601" in problems[0], problems


def test_every_shape_problem_is_reported() -> None:
    raw = entry(
        alias="bad alias",
        identifier="missing",
        fields=[
            field("a", "x.y"),
            field("b", "dup", "integer", validation={"minLength": 3}),
            field("c", "dup", validation={"minLength": 3, "maxLength": 1}),
        ],
        childRelations=[relation("dup", "others", "a", "b")],
    )
    problems = shape_problems(raw)
    assert len(problems) == 7, problems
    assert problems[0].startswith("`bad alias`: Resource name")
    assert "`bad alias`: Identifier is not defined in field definitions." in problems
    assert "`bad alias`: relation `dup` has the name of a field" in problems


def test_relation_defined_twice() -> None:
    rel = relation("children", "others", "id", "fk")
    assert shape_problems(entry(childRelations=[rel, rel])) == ["`things`: relation `children` is defined twice"]


# --- database checks -----------------------------------------------------------------------------------------


def reflected() -> dict[str, sa.Table]:
    """Tables as reflection hands them over (dialect-level upper-case types)."""
    md = sa.MetaData()
    sa.Table(
        "thing",
        md,
        sa.Column("id", sa.INTEGER(), primary_key=True),
        sa.Column("name", sa.VARCHAR(20)),
        sa.Column("body", sa.TEXT()),
        sa.Column("price", sa.NUMERIC(10, 2)),
        sa.Column("flag", sa.BOOLEAN()),
        sa.Column("day", sa.DATE()),
        sa.Column("code", sa.CHAR(2)),
    )
    sa.Table(
        "part",
        md,
        sa.Column("id_part", sa.INTEGER(), primary_key=True),
        sa.Column("fk_thing", sa.INTEGER()),
        sa.Column("fk_code", sa.VARCHAR(2)),
        sa.Column("label", sa.VARCHAR(50)),
    )
    for name in ("dx_entity", "sqlite_master", "pg_class", "secret_table", "DX_Audit", "information_schema"):
        sa.Table(name, md, sa.Column("id", sa.INTEGER(), primary_key=True))
    return dict(md.tables)


def thing(**extra: Any) -> Entry:
    return entry(
        "things",
        "thing",
        [
            field("id", "id", "integer"),
            field("name", validation={"maxLength": 20}),
            field("price", type_="decimal"),
            field("code"),
        ],
        **extra,
    )


def part(alias: str = "parts", **extra: Any) -> Entry:
    return entry(
        alias,
        "part",
        [field("id_part", "idPart", "integer"), field("fk_thing", "fkThing", "integer"), field("fk_code", "fkCode")],
        identifier="id_part",
        **extra,
    )


def db_problems(*raws: Entry, deny: tuple[str, ...] = ()) -> dict[str, list[str]]:
    return check_entities([parsed(r) for r in raws], reflected(), deny)


def test_good_configuration_has_no_problems() -> None:
    rel = relation("thingParts", "parts", "id", "fk_thing", isEditable=True)
    assert db_problems(thing(childRelations=[rel]), part()) == {}


def test_missing_table() -> None:
    assert db_problems(entry("ghosts", "ghost")) == {"ghosts": ["`ghosts`: table `ghost` does not exist"]}


def test_table_names_are_exact() -> None:
    assert db_problems(entry("things", "THING")) == {"things": ["`things`: table `THING` does not exist"]}


def test_missing_column() -> None:
    raw = thing()
    raw["definition"]["fields"].append(field("colour"))
    assert db_problems(raw) == {"things": ["`things`: field `colour`: no such column in table `thing`"]}


def test_missing_column_of_a_disabled_field_is_still_reported() -> None:
    raw = thing()
    raw["definition"]["fields"].append(field("colour", isEnabled=False))
    assert db_problems(raw) == {"things": ["`things`: field `colour`: no such column in table `thing`"]}


@pytest.mark.parametrize(
    ("column", "type_", "shown"),
    [
        ("body", "decimal", "TEXT"),
        ("name", "integer", "VARCHAR(20)"),
        ("flag", "date", "BOOLEAN"),
        ("day", "integer", "DATE"),
        ("price", "boolean", "NUMERIC(10, 2)"),
        ("id", "string", "INTEGER"),
    ],
)
def test_incompatible_type(column: str, type_: str, shown: str) -> None:
    fields = [field("id", "id", "integer")] if column != "id" else []
    raw = entry("things", "thing", [*fields, field(column, "extra", type_)])
    (problem,) = db_problems(raw)["things"]
    assert problem.startswith(f"`things`: field `{column}`: type `{type_}` does not fit column type {shown}")
    assert "(fitting: " in problem


def test_max_length_beyond_varchar() -> None:
    raw = thing()
    raw["definition"]["fields"][1]["validation"]["maxLength"] = 21
    assert db_problems(raw) == {"things": ["`things`: field `name`: maxLength 21 exceeds the column's length 20"]}


def test_max_length_on_text_is_unbounded() -> None:
    raw = thing()
    raw["definition"]["fields"].append(field("body", validation={"maxLength": 1_000_000}))
    assert db_problems(raw) == {}


@pytest.mark.parametrize(
    ("table", "deny"),
    [
        ("dx_entity", ()),
        ("DX_Audit", ()),
        ("sqlite_master", ()),
        ("pg_class", ()),
        ("information_schema", ()),
        ("secret_table", ("secret_table",)),
        ("secret_table", ("SECRET_TABLE",)),
        ("secret_table", ("other", "Secret_Table")),
    ],
)
def test_deny_listed_tables(table: str, deny: tuple[str, ...]) -> None:
    raw = entry("sneaky", table)
    assert db_problems(raw, deny=deny) == {
        "sneaky": [f"`sneaky`: Table name is not allowed for dynamic entity. Table: {table}"]
    }


@pytest.mark.parametrize("table", ["dx_nonexistent", "PG_nothing", "Sqlite_sequence"])
def test_deny_list_applies_to_tables_that_do_not_exist_too(table: str) -> None:
    (problem,) = db_problems(entry("sneaky", table))["sneaky"]
    assert "not allowed" in problem


def test_duplicate_alias_ignores_case() -> None:
    other = thing()
    other["tableAlias"] = "Things"
    other["tableName"] = "part"
    other["definition"] = part()["definition"]
    problems = db_problems(thing(), other)
    assert "`things`: Table alias is not unique for dynamic entity (aliases ignore case)." in problems["things"]
    assert "`Things`: Table alias is not unique for dynamic entity (aliases ignore case)." in problems["Things"]


def test_duplicate_table() -> None:
    problems = db_problems(thing(), {**thing(), "tableAlias": "things2"})
    assert problems == {
        "things": ["`things`: Table name is not unique for dynamic entity. Table: thing"],
        "things2": ["`things2`: Table name is not unique for dynamic entity. Table: thing"],
    }


def test_relation_to_unknown_alias() -> None:
    raw = thing(childRelations=[relation("thingParts", "nothing", "id", "fk_thing")])
    assert db_problems(raw) == {"things": ["`things`: relation `thingParts`: child entity `nothing` is not configured"]}


def test_relation_field_not_configured() -> None:
    raw = thing(childRelations=[relation("thingParts", "parts", "body", "label")])
    assert db_problems(raw, part()) == {
        "things": [
            "`things`: relation `thingParts`: parent field `body` is not a configured field of `things`",
            "`things`: relation `thingParts`: child field `label` is not a configured field of `parts`",
        ]
    }


def test_relation_field_disabled_counts_as_not_configured() -> None:
    child = part()
    child["definition"]["fields"][1]["isEnabled"] = False
    raw = thing(childRelations=[relation("thingParts", "parts", "id", "fk_thing")])
    assert db_problems(raw, child) == {
        "things": [
            "`things`: relation `thingParts`: child field `fk_thing` is not a configured field of `parts`",
        ]
    }


def test_relation_field_types_differ() -> None:
    raw = thing(childRelations=[relation("codeParts", "parts", "id", "fk_code")])
    assert db_problems(raw, part()) == {
        "things": ["`things`: relation `codeParts`: `id` (integer) and `fk_code` (string) have different types"]
    }


def test_all_problems_of_all_entries_are_reported_together() -> None:
    broken_thing = thing(childRelations=[relation("thingParts", "nowhere", "id", "fk_thing")])
    broken_thing["definition"]["fields"].append(field("colour"))
    broken_thing["definition"]["fields"][1]["validation"]["maxLength"] = 99
    broken_part = part(alias="parts")
    broken_part["definition"]["fields"].append(field("label", type_="integer", validation={"minLength": 1}))
    ghost = entry("ghosts", "ghost")
    denied = entry("audit", "dx_entity")
    shape = entry("bad alias", "pg_class", identifier="nope")
    fine = entry("fine", "secret_table")
    problems = db_problems(broken_thing, broken_part, ghost, denied, shape, fine)
    assert set(problems) == {"things", "parts", "ghosts", "audit", "bad alias"}
    assert len(problems["things"]) == 3  # maxLength, missing column, unknown child
    assert len(problems["parts"]) == 2  # rule not allowed, type does not fit
    assert problems["ghosts"] == ["`ghosts`: table `ghost` does not exist"]
    assert problems["audit"] == ["`audit`: Table name is not allowed for dynamic entity. Table: dx_entity"]
    assert len(problems["bad alias"]) == 3  # alias, identifier, deny-list


def test_check_entities_includes_shape_problems() -> None:
    raw = thing()
    raw["definition"]["identifier"] = "nope"
    assert db_problems(raw) == {"things": ["`things`: Identifier is not defined in field definitions."]}


# --- round trip ----------------------------------------------------------------------------------------------


def example_entries() -> list[Entry]:
    document: list[Entry] = orjson.loads(EXAMPLE.read_bytes())
    return document


@pytest.mark.parametrize("raw", example_entries(), ids=lambda e: e["tableAlias"])
def test_example_round_trips(raw: Entry) -> None:
    config, problems = parse_entry(raw, "example")
    assert problems == [] and config is not None
    assert entry_to_json(config) == raw
    assert parse_entry(entry_to_json(config), "again") == (config, [])


def test_example_passes_the_shape_checks_together() -> None:
    configs = parse_import(example_entries())
    assert [c.alias for c in configs] == ["countries", "tax-rates", "categories", "products", "stocks"]
    assert all(check_shape(c) == [] for c in configs)


def _normalise(raw: Entry) -> Entry:
    """Fill in every default the export writes: what a minimal entry means in full."""
    out = copy.deepcopy(raw)
    out.setdefault("isActive", False)
    out["definition"].setdefault("isDeletable", False)
    for f in out["definition"]["fields"]:
        f.setdefault("validation", {}).setdefault("isRequired", False)
        if f.get("isEnabled") is True:
            del f["isEnabled"]
        if isinstance(f.get("examples"), list):
            f["examples"] = ", ".join(str(x) for x in f["examples"])
    for r in out.setdefault("childRelations", []):
        r.setdefault("isEditable", False)
    return out


def test_minimal_entry_round_trips_to_its_normalised_form() -> None:
    raw: Entry = {
        "tableName": "thing",
        "tableAlias": "things",
        "definition": {
            "identifier": "id",
            "fields": [
                {
                    "fieldName": "id",
                    "fieldVisibleName": "id",
                    "type": "integer",
                    "isCreatable": False,
                    "isEditable": False,
                    "isEnabled": True,
                },
                {
                    "fieldName": "name",
                    "fieldVisibleName": "name",
                    "type": "string",
                    "isCreatable": True,
                    "isEditable": True,
                    "examples": ["a", 2],
                    "description": "d",
                    "validation": {
                        "isRequired": True,
                        "maxLength": 3,
                        "enum": ["a", "b"],
                        "pattern": "^[ab]$",
                        "constraints": [{"name": "url"}],
                        "format": "url",
                    },
                },
                {
                    "fieldName": "hidden",
                    "fieldVisibleName": "hidden",
                    "type": "decimal",
                    "isCreatable": True,
                    "isEditable": True,
                    "isEnabled": False,
                    "validation": {"precision": 8, "scale": 2, "min": 0},
                },
            ],
        },
        "childRelations": [
            {
                "name": "kids",
                "childDynamicEntityConfiguration": {"tableAlias": "kids"},
                "relationFieldMappings": [{"childFieldName": "fk", "parentFieldName": "id"}],
            }
        ],
    }
    assert entry_to_json(parsed(raw)) == _normalise(raw)
