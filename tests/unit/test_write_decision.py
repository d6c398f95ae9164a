"""The write decision without a database: every row of DESIGN §4's rule table, for every method column.

Items are planned by ``plan.write.build_write_plan`` (the checks of the body alone: unknown keys, types, rules)
and decided by ``plan.decide.decide_level`` with the rows that "exist" given as plain data — exactly what the
executor passes after its lookup. The snapshot is built from in-memory ``Table`` objects.

Contexts are the table's columns: ``POST``, ``PATCH``, ``PUT-update`` (the row exists) and ``PUT-create`` (it
does not). The HTTP tests (``tests/api/test_write_rules.py``) check the same rows on every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from dxapi.plan.decide import decide_level
from dxapi.plan.types import INSERT, UPDATE, Action, WritePlan
from dxapi.plan.write import build_write_plan
from dxapi.registry.installer import parse_entry
from dxapi.registry.snapshot import Snapshot, build_snapshot

THINGS, PARTS, KEYED = "things", "parts", "keyed"
EXISTING = 5  # the id of the row that exists (PATCH, PUT-update)
OTHER_PARENT = 6
CONTEXTS = ["POST", "PATCH", "PUT-update", "PUT-create"]


def _field(
    name: str, visible: str, type_: str = "string", *, create: bool = True, edit: bool = True, **validation: Any
) -> dict[str, Any]:
    return {
        "fieldName": name,
        "fieldVisibleName": visible,
        "type": type_,
        "isCreatable": create,
        "isEditable": edit,
        "validation": {"isRequired": False, **validation},
    }


ENTRIES = [
    {
        "tableName": "thing",
        "tableAlias": THINGS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [
                _field("id", "id", "integer", create=False, edit=False),
                _field("code", "code", isRequired=True, minLength=2, maxLength=10),
                _field("name", "name", isRequired=True, maxLength=50),
                _field("create_only", "createOnly", edit=False),
                _field("edit_only", "editOnly", create=False),
                _field("readonly_col", "readonlyCol", create=False, edit=False),
                _field("note", "note"),
                _field("must", "must", "integer"),  # NOT NULL without a default, yet not required by configuration
                _field("qty", "qty", "integer", min=0),
            ],
        },
        "childRelations": [
            {
                "name": "parts",
                "isEditable": True,
                "childDynamicEntityConfiguration": {"tableAlias": PARTS},
                "relationFieldMappings": [{"childFieldName": "fk_thing", "parentFieldName": "id"}],
            },
        ],
    },
    {
        "tableName": "part",
        "tableAlias": PARTS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [
                _field("id", "id", "integer", create=False, edit=False),
                _field("fk_thing", "fkThing", "integer"),
                _field("label", "label", isRequired=True, maxLength=20),
            ],
        },
    },
    {
        "tableName": "keyed",
        "tableAlias": KEYED,
        "isActive": True,
        "definition": {
            "identifier": "code",
            "fields": [
                _field("code", "code"),
                _field("title", "title", isRequired=True),
            ],
        },
    },
]


def _tables() -> dict[str, sa.Table]:
    md = sa.MetaData()
    sa.Table(
        "thing",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(10), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("create_only", sa.String(20)),
        sa.Column("edit_only", sa.String(20)),
        sa.Column("readonly_col", sa.String(20), server_default="ro"),
        sa.Column("note", sa.String(20)),
        sa.Column("must", sa.Integer, nullable=False),
        sa.Column("qty", sa.Integer, nullable=False, server_default="0"),
    )
    sa.Table(
        "part",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fk_thing", sa.Integer, sa.ForeignKey("thing.id"), nullable=False),
        sa.Column("label", sa.String(20), nullable=False),
    )
    sa.Table(
        "keyed",
        md,
        sa.Column("code", sa.String(20), primary_key=True),
        sa.Column("title", sa.String(50), nullable=False),
    )
    return dict(md.tables)


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    configs = []
    for index, entry in enumerate(ENTRIES):
        config, problems = parse_entry(entry, f"entry[{index}]")
        assert config is not None and not problems, problems
        configs.append(config)
    built = build_snapshot(1, configs, _tables())
    assert dict(built.unavailable) == {}
    return built


# --- driving the decision ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    codes: list[str]  # the error codes, in order ([] when the item is written)
    messages: list[str]
    action: Action | None

    @property
    def values(self) -> Mapping[str, Any]:
        assert self.action is not None, self.codes
        return self.action.values


def method_of(context: str) -> str:
    return context.split("-")[0]


def plan_of(
    snapshot: Snapshot, context: str, item: dict[str, Any], *, alias: str = THINGS, url_key: str | None = None
) -> WritePlan:
    return build_write_plan(
        snapshot,
        snapshot.entities[alias],
        method_of(context),
        [item],
        url_key=url_key,
        transactional=True,
        max_depth=5,
        allows=lambda alias, action: True,
    )


def verdict(
    snapshot: Snapshot,
    context: str,
    item: dict[str, Any],
    *,
    alias: str = THINGS,
    url_key: str | None = None,
    existing: Mapping[Any, Any] | None = None,
) -> Verdict:
    """Plan one item, then decide it knowing the rows that exist: the row ``EXISTING`` for PATCH and PUT-update
    (``existing`` overrides it), none for PUT-create, nothing looked up for POST."""
    plan = plan_of(snapshot, context, item, alias=alias, url_key=url_key)
    if plan.problems[0]:
        return _verdict(plan.problems[0], None)
    if existing is None and context != "POST":
        existing = {} if context == "PUT-create" else {EXISTING: True, "K1": True}
    decision = decide_level(plan.entity, plan.method, plan.items, existing)[0]
    return _verdict(decision.errors, decision.action)


def _verdict(found: Any, action: Action | None) -> Verdict:
    return Verdict([e.code for e in found], [e.message for e in found], action)


def base(context: str, **extra: Any) -> dict[str, Any]:
    """A valid item for the context: every required field, and the identifier where the context needs one."""
    item: dict[str, Any] = {"code": "C1", "name": "n", "must": 1}
    if context in ("PATCH", "PUT-update"):
        item["id"] = EXISTING
    if context == "PUT-update":
        item["qty"] = 0  # PUT replaces: an omitted editable NOT NULL field would be reset to NULL (3001)
    return {**item, **extra}


# --- unknown key: 1311 everywhere ------------------------------------------------------------------------------


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("key", ["bogus", "create_only", "ID"], ids=["noise", "column-name", "other-case"])
def test_unknown_key_is_1311(snapshot: Snapshot, context: str, key: str) -> None:
    found = verdict(snapshot, context, base(context, **{key: 1}))
    assert found.codes == ["1311"]
    assert f"`{THINGS}[0].{key}`" in found.messages[0]


# --- creatable / editable: 1304 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "refused"),
    [
        ("POST", True),
        ("PATCH", False),
        ("PUT-update", False),
        ("PUT-create", True),
    ],
)
def test_non_null_value_for_a_field_not_creatable(snapshot: Snapshot, context: str, refused: bool) -> None:
    found = verdict(snapshot, context, base(context, editOnly="given"))
    if refused:
        assert found.codes == ["1304"]
        assert f"`{THINGS}[0].editOnly`" in found.messages[0]
    else:
        assert found.codes == [] and found.values["edit_only"] == "given"


@pytest.mark.parametrize(
    ("context", "refused"),
    [
        ("POST", False),
        ("PATCH", True),
        ("PUT-update", True),
        ("PUT-create", False),
    ],
)
def test_non_null_value_for_a_field_not_editable(snapshot: Snapshot, context: str, refused: bool) -> None:
    found = verdict(snapshot, context, base(context, createOnly="given"))
    if refused:
        assert found.codes == ["1304"]
        assert f"`{THINGS}[0].createOnly`" in found.messages[0]
    else:
        assert found.codes == [] and found.values["create_only"] == "given"


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_field_neither_creatable_nor_editable_is_1304_everywhere(snapshot: Snapshot, context: str) -> None:
    assert verdict(snapshot, context, base(context, readonlyCol="x")).codes == ["1304"]


@pytest.mark.parametrize("context", ["PATCH", "PUT-update"])
def test_identifier_in_a_collection_body_is_exempt_from_editable(snapshot: Snapshot, context: str) -> None:
    found = verdict(snapshot, context, base(context))
    assert found.codes == []
    assert found.action is not None and found.action.kind == UPDATE and found.action.key == EXISTING
    assert "id" not in found.values  # the identifier names the row, it is never written


@pytest.mark.parametrize(
    ("context", "body_id", "codes"),
    [
        ("PATCH", EXISTING, ["1304"]),
        ("PATCH", 77, ["1304"]),
        ("PUT-update", EXISTING, []),
        ("PUT-update", 77, ["1304"]),
    ],
    ids=["PATCH-same", "PATCH-other", "PUT-same", "PUT-other"],
)
def test_non_editable_identifier_in_a_by_id_body(
    snapshot: Snapshot, context: str, body_id: int, codes: list[str]
) -> None:
    """PATCH by id: any non-editable identifier in the body is a modification; PUT by id: one that differs."""
    found = verdict(snapshot, context, base(context, id=body_id), url_key=str(EXISTING))
    assert found.codes == codes
    if codes:
        assert f"`{THINGS}[0].id`" in found.messages[0]


def test_post_with_a_non_creatable_identifier_is_1304(snapshot: Snapshot) -> None:
    assert verdict(snapshot, "POST", base("POST", id=77)).codes == ["1304"]


@pytest.mark.parametrize("context", ["PATCH", "PUT-update"])
def test_by_id_body_identifier_differing_from_an_editable_url_identifier_is_2016(
    snapshot: Snapshot, context: str
) -> None:
    found = verdict(snapshot, context, {"code": "K2", "title": "t"}, alias=KEYED, url_key="K1")
    assert found.codes == ["2016"]
    same = verdict(snapshot, context, {"code": "K1", "title": "t"}, alias=KEYED, url_key="K1")
    assert same.codes == [] and same.action is not None and same.action.key == "K1"


# --- required: 1307 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "checked"),
    [
        ("POST", True),
        ("PATCH", False),
        ("PUT-update", True),
        ("PUT-create", True),
    ],
)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_required_field_absent_or_null(snapshot: Snapshot, context: str, checked: bool, how: str) -> None:
    item = base(context)
    if how == "absent":
        del item["name"]
    else:
        item["name"] = None
    found = verdict(snapshot, context, item)
    if not checked:
        # Absent: untouched. Null: written — were the column not NOT NULL (3001, the database's own limit).
        assert found.codes == ([] if how == "absent" else ["3001"])
        return
    assert found.codes == ["1307"]
    assert found.messages[0].endswith(f"Field: `{THINGS}[0].name`")


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_required_field_sent_with_a_broken_value_is_not_also_1307(snapshot: Snapshot, context: str) -> None:
    assert verdict(snapshot, context, base(context, name=5)).codes == ["1305"]


def test_several_problems_of_one_item_come_together_in_body_order_then_rules(snapshot: Snapshot) -> None:
    found = verdict(snapshot, "POST", {"foo": 1, "qty": "x"})
    assert found.codes == ["1311", "1305", "1307", "1307", "3001"]  # code, name required; must NOT NULL


# --- empty string in a required string field -----------------------------------------------------------------


@pytest.mark.parametrize("context", CONTEXTS)
def test_empty_string_breaking_min_length_is_1306(snapshot: Snapshot, context: str) -> None:
    found = verdict(snapshot, context, base(context, code=""))
    assert found.codes == ["1306"] and "min_length: 2" in found.messages[0]


@pytest.mark.parametrize("context", CONTEXTS)
def test_empty_string_without_min_length_is_stored(snapshot: Snapshot, context: str) -> None:
    found = verdict(snapshot, context, base(context, name=""))
    assert found.codes == [] and found.values["name"] == ""


# --- identifier absent ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "outcome"),
    [
        ("POST", INSERT),
        ("PATCH", "1310"),
        ("PUT-update", INSERT),
        ("PUT-create", INSERT),
    ],
)
def test_identifier_absent(snapshot: Snapshot, context: str, outcome: str) -> None:
    item = base(context)
    item.pop("id", None)
    found = verdict(snapshot, context, item)
    if outcome == "1310":
        assert found.codes == ["1310"] and f"`{THINGS}[0]`" in found.messages[0]
        return
    assert found.codes == [] and found.action is not None
    assert found.action.kind == INSERT and found.action.key is None and "id" not in found.values


# --- identifier given, row missing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "alias", "outcome"),
    [
        ("POST", KEYED, INSERT),
        ("POST", THINGS, "1304"),
        ("PATCH", KEYED, "1303"),
        ("PATCH", THINGS, "1303"),
        ("PUT-create", KEYED, INSERT),
        ("PUT-create", THINGS, "1308"),
    ],
    ids=lambda value: str(value),
)
def test_identifier_given_row_missing(snapshot: Snapshot, context: str, alias: str, outcome: str) -> None:
    item = {"code": "K9", "title": "t"} if alias == KEYED else base("POST", id=77)
    found = verdict(snapshot, context, item, alias=alias, existing=None if context == "POST" else {})
    if outcome == INSERT:
        assert found.codes == [] and found.action is not None and found.action.kind == INSERT
        assert found.values[{KEYED: "code", THINGS: "id"}[alias]] == found.action.key
        return
    assert found.codes == [outcome]
    if outcome == "1308":
        assert f"`{THINGS}[0].id: 77`" in found.messages[0]


def test_patch_of_a_missing_row_by_id_names_the_entity(snapshot: Snapshot) -> None:
    found = verdict(snapshot, "PATCH", {"name": "x"}, url_key="77", existing={})
    assert found.codes == ["1303"] and f"`{THINGS}`" in found.messages[0]


@pytest.mark.parametrize("context", ["PATCH", "PUT-update"])
def test_an_identifier_in_the_url_that_cannot_be_one_is_1303(snapshot: Snapshot, context: str) -> None:
    item = base(context)
    del item["id"]
    assert verdict(snapshot, context, item, url_key="not-a-number").codes == ["1303"]


def test_root_patch_not_looked_up_is_assumed_to_exist(snapshot: Snapshot) -> None:
    """The executor's fast path: no lookup, one UPDATE; a guard after it answers 1303 when nothing matched."""
    plan = plan_of(snapshot, "PATCH", {"id": 77, "name": "x"})
    decision = decide_level(plan.entity, "PATCH", plan.items, None)[0]
    assert decision.errors == () and decision.action == Action(UPDATE, {"name": "x"}, 77)


