"""Validation rules of a field: the installer key of each rule, and the checks that a field's rules are allowed
for its type and consistent (``min`` ≤ ``max`` …). Which rules a type allows and what its bounds must be is the
type's codec's (``fields.CODECS[type].rules``, ``bound_problem``).

Fed by a ``FieldConfig``; feeds ``checks.check_shape`` (every configuration passes it before it is saved or
served) and ``installer`` (rule keys when writing the installer format).
"""

from __future__ import annotations

from typing import Any

from dxapi.fields import CODECS, FieldType
from dxapi.registry.model import FieldConfig, FieldRules

# Installer key → FieldRules attribute, for the scalar rules (`enum` and `constraints` are lists).
RULE_KEYS = (
    ("isRequired", "is_required"),
    ("min", "min"),
    ("max", "max"),
    ("minLength", "min_length"),
    ("maxLength", "max_length"),
    ("precision", "precision"),
    ("scale", "scale"),
    ("pattern", "pattern"),
    ("format", "format"),
)


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
    not_allowed = sorted(given - CODECS[f.type].rules)
    if not not_allowed:
        return []
    return [f"Validation rule(s): `{', '.join(not_allowed)}` is not allowed for field type `{f.type.value}`."]


def _bound_kinds(type_: FieldType, bounds: list[tuple[str, Any]]) -> list[str]:
    codec = CODECS[type_]
    return [f"`{key}` {problem}" for key, value in bounds if (problem := codec.bound_problem(value)) is not None]


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
