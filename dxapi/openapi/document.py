"""The OpenAPI document assembled, and the paths of every entity as one principal may use them.

Fed by a ``Snapshot``, the settings and what the principal asking may do (``allows``); feeds ``build_openapi``
(``GET {prefix}/openapi.json``, the docs page and ``dxapi openapi``). Every entity the principal holds a scope
on gets the operations of those scopes that its configuration allows: GET with ``{alias}:read``; POST with
``{alias}:write`` when a field is creatable, PATCH and PUT when one is editable; DELETE with ``{alias}:delete``
when the entity is deletable. The bodies come from ``schemas``, ``POST /token`` and the security schemes from
``token``; the filter, page, sort and include parameters are here. The caller caches the document per snapshot
and scope set.
"""

from __future__ import annotations

import json
from typing import Any

from dxapi.auth.scopes import DELETE, READ, WRITE
from dxapi.openapi.changes import changes_operation
from dxapi.openapi.envelopes import (
    ERROR_REF,
    Allows,
    data_array_of,
    data_of,
    header_parameter,
    json_body,
    page_of,
    ref,
    responses,
)
from dxapi.openapi.retries import conditional, keyed, tagged_read, with_etag_property
from dxapi.openapi.schemas import Schemas
from dxapi.openapi.token import security_schemes, token_operation, token_schemas
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, Snapshot
from dxapi.request.params import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH, MAX_SORT_KEYS
from dxapi.settings import Settings
from dxapi.types import FieldType

# The header of every batch write.
PREFER = header_parameter(
    "Prefer",
    "`count=exact`: `meta.total`, the rows matching the filters; `count=estimated`: the planner's estimate on "
    "PostgreSQL and MariaDB (exact below `DXAPI_COUNT_EXACT_BELOW`, and on SQLite), `meta.totalEstimated` says "
    "which. Other preferences are ignored (RFC 7240).",
)
TRANSACTIONAL = header_parameter("X-Is-Transactional", "`false` or `0`: save each item on its own and report per item.")


class _Document(Schemas):
    """The document for one snapshot as one principal may see it (``allows(alias, action)``)."""

    def __init__(self, snapshot: Snapshot, settings: Settings, allows: Allows) -> None:
        super().__init__(snapshot, allows)
        self.settings = settings

    # --- paths -----------------------------------------------------------------------------------------------

    def entity_paths(self, entity: EntitySnapshot) -> tuple[dict[str, Any], dict[str, Any]]:
        """The operations of ``{prefix}/{alias}`` and ``{prefix}/{alias}/{id}`` this principal may use."""
        alias = entity.alias
        collection: dict[str, Any] = {}
        single: dict[str, Any] = {}
        readable = {n: r for n, r in entity.relations.items() if self.may(r.child_alias, READ)}
        parameters = _read_parameters(entity, self.settings, list(readable))
        parameters[len(entity.fields) : len(entity.fields)] = _group_parameters(entity) + [
            _relation_parameter(name, self.snapshot.entities[r.child_alias], field)
            for name, r in readable.items()
            for field in self.snapshot.entities[r.child_alias].fields
        ]
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
        for batch in (collection["patch"], collection["put"]):
            batch["responses"]["412"] = {
                "description": "An item's `@etag` does not match its row (6111)",
                "content": {"application/json": {"schema": ERROR_REF}},
            }
        single["patch"] = conditional(
            self.one_operation(entity, "update-one", item, "update-one", f"Update one of {alias}")
        )
        single["put"] = conditional(
            self.one_operation(entity, "replace", item, "upsert-one", f"Upsert one of {alias}"), put=True
        )
        for mode in ("update", "replace", "update-one"):  # `If-Match` of each item (by id: the header's twin)
            with_etag_property(self.schemas[f"{alias}-{mode}"])

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
            "items": ref(f"{alias}-{mode}"),
        }
        body = json_body(
            {"type": "object", "required": ["data"], "additionalProperties": False, "properties": {"data": data}}
        )
        partial = {
            "type": "object",
            "required": ["data", "errors"],
            "properties": {"data": {"type": "array", "items": item}, "errors": ERROR_REF},
        }
        status = "201" if mode == "create" else "200"
        return keyed(
            {
                "tags": [alias],
                "operationId": f"{verb}-{alias}",
                "summary": summary,
                "parameters": [TRANSACTIONAL],
                "requestBody": body,
                "responses": responses(
                    status, {"anyOf": [data_array_of(item), partial]}, "Saved rows", {"oneOf": [ERROR_REF, partial]}
                ),
            }
        )

    def one_operation(
        self, entity: EntitySnapshot, mode: str, item: dict[str, Any], verb: str, summary: str
    ) -> dict[str, Any]:
        """A write of the row ``/{id}`` names: ``{"data": item}`` in, the saved row out."""
        alias = entity.alias
        self.schemas[f"{alias}-{mode}"] = self.input_schema(entity, mode)
        body = json_body(
            {
                "type": "object",
                "required": ["data"],
                "additionalProperties": False,
                "properties": {"data": ref(f"{alias}-{mode}")},
            }
        )
        return keyed(
            {
                "tags": [alias],
                "operationId": f"{verb}-{alias}",
                "summary": summary,
                "requestBody": body,
                "responses": responses("200", data_of(item), "The saved row"),
            }
        )

    def token_path(self) -> dict[str, Any]:
        """``POST /token``: RFC 6749 form parameters, or Spryker's JSON (flat or in Glue's envelope)."""
        grants = ["client_credentials", "refresh_token", *(["password"] if self.settings.password_grant else [])]
        self.schemas.update(token_schemas(grants))
        return {"post": token_operation()}

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
                "securitySchemes": security_schemes(self.settings),
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
            entity = self.snapshot.entities[alias]
            if entity.config.change_feed and self.may(alias, READ):
                id_schema = _id_parameter(entity)["schema"]
                paths[f"{prefix}/{alias}/_changes"] = {"get": changes_operation(entity, self.settings, id_schema)}
            if single:
                paths[f"{prefix}/{alias}/{{id}}"] = single
        paths["/token"] = self.token_path()
        return paths


