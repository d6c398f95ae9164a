"""The installer format's JSON Schema: the shape every configuration entry must have (Spryker's
``dynamic-entity`` installer JSON), checked before anything else.

Fed by JSON (import file, admin form, stored ``dx_entity.definition``); feeds ``installer.parse_entry``, and
the admin form reuses its relation-name rule so the form refuses what an import would.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from dxapi.registry.model import AUTO_VALUES, VISIBLE_NAME_PATTERN
from dxapi.types import FieldType

_NUMBER_OR_TEXT = {"type": ["number", "string"]}
_COUNT = {"type": "integer", "minimum": 0}

ENTRY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["tableName", "tableAlias", "definition"],
    "additionalProperties": False,
    "properties": {
        "tableName": {"type": "string", "minLength": 1, "maxLength": 255},
        "tableAlias": {"type": "string", "minLength": 1, "maxLength": 255},
        "isActive": {"type": "boolean"},
        "definition": {
            "type": "object",
            "required": ["identifier", "fields"],
            "additionalProperties": False,
            "properties": {
                "identifier": {"type": "string", "minLength": 1},
                "isDeletable": {"type": "boolean"},
                "changeFeed": {"type": "boolean"},
                "fields": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/field"}},
            },
        },
        "childRelations": {"type": "array", "items": {"$ref": "#/$defs/relation"}},
    },
    "$defs": {
        "field": {
            "type": "object",
            "required": ["fieldName", "fieldVisibleName", "type", "isCreatable", "isEditable"],
            "additionalProperties": False,
            "properties": {
                "fieldName": {"type": "string", "minLength": 1, "maxLength": 255},
                "fieldVisibleName": {"type": "string", "minLength": 1, "maxLength": 255},
                "type": {"enum": [t.value for t in FieldType]},
                "isCreatable": {"type": "boolean"},
                "isEditable": {"type": "boolean"},
                "isEnabled": {"type": "boolean"},
                "description": {"type": "string"},
                "examples": {"type": ["string", "array"]},
                "enumValues": {"type": "string"},
                "autoValue": {"enum": list(AUTO_VALUES)},
                "validation": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "isRequired": {"type": "boolean"},
                        "min": _NUMBER_OR_TEXT,
                        "max": _NUMBER_OR_TEXT,
                        "minLength": _COUNT,
                        "maxLength": _COUNT,
                        "precision": {"type": "integer", "minimum": 1, "maximum": 65},
                        "scale": _COUNT,
                        "pattern": {"type": "string", "format": "regex"},
                        "enum": {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]}},
                        "format": {"enum": ["email", "uuid", "url"]},
                        "constraints": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {"name": {"enum": ["url"]}},
                            },
                        },
                    },
                },
            },
        },
        "relation": {
            "type": "object",
            "required": ["name", "childDynamicEntityConfiguration", "relationFieldMappings"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": VISIBLE_NAME_PATTERN.pattern, "maxLength": 255},
                "isEditable": {"type": "boolean"},
                "childDynamicEntityConfiguration": {
                    "type": "object",
                    "required": ["tableAlias"],
                    "properties": {"tableAlias": {"type": "string"}},
                },
                "relationFieldMappings": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["childFieldName", "parentFieldName"],
                        "additionalProperties": False,
                        "properties": {
                            "childFieldName": {"type": "string", "minLength": 1},
                            "parentFieldName": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
    },
}

ENTRY_VALIDATOR = jsonschema.Draft202012Validator(
    ENTRY_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
