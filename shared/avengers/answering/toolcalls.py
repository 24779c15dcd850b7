"""Tool calls and structured output: the request options, the wire form of tool calls, and the
keys that samples vote with.

Voting rules (also in docs/answering.md):

* A sample that calls tools votes with its calls: each call's tool name and its arguments as
  canonical JSON (keys sorted, no whitespace, ``1`` and ``1.0`` the same number), several
  parallel calls as a set (their order does not matter). Its vote counts only if every call
  names a tool of the request and its arguments parse as a JSON object that matches that
  tool's parameter schema.
* With ``response_format`` ``json_object`` or ``json_schema``, a text sample votes with its
  canonical JSON; it counts only if it parses (a Markdown code fence around it is allowed) and,
  for ``json_schema``, matches the schema.
* Mixed answers: when a request carries tools, every sample that answers in text (rather than
  calling a tool) votes for one shared answer, "a text reply". If that answer wins (under the
  usual rules: most votes, ties to the better-ranked model, then to the first to arrive), the
  text samples alone are voted on again as text answers are (``answer_type``), and the winner
  of that vote is returned. So tool calls compete with each other by their arguments, and
  replying in text competes as one option against each distinct call.
* Adaptive stopping runs on these keys exactly as on extracted text answers.

Tool calls travel in the OpenAI wire form: ``{"id", "type": "function", "function": {"name",
"arguments"}}`` with ``arguments`` a JSON string.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..exceptions import ConfigError
from ..transport.openai_params import UPSTREAM, check_upstream
from .messages import content_text

TOOL_MARK = "\x1etool_calls\x1e"
"""Prefix of a ballot text that stands for a sample's tool calls (see :func:`ballot_text`)."""
TEXT_REPLY = "(text reply)"
"""The one answer every text sample votes for when a request carries tools."""

ToolCall = dict[str, Any]
"""A tool call in the OpenAI wire form."""


# ------------------------------------------------------------------------ request options