def test_put_not_looked_up_is_not_decided(snapshot: Snapshot) -> None:
    plan = plan_of(snapshot, "PUT", base("PUT-update"))
    decision = decide_level(plan.entity, "PUT", plan.items, None)[0]
    assert decision.errors == () and decision.action is None


# --- configured field omitted, explicit null --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "written"),
    [
        ("POST", False),
        ("PATCH", False),
        ("PUT-update", True),
        ("PUT-create", False),
    ],
    ids=["POST-db-default", "PATCH-untouched", "PUT-update-set-to-null", "PUT-create-db-default"],
)
def test_configured_field_omitted(snapshot: Snapshot, context: str, written: bool) -> None:
    found = verdict(snapshot, context, base(context))
    assert found.codes == []
    if written:
        assert found.values["note"] is None and found.values["edit_only"] is None
        assert "create_only" not in found.values  # not editable: left as it is
    else:
        assert "note" not in found.values


@pytest.mark.parametrize(
    ("context", "kept"),
    [
        ("POST", False),
        ("PATCH", True),
        ("PUT-update", True),
        ("PUT-create", True),
    ],
    ids=["POST-dropped", "PATCH-null", "PUT-update-null", "PUT-create-null"],
)
def test_explicit_null(snapshot: Snapshot, context: str, kept: bool) -> None:
    found = verdict(snapshot, context, base(context, note=None))
    assert found.codes == []
    if kept:
        assert "note" in found.values and found.values["note"] is None
    else:
        assert "note" not in found.values


