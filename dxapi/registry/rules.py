"""Validation rules per field type: which rules each type allows (``RULES_BY_TYPE``, the one table to edit
when a type gains or loses a rule), the installer key of each rule, and the checks that a field's rules are
allowed and consistent (``min`` ≤ ``max`` …).

Fed by a ``FieldConfig``; feeds ``checks.check_shape`` (every configuration passes it before it is saved or
served) and ``installer`` (rule keys when writing the installer format).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dxapi.registry.model import FieldConfig, FieldRules
from dxapi.types import FieldType

RULES_BY_TYPE: dict[FieldType, frozenset[str]] = {
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

# Installer key → FieldRules attribute, for the scalar rules (`enum` and `constraints` are lists).
RULE_KEYS = (
    ("isRequired", "is_required"), ("min", "min"), ("max", "max"), ("minLength", "min_length"),
    ("maxLength", "max_length"), ("precision", "precision"), ("scale", "scale"), ("pattern", "pattern"),
    ("format", "format"),
)

_NUMERIC = (FieldType.INTEGER, FieldType.DECIMAL, FieldType.FLOAT)
_TEMPORAL = (FieldType.DATE, FieldType.DATETIME)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_rules(f: FieldConfig) -> list[str]:
    """Every problem with the rules of one field: not allowed for its type, bounds of the wrong kind, bounds,
    lengths or precision out of order, enum values of the wrong kind."""
    bounds = [(key, getattr(f.rules, key)) for key in ("min", "max") if getattr(f.rules, key) is not None]
    problems = _not_allowed(f) + _bound_kinds(f.type, bounds)
    if not problems:  # comparing bounds of the wrong kind would only repeat the problem
        problems += _bound_order(bounds)
    return problems + _length_order(f.rules) + _enum_kinds(f)


def _not_allowed(f: FieldConfig) -> list[str]:
    r = f.rules
    given = {key for key, attr in RULE_KEYS if key != "isRequired" and getattr(r, attr) is not None}
    if r.enum is not None:
        given.add("enum")
    if r.constraints:
        given.add("constraints")
    not_allowed = sorted(given - RULES_BY_TYPE[f.type])
    if not not_allowed:
        return []
    return [f"Validation rule(s): `{', '.join(not_allowed)}` is not allowed for field type `{f.type.value}`."]


def _bound_kinds(type_: FieldType, bounds: list[tuple[str, Any]]) -> list[str]:
    problems = []
    if type_ in _NUMERIC:
        for key, value in bounds:
            if not _is_number(value):
                problems.append(f"`{key}` must be a number")
            elif type_ is FieldType.INTEGER and not isinstance(value, int):
                problems.append(f"`{key}` must be an integer")
    if type_ in _TEMPORAL:
        parse = dt.date.fromisoformat if type_ is FieldType.DATE else dt.datetime.fromisoformat
        for key, value in bounds:
            try:
                parse(value)
            except (TypeError, ValueError):
                problems.append(f"`{key}` must be an ISO 8601 {type_.value} string")
    return problems


def _bound_order(bounds: list[tuple[str, Any]]) -> list[str]:
    if len(bounds) != 2:
        return []
    low, high = bounds[0][1], bounds[1][1]
    comparable = (_is_number(low) and _is_number(high)) or (isinstance(low, str) and isinstance(high, str))
    return ["`min` must not exceed `max`"] if comparable and low > high else []


def _length_order(r: FieldRules) -> list[str]:
    problems = []
    if r.min_length is not None and r.max_length is not None and r.min_length > r.max_length:
        problems.append("`minLength` must not exceed `maxLength`")
    if r.scale is not None and r.precision is not None and r.scale >= r.precision:
        problems.append("`scale` must be smaller than `precision`")
    if r.scale is not None and r.precision is None:
        problems.append("`scale` needs `precision`")
    return problems


def _enum_kinds(f: FieldConfig) -> list[str]:
    if f.rules.enum is None:
        return []
    wanted = int if f.type is FieldType.INTEGER else str
    if any(not isinstance(v, wanted) or isinstance(v, bool) for v in f.rules.enum):
        return [f"every `enum` value must be {'an integer' if wanted is int else 'a string'}"]
    return []