def request_options(
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    parallel_tool_calls: bool | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The tool and structured-output options of a request, checked, with only the ones that
    are set (``response_format`` ``text`` is the default and dropped). Raises
    :class:`~avengers.exceptions.ConfigError` on a malformed option."""
    out: dict[str, Any] = {}
    if tools:
        if not isinstance(tools, Sequence) or isinstance(tools, (str, bytes)):
            raise ConfigError("tools must be a list of OpenAI tool definitions")
        checked: list[dict[str, Any]] = []
        for i, t in enumerate(tools):
            fn = t.get("function") if isinstance(t, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                raise ConfigError(
                    f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., "
                    "'parameters': {...}}}}"
                )
            params = fn.get("parameters")
            if params is not None:
                if not isinstance(params, Mapping):
                    raise ConfigError(
                        f"tools[{i}].function.parameters must be a JSON schema object, "
                        f"got {type(params).__name__}"
                    )
                check_schema(params, f"tools[{i}].function.parameters")
            checked.append({"type": "function", "function": dict(fn)})
        out["tools"] = checked
        if tool_choice is not None:
            if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
                raise ConfigError(
                    "tool_choice must be 'auto', 'none', 'required' or "
                    f"{{'type': 'function', 'function': {{'name': ...}}}}, got {tool_choice!r}"
                )
            if isinstance(tool_choice, Mapping):
                name = (tool_choice.get("function") or {}).get("name")
                if name not in {t["function"]["name"] for t in checked}:
                    raise ConfigError(f"tool_choice names a tool that is not given: {name!r}")
            elif not isinstance(tool_choice, str):
                raise ConfigError(f"tool_choice must be a string or a mapping, got {tool_choice!r}")
            out["tool_choice"] = tool_choice
        if parallel_tool_calls is not None:
            if not isinstance(parallel_tool_calls, bool):
                raise ConfigError("parallel_tool_calls must be true or false")
            out["parallel_tool_calls"] = parallel_tool_calls
    elif tool_choice not in (None, "none", "auto") or parallel_tool_calls is not None:
        raise ConfigError("tool_choice and parallel_tool_calls need tools")
    if response_format is not None:
        if not isinstance(response_format, Mapping):
            raise ConfigError("response_format must be a mapping with a 'type'")
        kind = response_format.get("type")
        if kind == "json_schema":
            js = response_format.get("json_schema")
            if not isinstance(js, Mapping) or not isinstance(js.get("schema", {}), Mapping):
                raise ConfigError(
                    "response_format json_schema needs "
                    "{'json_schema': {'name': ..., 'schema': {...}}}"
                )
            check_schema(js.get("schema", {}), "response_format.json_schema.schema")
        elif kind not in ("json_object", "text"):
            raise ConfigError(
                f"response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}"
            )
        if kind != "text":
            out["response_format"] = dict(response_format)
    return out


# ------------------------------------------------------------------------ canonical JSON


def _canon(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: keys sorted, no whitespace, integral numbers as integers
    (``1.0`` -> ``1``), non-ASCII kept."""
    return json.dumps(_canon(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?```\s*$", re.S)


MAX_JSON_DEPTH = 100
"""A sample's JSON value (or a tool call's arguments) nested deeper than this is not a vote: it
would only exhaust the stack of the parser and the canonical form (a model's output is not
trusted)."""


def json_depth_within(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value``'s lists and objects nest at most ``limit`` deep (checked without
    recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, Mapping):
            children: Any = v.values()
        elif isinstance(v, (list, tuple)):
            children = v
        else:
            continue
        if depth > limit:
            return False
        stack.extend((c, depth + 1) for c in children)
    return True


def parse_json(text: str) -> Any:
    """``json.loads`` that also raises ``ValueError`` (not ``RecursionError``) for a value nested
    deeper than :data:`MAX_JSON_DEPTH`."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} deep") from None
    if not json_depth_within(value):
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} deep")
    return value


def parse_json_text(text: str) -> Any:
    """The JSON value in a sample's text (a Markdown code fence around it is allowed). Raises
    ``ValueError`` if it is not JSON or nests deeper than :data:`MAX_JSON_DEPTH`."""
    m = _FENCE.match(text)
    return parse_json(m.group(1) if m else text)


# ------------------------------------------------------------------------ schema check


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
        return _pointer(ref, root) or {}
    return schema


def check_schema(schema: Mapping[str, Any], where: str = "schema") -> None:
    """Raise :class:`~avengers.exceptions.ConfigError` if ``schema`` cannot be checked against:
    a local ``$ref`` that resolves to no schema, or references that loop without going down a
    level of the value (``{"$ref": "#"}``, ``{"anyOf": [{"$ref": "#"}]}``), which no value
    could ever be checked against. Recursive schemas that go down a level (a tree whose
    ``children`` items refer back to the root) are fine; or a keyword the checks read that is
    of the wrong kind (``"required": [[1]]``, ``"minLength": "3"``, ``"type": 5``). Walks the
    schema without recursion, so any depth is safe."""
    _check_keywords(schema, where)
    # every schema node, and the nodes each one hands the same value to (a $ref's target, the
    # members of anyOf / oneOf / allOf): a cycle among those edges never ends
    same_value: dict[int, list[Mapping[str, Any]]] = {}
    nodes: list[Mapping[str, Any]] = [schema]
    seen = {id(schema)}
    while nodes:
        node = nodes.pop()
        edges: list[Mapping[str, Any]] = []
        ref = node.get("$ref")
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            target = _pointer(ref, schema)
            if target is None:
                raise ConfigError(f"{where}: $ref {ref!r} does not point to a schema")
            edges.append(target)
        for key in ("anyOf", "oneOf", "allOf"):
            members = node.get(key)
            if isinstance(members, list):
                edges += [m for m in members if isinstance(m, Mapping)]
        same_value[id(node)] = edges
        stack: list[Any] = list(node.values())
        while stack:  # every schema below this node (through any keyword)
            v = stack.pop()
            if isinstance(v, Mapping):
                if id(v) not in seen:
                    seen.add(id(v))
                    nodes.append(v)
            elif isinstance(v, list):
                stack.extend(v)
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in same_value:
        if start in state:
            continue
        path: list[tuple[int, Iterator[Mapping[str, Any]]]] = [(start, iter(same_value[start]))]
        state[start] = 1
        while path:
            node_id, it = path[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node_id] = 2
                path.pop()
                continue
            k = id(nxt)
            if state.get(k) == 1:
                raise ConfigError(
                    f"{where}: a self-referential $ref (it refers back to itself without "
                    "describing a nested value, so no value can ever match)"
                )
            if k not in state:
                state[k] = 1
                path.append((k, iter(same_value.get(k, ()))))


_COUNTS = ("minItems", "maxItems", "minLength", "maxLength")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _keyword_error(node: Mapping[str, Any]) -> str | None:
    """What is wrong with the keywords :func:`matches_schema` reads in one schema node."""
    t = node.get("type")
    if t is not None and not (
        isinstance(t, str) or (isinstance(t, list) and all(isinstance(x, str) for x in t))
    ):
        return "'type' must be a string or a list of strings"
    req = node.get("required")
    if req is not None and not (isinstance(req, list) and all(isinstance(x, str) for x in req)):
        return "'required' must be a list of property names (strings)"
    if "enum" in node and not isinstance(node["enum"], list):
        return "'enum' must be a list"
    props = node.get("properties")
    if props is not None and not (
        isinstance(props, Mapping) and all(isinstance(v, (Mapping, bool)) for v in props.values())
    ):
        return "'properties' must map property names to schemas"
    for key in ("additionalProperties", "items"):
        if key in node and not isinstance(node[key], (Mapping, bool, list)):
            return f"'{key}' must be a schema"
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node and not (
            isinstance(node[key], list) and all(isinstance(m, (Mapping, bool)) for m in node[key])
        ):
            return f"'{key}' must be a list of schemas"
    for key in _COUNTS:
        v = node.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            return f"'{key}' must be an integer >= 0"
    for key in _BOUNDS:
        v = node.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"'{key}' must be a number"
    return None


def _check_keywords(schema: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` for a keyword of the wrong kind anywhere in ``schema`` (walked
    through the places that hold schemas, without recursion)."""
    nodes: list[Any] = [schema]
    seen: set[int] = set()
    while nodes:
        node = nodes.pop()
        if not isinstance(node, Mapping) or id(node) in seen:
            continue
        seen.add(id(node))
        problem = _keyword_error(node)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
        props = node.get("properties")
        nodes += list(props.values()) if isinstance(props, Mapping) else []
        for key in ("additionalProperties", "items", "not"):
            child = node.get(key)
            nodes += child if isinstance(child, list) else [child]
        for key in ("anyOf", "oneOf", "allOf"):
            nodes += node.get(key) or []
        for key in ("$defs", "definitions"):
            defs = node.get(key)
            nodes += list(defs.values()) if isinstance(defs, Mapping) else []


def _pointer(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The node a local JSON pointer (``#`` or ``#/a/b``) names in ``root``, or None."""
    node: Any = root
    for part in ref[2:].split("/") if ref.startswith("#/") else ():
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, Mapping) else None


MAX_SCHEMA_DEPTH = 200
"""Nested checks :func:`matches_schema` makes at most before it gives up (no match): a value
nested deeper than this under a recursive schema does not count as a vote."""


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
        and not isinstance(v, bool)
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def matches_schema(value: Any, schema: Any, root: Any = None, _depth: int = 0) -> bool:
    """Whether ``value`` matches a JSON schema. Covers what tool and response schemas use:
    ``type``, ``properties``, ``required``, ``additionalProperties``, ``items``, ``enum``,
    ``const``, ``anyOf`` / ``oneOf`` / ``allOf``, local ``$ref`` and numeric and length bounds.
    Keywords it does not know are not checked. Beyond :data:`MAX_SCHEMA_DEPTH` nested checks
    the value does not match (a looping or very deep schema never exhausts the stack)."""
    if isinstance(schema, bool):  # the schemas `true` (anything) and `false` (nothing)
        return schema
    if not isinstance(schema, Mapping):
        return True
    if _depth > MAX_SCHEMA_DEPTH:
        return False
    root = schema if root is None else root
    d = _depth + 1
    schema = _resolve(schema, root)
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_TYPES.get(x, lambda v: True)(value) for x in types):
            return False
    if "enum" in schema and _canon(value) not in [_canon(x) for x in schema["enum"]]:
        return False
    if "const" in schema and _canon(value) != _canon(schema["const"]):
        return False
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(matches_schema(value, s, root, d) for s in schema[key]):
            return False
    if "allOf" in schema and not all(matches_schema(value, s, root, d) for s in schema["allOf"]):
        return False
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        if any(k not in value for k in schema.get("required") or ()):
            return False
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                if not matches_schema(v, props[k], root, d):
                    return False
            elif extra is False or (
                isinstance(extra, Mapping) and not matches_schema(v, extra, root, d)
            ):
                return False
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, (Mapping, bool)) and not all(
            matches_schema(v, items, root, d) for v in value
        ):
            return False
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
            return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            return False
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return False
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            return False
    if isinstance(value, str):
        n = len(value)
        if n < schema.get("minLength", 0) or n > schema.get("maxLength", math.inf):
            return False
    return True