@pytest.mark.parametrize("context", ["POST", "PUT-create"])
def test_explicit_null_for_a_field_the_client_may_not_set_on_create_is_dropped(
    snapshot: Snapshot, context: str
) -> None:
    found = verdict(snapshot, context, base(context, editOnly=None))
    assert found.codes == [] and "edit_only" not in found.values


@pytest.mark.parametrize(
    ("context", "codes"),
    [
        ("PATCH", ["1304"]),
        ("PUT-update", ["1304"]),
    ],
    ids=["PATCH", "PUT-update"],
)
def test_null_for_a_field_not_editable_is_a_modification_too(
    snapshot: Snapshot, context: str, codes: list[str]
) -> None:
    assert verdict(snapshot, context, base(context, createOnly=None)).codes == codes


# --- NOT NULL columns the configuration does not require: 3001 -----------------------------------------------------


@pytest.mark.parametrize(
    ("context", "item", "codes"),
    [
        ("POST", {"code": "C1", "name": "n"}, ["3001"]),
        ("PUT-create", {"code": "C1", "name": "n"}, ["3001"]),
        ("PUT-update", {"id": EXISTING, "code": "C1", "name": "n", "qty": 0}, ["3001"]),
        ("PATCH", {"id": EXISTING, "must": None}, ["3001"]),
        ("PATCH", {"id": EXISTING, "code": "C2"}, []),
    ],
    ids=["POST-absent", "PUT-create-absent", "PUT-update-reset", "PATCH-null", "PATCH-absent-untouched"],
)
def test_not_null_column_without_default(
    snapshot: Snapshot, context: str, item: dict[str, Any], codes: list[str]
) -> None:
    found = verdict(snapshot, context, item)
    assert found.codes == codes
    if codes:
        assert found.messages[0].find(f"`{THINGS}[0].must`") >= 0


