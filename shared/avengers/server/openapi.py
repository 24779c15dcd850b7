"""What ``/openapi.json`` says about the request bodies: the routes read their bodies themselves
(:mod:`.wire`), so FastAPI cannot infer them; :func:`describe_bodies` writes them into each
route's operation as JSON schemas. They describe what the server accepts (the fuzzing tests
generate requests from them, tests/test_fuzz.py); the checks themselves stay in :mod:`.wire`,
and anything these schemas do not say is still checked there (a 400, never a 500)."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ..answering.results import STRATEGIES
from ..stores.feedback import MAX_RATING_COST

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_IMAGE_PART = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"const": "image_url"},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string"}},
        },
    },
}
_CONTENT = {
    "anyOf": [
        {"type": "string"},
        {"type": "null"},
        {"type": "array", "items": {"anyOf": [_TEXT_PART, _IMAGE_PART]}},
    ]
}


def _function(**properties: Any) -> dict[str, Any]:
    """A ``function`` object (of a tool, or of a tool call): a string ``name`` and ``properties``."""
    return {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, **properties},
    }


_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": _CONTENT,
        "name": {"type": "string"},
        "tool_call_id": {"type": "string"},
        "tool_calls": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["function"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"const": "function"},
                    "function": _function(arguments={"type": "string"}),
                },
            },
        },
    },
}
_MESSAGES = {"type": "array", "minItems": 1, "items": _MESSAGE}
_TOOL = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": _function(
            description={"type": "string"},
            parameters={"type": "object", "description": "A JSON schema."},
        ),
    },
}
_RESPONSE_FORMAT = {
    "anyOf": [
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ["text", "json_object"]}},
        },
        {
            "type": "object",
            "required": ["type", "json_schema"],
            "properties": {
                "type": {"const": "json_schema"},
                "json_schema": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "schema": {"type": "object"}},
                },
            },
        },
    ]
}
_ROUTING = {
    "alpha": {"type": "number", "minimum": 0, "maximum": 1,
              "description": "Performance/cost trade-off (1: performance only)."},
    "conversation": {"type": "string", "description": "Conversation key (sticky model)."},
}  # fmt: skip

CHAT_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "description": "'avengers', 'avengers-fast' or a candidate."},
        "messages": _MESSAGES,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 1},
        "stream": {"type": "boolean"},
        "stream_options": {
            "type": ["object", "null"],
            "properties": {"include_usage": {"type": "boolean"}},
        },
        "tools": {"type": "array", "items": _TOOL},
        "tool_choice": {
            "anyOf": [
                {"enum": ["auto", "none", "required"]},
                {
                    "type": "object",
                    "required": ["type", "function"],
                    "properties": {
                        "type": {"const": "function"},
                        "function": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}},
                        },
                    },
                },
            ]
        },
        "parallel_tool_calls": {"type": "boolean"},
        "response_format": _RESPONSE_FORMAT,
        "n_samples": {"type": "integer", "minimum": 1, "maximum": 64},
        "strategy": {"enum": list(STRATEGIES)},
        "max_cost": {"type": "number", "minimum": 0},
        **_ROUTING,
    },
}

ROUTE_BODY: dict[str, Any] = {
    "type": "object",
    "description": "Give 'messages', 'prompt' or 'query'.",
    "properties": {
        "messages": _MESSAGES,
        "query": {"type": "string", "minLength": 1},
        "prompt": {"type": "string", "minLength": 1},
        "task": {"type": "string"},
        "model": {"type": "string"},
        **_ROUTING,
    },
}

FEEDBACK_BODY: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "required": ["id", "score"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "cost": {"type": "number", "minimum": 0, "maximum": MAX_RATING_COST},
            },
        },
        {
            "type": "object",
            "required": ["query", "model", "score"],
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "model": {"type": "string", "minLength": 1},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "cost": {"type": "number", "minimum": 0, "maximum": MAX_RATING_COST},
            },
        },
    ]
}


def describe_bodies(app: FastAPI) -> None:
    """Put the request body schemas (:data:`CHAT_BODY`, :data:`ROUTE_BODY`,
    :data:`FEEDBACK_BODY`, with this app's model names) and the error responses into the
    operations of the routes mounted on ``app`` (call after every route is mounted)."""
    errors = {
        str(code): {
            "description": text,
            "content": {"application/json": {"schema": _ERROR}},
        }
        for code, text in (
            (400, "Bad request"),
            (401, "Invalid or missing API key"),
            (413, "Body too large"),
        )
    }
    state = app.state.server
    profiles = {"type": "string", "enum": sorted(state.profiles)}
    models = {"type": "string", "enum": list(state.answerer.router.models_)}
    bodies = {
        "/v1/chat/completions": _with(CHAT_BODY, ("properties", "model"), profiles),
        "/v1/route": _with(ROUTE_BODY, ("properties", "model"), profiles),
        "/v1/feedback": _with(FEEDBACK_BODY, ("anyOf", 1, "properties", "model"), models),
    }
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path in bodies:
            route.openapi_extra = {
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": bodies[route.path]}},
                },
                "responses": errors,
            }


def _with(schema: dict[str, Any], where: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A copy of ``schema`` with the node at ``where`` replaced by ``value`` (this server's model
    names, say)."""
    out = copy.deepcopy(schema)
    node: Any = out
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return out
