"""OpenAPI 3.1 document of the generated API, built from one snapshot — so it is always current.

Fed by a ``Snapshot`` and what the principal asking may do; feeds ``GET {prefix}/openapi.json``, the docs page
and ``dxapi openapi`` (everything). Every entity the principal holds a scope on gets the operations of those
scopes that its configuration allows: GET with ``{alias}:read``; POST with ``{alias}:write`` when a field is
creatable, PATCH and PUT when one is editable; DELETE with ``{alias}:delete`` when the entity is deletable.
Request schemas come from field types, rules and flags (``required`` from ``isRequired``); a nested child's
body has no foreign key, which the server fills in from the parent; response schemas carry nullability from
the columns, and a write answer to a principal that may not read the entity is its identifier (as the
server answers). Relations and ``include`` lead only to entities the principal may read, nested bodies only
to entities it may write. ``POST /token``, the filter, page, sort and include parameters, the error schema
and the security schemes complete it. The caller caches it per snapshot and scope set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dxapi.auth.principals import DELETE, READ, WRITE
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, Snapshot
from dxapi.settings import Settings
from dxapi.types import FieldType

Allows = Callable[[str, str], bool]  # (alias, "read" | "write" | "delete") → the principal may

ERROR_REF = {"$ref": "#/components/schemas/ErrorList"}
MODES = ("create", "update", "replace")  # the item bodies of POST, PATCH and PUT batches
ERROR_STATUSES = {
    "400": "Invalid request (see the error codes)",
    "401": "Missing or invalid credentials",
    "403": "The credentials lack a scope",
    "404": "Unknown alias or row",
    "405": "Method not allowed",
    "413": "Body too large",
    "415": "Body is not JSON",
    "422": "Relation not editable",
    "503": "Database unavailable",
}


def _value_schema(field: FieldSnapshot, *, for_input: bool) -> dict[str, Any]:
    schema = field.codec.schema(field.config.rules, field.column, for_input=for_input)
    if field.config.description:
        schema["description"] = field.config.description
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema or "oneOf" in schema:
        return {"oneOf": [schema, {"type": "null"}]} if schema else schema
    return {**schema, "type": [schema["type"], "null"]}


# The header of every batch write.
TRANSACTIONAL = {
    "name": "X-Is-Transactional",
    "in": "header",
    "required": False,
    "description": "`false` or `0`: save each item on its own and report per item.",
    "schema": {"type": "string"},
}


class _Document:
    """The document for one snapshot as one principal may see it (``allows(alias, action)``)."""

    def __init__(self, snapshot: Snapshot, settings: Settings, allows: Allows) -> None:
        self.snapshot = snapshot
        self.settings = settings
        self.allows = allows
        self.schemas: dict[str, Any] = {
            "Error": {
                "type": "object",
                "required": ["code", "status", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "status": {"type": "integer"},
                    "message": {"type": "string"},
                },
            },
            "ErrorList": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}},
        }

    def may(self, alias: str, action: str) -> bool:
        return alias in self.snapshot.entities and self.allows(alias, action)

    def offers(self, alias: str, mode: str) -> bool:
        """A body of ``mode`` can be written: create needs a creatable field, the other modes an editable one."""
        if not self.may(alias, WRITE):
            return False
        fields = self.snapshot.entities[alias].fields
        return any(f.config.is_creatable if mode == "create" else f.config.is_editable for f in fields)

    # --- schemas ---------------------------------------------------------------------------------------------

    def item_schema(self, entity: EntitySnapshot) -> dict[str, Any]:
        properties = {field.name: _output_schema(field) for field in entity.fields}
        for name, relation in entity.relations.items():
            if self.may(relation.child_alias, READ):  # `include` of it is refused otherwise
                properties[name] = {"type": "array", "items": _ref(relation.child_alias)}
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
        return _ref(alias if self.may(alias, READ) else f"{alias}-saved")

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
        return _ref(key)

    # --- paths -----------------------------------------------------------------------------------------------

    def entity_paths(self, entity: EntitySnapshot) -> tuple[dict[str, Any], dict[str, Any]]:
        """The operations of ``{prefix}/{alias}`` and ``{prefix}/{alias}/{id}`` this principal may use."""
        alias = entity.alias
        collection: dict[str, Any] = {}
        single: dict[str, Any] = {}
        parameters = _read_parameters(
            entity, self.settings, [n for n, r in entity.relations.items() if self.may(r.child_alias, READ)]
        )
        if self.may(alias, READ):
            self.schemas[alias] = self.item_schema(entity)
            collection["get"], single["get"] = _read_operations(alias, parameters)
        if self.may(alias, WRITE):
            self.write_operations(entity, collection, single)
        if self.may(alias, DELETE) and entity.config.is_deletable:
            collection["delete"], single["delete"] = _delete_operations(alias, parameters)
        if single:
            single = {"parameters": [_id_parameter(entity)], **single}
        return collection, single

    def write_operations(self, entity: EntitySnapshot, collection: dict[str, Any], single: dict[str, Any]) -> None:
        """POST, PATCH and PUT on the collection (batches) and PATCH and PUT on one row, as the fields allow."""
        alias = entity.alias
        item = self.answer_ref(alias)
        if not self.may(alias, READ):
            self.schemas[f"{alias}-saved"] = self.saved_schema(entity)
        if self.offers(alias, "create"):
            collection["post"] = self.batch_operation(entity, "create", item, "create", f"Create {alias} (batch)")
        if not self.offers(alias, "update"):
            return
        collection["patch"] = self.batch_operation(entity, "update", item, "update", f"Update {alias} (batch)")
        collection["put"] = self.batch_operation(entity, "replace", item, "upsert", f"Upsert {alias} (batch)")
        single["patch"] = self.one_operation(entity, "update-one", item, "update-one", f"Update one of {alias}")
        single["put"] = self.one_operation(entity, "replace", item, "upsert-one", f"Upsert one of {alias}")

    def batch_operation(
        self, entity: EntitySnapshot, mode: str, item: dict[str, Any], verb: str, summary: str
    ) -> dict[str, Any]:
        """A batch write: ``{"data": [items]}`` in, the saved rows (or, per item, rows and errors) out."""
        alias = entity.alias
        self.schemas[f"{alias}-{mode}"] = self.input_schema(entity, mode)
        data = {
            "type": "array",
            "minItems": 1,
            "maxItems": self.settings.max_batch_items,
            "items": _ref(f"{alias}-{mode}"),
        }
        body = _body(
            {"type": "object", "required": ["data"], "additionalProperties": False, "properties": {"data": data}}
        )
        partial = {
            "type": "object",
            "required": ["data", "errors"],
            "properties": {"data": {"type": "array", "items": item}, "errors": ERROR_REF},
        }
        status = "201" if mode == "create" else "200"
        return {
            "tags": [alias],
            "operationId": f"{verb}-{alias}",
            "summary": summary,
            "parameters": [TRANSACTIONAL],
            "requestBody": body,
            "responses": _responses(
                status, {"anyOf": [_data_array(item), partial]}, "Saved rows", {"oneOf": [ERROR_REF, partial]}
            ),
        }

    def one_operation(
        self, entity: EntitySnapshot, mode: str, item: dict[str, Any], verb: str, summary: str
    ) -> dict[str, Any]:
        """A write of the row ``/{id}`` names: ``{"data": item}`` in, the saved row out."""
        alias = entity.alias
        self.schemas[f"{alias}-{mode}"] = self.input_schema(entity, mode)
        body = _body(
            {
                "type": "object",
                "required": ["data"],
                "additionalProperties": False,
                "properties": {"data": _ref(f"{alias}-{mode}")},
            }
        )
        return {
            "tags": [alias],
            "operationId": f"{verb}-{alias}",
            "summary": summary,
            "requestBody": body,
            "responses": _responses("200", _data(item), "The saved row"),
        }

    def token_path(self) -> dict[str, Any]:
        """``POST /token``: RFC 6749 form parameters, or Spryker's JSON (flat or in Glue's envelope)."""
        grants = ["client_credentials", "refresh_token", *(["password"] if self.settings.password_grant else [])]
        self.schemas.update(_token_schemas(grants))
        return {"post": _token_operation()}

    def build(self) -> dict[str, Any]:
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "dxapi",
                "version": f"config-{self.snapshot.version}",
                "description": "Generated from the active configuration, showing what the scopes of the "
                "credentials used allow; errors are listed in docs/errors.md.",
            },
            "paths": self.paths(),
            "components": {
                "schemas": dict(sorted(self.schemas.items())),
                "securitySchemes": _security_schemes(self.settings),
            },
            "security": [{"bearer": []}, {"oauth2": []}, {"apiKey": []}],
        }

    def paths(self) -> dict[str, Any]:
        """Every entity's paths in alias order, then ``/token``."""
        prefix = self.settings.api_prefix.rstrip("/")
        paths: dict[str, Any] = {}
        for alias in sorted(self.snapshot.entities):
            collection, single = self.entity_paths(self.snapshot.entities[alias])
            if collection:
                paths[f"{prefix}/{alias}"] = collection
            if single:
                paths[f"{prefix}/{alias}/{{id}}"] = single
        paths["/token"] = self.token_path()
        return paths