# --- wrong JSON type / rule broken -------------------------------------------------------------------------------


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize(
    ("value", "code"),
    [("three", "1305"), (True, "1305"), (-1, "1306")],
    ids=["text-for-integer", "boolean-for-integer", "below-min"],
)
def test_wrong_type_or_broken_rule(snapshot: Snapshot, context: str, value: Any, code: str) -> None:
    found = verdict(snapshot, context, base(context, qty=value))
    assert found.codes == [code] and "`qty`" in found.messages[0]


# --- nested children ---------------------------------------------------------------------------------------------


def _child_verdicts(
    snapshot: Snapshot,
    method: str,
    children: list[dict[str, Any]],
    existing: Mapping[Any, Any] | None,
    parent: int = EXISTING,
) -> list[Verdict]:
    """Plan a parent with ``children``, then decide the children's level as the executor does: each child
    with its parent's key value, knowing which child rows exist under which parent."""
    parent_item = base("PATCH" if method != "POST" else "POST", parts=children)
    plan = plan_of(snapshot, method, parent_item)
    assert plan.problems[0] == (), plan.problems
    level = plan.items[0].children[0]
    decisions = decide_level(
        level.entity, method, level.items, existing, [parent] * len(level.items), level.relation.child_field
    )
    return [_verdict(d.errors, d.action) for d in decisions]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_child_is_inserted_with_the_covered_foreign_key_from_its_parent(snapshot: Snapshot, method: str) -> None:
    found = _child_verdicts(snapshot, method, [{"label": "a", "fkThing": 424242}], None if method == "POST" else {})
    assert found[0].codes == [] and found[0].action is not None and found[0].action.kind == INSERT
    assert found[0].values == {"label": "a", "fk_thing": EXISTING}  # the client's value is ignored


