"""The OpenAPI 3.1 description of both dialects, served at ``/openapi.json``.

Written by hand (the router is hand-written, see ``app.py``); the fuzz tests
(schemathesis) drive every endpoint from this description, so it must stay
true: ``tests/integration/test_openapi.py`` checks every route answers as
described.
"""

from __future__ import annotations

from typing import Any

from causalkv import __version__

_METADATA = {
    "description": "Opaque causal metadata: send what the previous answer returned ({} when fresh).",
    "type": "object",
    "additionalProperties": True,
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_METADATA_ONLY = {
    "type": "object",
    "properties": {"causal-metadata": {"$ref": "#/components/schemas/CausalMetadata"}},
    "required": ["causal-metadata"],
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _key_parameter() -> dict[str, Any]:
    return {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "Any non-empty UTF-8 string of at most 2048 bytes.",
        "schema": {"type": "string", "minLength": 1},
    }


_metadata_body = {
    "type": "object",
    "properties": {"causal-metadata": {"$ref": "#/components/schemas/CausalMetadata"}},
}


def openapi_document() -> dict[str, Any]:
    sharded_view = {
        "type": "object",
        "properties": {
            "view": {
                "oneOf": [
                    {
                        "type": "object",
                        "additionalProperties": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"$ref": "#/components/schemas/Node"},
                        },
                    },
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"$ref": "#/components/schemas/Node"},
                    },
                ]
            }
        },
        "required": ["view"],
    }
    flat_view = {
        "type": "object",
        "properties": {"view": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
        "required": ["view"],
    }
    unavailable = _error("No view, not a member, or dependencies not met in time")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "causalkv",
            "version": __version__,
            "description": "A sharded, replicated, causally consistent key-value store. "
            "Two dialects over one keyspace: sharded (/ping, /view, /data) and SyncKV (/kvs).",
        },
        "paths": {
            "/ping": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": _json({"type": "object"}, "Up")},
                }
            },
            "/status": {
                "get": {
                    "summary": "This node's state (epoch, shard, keys, clock, peers, counters)",
                    "responses": {"200": _json({"type": "object"}, "Snapshot")},
                }
            },
            "/view": {
                "get": {
                    "summary": "The installed view ({} before one)",
                    "responses": {"200": _json({"type": "object"}, "The view")},
                },
                "put": {
                    "summary": "Install a view on every node of the old and new views",
                    "requestBody": _body(sharded_view),
                    "responses": {
                        "200": _json({"type": "object"}, "This node serves the new view"),
                        "400": _error("Malformed view"),
                        "401": _error("Missing or wrong cluster secret"),
                        "409": _error("A concurrent, different view won"),
                        "503": _error("The change did not complete in time"),
                    },
                },
            },
            "/data": {
                "get": {
                    "summary": "Every key of this node's shard",
                    "requestBody": _body(_metadata_body, required=False),
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "causal-metadata": {
                                        "$ref": "#/components/schemas/CausalMetadata"
                                    },
                                },
                            },
                            "The shard's items",
                        ),
                        "400": _error("Malformed metadata"),
                        "503": unavailable,
                    },
                }
            },
            "/data/{key}": {
                "parameters": [_key_parameter()],
                "get": {
                    "summary": "Read a key",
                    "requestBody": _body(_metadata_body, required=False),
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "value": {"type": "string"},
                                    "causal-metadata": {
                                        "$ref": "#/components/schemas/CausalMetadata"
                                    },
                                },
                            },
                            "The value",
                        ),
                        "400": _error("Malformed request"),
                        "404": _json(_METADATA_ONLY, "No such key"),
                        "503": unavailable,
                    },
                },
                "put": {
                    "summary": "Write a key",
                    "requestBody": _body(
                        {
                            "type": "object",
                            "properties": {
                                "value": {"type": "string"},
                                "causal-metadata": {"$ref": "#/components/schemas/CausalMetadata"},
                            },
                            "required": ["value"],
                        }
                    ),
                    "responses": {
                        "200": _json(_METADATA_ONLY, "Written (durably)"),
                        "400": _error("Malformed request, key or value too large"),
                        "413": _error("Body too large"),
                        "503": unavailable,
                    },
                },
                "delete": {
                    "summary": "Delete a key",
                    "requestBody": _body(_metadata_body, required=False),
                    "responses": {
                        "200": _json(_METADATA_ONLY, "Deleted"),
                        "400": _error("Malformed request"),
                        "404": _json(_METADATA_ONLY, "No such key"),
                        "503": unavailable,
                    },
                },
            },
            "/kvs/admin/view": {
                "get": {
                    "summary": "The node list, in the order set",
                    "responses": {"200": _json(flat_view, "View")},
                },
                "put": {
                    "summary": "Set the node list (one shard)",
                    "requestBody": _body(flat_view),
                    "responses": {
                        "200": _json(flat_view, "Installed"),
                        "400": _error("bad request"),
                        "401": _error("Missing or wrong cluster secret"),
                    },
                },
                "delete": {
                    "summary": "Reset this node to uninitialized, dropping its data",
                    "responses": {
                        "200": _json(flat_view, "Reset"),
                        "401": _error("Missing or wrong cluster secret"),
                    },
                },
            },
            "/kvs/data": {
                "get": {
                    "summary": "Sorted keys of this node's shard",
                    "requestBody": _body(_metadata_body, required=False),
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "count": {"type": "integer"},
                                    "keys": {"type": "array", "items": {"type": "string"}},
                                    "causal-metadata": {
                                        "$ref": "#/components/schemas/CausalMetadata"
                                    },
                                },
                            },
                            "Keys",
                        ),
                        "400": _error("bad request"),
                        "418": _error("uninitialized"),
                        "500": _error("timed out while waiting for depended updates"),
                    },
                }
            },
            "/kvs/data/{key}": {
                "parameters": [_key_parameter()],
                "get": {
                    "summary": "Read a key",
                    "requestBody": _body(_metadata_body, required=False),
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "val": {"type": "string"},
                                    "causal-metadata": {
                                        "$ref": "#/components/schemas/CausalMetadata"
                                    },
                                },
                            },
                            "The value",
                        ),
                        "400": _error("bad request"),
                        "404": _json(_METADATA_ONLY, "No such key"),
                        "418": _error("uninitialized"),
                        "500": _error("timed out while waiting for depended updates"),
                    },
                },
                "put": {
                    "summary": "Write a key: 201 if no live value is in the write's causal past, else 200",
                    "requestBody": _body(
                        {
                            "type": "object",
                            "properties": {
                                "val": {"type": "string"},
                                "causal-metadata": {"$ref": "#/components/schemas/CausalMetadata"},
                            },
                            "required": ["val", "causal-metadata"],
                        }
                    ),
                    "responses": {
                        "200": _json(_METADATA_ONLY, "Updated"),
                        "201": _json(_METADATA_ONLY, "Created"),
                        "400": _error("bad request, or val too large"),
                        "418": _error("uninitialized"),
                        "500": _error("timed out while waiting for depended updates"),
                    },
                },
                "delete": {
                    "summary": "Delete a key",
                    "requestBody": _body(_metadata_body, required=False),
                    "responses": {
                        "200": _json(_METADATA_ONLY, "Deleted"),
                        "400": _error("bad request"),
                        "404": _json(_METADATA_ONLY, "No such key"),
                        "418": _error("uninitialized"),
                        "500": _error("timed out while waiting for depended updates"),
                    },
                },
            },
            "/kvs/internal/sync": {
                "post": {
                    "summary": "Node-to-node messages (MessagePack); not for clients",
                    "requestBody": {
                        "required": True,
                        "content": {"application/vnd.causalkv.peer+msgpack": {"schema": {}}},
                    },
                    "responses": {
                        "200": {"description": "Forwarded operation's result"},
                        "204": {"description": "Messages accepted"},
                        "400": _error("Malformed peer message"),
                        "401": _error("Missing or wrong cluster secret"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "CausalMetadata": _METADATA,
                "Error": _ERROR,
                "Node": {
                    "type": "object",
                    "properties": {"address": {"type": "string"}, "id": {"type": "integer"}},
                    "required": ["address", "id"],
                },
            }
        },
    }
