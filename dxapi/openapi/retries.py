"""What the document says about safe retries and preconditions (DESIGN §4b): ``Idempotency-Key`` on every
write, ``ETag`` / ``If-Match`` / ``If-None-Match`` on single rows, and the answers they add.

Fed by the operations ``document`` builds; feeds them parameters, response headers and statuses.
"""

from __future__ import annotations

from typing import Any

from dxapi.openapi.envelopes import ERROR_REF, header_parameter
from dxapi.preconditions import ETAG_KEY

IDEMPOTENCY_KEY = header_parameter(
    "Idempotency-Key",
    "1 to 255 printable ASCII characters, unique per request of this principal. The first answer is recorded "
    "with the writes; a retry of the same request gets it again (with `Idempotency-Replayed: true`) and writes "
    "nothing. Kept for `DXAPI_IDEMPOTENCY_TTL` (24 h by default).",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
)
IF_MATCH = header_parameter(
    "If-Match",
    "Write only if the row's current `ETag` is one of these (`*`: only if the row exists). Checked atomically "
    "with the write; otherwise 412 and nothing written.",
)
IF_NONE_MATCH_WRITE = header_parameter(
    "If-None-Match", "`*`: write only if the row does not exist yet (PUT creates, never replaces)."
)
IF_NONE_MATCH_READ = header_parameter(
    "If-None-Match", "The `ETag` of the copy the client holds: 304 without a body when it is still current."
)
ETAG_HEADER = {
    "ETag": {
        "description": "Strong tag of the row's fields; changes whenever one of them changes.",
        "schema": {"type": "string"},
    }
}
REPLAYED_HEADER = {
    "Idempotency-Replayed": {
        "description": "`true` on an answer replayed from the record of an earlier request with the same key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
ETAG_PROPERTY = {
    "type": "string",
    "description": "The row's `ETag` as read: the item is written only if the row still has it (412 otherwise).",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def keyed(operation: dict[str, Any]) -> dict[str, Any]:
    """A write that takes ``Idempotency-Key``: the header, the replay marker, 409 and 422."""
    operation["parameters"] = [*operation.get("parameters", []), IDEMPOTENCY_KEY]
    responses = operation["responses"]
    for status, answer in responses.items():
        if status.startswith(("2", "4")):
            answer["headers"] = {**answer.get("headers", {}), **REPLAYED_HEADER}
    responses["409"] = _error("A request with this `Idempotency-Key` is still running (6103, with `Retry-After`)")
    responses["422"] = _error(
        f"{responses['422']['description']}; or the `Idempotency-Key` was used for another request (6102)"
    )
    return operation


def conditional(operation: dict[str, Any], *, put: bool = False, success: str | None = "200") -> dict[str, Any]:
    """A write of one row that takes ``If-Match`` (and, for PUT, ``If-None-Match: *``): 412, and the new tag."""
    operation["parameters"] = [IF_MATCH, *([IF_NONE_MATCH_WRITE] if put else []), *operation.get("parameters", [])]
    operation["responses"]["412"] = _error("The row does not match `If-Match` / `If-None-Match` (6111)")
    if success is not None:
        answer = operation["responses"][success]
        answer["headers"] = {**answer.get("headers", {}), **ETAG_HEADER}
    return operation


def tagged_read(operation: dict[str, Any]) -> dict[str, Any]:
    """GET of one row: its ``ETag``, and 304 for ``If-None-Match`` with the current tag."""
    operation["parameters"] = [*operation.get("parameters", []), IF_NONE_MATCH_READ]
    operation["responses"]["200"]["headers"] = ETAG_HEADER
    operation["responses"]["304"] = {
        "description": "Not modified: the `If-None-Match` tag is current",
        "headers": ETAG_HEADER,
    }
    return operation


def with_etag_property(schema: dict[str, Any]) -> dict[str, Any]:
    """A collection PATCH/PUT item: may carry the row's tag under the reserved key."""
    schema["properties"] = {ETAG_KEY: ETAG_PROPERTY, **schema["properties"]}
    return schema
