"""Every check a configuration must pass before it is saved or served, each reporting every problem found.

1. shape (``check_shape``, no database): alias, visible names, identifier, relation names, each field's
   rules (``rules.check_rules``) and ``autoValue``; the JSON Schema ran before (``installer.parse_entry``);
2. database (``check_entities``) against reflected tables: column exists, type fits, identifier a unique key
   (``identifiers``), alias and table unique, table not deny-listed and not a view reading a denied table,
   relation fields configured (and not maintained by dxapi).

Fed by ``EntityConfig`` and reflected tables; feeds ``installer`` (shape problems of an entry), ``store``
(a save refuses on any problem) and ``snapshot`` (entities with problems are served as unavailable).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Table

from dxapi.registry.identifiers import identifier_problem
from dxapi.registry.model import (
    ALIAS_PATTERN,
    RESERVED_ALIASES,
    VISIBLE_NAME_PATTERN,
    EntityConfig,
    FieldConfig,
    RelationConfig,
)
from dxapi.registry.rules import check_rules
from dxapi.schema.reflect import denied_reads, is_denied
from dxapi.schema.typemap import compatible_types, string_length
from dxapi.types import FieldType

_IDENTIFIER_TYPES = (FieldType.INTEGER, FieldType.STRING, FieldType.UUID)
_CLOCK_TYPES = (FieldType.DATE, FieldType.DATETIME)


# --- shape ----------------------------------------------------------------------------------------------------


def check_shape(config: EntityConfig) -> list[str]:
    """Checks that need no database: alias, names, identifier, rules allowed per type and consistent."""
    where = f"`{config.alias}`"
    return [
        *_alias_problems(config, where),
        *_field_problems(config, where),
        *_identifier_shape(config, where),
        *_relation_names(config, where),
    ]


def _alias_problems(config: EntityConfig, where: str) -> list[str]:
    problems = []
    if not ALIAS_PATTERN.fullmatch(config.alias):
        problems.append(
            f"{where}: Resource name `{config.alias}` is not valid. Allowed characters: a-z, A-Z, 0-9, _ and -"
        )
    if config.alias.lower() in RESERVED_ALIASES:
        problems.append(f"{where}: the alias `{config.alias}` is reserved for dxapi's own pages")
    return problems


def _field_problems(config: EntityConfig, where: str) -> list[str]:
    problems: list[str] = []
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
                f"{at}: visible name `{f.visible_name}` may only hold a-z, A-Z, 0-9, _ and - and must not start with -"
            )
        problems.extend(f"{at}: {p}" for p in check_rules(f))
        if f.auto_value is not None:
            problems.extend(f"{at}: {p}" for p in _auto_value_problems(config, f))
    return problems


def _auto_value_problems(config: EntityConfig, f: FieldConfig) -> list[str]:
    """A field dxapi keeps at the database's clock: a date or date-time that no client may set."""
    problems = []
    what = f"`autoValue: {f.auto_value}`"
    if f.type not in _CLOCK_TYPES:
        problems.append(f"{what} needs a field of type date or datetime, not `{f.type.value}`: dxapi writes the time")
    if f.field_name == config.identifier:
        problems.append(f"{what} is not possible on the identifier: it names the row and must not change")
    if f.is_creatable or f.is_editable:
        problems.append(
            f"{what}: dxapi sets this field itself, so `isCreatable` and `isEditable` must be false "
            "(a client value is refused with 1304)"
        )
    if f.rules.is_required:
        problems.append(f"{what}: `isRequired` cannot hold, clients never send this field")
    return problems


def _identifier_shape(config: EntityConfig, where: str) -> list[str]:
    identifier = next((f for f in config.enabled_fields if f.field_name == config.identifier), None)
    if identifier is None:
        return [f"{where}: Identifier is not defined in field definitions."]
    if identifier.type not in _IDENTIFIER_TYPES:
        return [f"{where}: the identifier must be of type integer, string or uuid"]
    return []


def _relation_names(config: EntityConfig, where: str) -> list[str]:
    problems = []
    field_names = {f.visible_name for f in config.enabled_fields}
    seen_relations: set[str] = set()
    for r in config.relations:
        if r.name in seen_relations:
            problems.append(f"{where}: relation `{r.name}` is defined twice")
        if r.name in field_names:
            problems.append(f"{where}: relation `{r.name}` has the name of a field")
        seen_relations.add(r.name)
    return problems


