"""Spryker's installer JSON ↔ the configuration dataclasses: ``parse_entry`` reads one entry (schema first,
then the checks that need no database), ``entry_to_json`` writes one back (what ``dxapi config export`` writes).

Fed by JSON (import file, admin form, stored ``dx_entity.definition``) and by ``EntityConfig``; feeds
``store`` (save/export/load) and the admin pages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dxapi.registry.checks import check_shape
from dxapi.registry.entry_schema import ENTRY_VALIDATOR
from dxapi.registry.model import EntityConfig, FieldConfig, FieldRules, RelationConfig
from dxapi.registry.rules import RULE_KEYS
from dxapi.types import FieldType


def _where(path: Iterable[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(entry)"


def parse_entry(entry: Any, label: str) -> tuple[EntityConfig | None, list[str]]:
    """One installer entry → (config, problems). ``label`` names the entry in messages (`entry[2]`)."""
    errors = sorted(ENTRY_VALIDATOR.iter_errors(entry), key=lambda e: list(e.absolute_path))
    if errors:
        return None, [f"{label}: {_where(e.absolute_path)}: {e.message}" for e in errors]
    alias = entry["tableAlias"]
    definition = entry["definition"]
    fields = tuple(_parse_field(raw) for raw in definition["fields"])
    relations = tuple(
        RelationConfig(
            name=raw["name"],
            child_alias=raw["childDynamicEntityConfiguration"]["tableAlias"],
            is_editable=raw.get("isEditable", False),
            parent_field=raw["relationFieldMappings"][0]["parentFieldName"],
            child_field=raw["relationFieldMappings"][0]["childFieldName"],
        )
        for raw in entry.get("childRelations", [])
    )
    config = EntityConfig(
        alias=alias,
        table_name=entry["tableName"],
        is_active=entry.get("isActive", False),
        identifier=definition["identifier"],
        is_deletable=definition.get("isDeletable", False),
        fields=fields,
        relations=relations,
        change_feed=definition.get("changeFeed", False),
    )
    return config, check_shape(config)


def _parse_field(raw: Mapping[str, Any]) -> FieldConfig:
    v = raw.get("validation", {})
    examples = raw.get("examples")
    if isinstance(examples, list):
        examples = ", ".join(str(x) for x in examples)  # Spryker joins installer arrays the same way
    return FieldConfig(
        field_name=raw["fieldName"],
        visible_name=raw["fieldVisibleName"],
        type=FieldType(raw["type"]),
        is_creatable=raw["isCreatable"],
        is_editable=raw["isEditable"],
        is_enabled=raw.get("isEnabled", True),
        description=raw.get("description"),
        examples=examples,
        enum_values=raw.get("enumValues"),
        auto_value=raw.get("autoValue"),
        rules=FieldRules(
            is_required=v.get("isRequired", False),
            min=v.get("min"),
            max=v.get("max"),
            min_length=v.get("minLength"),
            max_length=v.get("maxLength"),
            precision=v.get("precision"),
            scale=v.get("scale"),
            pattern=v.get("pattern"),
            enum=tuple(v["enum"]) if "enum" in v else None,
            format=v.get("format"),
            constraints=tuple(c["name"] for c in v.get("constraints", [])),
        ),
    )


def definition_to_json(config: EntityConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "identifier": config.identifier,
        "isDeletable": config.is_deletable,
        "fields": [_field_to_json(f) for f in config.fields],
    }
    if config.change_feed:  # dxapi's own key: left out when off, so Spryker's files export as they came
        out["changeFeed"] = True
    return out


def _field_to_json(f: FieldConfig) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for key, attr in RULE_KEYS:
        value = getattr(f.rules, attr)
        if value is not None:
            rules[key] = value
    if f.rules.enum is not None:
        rules["enum"] = list(f.rules.enum)
    if f.rules.constraints:
        rules["constraints"] = [{"name": name} for name in f.rules.constraints]
    out: dict[str, Any] = {
        "fieldName": f.field_name,
        "fieldVisibleName": f.visible_name,
        "type": f.type.value,
        "isCreatable": f.is_creatable,
        "isEditable": f.is_editable,
        "validation": rules,
    }
    if not f.is_enabled:
        out["isEnabled"] = False
    # dxapi's own keys (and the optional ones) only when set, so Spryker's files export as they came.
    optional = (
        ("description", f.description),
        ("examples", f.examples),
        ("enumValues", f.enum_values),
        ("autoValue", f.auto_value),
    )
    for key, value in optional:
        if value is not None:
            out[key] = value
    return out


def entry_to_json(config: EntityConfig) -> dict[str, Any]:
    """The installer-format entry (what ``dxapi config export`` writes)."""
    return {
        "tableName": config.table_name,
        "tableAlias": config.alias,
        "isActive": config.is_active,
        "definition": definition_to_json(config),
        "childRelations": [
            {
                "name": r.name,
                "isEditable": r.is_editable,
                "childDynamicEntityConfiguration": {"tableAlias": r.child_alias},
                "relationFieldMappings": [{"childFieldName": r.child_field, "parentFieldName": r.parent_field}],
            }
            for r in config.relations
        ],
    }
