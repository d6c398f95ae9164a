"""The configuration model: Spryker's installer JSON ↔ frozen dataclasses, and every check a configuration
must pass before it is saved or served.

Fed by JSON (import file, admin form, stored ``dx_entity.definition``); feeds ``store`` (save/export) and
``snapshot`` (runtime view). Checks run in two steps, each reporting every problem it finds:

1. shape: a JSON Schema (jsonschema) for the installer entry, then rule consistency (``min`` ≤ ``max`` …);
2. database: ``check_entities`` against reflected tables (column exists, type fits, identifier configured
   and a unique key, alias and table unique, table not deny-listed and not a view reading a denied table,
   relation fields configured).

The identifier names the row of ``/{alias}/{id}``, of PATCH, PUT and DELETE, and ends every sort order so
pages never skip or repeat a row; it must therefore be a column that can hold each value at most once: the
single-column primary key, or a NOT NULL column with a single-column UNIQUE constraint or full unique index.
Composite keys are not supported as identifiers, and views (which declare no keys) cannot be configured.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from sqlalchemy import Column, Index, Table, UniqueConstraint

from dxapi.schema.reflect import denied_reads, is_denied, is_view
from dxapi.schema.typemap import compatible_types, string_length
from dxapi.types import FieldType

ALIAS_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")
# Fixed paths under the API prefix (the docs page and its files) that an alias would shadow.
RESERVED_ALIASES = frozenset({"docs", "static"})
# Visible names appear in `filter[x.name]`, `sort=-name` and `include=a.b`: no dots, brackets, commas, and
# no leading dash.
VISIBLE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")

_RULES_BY_TYPE: dict[FieldType, frozenset[str]] = {
    FieldType.INTEGER: frozenset({"isRequired", "min", "max", "enum", "constraints"}),
    FieldType.STRING: frozenset(
        {"isRequired", "minLength", "maxLength", "pattern", "enum", "format", "constraints"}
    ),
    FieldType.BOOLEAN: frozenset({"isRequired", "constraints"}),
    FieldType.DECIMAL: frozenset({"isRequired", "min", "max", "precision", "scale", "constraints"}),
    FieldType.FLOAT: frozenset({"isRequired", "min", "max", "constraints"}),
    FieldType.DATE: frozenset({"isRequired", "min", "max", "constraints"}),
    FieldType.DATETIME: frozenset({"isRequired", "min", "max", "constraints"}),
    FieldType.JSON: frozenset({"isRequired", "constraints"}),
    FieldType.UUID: frozenset({"isRequired", "constraints"}),
}

_NUMBER_OR_TEXT = {"type": ["number", "string"]}
_COUNT = {"type": "integer", "minimum": 0}

ENTRY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["tableName", "tableAlias", "definition"],
    "additionalProperties": False,
    "properties": {
        "tableName": {"type": "string", "minLength": 1, "maxLength": 255},
        "tableAlias": {"type": "string", "minLength": 1, "maxLength": 255},
        "isActive": {"type": "boolean"},
        "definition": {
            "type": "object",
            "required": ["identifier", "fields"],
            "additionalProperties": False,
            "properties": {
                "identifier": {"type": "string", "minLength": 1},
                "isDeletable": {"type": "boolean"},
                "fields": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/field"}},
            },
        },
        "childRelations": {"type": "array", "items": {"$ref": "#/$defs/relation"}},
    },
    "$defs": {
        "field": {
            "type": "object",
            "required": ["fieldName", "fieldVisibleName", "type", "isCreatable", "isEditable"],
            "additionalProperties": False,
            "properties": {
                "fieldName": {"type": "string", "minLength": 1, "maxLength": 255},
                "fieldVisibleName": {"type": "string", "minLength": 1, "maxLength": 255},
                "type": {"enum": [t.value for t in FieldType]},
                "isCreatable": {"type": "boolean"},
                "isEditable": {"type": "boolean"},
                "isEnabled": {"type": "boolean"},
                "description": {"type": "string"},
                "examples": {"type": ["string", "array"]},
                "enumValues": {"type": "string"},
                "validation": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "isRequired": {"type": "boolean"},
                        "min": _NUMBER_OR_TEXT,
                        "max": _NUMBER_OR_TEXT,
                        "minLength": _COUNT,
                        "maxLength": _COUNT,
                        "precision": {"type": "integer", "minimum": 1, "maximum": 65},
                        "scale": _COUNT,
                        "pattern": {"type": "string", "format": "regex"},
                        "enum": {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]}},
                        "format": {"enum": ["email", "uuid", "url"]},
                        "constraints": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {"name": {"enum": ["url"]}},
                            },
                        },
                    },
                },
            },
        },
        "relation": {
            "type": "object",
            "required": ["name", "childDynamicEntityConfiguration", "relationFieldMappings"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": VISIBLE_NAME_PATTERN.pattern, "maxLength": 255},
                "isEditable": {"type": "boolean"},
                "childDynamicEntityConfiguration": {
                    "type": "object",
                    "required": ["tableAlias"],
                    "properties": {"tableAlias": {"type": "string"}},
                },
                "relationFieldMappings": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["childFieldName", "parentFieldName"],
                        "additionalProperties": False,
                        "properties": {
                            "childFieldName": {"type": "string", "minLength": 1},
                            "parentFieldName": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
    },
}

_ENTRY_VALIDATOR = jsonschema.Draft202012Validator(
    ENTRY_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


class ConfigError(Exception):
    """A configuration refused; ``problems`` lists every reason, each naming its entity and place."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class FieldRules:
    is_required: bool = False
    min: int | float | str | None = None
    max: int | float | str | None = None
    min_length: int | None = None
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    pattern: str | None = None
    enum: tuple[str | int, ...] | None = None
    format: str | None = None
    constraints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FieldConfig:
    field_name: str
    visible_name: str
    type: FieldType
    is_creatable: bool
    is_editable: bool
    rules: FieldRules = field(default_factory=FieldRules)
    is_enabled: bool = True
    description: str | None = None
    examples: str | None = None
    enum_values: str | None = None


