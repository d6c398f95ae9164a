"""OpenAPI 3.1 document of the generated API, built from one snapshot — so it is always current.

Fed by a ``Snapshot``; feeds ``GET {prefix}/openapi.json``, the docs page and ``dxapi openapi``. Every active
entity gets its paths (only the methods its configuration allows), request schemas from field types, rules
and flags (``required`` from ``isRequired``), response schemas with nullability from the columns, the filter,
page, sort and include parameters, the error schema and the security schemes. Built once per snapshot
version (the caller caches it).
"""

from __future__ import annotations

from typing import Any

from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, Snapshot
from dxapi.settings import Settings
from dxapi.types import FieldType

ERROR_REF = {"$ref": "#/components/schemas/ErrorList"}
LOCAL_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?$"
ERROR_STATUSES = {
    "400": "Invalid request (see the error codes)", "401": "Missing or invalid credentials",
    "403": "The credentials lack a scope", "404": "Unknown alias or row", "405": "Method not allowed",
    "413": "Body too large", "415": "Body is not JSON", "422": "Relation not editable",
    "503": "Database unavailable",
}


def _value_schema(field: FieldSnapshot, *, for_input: bool) -> dict[str, Any]:
    rules = field.config.rules
    schema: dict[str, Any]
    match field.type:
        case FieldType.INTEGER:
            schema = {"type": "integer", "format": "int64"}
            if rules.min is not None:
                schema["minimum"] = rules.min
            if rules.max is not None:
                schema["maximum"] = rules.max
            if rules.enum:
                schema["enum"] = list(rules.enum)
        case FieldType.STRING:
            schema = {"type": "string"}
            for key, value in (("minLength", rules.min_length), ("maxLength", rules.max_length),
                               ("pattern", rules.pattern)):
                if value is not None:
                    schema[key] = value
            if rules.enum:
                schema["enum"] = list(rules.enum)
            if rules.format in ("email", "uuid"):
                schema["format"] = rules.format
            if rules.format == "url":
                schema["format"] = "uri"
        case FieldType.BOOLEAN:
            schema = {"type": "boolean"}
        case FieldType.DECIMAL:
            # Decimals travel as strings ("20.00") so no precision is lost; numbers are accepted on input.
            text = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
            schema = {"oneOf": [text, {"type": "number"}]} if for_input else text
        case FieldType.FLOAT:
            schema = {"type": "number"}
        case FieldType.DATE:
            schema = {"type": "string", "format": "date"}
        case FieldType.DATETIME:
            if getattr(field.column.type, "timezone", False):
                schema = {"type": "string", "format": "date-time"}
            else:  # a column without time zone holds local date-times: RFC 3339 would demand an offset
                schema = {"type": "string", "pattern": LOCAL_DATETIME,
                          "description": "ISO 8601 date-time; without an offset it is read as UTC when filtering."}
        case FieldType.UUID:
            schema = {"type": "string", "format": "uuid"}
        case FieldType.JSON:
            schema = {}
    if field.config.description:
        schema["description"] = field.config.description
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema or "oneOf" in schema:
        return {"oneOf": [schema, {"type": "null"}]} if schema else schema
    return {**schema, "type": [schema["type"], "null"]}


def _item_schema(entity: EntitySnapshot) -> dict[str, Any]:
    properties = {}
    for field in entity.fields:
        schema = _value_schema(field, for_input=False)
        # Output mirrors what the database holds: rules constrain input only.
        schema = {k: v for k, v in schema.items() if k in ("type", "format", "oneOf", "description", "pattern")}
        properties[field.name] = _nullable(schema) if field.column.nullable or field.type is FieldType.JSON else schema
    for name, relation in entity.relations.items():
        properties[name] = {"type": "array", "items": {"$ref": f"#/components/schemas/{relation.child_alias}"}}
    return {"type": "object", "required": list(entity.names), "properties": properties}