def build_openapi(snapshot: Snapshot, settings: Settings, allows: Allows | None = None) -> dict[str, Any]:
    """The document of ``snapshot`` for a principal (``allows``: its ``Principal.allows``; None: everything)."""
    return _Document(snapshot, settings, allows or _everything).build()


def _read_operations(alias: str, parameters: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET on the collection (filters, page, sort, include) and on one row (include only)."""
    item = ref(alias)
    listing: dict[str, Any] = {
        "tags": [alias],
        "operationId": f"list-{alias}",
        "summary": f"List {alias}",
        "parameters": [*parameters, PREFER],
        "responses": _with_exports(responses("200", page_of(item), "A page of rows"), item),
    }
    listing["responses"]["200"]["headers"] = {
        "Preference-Applied": {
            "description": "`count=exact` or `count=estimated`: the `Prefer` count that `meta` answers.",
            "schema": {"type": "string", "enum": ["count=exact", "count=estimated"]},
        }
    }
    one = {
        "tags": [alias],
        "operationId": f"get-{alias}",
        "summary": f"One of {alias}",
        "parameters": [p for p in parameters if p["name"] == "include" or p["name"].startswith("fields[")],
        "responses": responses("200", data_of(item), "The row"),
    }
    return listing, tagged_read(one)


def _with_exports(answers: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """The list's other media types (``Accept``, docs/export.md): every matching row, streamed; and the 406."""
    answers["200"]["description"] = (
        "A page of rows. With `Accept: application/x-ndjson`: every matching row in the sort order (no paging), "
        "streamed, one row object per line as in `data` (the schema is one line's). With `Accept: text/csv`: the "
        "same rows as RFC 4180 CSV with a header row of visible names (no `include`: 2051)."
    )
    answers["200"]["content"]["application/x-ndjson"] = {"schema": item}
    answers["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}
    answers["406"] = {
        "description": "`Accept` names no served type (2050)",
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    return answers


def _delete_operations(alias: str, parameters: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """DELETE on the collection (the rows the filters match) and on one row."""
    matching = {
        "tags": [alias],
        "operationId": f"delete-{alias}",
        "summary": f"Delete matching {alias}",
        "parameters": [p for p in parameters if p["name"].startswith("filter[")],
        "responses": responses("204", None, "Deleted"),
    }
    one = {
        "tags": [alias],
        "operationId": f"delete-one-{alias}",
        "summary": f"Delete one of {alias}",
        "responses": responses("204", None, "Deleted"),
    }
    return keyed(matching), keyed(conditional(one, success=None))


def _id_parameter(entity: EntitySnapshot) -> dict[str, Any]:
    id_schema = {"type": "integer"} if entity.identifier.type is FieldType.INTEGER else {"type": "string"}
    return {"name": "id", "in": "path", "required": True, "schema": id_schema}


def _everything(alias: str, action: str) -> bool:
    return True


def _read_parameters(entity: EntitySnapshot, settings: Settings, includable: list[str]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": f"filter[{entity.alias}.{field.name}]",
            "in": "query",
            "required": False,
            "description": _filter_description(field),
            "schema": {"type": "string"},
        }
        for field in entity.fields
    ]
    params += [
        {"name": "page[offset]", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
        {
            "name": "page[cursor]",
            "in": "query",
            "required": False,
            "description": "Keyset paging, safe with ties in the sort and as fast on a deep page as on the first: "
            "empty for the first page, then follow `links.next` until a page has none. Not together with "
            "`page[offset]` (2017); a cursor made for another `sort` or entity is refused (2020).",
            "schema": {"type": "string"},
        },
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
            "description": f"At most {MAX_SORT_KEYS} comma-separated fields, `-` for descending: "
            + ", ".join(f.name for f in entity.fields if f.codec.comparable),
            "schema": {"type": "string"},
        },
    ]
    params.append(
        {
            "name": f"fields[{entity.alias}]",
            "in": "query",
            "required": False,
            "description": "Sparse fields: only these comma-separated fields (the identifier is always answered), "
            "of: " + ", ".join(entity.names) + ". Unknown field 2040, bad list 2042 (docs/fields.md).",
            "schema": {"type": "string"},
        }
    )
    params += [
        {
            "name": f"fields[{name}]",
            "in": "query",
            "required": False,
            "description": f"Sparse fields of the included relation `{name}` (with `include`; a nested relation "
            "by its bare name or its path in `include`, as `fields[a.b]`); 2041 when not included.",
            "schema": {"type": "string"},
        }
        for name in includable
        if name != entity.alias  # the alias always names the root (plan.build)
    ]
    if includable:
        params.append(
            {
                "name": "include",
                "in": "query",
                "required": False,
                "description": "Comma-separated relation chains: "
                + ", ".join(includable)
                + ". `filter[include.{chain}.{field}]` (a plain value or an operator object, as a filter) keeps "
                "only the embedded rows of an included chain that match; the rows above are not filtered by it.",
                "schema": {"type": "string"},
            }
        )
    return params


def _group_parameters(entity: EntitySnapshot) -> list[dict[str, Any]]:
    """``filter[or]``, ``filter[and]``, ``filter[not]`` (request.params.parse_group)."""
    key = f"{entity.alias}.{entity.identifier.name}"
    grammar = (
        "An element is a JSON object whose keys hold together: `alias.field` (or `relation.field`) with a plain "
        "JSON value (equality) or an operator object, or `or`/`and`/`not` again; at most "
        f"{MAX_FILTER_DEPTH} groups deep and {MAX_FILTER_CONDITIONS} conditions in a request (2031, 2032)."
    )
    groups = (
        ("or", "A JSON array of elements: rows matching at least one.", [{key: 1}, {key: {"gte": 10}}]),
        ("and", "A JSON array of elements: rows matching every one.", [{key: {"gte": 1}}, {key: {"nin": [5]}}]),
        ("not", "One element (a JSON object): rows it does not match, rows with NULLs included.", {key: {"lt": 3}}),
    )
    return [
        {
            "name": f"filter[{operator}]",
            "in": "query",
            "required": False,
            "description": f"{meaning} {grammar}",
            "schema": {"type": "string"},
            "example": json.dumps(example),
        }
        for operator, meaning, example in groups
    ]


def _relation_parameter(relation: str, child: EntitySnapshot, field: FieldSnapshot) -> dict[str, Any]:
    return {
        "name": f"filter[{relation}.{field.name}]",
        "in": "query",
        "required": False,
        "description": f"Rows with at least one `{relation}` row ({child.alias}) matching. "
        + _filter_description(field),
        "schema": {"type": "string"},
    }


def _filter_description(field: FieldSnapshot) -> str:
    """The operators the field's codec allows (``plan.build`` refuses the others with 2001)."""
    codec = field.codec
    if not codec.comparable:
        return 'Only {"isNull":true|false}.'
    operators = ["eq", "ne", "in", "nin (NULL matches)"] + (["gt", "gte", "lt", "lte"] if codec.ordered else [])
    operators += ["like (case-sensitive)", "ilike (case-insensitive)"] if codec.likeable else []
    return (
        "Equality, or a JSON operator object (keys AND together): "
        + ", ".join([*operators, "isNull"])
        + '; e.g. {"in":[…]}, {"isNull":true}.'
    )