def test_a_child_patch_updates_a_child_of_this_parent(snapshot: Snapshot) -> None:
    found = _child_verdicts(snapshot, "PATCH", [{"id": 11, "label": "b"}], {11: EXISTING})
    assert found[0].action == Action(UPDATE, {"label": "b", "fk_thing": EXISTING}, 11)


@pytest.mark.parametrize(("method", "code"), [("PATCH", "1303"), ("PUT", "1308")])
def test_a_child_of_another_parent_is_not_this_child(snapshot: Snapshot, method: str, code: str) -> None:
    found = _child_verdicts(snapshot, method, [{"id": 11, "label": "stolen"}], {11: OTHER_PARENT})
    assert found[0].codes == [code]
    assert f"`{THINGS}[0].{PARTS}[0]" in found[0].messages[0]


def test_a_child_put_of_an_existing_child_of_this_parent_updates_it(snapshot: Snapshot) -> None:
    found = _child_verdicts(snapshot, "PUT", [{"id": 11, "label": "kept"}], {11: EXISTING})
    assert found[0].action == Action(UPDATE, {"label": "kept", "fk_thing": EXISTING}, 11)


@pytest.mark.parametrize(
    ("method", "child", "code"),
    [
        ("PATCH", {"label": "no id"}, "1310"),
        ("POST", {}, "1307"),
        ("PUT", {}, "1307"),
        ("POST", {"label": "x" * 21}, "1306"),
    ],
    ids=["PATCH-missing-identifier", "POST-required", "PUT-required", "POST-rule"],
)
def test_a_childs_problems_are_the_parents_with_the_childs_path(
    snapshot: Snapshot, method: str, child: dict[str, Any], code: str
) -> None:
    fine = {"id": 11, "label": "ok"} if method == "PATCH" else {"label": "ok"}
    plan = plan_of(snapshot, method, base("PATCH" if method != "POST" else "POST", parts=[fine, child]))
    assert [e.code for e in plan.problems[0]] == [code]
    assert f"`{THINGS}[0].{PARTS}[1]" in plan.problems[0][0].message


def test_child_problems_keep_body_order_with_each_childs_rules_after_its_own_keys(snapshot: Snapshot) -> None:
    plan = plan_of(snapshot, "POST", base("POST", parts=[{"label": "ok"}, {"qty": 1}, {"label": "x" * 21}]))
    assert [(e.code, f"{PARTS}[1]" in e.message) for e in plan.problems[0]] == [
        ("1311", True),
        ("1307", True),
        ("1306", False),
    ]


def test_plans_are_frozen(snapshot: Snapshot) -> None:
    plan = plan_of(snapshot, "POST", base("POST", parts=[{"label": "a"}]))
    with pytest.raises(AttributeError):
        plan.items[0].key = 1  # type: ignore[misc]
    assert isinstance(plan.items, tuple) and isinstance(plan.items[0].children, tuple)
    assert isinstance(plan.problems, tuple) and isinstance(plan.items[0].children[0].items, tuple)