def _input_schema(entity: EntitySnapshot, snapshot: Snapshot, mode: str) -> dict[str, Any]:
    """``create`` (POST items): creatable fields; ``update`` (PATCH items): editable fields and the identifier,
    which is required; ``replace`` (PUT items): like update, with the required fields required."""
    properties: dict[str, Any] = {}
    required = []
    for field in entity.fields:
        if mode == "create":
            allowed = field.config.is_creatable
        elif mode == "update-one":  # /{id} names the row; a non-editable identifier in the body is refused
            allowed = field.config.is_editable
        else:
            allowed = field.config.is_editable or field is entity.identifier
        if not allowed:
            continue
        value = _value_schema(field, for_input=True)
        properties[field.name] = _nullable(value) if field.column.nullable else value
        if mode in ("create", "replace") and field.config.rules.is_required and field is not entity.identifier:
            required.append(field.name)
    if mode == "update":
        required.append(entity.identifier.name)
    relation_mode = "update" if mode == "update-one" else mode
    for name, relation in entity.relations.items():
        if relation.is_editable and relation.child_alias in snapshot.entities:
            ref = f"#/components/schemas/{relation.child_alias}-{relation_mode}"
            properties[name] = {"type": "array", "items": {"$ref": ref}}
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _read_parameters(entity: EntitySnapshot, settings: Settings) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": f"filter[{entity.alias}.{field.name}]", "in": "query", "required": False,
         "description": 'Equality, or a JSON operator object such as {"in":[…]}, {"gte":…}, {"isNull":true}.',
         "schema": {"type": "string"}}
        for field in entity.fields
    ]
    params += [
        {"name": "page[offset]", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
        {"name": "page[limit]", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": settings.max_page_limit}},
        {"name": "sort", "in": "query", "required": False,
         "description": "Comma-separated fields, `-` for descending: " + ", ".join(entity.names),
         "schema": {"type": "string"}},
    ]
    if entity.relations:
        params.append({"name": "include", "in": "query", "required": False,
                       "description": "Comma-separated relation chains: " + ", ".join(entity.relations),
                       "schema": {"type": "string"}})
    return params


def _responses(
    success: str, schema: dict[str, Any] | None, description: str, failure: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``failure``: the error body when it may also be the per-item envelope (nothing saved at all)."""
    out: dict[str, Any] = {}
    if schema is None:
        out[success] = {"description": description}
    else:
        out[success] = {"description": description, "content": {"application/json": {"schema": schema}}}
    for status, text in ERROR_STATUSES.items():
        out[status] = {"description": text, "content": {"application/json": {"schema": failure or ERROR_REF}}}
    return out


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def build_openapi(snapshot: Snapshot, settings: Settings) -> dict[str, Any]:
    prefix = settings.api_prefix.rstrip("/")
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object", "required": ["code", "status", "message"],
            "properties": {"code": {"type": "string"}, "status": {"type": "integer"}, "message": {"type": "string"}},
        },
        "ErrorList": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}},
    }
    paths: dict[str, Any] = {}
    for alias in sorted(snapshot.entities):
        entity = snapshot.entities[alias]
        item_ref = {"$ref": f"#/components/schemas/{alias}"}
        schemas[alias] = _item_schema(entity)
        schemas[f"{alias}-create"] = _input_schema(entity, snapshot, "create")
        schemas[f"{alias}-update"] = _input_schema(entity, snapshot, "update")
        schemas[f"{alias}-replace"] = _input_schema(entity, snapshot, "replace")
        schemas[f"{alias}-update-one"] = _input_schema(entity, snapshot, "update-one")
        many = {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": item_ref}}}
        one = {"type": "object", "required": ["data"], "properties": {"data": item_ref}}
        partial = {
            "type": "object", "required": ["data", "errors"],
            "properties": {"data": {"type": "array", "items": item_ref}, "errors": ERROR_REF},
        }
        failed = {"oneOf": [ERROR_REF, partial]}
        create = {"$ref": f"#/components/schemas/{alias}-create"}
        change = {"$ref": f"#/components/schemas/{alias}-update"}
        replace = {"$ref": f"#/components/schemas/{alias}-replace"}
        one_change = {"$ref": f"#/components/schemas/{alias}-update-one"}

        def batch(items: dict[str, Any]) -> dict[str, Any]:
            data = {"type": "array", "minItems": 1, "maxItems": settings.max_batch_items, "items": items}
            return _body({"type": "object", "required": ["data"], "additionalProperties": False,
                          "properties": {"data": data}})

        transactional = {"name": "X-Is-Transactional", "in": "header", "required": False,
                         "description": "`false` or `0`: save each item on its own and report per item.",
                         "schema": {"type": "string"}}
        id_schema = {"type": "integer"} if entity.identifier.type is FieldType.INTEGER else {"type": "string"}
        id_param = {"name": "id", "in": "path", "required": True, "schema": id_schema}
        include = [p for p in _read_parameters(entity, settings) if p["name"] == "include"]
        tag = [alias]
        collection: dict[str, Any] = {
            "get": {"tags": tag, "operationId": f"list-{alias}", "summary": f"List {alias}",
                    "parameters": _read_parameters(entity, settings),
                    "responses": _responses("200", many, "A page of rows")},
            "post": {"tags": tag, "operationId": f"create-{alias}", "summary": f"Create {alias} (batch)",
                     "parameters": [transactional],
                     "requestBody": batch(create),
                     "responses": _responses("201", {"anyOf": [many, partial]}, "Saved rows", failed)},
            "patch": {"tags": tag, "operationId": f"update-{alias}", "summary": f"Update {alias} (batch)",
                      "parameters": [transactional],
                      "requestBody": batch(change),
                      "responses": _responses("200", {"anyOf": [many, partial]}, "Saved rows", failed)},
            "put": {"tags": tag, "operationId": f"upsert-{alias}", "summary": f"Upsert {alias} (batch)",
                    "parameters": [transactional],
                    "requestBody": batch(replace),
                    "responses": _responses("200", {"anyOf": [many, partial]}, "Saved rows", failed)},
        }
        single: dict[str, Any] = {
            "parameters": [id_param],
            "get": {"tags": tag, "operationId": f"get-{alias}", "summary": f"One of {alias}",
                    "parameters": include, "responses": _responses("200", one, "The row")},
            "patch": {"tags": tag, "operationId": f"update-one-{alias}", "summary": f"Update one of {alias}",
                      "requestBody": _body({"type": "object", "required": ["data"], "additionalProperties": False,
                                            "properties": {"data": one_change}}),
                      "responses": _responses("200", one, "The saved row")},
            "put": {"tags": tag, "operationId": f"upsert-one-{alias}", "summary": f"Upsert one of {alias}",
                    "requestBody": _body({"type": "object", "required": ["data"], "additionalProperties": False,
                                          "properties": {"data": replace}}),
                    "responses": _responses("200", one, "The saved row")},
        }
        if entity.config.is_deletable:
            collection["delete"] = {
                "tags": tag, "operationId": f"delete-{alias}", "summary": f"Delete matching {alias}",
                "parameters": [p for p in _read_parameters(entity, settings) if p["name"].startswith("filter[")],
                "responses": _responses("204", None, "Deleted")}
            single["delete"] = {
                "tags": tag, "operationId": f"delete-one-{alias}", "summary": f"Delete one of {alias}",
                "responses": _responses("204", None, "Deleted")}
        paths[f"{prefix}/{alias}"] = collection
        paths[f"{prefix}/{alias}/{{id}}"] = single
    return {
        "openapi": "3.1.0",
        "info": {"title": "dxapi", "version": f"config-{snapshot.version}",
                 "description": "Generated from the active configuration; errors are listed in docs/errors.md."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "oauth2": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "/token", "scopes": {}}}},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
        "security": [{"bearer": []}, {"oauth2": []}, {"apiKey": []}],
    }
