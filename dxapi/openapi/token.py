"""The ``POST /token`` part of the OpenAPI document and its security schemes.

Fed by the settings (whether the password grant is on); feeds ``document`` (the ``/token`` path, the token
schemas and ``components.securitySchemes``).
"""

from __future__ import annotations

from typing import Any

from dxapi.openapi.envelopes import ref
from dxapi.settings import Settings


def token_schemas(grants: list[str]) -> dict[str, Any]:
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
                    "properties": {"type": {"type": "string", "enum": ["token"]}, "attributes": ref("TokenJson")},
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


def token_operation() -> dict[str, Any]:
    failure = {"content": {"application/json": {"schema": ref("OAuthError")}}}
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
                "application/x-www-form-urlencoded": {"schema": ref("TokenForm")},
                "application/json": {"schema": {"oneOf": [ref("TokenJson"), ref("TokenGlue")]}},
            },
        },
        "responses": {
            "200": {
                "description": "A bearer token",
                "content": {"application/json": {"schema": ref("TokenResponse")}},
            },
            "400": {"description": "invalid_request, invalid_grant, invalid_scope, unsupported_grant_type", **failure},
            "401": {"description": "invalid_client", **failure},
            "429": {"description": "Too many attempts (see Retry-After)", **failure},
            "503": {"description": "temporarily_unavailable (see Retry-After)", **failure},
        },
    }


def security_schemes(settings: Settings) -> dict[str, Any]:
    flows: dict[str, Any] = {"clientCredentials": {"tokenUrl": "/token", "scopes": {}}}
    if settings.password_grant:
        flows["password"] = {"tokenUrl": "/token", "refreshUrl": "/token", "scopes": {}}
    return {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "oauth2": {"type": "oauth2", "flows": flows},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    }


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)
