"""The HTTP API's OpenAPI description. The JSON routes mirror the protobuf messages, so
their schemas are generated from the messages' descriptors and cannot drift from them."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from clipsearch.v1 import search_pb2 as pb

_SCALARS: dict[int, dict[str, object]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: {"type": "integer"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer"},
    # protobuf's JSON mapping writes 64-bit integers as strings, and reads either.
    FieldDescriptor.TYPE_INT64: {"type": ["string", "integer"], "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": ["string", "integer"], "format": "uint64"},
    FieldDescriptor.TYPE_SINT64: {"type": ["string", "integer"], "format": "int64"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def message_schemas(root: Any) -> dict[str, dict[str, object]]:
    """JSON schemas of a message and every message it contains, by message name."""
    schemas: dict[str, dict[str, object]] = {}
    pending: list[Descriptor] = [root]
    while pending:
        message = pending.pop()
        if message.name in schemas:
            continue
        properties: dict[str, object] = {}
        for field in message.fields:
            if field.message_type is not None:
                pending.append(field.message_type)
                schema: dict[str, object] = {
                    "$ref": f"#/components/schemas/{field.message_type.name}"
                }
            elif field.enum_type is not None:
                schema = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
            else:
                schema = dict(_SCALARS[field.type])
            if field.is_repeated:
                schema = {"type": "array", "items": schema}
            if field.containing_oneof is not None:
                schema["description"] = f"one of {field.containing_oneof.name}"
            properties[field.name] = schema
        schemas[message.name] = {"type": "object", "properties": properties}
    return schemas


def _operation(summary: str, request: str | None, response: str) -> dict[str, object]:
    operation: dict[str, object] = {
        "summary": summary,
        "responses": {
            "200": {"content": {"application/json": {"schema": _ref(response)}}},
            "default": {"content": {"application/json": {"schema": _ref("Error")}}},
        },
    }
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        }
    return operation


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document() -> dict[str, object]:
    schemas: dict[str, object] = {"Error": ERROR}
    for message in (
        pb.SearchRequest, pb.SearchResponse, pb.ClassifyRequest, pb.ClassifyResponse,
        pb.GetIndexInfoResponse,
    ):  # fmt: skip
        schemas.update(message_schemas(message.DESCRIPTOR))
    schemas["EmbeddingsRequest"] = {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string"},
            "input": {
                "description": "texts, data:image/...;base64 URLs, or http(s) image URLs",
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            },
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        },
    }
    schemas["EmbeddingsResponse"] = {"type": "object", "description": "OpenAI's shape"}
    schemas["ModelList"] = {"type": "object", "description": "OpenAI's shape"}
    schemas["ClipBack"] = {
        "description": "clip-retrieval's clip-back shapes: see its clip_client.py",
    }
    schemas["Indexes"] = {
        "type": "object",
        "properties": {"indexes": {"type": "array", "items": {"type": "string"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "clipsearch", "version": "v1"},
        "paths": {
            "/v1/embeddings": {
                "post": _operation(
                    "OpenAI-compatible embeddings of texts and images",
                    "EmbeddingsRequest",
                    "EmbeddingsResponse",
                )
            },
            "/v1/models": {"get": _operation("the served model's names", None, "ModelList")},
            "/v1/search": {
                "post": _operation(
                    "search by text, image, image URL, vector or item",
                    "SearchRequest",
                    "SearchResponse",
                )
            },
            "/v1/classify": {
                "post": _operation(
                    "zero-shot classify an image", "ClassifyRequest", "ClassifyResponse"
                )
            },
            "/v1/index": {
                "get": _operation(
                    "a served index (query parameter `index`)", None, "GetIndexInfoResponse"
                )
            },
            "/v1/indexes": {"get": _operation("the names of the served indexes", None, "Indexes")},
            "/knn-service": {
                "post": _operation("clip-retrieval's clip-back search", "ClipBack", "ClipBack")
            },
            "/indices-list": {"get": _operation("clip-back: the served indexes", None, "ClipBack")},
            "/metadata": {
                "post": _operation("clip-back: metadata of item ids", "ClipBack", "ClipBack")
            },
        },
        "components": {"schemas": schemas},
    }
