"""The component schemas of entity values and bodies, as one principal may see them.

Fed by a ``Snapshot`` (fields, their codecs, rules and flags, relations) and what the principal may do; feeds
``document``, whose paths ask for the schemas they refer to. Request schemas come from field types, rules and
flags (``required`` from ``isRequired``); a nested child's body has no foreign key, which the server fills in
from the parent; response schemas carry nullability from the columns and ``readOnly`` for a field dxapi keeps at
the database clock (``autoValue``), and a write answer to a principal that may not read the entity is its
identifier (as the server answers). Relations and ``include`` lead only to entities the principal may read,
nested bodies only to entities it may write.
"""

from __future__ import annotations

from typing import Any

from dxapi.auth.scopes import READ, WRITE
from dxapi.openapi.envelopes import Allows, error_schemas, ref
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, Snapshot

MODES = ("create", "update", "replace")  # the item bodies of POST, PATCH and PUT batches


class Schemas:
    """The schemas of one snapshot as one principal may see it (``allows(alias, action)``), collected in
    ``schemas`` as they are asked for."""

    def __init__(self, snapshot: Snapshot, allows: Allows) -> None:
        self.snapshot = snapshot
        self.allows = allows
        self.schemas: dict[str, Any] = error_schemas()

    def may(self, alias: str, action: str) -> bool:
        return alias in self.snapshot.entities and self.allows(alias, action)

    def offers(self, alias: str, mode: str) -> bool:
        """A body of ``mode`` can be written: create needs a creatable field, the other modes an editable one."""
        if not self.may(alias, WRITE):
            return False
        fields = self.snapshot.entities[alias].fields
        return any(f.config.is_creatable if mode == "create" else f.config.is_editable for f in fields)

    def item_schema(self, entity: EntitySnapshot) -> dict[str, Any]:
        properties = {field.name: _output_schema(field) for field in entity.fields}
        for name, relation in entity.relations.items():
            if self.may(relation.child_alias, READ):  # `include` of it is refused otherwise
                properties[name] = {"type": "array", "items": ref(relation.child_alias)}
        return {"type": "object", "required": list(entity.names), "properties": properties}

    def saved_schema(self, entity: EntitySnapshot) -> dict[str, Any]:
        """A write answer to a principal that may not read the entity: the identifier, and nested rows."""
        identifier = entity.identifier
        properties: dict[str, Any] = {identifier.name: _output_schema(identifier)}
        for name, relation in entity.relations.items():
            if relation.is_editable and any(self.offers(relation.child_alias, m) for m in MODES):
                properties[name] = {"type": "array", "items": self.answer_ref(relation.child_alias)}
        return {"type": "object", "required": [identifier.name], "properties": properties}

    def answer_ref(self, alias: str) -> dict[str, Any]:
        return ref(alias if self.may(alias, READ) else f"{alias}-saved")

    def input_schema(self, entity: EntitySnapshot, mode: str, covered: FieldSnapshot | None = None) -> dict[str, Any]:
        """``create`` (POST items): creatable fields; ``update`` (PATCH items): editable fields and the identifier,
        which is required; ``replace`` (PUT items): like update, with the required fields required;
        ``update-one`` (PATCH /{id}): editable fields. ``covered``: the foreign key of a nested child, which
        the server fills in from the parent row."""
        fields = [f for f in entity.fields if f is not covered and _accepts(entity, f, mode)]
        properties: dict[str, Any] = {f.name: _input_value(f) for f in fields}
        required = [f.name for f in fields if _requires(entity, f, mode)]
        if mode == "update":
            required.append(entity.identifier.name)
        relation_mode = "update" if mode == "update-one" else mode
        for name, relation in entity.relations.items():
            if relation.is_editable and self.offers(relation.child_alias, relation_mode):
                properties[name] = {"type": "array", "items": self.nested_ref(entity, name, relation_mode)}
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema

    def nested_ref(self, parent: EntitySnapshot, name: str, mode: str) -> dict[str, Any]:
        """Items of a nested write under ``parent``'s relation ``name``: one schema per relation and mode."""
        key = f"{parent.alias}.{name}-{mode}"  # aliases and relation names hold no dot: never a clash
        if key not in self.schemas:
            relation = parent.relations[name]
            self.schemas[key] = {}  # taken before recursing: relations may form a cycle
            child = self.snapshot.entities[relation.child_alias]
            self.schemas[key] = self.input_schema(child, mode, covered=relation.child_field)
        return ref(key)


def _value_schema(field: FieldSnapshot, *, for_input: bool) -> dict[str, Any]:
    schema = field.codec.schema(field.config.rules, field.column, for_input=for_input)
    if field.config.description:
        schema["description"] = field.config.description
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema or "oneOf" in schema:
        return {"oneOf": [schema, {"type": "null"}]} if schema else schema
    return {**schema, "type": [schema["type"], "null"]}


def _output_schema(field: FieldSnapshot) -> dict[str, Any]:
    schema = _value_schema(field, for_input=False)
    # Output mirrors what the database holds: rules constrain input only.
    schema = {k: v for k, v in schema.items() if k in ("type", "format", "oneOf", "description", "pattern")}
    schema = _nullable(schema) if field.column.nullable or field.codec.answers_null else schema
    if field.config.auto_value is not None:  # dxapi writes it from the database clock; a client value is 1304
        schema = {**schema, "readOnly": True}
    return schema


def _input_value(field: FieldSnapshot) -> dict[str, Any]:
    value = _value_schema(field, for_input=True)
    return _nullable(value) if field.column.nullable else value


def _accepts(entity: EntitySnapshot, field: FieldSnapshot, mode: str) -> bool:
    """Whether an item body of ``mode`` may carry ``field`` (see ``Schemas.input_schema``)."""
    if mode == "create":
        return field.config.is_creatable
    if mode == "update-one":  # /{id} names the row; a non-editable identifier in the body is refused
        return field.config.is_editable
    return field.config.is_editable or field is entity.identifier


def _requires(entity: EntitySnapshot, field: FieldSnapshot, mode: str) -> bool:
    """Whether an item body of ``mode`` must carry ``field`` (the identifier of PATCH items is added apart)."""
    # PUT resets an omitted editable field to NULL: where the column refuses that, it must be sent.
    resets = mode == "replace" and field.config.is_editable and not field.column.nullable
    needed = (mode in ("create", "replace") and field.config.rules.is_required) or resets
    return needed and field is not entity.identifier