# --- database -------------------------------------------------------------------------------------------------


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
    aliases_seen = Counter(c.alias.lower() for c in configs)
    tables_seen = Counter(c.table_name for c in configs)
    for c in configs:
        out = problems[c.alias]
        where = f"`{c.alias}`"
        if aliases_seen[c.alias.lower()] > 1:
            out.append(f"{where}: Table alias is not unique for dynamic entity (aliases ignore case).")
        if tables_seen[c.table_name] > 1:
            out.append(f"{where}: Table name is not unique for dynamic entity. Table: {c.table_name}")
        table, refused = _servable_table(c, tables, deny)
        out.extend(f"{where}: {p}" for p in refused)
        if table is not None:
            out.extend(f"{where}: {p}" for p in _table_problems(c, table))
            for r in c.relations:
                out.extend(f"{where}: relation `{r.name}`: {p}" for p in _relation_problems(c, r, by_alias))
    return {alias: found for alias, found in problems.items() if found}


def _servable_table(c: EntityConfig, tables: Mapping[str, Table], deny: list[str]) -> tuple[Table | None, list[str]]:
    """The entity's table, or None and why it cannot be served (deny-listed, missing, a view reading a denied
    table); the further checks only run on a servable table."""
    if is_denied(c.table_name, deny):
        return None, [f"Table name is not allowed for dynamic entity. Table: {c.table_name}"]
    table = tables.get(c.table_name)
    if table is None:
        return None, [f"table `{c.table_name}` does not exist"]
    reads = denied_reads(table)
    if reads is None or reads:
        return None, [f"Table name is not allowed for dynamic entity. Table: {c.table_name} ({_denied_view(reads)})"]
    return table, []


def _table_problems(c: EntityConfig, table: Table) -> list[str]:
    problems = [p for f in c.fields for p in _column_problems(c, f, table)]
    if c.identifier in table.columns and any(f.field_name == c.identifier for f in c.enabled_fields):
        problem = identifier_problem(table, c.identifier)
        if problem is not None:
            problems.append(problem)
    return problems


def _column_problems(c: EntityConfig, f: FieldConfig, table: Table) -> list[str]:
    column = table.columns.get(f.field_name)
    if column is None:
        return [f"field `{f.field_name}`: no such column in table `{c.table_name}`"]
    problems = []
    fitting = compatible_types(column.type)
    if f.type not in fitting:
        hint = ", ".join(t.value for t in fitting) or "none: this column type is not supported"
        problems.append(
            f"field `{f.field_name}`: type `{f.type.value}` does not fit column type {column.type} (fitting: {hint})"
        )
    length = string_length(column.type)
    if f.rules.max_length is not None and length is not None and f.rules.max_length > length:
        problems.append(f"field `{f.field_name}`: maxLength {f.rules.max_length} exceeds the column's length {length}")
    return problems


def _relation_problems(c: EntityConfig, r: RelationConfig, by_alias: Mapping[str, EntityConfig]) -> list[str]:
    child = by_alias.get(r.child_alias)
    if child is None:
        return [f"child entity `{r.child_alias}` is not configured"]
    problems = []
    parent_field = next((f for f in c.enabled_fields if f.field_name == r.parent_field), None)
    child_field = next((f for f in child.enabled_fields if f.field_name == r.child_field), None)
    if parent_field is None:
        problems.append(f"parent field `{r.parent_field}` is not a configured field of `{c.alias}`")
    if child_field is None:
        problems.append(f"child field `{r.child_field}` is not a configured field of `{child.alias}`")
    for side, key in (("parent", parent_field), ("child", child_field)):
        if key is not None and key.auto_value is not None:
            # A key that moves with every write would detach the children from their parent.
            problems.append(f"{side} field `{key.field_name}` has an `autoValue`: a relation key must not change")
    if parent_field and child_field and parent_field.type is not child_field.type:
        problems.append(
            f"`{r.parent_field}` ({parent_field.type.value}) and `{r.child_field}` "
            f"({child_field.type.value}) have different types"
        )
    return problems


def _denied_view(reads: tuple[str, ...] | None) -> str:
    if reads is None:
        return "a view whose definition cannot be read"
    names = ", ".join(f"`{name}`" for name in reads)
    return f"a view that reads the denied table{'s' if len(reads) > 1 else ''} {names}"
