"""The configuration model: frozen dataclasses for one entity's configuration, the names it may use, and the
error a refused configuration raises.

Built by ``installer.parse_entry`` (import file, admin form, stored ``dx_entity.definition``) and checked by
``checks``; feeds ``store`` (save/export), ``snapshot`` (runtime view), ``validate`` and the admin forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dxapi.types import FieldType

ALIAS_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")
# Fixed paths under the API prefix (the docs page and its files) that an alias would shadow.
RESERVED_ALIASES = frozenset({"docs", "static"})
# Visible names appear in `filter[x.name]`, `sort=-name` and `include=a.b`: no dots, brackets, commas, and
# no leading dash.
VISIBLE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


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
    # `createdAt` / `updatedAt`: dxapi writes the database's clock into the column on every insert (both) and
    # update (`updatedAt`) it makes; clients may never set it (checks.py: not creatable, not editable).
    auto_value: str | None = None


# The values of a field's `autoValue`; `updatedAt` is written on updates too.
AUTO_VALUES = ("createdAt", "updatedAt")
CREATED_AT, UPDATED_AT = AUTO_VALUES


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
    change_feed: bool = False  # `_changes` served; capture installed on the table (dxapi.feed)

    @property
    def enabled_fields(self) -> tuple[FieldConfig, ...]:
        return tuple(f for f in self.fields if f.is_enabled)
