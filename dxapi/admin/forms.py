"""Admin forms ↔ configuration: suggestions for a new entity, and the edit grid parsed into an EntityConfig.

A column named like a creation or change timestamp (``created_at``, ``date_created``, ``updated_at``,
``last_modified`` …) of a date or date-time type is suggested as ``autoValue`` (``suggest_auto_value``): set on a
new entity's grid, only offered as a hint next to a stored one, whose configuration the page never changes.

Fed by reflected tables and submitted forms; feeds ``store.save_entities``, which validates exactly as an
import does. Parsing never trusts the form: unknown columns are ignored, numbers are parsed strictly, and
whatever cannot be parsed is reported next to its row instead of being guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import jsonschema
from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy import Column, Table

from dxapi.registry.identifiers import identifier_candidates
from dxapi.registry.model import (
    AUTO_VALUES,
    CREATED_AT,
    UPDATED_AT,
    EntityConfig,
    FieldConfig,
    FieldRules,
    RelationConfig,
)
from dxapi.schema.typemap import compatible_types, maintained_by_database, string_length
from dxapi.types import FieldType

_FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER  # the import's check of `pattern`


@dataclass(frozen=True, slots=True)
class GridProblems:
    by_column: dict[str, list[str]]
    general: list[str]


def suggest_alias(table_name: str) -> str:
    """``spy_tax_rate`` → ``tax-rates``, ``shop_product`` → ``products``, ``order`` → ``orders``."""
    words = [w for w in re.split(r"[^a-zA-Z0-9]+", table_name.lower()) if w]
    if len(words) > 1 and len(words[0]) <= 4:
        words = words[1:]  # a short first word is a module prefix (spy_, pyz_, shop_)
    words = words or ["entity"]
    words[-1] = pluralize(words[-1])
    return "-".join(words)


def pluralize(word: str) -> str:
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def suggest_visible_name(column: str) -> str:
    """``id_tax_rate`` → ``idTaxRate``: the camelCase most JSON clients expect."""
    parts = [p for p in re.split(r"[^a-zA-Z0-9]+", column) if p]
    if not parts:
        return "field"
    text = parts[0][:1].lower() + parts[0][1:] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return text if text[0].isalnum() or text[0] == "_" else f"f{text}"


# Column names (lower case, without separators) that say "when the row was created / last changed".
_CREATED_NAMES = frozenset(
    {"createdat", "created", "createdon", "createddate", "createdtime", "datecreated", "creationdate", "creationtime"}
    | {"createtime", "createdate", "insertedat", "addedat", "dateadded"}
)
_UPDATED_NAMES = frozenset(
    {"updatedat", "updated", "updatedon", "updateddate", "updatedtime", "dateupdated", "updatetime", "lastupdated"}
    | {"lastupdate", "modifiedat", "modified", "modifiedon", "modifieddate", "modifiedtime", "datemodified"}
    | {"lastmodified", "lastmodifiedat", "lastmodifieddate", "changedat", "lastchanged", "lastchangedat"}
)
_CLOCK_TYPES = (FieldType.DATE, FieldType.DATETIME)


def suggest_auto_value(column: Column[Any]) -> str | None:
    """``createdAt``/``updatedAt`` for a date or date-time column named like one, else None.

    >>> from sqlalchemy import DateTime, Integer
    >>> suggest_auto_value(Column("date_created", DateTime))
    'createdAt'
    >>> suggest_auto_value(Column("lastModified", DateTime)), suggest_auto_value(Column("updated", Integer))
    ('updatedAt', None)
    """
    fitting = compatible_types(column.type)
    if column.primary_key or not fitting or fitting[0] not in _CLOCK_TYPES:
        return None  # an epoch number or a text column may mean the same, but dxapi writes a date-time
    name = re.sub(r"[^a-z0-9]", "", column.name.lower())
    if name in _CREATED_NAMES:
        return CREATED_AT
    if name in _UPDATED_NAMES:
        return UPDATED_AT
    return None


def suggest_entity(table: Table, alias: str) -> EntityConfig:
    """An inactive configuration with every column, types guessed, keys read-only, NOT NULL as required, and
    timestamps named like ``created_at``/``updated_at`` kept by dxapi (``autoValue``)."""
    # A column that can identify a row; with none, the save refuses the entity and says why.
    candidates = identifier_candidates(table)
    primary = [c.name for c in table.primary_key.columns]
    identifier = (candidates or primary or [next(iter(table.columns)).name])[0]
    fields = []
    for column in table.columns:
        fitting = compatible_types(column.type)
        if not fitting:
            continue  # binary and other unsupported columns are not offered
        auto = suggest_auto_value(column) if column.name != identifier else None
        generated = column.primary_key or maintained_by_database(column) or auto is not None
        required = not column.nullable and column.server_default is None and not generated
        fields.append(
            FieldConfig(
                field_name=column.name,
                visible_name=suggest_visible_name(column.name),
                type=fitting[0],
                is_creatable=not generated,
                is_editable=not generated,
                rules=FieldRules(is_required=required, max_length=string_length(column.type)),
                auto_value=auto,
            )
        )
    return EntityConfig(
        alias=alias,
        table_name=table.name,
        is_active=False,
        identifier=identifier,
        is_deletable=False,
        fields=tuple(fields),
    )


_INT64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
# What a number cell may hold: what a rule can mean and what can be stored (JSON, 64-bit integers, no inf/nan).
_NUMBERS: dict[str, TypeAdapter[Any]] = {
    "int": TypeAdapter(_INT64),
    "float": TypeAdapter(Annotated[float, Field(allow_inf_nan=False)]),
    "min length": TypeAdapter(Annotated[int, Field(ge=0, le=2**31 - 1)]),
    "max length": TypeAdapter(Annotated[int, Field(ge=0, le=2**31 - 1)]),
    "precision": TypeAdapter(Annotated[int, Field(ge=1, le=1000)]),
    "scale": TypeAdapter(Annotated[int, Field(ge=0, le=1000)]),
}


def _number(text: str, kind: type, column: str, key: str, problems: dict[str, list[str]]) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return _NUMBERS.get(key, _NUMBERS[kind.__name__]).validate_python(text)
    except ValidationError as exc:
        shown = text if len(text) <= 40 else text[:40] + "…"
        problems.setdefault(column, []).append(f"{key}: `{shown}`: {exc.errors()[0]['msg']}")
        return None


def _enum_value(text: str, field_type: FieldType, column: str, problems: dict[str, list[str]]) -> str | int:
    if field_type is not FieldType.INTEGER or not re.fullmatch(r"-?\d+", text):
        return text
    found = _number(text, int, column, "enum", problems)
    return text if found is None else int(found)


_TEXT_CELLS = (
    "column",
    "name",
    "type",
    "min",
    "max",
    "min_length",
    "max_length",
    "precision",
    "scale",
    "pattern",
    "enum",
    "description",
    "auto",
)


def parse_grid(form: Mapping[str, str], current: EntityConfig) -> tuple[EntityConfig, GridProblems]:
    """The submitted edit grid → a configuration (relations kept), and what could not be read."""
    problems: dict[str, list[str]] = {}
    fields = []
    index = 0
    while f"f-{index}-column" in form:
        field = _grid_row(_Row(form, f"f-{index}-"), problems)
        if field is not None:
            fields.append(field)
        index += 1
    config = EntityConfig(
        alias=form.get("alias", current.alias).strip(),
        table_name=current.table_name,
        is_active=form.get("is_active") == "on",
        identifier=form.get("identifier", current.identifier),
        is_deletable=form.get("is_deletable") == "on",
        fields=tuple(fields),
        relations=current.relations,
        change_feed=form.get("change_feed") == "on",
    )
    return config, GridProblems(problems, [])


@dataclass(frozen=True, slots=True)
class _Row:
    """The cells of one grid row (``f-{index}-{key}``)."""

    form: Mapping[str, str]
    prefix: str

    @property
    def column(self) -> str:
        return self.form[self.prefix + "column"]

    def text(self, key: str) -> str:
        return self.form.get(self.prefix + key, "").strip()

    def flag(self, key: str) -> bool:
        return self.form.get(self.prefix + key) == "on"


def _grid_row(row: _Row, problems: dict[str, list[str]]) -> FieldConfig | None:
    """One row → a field; None (and the reason in ``problems``) when its cells cannot be read at all."""
    column = row.column
    with_nul = [key for key in _TEXT_CELLS if "\x00" in row.form.get(row.prefix + key, "")]
    if with_nul:
        problems.setdefault(column, []).append(f"{', '.join(with_nul)}: NUL characters are not allowed")
        return None
    try:
        field_type = FieldType(row.text("type"))
    except ValueError:
        problems.setdefault(column, []).append(f"unknown type `{row.text('type')}`")
        return None
    low, high = _grid_bounds(row, field_type, problems)
    enum_text = row.text("enum")
    enum: tuple[Any, ...] | None = None
    if enum_text:
        values = [v.strip() for v in enum_text.split(",") if v.strip()]
        enum = tuple(_enum_value(v, field_type, column, problems) for v in values)
    pattern = row.text("pattern") or None
    if pattern is not None and not _FORMATS.conforms(pattern, "regex"):
        problems.setdefault(column, []).append(f"pattern: `{pattern}` is not a valid regular expression")
    auto = row.text("auto") or None
    if auto is not None and auto not in AUTO_VALUES:
        problems.setdefault(column, []).append(f"auto value: `{auto[:40]}` is none of {', '.join(AUTO_VALUES)}")
        auto = None
    return FieldConfig(
        field_name=column,
        visible_name=row.text("name") or column,
        type=field_type,
        is_creatable=row.flag("creatable"),
        is_editable=row.flag("editable"),
        is_enabled=row.flag("enabled"),
        description=row.text("description") or None,
        auto_value=auto,
        rules=FieldRules(
            is_required=row.flag("required"),
            min=low,
            max=high,
            min_length=_number(row.text("min_length"), int, column, "min length", problems),
            max_length=_number(row.text("max_length"), int, column, "max length", problems),
            precision=_number(row.text("precision"), int, column, "precision", problems),
            scale=_number(row.text("scale"), int, column, "scale", problems),
            pattern=pattern,
            enum=enum,
        ),
    )


def _grid_bounds(row: _Row, field_type: FieldType, problems: dict[str, list[str]]) -> tuple[Any, Any]:
    """``min`` and ``max`` as the field type holds them: ISO text for dates, numbers otherwise."""
    if field_type in (FieldType.DATE, FieldType.DATETIME):
        return row.text("min") or None, row.text("max") or None
    numeric = float if field_type in (FieldType.FLOAT, FieldType.DECIMAL) else int
    low = _number(row.text("min"), numeric, row.column, "min", problems)
    high = _number(row.text("max"), numeric, row.column, "max", problems)
    return low, high


def assign_problems(problems: list[str], config: EntityConfig) -> GridProblems:
    """Put each message from the configuration checks next to the row it names (``field `col```)."""
    by_column: dict[str, list[str]] = {}
    general = []
    columns = {f.field_name for f in config.fields}
    for problem in problems:
        found = re.search(r"field `([^`]+)`", problem)
        if found and found.group(1) in columns:
            by_column.setdefault(found.group(1), []).append(problem.split(f"field `{found.group(1)}`: ", 1)[-1])
        else:
            general.append(problem)
    return GridProblems(by_column, general)


def relation_from_form(form: Mapping[str, str]) -> RelationConfig:
    return RelationConfig(
        name=form.get("name", "").strip(),
        child_alias=form.get("child", "").strip(),
        is_editable=form.get("editable") == "on",
        parent_field=form.get("parent_field", "").strip(),
        child_field=form.get("child_field", "").strip(),
    )