# ------------------------------------------------------------------------ wire form


def tool_call(name: str, arguments: str | Mapping[str, Any], id: str | None = None) -> ToolCall:
    """A tool call in the OpenAI wire form (``arguments`` as a JSON string)."""
    args = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
    return {
        "id": id or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def tool_calls_from(message: Any) -> tuple[ToolCall, ...]:
    """The tool calls of an OpenAI response message (object or dict), in the wire form."""
    calls = _get(message, "tool_calls") or ()
    out = []
    for c in calls if isinstance(calls, (list, tuple)) else ():
        fn = _get(c, "function")
        name = _get(fn, "name")
        if not isinstance(name, str):
            continue
        args = _get(fn, "arguments")
        out.append(tool_call(name, args if isinstance(args, str) else "", _get(c, "id")))
    return tuple(out)


class ToolCallAccumulator:
    """Joins the ``delta.tool_calls`` pieces of a streamed response into whole calls."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: Any) -> None:
        for d in deltas or ():
            idx = _get(d, "index")
            i = int(idx) if isinstance(idx, int) else len(self._calls)
            slot = self._calls.setdefault(i, {"id": None, "name": "", "arguments": ""})
            if _get(d, "id"):
                slot["id"] = _get(d, "id")
            fn = _get(d, "function")
            if fn is not None:
                slot["name"] += _get(fn, "name") or ""
                slot["arguments"] += _get(fn, "arguments") or ""

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            tool_call(c["name"], c["arguments"], c["id"])
            for _, c in sorted(self._calls.items())
            if c["name"]
        )


# ------------------------------------------------------------------------ ballots


def ballot_text(text: str, tool_calls: Sequence[ToolCall] = ()) -> str:
    """What a sample votes with, as a string the vote can count: its text, or, if it called
    tools, a marked JSON list of its calls (names and raw arguments)."""
    if not tool_calls:
        return text
    calls = [
        {"name": c["function"]["name"], "arguments": c["function"].get("arguments") or ""}
        for c in tool_calls
    ]
    return TOOL_MARK + json.dumps(calls)


def is_tool_ballot(text: str) -> bool:
    return text.startswith(TOOL_MARK)


class VoteKey:
    """The extractor used when a request carries tools or a JSON response format: a sample's
    ballot text -> its canonical key, or None when it does not count (see the module
    docstring). ``answer_type`` is ``tool_call`` or ``json``; ``text_type`` is how text samples
    are voted on again when "a text reply" wins (None: no text fallback)."""

    def __init__(self, options: Mapping[str, Any], text_type: Any = "auto") -> None:
        self.tools = {
            t["function"]["name"]: t["function"].get("parameters") or {"type": "object"}
            for t in options.get("tools") or ()
        }
        fmt = options.get("response_format") or {}
        self.json = fmt.get("type") in ("json_object", "json_schema")
        self.schema = (
            (fmt.get("json_schema") or {}).get("schema")
            if fmt.get("type") == "json_schema"
            else None
        )
        self.answer_type = "tool_call" if self.tools else "json"
        self.text_type = text_type if self.tools and not self.json else None

    def __repr__(self) -> str:
        return f"VoteKey({self.answer_type}, tools={sorted(self.tools)}, json={self.json})"

    def __call__(self, text: str) -> str | None:
        if is_tool_ballot(text):
            return self.calls_key(json.loads(text[len(TOOL_MARK) :]))
        if self.json:
            try:
                value = parse_json_text(text)
            except ValueError:
                return None
            if self.schema is not None and not matches_schema(value, self.schema):
                return None
            if self.schema is None and not isinstance(value, (dict, list)):
                return None
            return canonical_json(value)
        return TEXT_REPLY if self.tools else None

    def calls_key(self, calls: list[dict[str, str]]) -> str | None:
        """The key of a sample's tool calls, or None if any call is malformed."""
        keys = []
        for c in calls:
            name, raw = c.get("name"), c.get("arguments") or "{}"
            if name not in self.tools:
                return None
            try:
                args = parse_json(raw)
            except ValueError:
                return None
            if not isinstance(args, dict) or not matches_schema(args, self.tools[name]):
                return None
            keys.append(f"{name}({canonical_json(args)})")
        return "; ".join(sorted(keys)) if keys else None


def vote_key(options: Mapping[str, Any], text_type: Any = "auto") -> VoteKey | None:
    """The extractor for a request with these options (None: a plain-text request)."""
    fmt = (options.get("response_format") or {}).get("type")
    if options.get("tools") or fmt in ("json_object", "json_schema"):
        return VoteKey(options, text_type)
    return None


__all__ = [
    "OPTION_NAMES",
    "TEXT_REPLY",
    "ToolCall",
    "ToolCallAccumulator",
    "VoteKey",
    "ballot",
    "ballot_text",
    "canonical_json",
    "check_schema",
    "flatten_tool_turns",
    "is_tool_ballot",
    "matches_schema",
    "parse_json_text",
    "request_options",
    "split_options",
    "tool_call",
    "tool_calls_from",
    "vote_key",
]


def flatten_tool_turns(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A history for a candidate without tool calling: tool results become user turns and
    assistant tool calls become text; other messages are kept as they are."""
    out: list[Mapping[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            name = m.get("name") or m.get("tool_call_id") or "tool"
            out.append(
                {"role": "user", "content": f"[{name} result] {content_text(m.get('content'))}"}
            )
        elif role in ("assistant", "ai") and m.get("tool_calls"):
            calls = ", ".join(
                f"{c['function']['name']}({c['function'].get('arguments') or ''})"
                for c in tool_calls_from(m)
            )
            text = content_text(m.get("content"))
            out.append({"role": "assistant", "content": f"{text}\n[called {calls}]".strip()})
        else:
            out.append(m)
    return out


def ballot(completion: Any) -> str:
    """:func:`ballot_text` of a :class:`~avengers.transport.backends.Completion`."""
    return ballot_text(completion.text, getattr(completion, "tool_calls", ()) or ())


OPTION_NAMES: tuple[str, ...] = ("tools", "tool_choice", "parallel_tool_calls", "response_format")
"""The call keywords that are request options, not sampling settings."""


def split_options(cfg: Any, overrides: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Take the request options out of an answer call's keywords: the call's
    :class:`~avengers.answering.config.SamplingConfig` (with the vote key as its answer type when
    the request carries tools or a JSON format) and the checked options, the OpenAI parameters
    of :data:`avengers.transport.openai_params.UPSTREAM` (``seed``, ``top_p``, ...) among them."""
    opts = request_options(**{k: overrides.pop(k) for k in OPTION_NAMES if k in overrides})
    for name in UPSTREAM:  # OpenAI parameters handed to every sample (seed, top_p, ...)
        if overrides.get(name) is not None:
            opts[name] = check_upstream(name, overrides.pop(name))
        overrides.pop(name, None)
    cfg = cfg.updated(**overrides)
    key = vote_key(opts, cfg.answer_type)
    return (cfg.updated(answer_type=key) if key is not None else cfg), opts