@dataclass(frozen=True, slots=True)
class RelationConfig:
    name: str
    child_alias: str
    is_editable: bool
    parent_field: str
    child_field: str


@dataclass(frozen=True, slots=True)
class EntityConfig:
    alias: str
    table_name: str
    is_active: bool
    identifier: str
    is_deletable: bool
    fields: tuple[FieldConfig, ...]
    relations: tuple[RelationConfig, ...] = ()

    @property
    def enabled_fields(self) -> tuple[FieldConfig, ...]:
        return tuple(f for f in self.fields if f.is_enabled)


# --- JSON → model ---------------------------------------------------------------------------------------------

def _where(path: Iterable[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(entry)"


def parse_entry(entry: Any, label: str) -> tuple[EntityConfig | None, list[str]]:
    """One installer entry → (config, problems). ``label`` names the entry in messages (`entry[2]`)."""
    errors = sorted(_ENTRY_VALIDATOR.iter_errors(entry), key=lambda e: list(e.absolute_path))
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


# --- model → JSON ---------------------------------------------------------------------------------------------

_RULE_KEYS = (
    ("isRequired", "is_required"), ("min", "min"), ("max", "max"), ("minLength", "min_length"),
    ("maxLength", "max_length"), ("precision", "precision"), ("scale", "scale"), ("pattern", "pattern"),
    ("format", "format"),
)


def definition_to_json(config: EntityConfig) -> dict[str, Any]:
    return {
        "identifier": config.identifier,
        "isDeletable": config.is_deletable,
        "fields": [_field_to_json(f) for f in config.fields],
    }


def _field_to_json(f: FieldConfig) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for key, attr in _RULE_KEYS:
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
    for key, value in (("description", f.description), ("examples", f.examples), ("enumValues", f.enum_values)):
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


# --- checks ---------------------------------------------------------------------------------------------------

def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_shape(config: EntityConfig) -> list[str]:
    """Checks that need no database: alias, names, identifier, rules allowed per type and consistent."""
    where = f"`{config.alias}`"
    problems: list[str] = []
    if not ALIAS_PATTERN.fullmatch(config.alias):
        problems.append(
            f"{where}: Resource name `{config.alias}` is not valid. Allowed characters: a-z, A-Z, 0-9, _ and -"
        )
    if config.alias.lower() in RESERVED_ALIASES:
        problems.append(f"{where}: the alias `{config.alias}` is reserved for dxapi's own pages")
    seen_columns: set[str] = set()
    seen_names: set[str] = set()
    for f in config.fields:
        at = f"{where}: field `{f.field_name}`"
        if f.field_name in seen_columns:
            problems.append(f"{at}: configured twice")
        seen_columns.add(f.field_name)
        if f.is_enabled:
            if f.visible_name in seen_names:
                problems.append(f"{at}: visible name `{f.visible_name}` is used twice")
            seen_names.add(f.visible_name)
        if not VISIBLE_NAME_PATTERN.fullmatch(f.visible_name):
            problems.append(
                f"{at}: visible name `{f.visible_name}` may only hold a-z, A-Z, 0-9, _ and - "
                "and must not start with -"
            )
        problems.extend(f"{at}: {p}" for p in _check_rules(f))
    identifier = next((f for f in config.enabled_fields if f.field_name == config.identifier), None)
    if identifier is None:
        problems.append(f"{where}: Identifier is not defined in field definitions.")
    elif identifier.type not in (FieldType.INTEGER, FieldType.STRING, FieldType.UUID):
        problems.append(f"{where}: the identifier must be of type integer, string or uuid")
    seen_relations: set[str] = set()
    for r in config.relations:
        if r.name in seen_relations:
            problems.append(f"{where}: relation `{r.name}` is defined twice")
        if r.name in seen_names:
            problems.append(f"{where}: relation `{r.name}` has the name of a field")
        seen_relations.add(r.name)
    return problems


def _check_rules(f: FieldConfig) -> list[str]:
    r = f.rules
    given = {key for key, attr in _RULE_KEYS if key != "isRequired" and getattr(r, attr) is not None}
    if r.enum is not None:
        given.add("enum")
    if r.constraints:
        given.add("constraints")
    problems = []
    not_allowed = sorted(given - _RULES_BY_TYPE[f.type])
    if not_allowed:
        keys = ", ".join(not_allowed)
        problems.append(f"Validation rule(s): `{keys}` is not allowed for field type `{f.type.value}`.")
    bounds = [(key, getattr(r, key)) for key in ("min", "max") if getattr(r, key) is not None]
    if f.type in (FieldType.INTEGER, FieldType.DECIMAL, FieldType.FLOAT):
        for key, value in bounds:
            if not _is_number(value):
                problems.append(f"`{key}` must be a number")
            elif f.type is FieldType.INTEGER and not isinstance(value, int):
                problems.append(f"`{key}` must be an integer")
    if f.type in (FieldType.DATE, FieldType.DATETIME):
        parse = dt.date.fromisoformat if f.type is FieldType.DATE else dt.datetime.fromisoformat
        for key, value in bounds:
            try:
                parse(value)
            except (TypeError, ValueError):
                problems.append(f"`{key}` must be an ISO 8601 {f.type.value} string")
    if len(bounds) == 2 and not problems:
        low, high = bounds[0][1], bounds[1][1]
        comparable = (_is_number(low) and _is_number(high)) or (isinstance(low, str) and isinstance(high, str))
        if comparable and low > high:
            problems.append("`min` must not exceed `max`")
    if r.min_length is not None and r.max_length is not None and r.min_length > r.max_length:
        problems.append("`minLength` must not exceed `maxLength`")
    if r.scale is not None and r.precision is not None and r.scale >= r.precision:
        problems.append("`scale` must be smaller than `precision`")
    if r.scale is not None and r.precision is None:
        problems.append("`scale` needs `precision`")
    if r.enum is not None:
        wanted = int if f.type is FieldType.INTEGER else str
        if any(not isinstance(v, wanted) or isinstance(v, bool) for v in r.enum):
            problems.append(f"every `enum` value must be {'an integer' if wanted is int else 'a string'}")
    return problems


def check_entities(
    configs: Sequence[EntityConfig],
    tables: Mapping[str, Table],
    deny: Iterable[str] = (),
) -> dict[str, list[str]]:
    """Database checks for a complete set of configurations; returns problems per alias (empty: all fine).

    ``tables`` holds the reflected tables that exist, keyed by name.
    """
    deny = list(deny)
    problems: dict[str, list[str]] = {c.alias: check_shape(c) for c in configs}
    by_alias = {c.alias: c for c in configs}
    aliases_seen: dict[str, int] = {}
    tables_seen: dict[str, int] = {}
    for c in configs:
        aliases_seen[c.alias.lower()] = aliases_seen.get(c.alias.lower(), 0) + 1
        tables_seen[c.table_name] = tables_seen.get(c.table_name, 0) + 1
    for c in configs:
        out = problems[c.alias]
        where = f"`{c.alias}`"
        if aliases_seen[c.alias.lower()] > 1:
            out.append(f"{where}: Table alias is not unique for dynamic entity (aliases ignore case).")
        if tables_seen[c.table_name] > 1:
            out.append(f"{where}: Table name is not unique for dynamic entity. Table: {c.table_name}")
        if is_denied(c.table_name, deny):
            out.append(f"{where}: Table name is not allowed for dynamic entity. Table: {c.table_name}")
            continue
        table = tables.get(c.table_name)
        if table is None:
            out.append(f"{where}: table `{c.table_name}` does not exist")
            continue
        reads = denied_reads(table)
        if reads is None or reads:
            out.append(f"{where}: Table name is not allowed for dynamic entity. Table: {c.table_name} "
                       f"({_denied_view(reads)})")
            continue
        for f in c.fields:
            column = table.columns.get(f.field_name)
            if column is None:
                out.append(f"{where}: field `{f.field_name}`: no such column in table `{c.table_name}`")
                continue
            fitting = compatible_types(column.type)
            if f.type not in fitting:
                hint = ", ".join(t.value for t in fitting) or "none: this column type is not supported"
                out.append(
                    f"{where}: field `{f.field_name}`: type `{f.type.value}` does not fit column type "
                    f"{column.type} (fitting: {hint})"
                )
            length = string_length(column.type)
            if f.rules.max_length is not None and length is not None and f.rules.max_length > length:
                out.append(
                    f"{where}: field `{f.field_name}`: maxLength {f.rules.max_length} exceeds the column's "
                    f"length {length}"
                )
        if c.identifier in table.columns and any(f.field_name == c.identifier for f in c.enabled_fields):
            problem = identifier_problem(table, c.identifier)
            if problem is not None:
                out.append(f"{where}: {problem}")
        for r in c.relations:
            at = f"{where}: relation `{r.name}`"
            child = by_alias.get(r.child_alias)
            if child is None:
                out.append(f"{at}: child entity `{r.child_alias}` is not configured")
                continue
            parent_field = next((f for f in c.enabled_fields if f.field_name == r.parent_field), None)
            child_field = next((f for f in child.enabled_fields if f.field_name == r.child_field), None)
            if parent_field is None:
                out.append(f"{at}: parent field `{r.parent_field}` is not a configured field of `{c.alias}`")
            if child_field is None:
                out.append(f"{at}: child field `{r.child_field}` is not a configured field of `{child.alias}`")
            if parent_field and child_field and parent_field.type is not child_field.type:
                out.append(
                    f"{at}: `{r.parent_field}` ({parent_field.type.value}) and `{r.child_field}` "
                    f"({child_field.type.value}) have different types"
                )
    return {alias: found for alias, found in problems.items() if found}


def _denied_view(reads: tuple[str, ...] | None) -> str:
    if reads is None:
        return "a view whose definition cannot be read"
    names = ", ".join(f"`{name}`" for name in reads)
    return f"a view that reads the denied table{'s' if len(reads) > 1 else ''} {names}"


_IDENTIFIER_RULE = "The identifier must be the primary key or a single-column UNIQUE NOT NULL key"


def identifier_candidates(table: Table) -> list[str]:
    """The columns that can be the identifier, in table order (see the module docstring)."""
    if is_view(table):
        return []
    primary = list(table.primary_key.columns)
    unique, _restricted = _unique_columns(table)
    return [
        column.name for column in table.columns
        if (len(primary) == 1 and column is primary[0]) or (column.name in unique and column.nullable is False)
    ]


def identifier_problem(table: Table, column: str) -> str | None:
    """Why ``column`` cannot be the identifier of ``table`` (None: it can), naming the columns that can."""
    eligible = identifier_candidates(table)
    if column in eligible:
        return None
    primary = [c.name for c in table.primary_key.columns]
    unique, restricted = _unique_columns(table)
    if is_view(table):
        reason = f"`{table.name}` is a view, and views declare no keys"
    elif column in primary:
        reason = (f"it is part of the composite primary key ({', '.join(primary)}), and composite keys are not "
                  "supported as identifiers")
    elif column in unique:
        reason = "its UNIQUE key allows NULL"
    elif column in restricted:
        reason = f"its UNIQUE index `{restricted[column]}` covers only some rows or a prefix of the values"
    else:
        reason = "no primary key, UNIQUE constraint or unique index covers exactly this column"
    return (f"identifier `{column}` is not a unique key of `{table.name}`: {reason}. {_IDENTIFIER_RULE}; "
            f"eligible here: {', '.join(eligible) or 'none'}")


def _unique_columns(table: Table) -> tuple[set[str], dict[str, str]]:
    """Columns that a single-column UNIQUE constraint or unique index covers; and, by column, the unique
    indexes that do not make their column unique (partial, or over a prefix of the values)."""
    unique: set[str] = set()
    restricted: dict[str, str] = {}
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) == 1:
            unique.add(next(iter(constraint.columns)).name)
    for index in table.indexes:
        expressions = list(index.expressions)
        if not index.unique or len(expressions) != 1 or not isinstance(expressions[0], Column):
            continue
        if _covers_part(index):
            restricted.setdefault(expressions[0].name, str(index.name))
        else:
            unique.add(expressions[0].name)
    return unique, restricted


def _covers_part(index: Index) -> bool:
    """A partial index (``postgresql_where``, ``sqlite_where``) or one over a prefix (``mysql_length``)."""
    return any(
        value is not None and not (isinstance(value, (dict, list, tuple, str)) and not value)  # a clause has no bool
        for key, value in index.dialect_kwargs.items() if key.endswith(("_where", "_length"))
    )