def build_openapi(snapshot: Snapshot, settings: Settings, allows: Allows | None = None) -> dict[str, Any]:
    """The document of ``snapshot`` for a principal (``allows``: its ``Principal.allows``; None: everything)."""
    return _Document(snapshot, settings, allows or _everything).build()


def _read_operations(alias: str, parameters: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET on the collection (filters, page, sort, include) and on one row (include only)."""
    item = _ref(alias)
    listing = {
        "tags": [alias],
        "operationId": f"list-{alias}",
        "summary": f"List {alias}",
        "parameters": parameters,
        "responses": _responses("200", _data_array(item), "A page of rows"),
    }
    one = {
        "tags": [alias],
        "operationId": f"get-{alias}",
        "summary": f"One of {alias}",
        "parameters": [p for p in parameters if p["name"] == "include"],
        "responses": _responses("200", _data(item), "The row"),
    }
    return listing, one


def _delete_operations(alias: str, parameters: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """DELETE on the collection (the rows the filters match) and on one row."""
    matching = {
        "tags": [alias],
        "operationId": f"delete-{alias}",
        "summary": f"Delete matching {alias}",
        "parameters": [p for p in parameters if p["name"].startswith("filter[")],
        "responses": _responses("204", None, "Deleted"),
    }
    one = {
        "tags": [alias],
        "operationId": f"delete-one-{alias}",
        "summary": f"Delete one of {alias}",
        "responses": _responses("204", None, "Deleted"),
    }
    return matching, one


def _id_parameter(entity: EntitySnapshot) -> dict[str, Any]:
    id_schema = {"type": "integer"} if entity.identifier.type is FieldType.INTEGER else {"type": "string"}
    return {"name": "id", "in": "path", "required": True, "schema": id_schema}


def _security_schemes(settings: Settings) -> dict[str, Any]:
    flows: dict[str, Any] = {"clientCredentials": {"tokenUrl": "/token", "scopes": {}}}
    if settings.password_grant:
        flows["password"] = {"tokenUrl": "/token", "refreshUrl": "/token", "scopes": {}}
    return {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "oauth2": {"type": "oauth2", "flows": flows},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    }


def _token_schemas(grants: list[str]) -> dict[str, Any]:
    """The bodies and answers of ``POST /token``; the grants offered depend on the settings."""
    names = ("client_id", "client_secret", "scope", "username", "password", "refresh_token")
    return {
        "TokenForm": {
            "type": "object",
            "required": ["grant_type"],
            "properties": {
                "grant_type": {"type": "string", "enum": grants},
                **{name: {"type": "string"} for name in names},
            },
        },
        "TokenJson": {
            "type": "object",
            "required": ["grantType"],
            "properties": {
                "grantType": {"type": "string", "enum": grants},
                **{_camel(name): {"type": "string"} for name in names},
            },
        },
        "TokenGlue": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "object",
                    "required": ["attributes"],
                    "properties": {"type": {"type": "string", "enum": ["token"]}, "attributes": _ref("TokenJson")},
                }
            },
        },
        "TokenResponse": {
            "type": "object",
            "required": ["token_type", "expires_in", "access_token", "scope"],
            "properties": {
                "token_type": {"type": "string"},
                "expires_in": {"type": "integer"},
                "access_token": {"type": "string"},
                "scope": {"type": "string"},
                "refresh_token": {"type": "string"},
            },
        },
        "OAuthError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    }


def _everything(alias: str, action: str) -> bool:
    return True


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _output_schema(field: FieldSnapshot) -> dict[str, Any]:
    schema = _value_schema(field, for_input=False)
    # Output mirrors what the database holds: rules constrain input only.
    schema = {k: v for k, v in schema.items() if k in ("type", "format", "oneOf", "description", "pattern")}
    return _nullable(schema) if field.column.nullable or field.codec.answers_null else schema


def _data(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": item}}


def _data_array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": item}}}


def _read_parameters(entity: EntitySnapshot, settings: Settings, includable: list[str]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": f"filter[{entity.alias}.{field.name}]",
            "in": "query",
            "required": False,
            "description": 'Equality, or a JSON operator object such as {"in":[…]}, {"gte":…}, {"isNull":true}.',
            "schema": {"type": "string"},
        }
        for field in entity.fields
    ]
    params += [
        {"name": "page[offset]", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
        {
            "name": "page[limit]",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": settings.max_page_limit},
        },
        {
            "name": "sort",
            "in": "query",
            "required": False,
            "description": "Comma-separated fields, `-` for descending: " + ", ".join(entity.names),
            "schema": {"type": "string"},
        },
    ]
    if includable:
        params.append(
            {
                "name": "include",
                "in": "query",
                "required": False,
                "description": "Comma-separated relation chains: " + ", ".join(includable),
                "schema": {"type": "string"},
            }
        )
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


def _accepts(entity: EntitySnapshot, field: FieldSnapshot, mode: str) -> bool:
    """Whether an item body of ``mode`` may carry ``field`` (see ``_Document.input_schema``)."""
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


def _input_value(field: FieldSnapshot) -> dict[str, Any]:
    value = _value_schema(field, for_input=True)
    return _nullable(value) if field.column.nullable else value


def _token_operation() -> dict[str, Any]:
    failure = {"content": {"application/json": {"schema": _ref("OAuthError")}}}
    return {
        "tags": ["auth"],
        "operationId": "token",
        "summary": "Get an access token",
        "security": [],
        # Not `required`: openapi-python-client (0.29) cannot compile a required body of several media
        # types. A missing body is answered like any other invalid one: 400 invalid_request.
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {"schema": _ref("TokenForm")},
                "application/json": {"schema": {"oneOf": [_ref("TokenJson"), _ref("TokenGlue")]}},
            },
        },
        "responses": {
            "200": {
                "description": "A bearer token",
                "content": {"application/json": {"schema": _ref("TokenResponse")}},
            },
            "400": {"description": "invalid_request, invalid_grant, invalid_scope, unsupported_grant_type", **failure},
            "401": {"description": "invalid_client", **failure},
            "429": {"description": "Too many attempts (see Retry-After)", **failure},
            "503": {"description": "temporarily_unavailable (see Retry-After)", **failure},
        },
    }
