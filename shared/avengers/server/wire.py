"""The OpenAI wire format, requests side: reading and validating the bodies of
``/v1/chat/completions`` and ``/v1/completions`` into one :class:`CompletionRequest`.

Anything wrong with a request raises :class:`BadRequest`, which the route turns into an
OpenAI-style error body (see :mod:`.replies`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ..answering.results import STRATEGIES, SamplingConfig
from ..answering.toolcalls import OPTION_NAMES, request_options
from ..exceptions import ConfigError
from ..stores.conversations import check_key
from ..transport.openai_params import ParameterError, check_parameters
from .state import Profile


class BadRequest(Exception):
    """A client mistake: the message, the offending parameter, and the HTTP status."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


@dataclass
class CompletionRequest:
    """A validated completion request, ready for the answerer."""

    chat: bool
    """``/v1/chat/completions`` (True) or ``/v1/completions`` (False)."""
    messages: list[dict[str, Any]]
    profile: Profile
    overrides: dict[str, Any]
    """Sampling settings for :meth:`Answerer.aanswer` (profile's, then the request's)."""
    stream: bool
    body: dict[str, Any]
    """The raw JSON body (``stream_options`` is read from it only when streaming)."""
    conversation: str | None = None
    """The conversation key (body field ``conversation`` or header ``X-Conversation-Id``)."""
    echo: str = ""
    """Legacy completions with ``echo``: the prompt, sent back before the answer."""

    @property
    def include_usage(self) -> bool:
        """Whether a stream should end with a usage chunk (``stream_options.include_usage``)."""
        return bool((self.body.get("stream_options") or {}).get("include_usage"))


MAX_JSON_DEPTH = 64
"""The deepest nesting of objects and lists a request body may have (OpenAI's own bodies, tool
schemas included, stay far below it). Deeper bodies are a 400, before anything walks them."""


async def read_json(request: Request, max_body_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, at most ``max_body_bytes`` long; see :func:`parse_json`."""
    raw = await request.body()
    if len(raw) > max_body_bytes:
        raise BadRequest(f"request body larger than {max_body_bytes} bytes", None, 413)
    return parse_json(raw)


def parse_json(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object the server can work with, else :class:`BadRequest` (400): valid
    JSON, an object, nested at most :data:`MAX_JSON_DEPTH` deep, numbers finite (no ``NaN`` or
    ``Infinity``) and integers within 64 bits (what the server could not send upstream is refused
    here, not blamed on the upstream later), and every string (keys too) valid text (see
    :func:`check_body_text`)."""
    try:
        body = json.loads(
            raw, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_int64
        )
    except _NotFinite as e:
        raise BadRequest(
            f"request body holds {e}: numbers must be finite, integers 64-bit"
        ) from None
    except RecursionError:
        raise BadRequest(f"request body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    check_body_text(body)
    return body


class _NotFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def _int64(text: str) -> int:
    v = int(text) if len(text) <= 21 else None  # never convert a 5,000-digit number
    if v is None or not -(2**63) <= v < 2**64:
        raise _NotFinite(f"an integer out of range ({text[:20]}{'...' if len(text) > 20 else ''})")
    return v


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _NotFinite(f"a number out of range ({text[:20]})")
    return v


def check_body_text(body: dict[str, Any]) -> None:
    """Raise :class:`BadRequest` (400) if ``body`` is nested deeper than :data:`MAX_JSON_DEPTH`,
    or names the first string in it (a key or a value) that is not valid text, e.g.
    ``messages[0].content``: JSON may carry a lone surrogate (``"\\ud800"``), which cannot be
    embedded, sent upstream, stored or echoed in an error. One pass, without recursion."""
    stack: list[tuple[Any, str, int]] = [(body, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(f"request body is nested more than {MAX_JSON_DEPTH} levels deep")
            if isinstance(value, dict):
                for k, v in value.items():
                    _check_text(k, f"{path}.{{key}}" if path else "{key}")
                    stack.append((v, f"{path}.{k}" if path else k, depth + 1))
            else:
                stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "backslashreplace").decode("utf-8")
        raise BadRequest(
            f"{shown} is not valid text: it cannot be encoded as UTF-8 "
            "(a lone surrogate such as \\ud800?)",
            shown,
        ) from None


def parse_request(
    body: dict[str, Any], profiles: dict[str, Profile], max_tokens_limit: int, *, chat: bool
) -> CompletionRequest:
    """Validate a chat (``chat=True``) or text completion body, in the order clients see errors:
    model and sampling settings first, then the messages or prompt, then ``stream``."""
    prof, over, mt = _plan(body, profiles, max_tokens_limit)
    try:  # every other OpenAI parameter: passed to the candidates, or a 400 naming it
        over.update(check_parameters(body, chat=chat, pinned=prof.prefer is not None))
    except ParameterError as e:
        raise BadRequest(str(e), e.param) from None
    msgs = messages_from(body) if chat else prompt_messages(body)
    echo = body.get("echo")
    if echo is not None and not isinstance(echo, bool):
        raise BadRequest("'echo' must be true or false", "echo")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", "stream")
    opts = body.get("stream_options")
    if opts is not None and not (
        isinstance(opts, dict) and isinstance(opts.get("include_usage", False), bool)
    ):
        raise BadRequest(
            "'stream_options' must be an object such as {\"include_usage\": true}",
            "stream_options",
        )
    if mt is not None:
        over["max_tokens"] = mt
    if chat:
        over.update(tool_options(body))
    req = CompletionRequest(chat, msgs, prof, over, stream, body)
    if echo:
        req.echo = str(msgs[0]["content"])
    return req


CONVERSATION_HEADER = "x-conversation-id"


def conversation_key(body: dict[str, Any], headers: Any) -> str | None:
    """The request's conversation key: the body's ``conversation`` field (``extra_body`` in the
    openai client), else the ``X-Conversation-Id`` header; None when neither is given."""
    key = body.get("conversation")
    param = "conversation"
    if key is None:
        key, param = headers.get(CONVERSATION_HEADER), CONVERSATION_HEADER
    if key is None:
        return None
    try:
        return check_key(key)
    except ConfigError as e:
        raise BadRequest(str(e), param) from None


def tool_options(body: dict[str, Any]) -> dict[str, Any]:
    """``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format``, checked
    (see :func:`avengers.answering.toolcalls.request_options`), for the answerer to pass on."""
    given = {k: body[k] for k in OPTION_NAMES if body.get(k) is not None}
    if isinstance(given.get("tool_choice"), dict) and given["tool_choice"].get("type") == (
        "allowed_tools"
    ):
        given.update(allowed_tools(given["tool_choice"], given.get("tools")))
    try:
        return request_options(**given)
    except ConfigError as e:
        param = next((k for k in OPTION_NAMES if k in str(e)), None)
        raise BadRequest(str(e), param) from None


def allowed_tools(choice: dict[str, Any], tools: Any) -> dict[str, Any]:
    """``tool_choice: {"type": "allowed_tools", "allowed_tools": {"mode", "tools"}}`` as the
    candidates take it: the offered ``tools`` narrowed to the allowed ones, and the ``mode``
    (``auto`` or ``required``) as the ``tool_choice``."""
    spec = choice.get("allowed_tools")
    mode = spec.get("mode") if isinstance(spec, dict) else None
    allowed = spec.get("tools") if isinstance(spec, dict) else None
    if mode not in ("auto", "required") or not isinstance(allowed, list) or not allowed:
        raise BadRequest(
            '\'tool_choice\' of type allowed_tools needs {"allowed_tools": {"mode": "auto" '
            'or "required", "tools": [{"type": "function", "function": '
            '{"name": ...}}, ...]}}',
            "tool_choice",
        )
    names = []
    for t in allowed:
        fn = t.get("function") if isinstance(t, dict) else None
        name = (
            fn.get("name")
            if isinstance(fn, dict)
            else t.get("name")
            if isinstance(t, dict)
            else None
        )
        if not isinstance(name, str):
            raise BadRequest("each allowed tool needs a function name", "tool_choice")
        names.append(name)
    offered = tools if isinstance(tools, list) else []
    keep = [
        t for t in offered if isinstance(t, dict) and (t.get("function") or {}).get("name") in names
    ]
    missing = sorted(set(names) - {(t.get("function") or {}).get("name") for t in keep})
    if missing:
        raise BadRequest(f"'tool_choice' allows tools that are not given: {missing}", "tool_choice")
    return {"tools": keep, "tool_choice": mode}


def messages_from(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages, reduced to role and content; at least one must be the user's."""
    msgs = check_messages(body.get("messages"))
    out = []
    for m in msgs:
        out.append({"role": m["role"], "content": m.get("content")})
        out[-1].update({k: m[k] for k in ("tool_calls", "tool_call_id", "name") if m.get(k)})
    if not any(m["role"] == "user" for m in out):
        raise BadRequest("at least one user message is needed to route on", "messages")
    return out


def check_messages(msgs: Any) -> list[dict[str, Any]]:
    """``msgs`` if it is a non-empty list of chat messages: objects with a string ``role`` and a
    ``content`` that is a string, null, or a list of content parts (objects with a string
    ``type``; a ``text`` part's ``text`` a string). Else :class:`BadRequest` naming the field."""
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty list", "messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a 'role'", f"messages[{i}]")
        check_tool_fields(m, i)
        c = m.get("content")
        where = f"messages[{i}].content"
        if c is None or isinstance(c, str):
            continue
        if not isinstance(c, list):
            raise BadRequest(f"{where} must be a string or a list of parts", where)
        for j, part in enumerate(c):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise BadRequest(
                    f"{where}[{j}] must be an object with a 'type' (e.g. 'text')", f"{where}[{j}]"
                )
            if (part["type"] == "text" or "text" in part) and not isinstance(part.get("text"), str):
                raise BadRequest(f"{where}[{j}].text must be a string", f"{where}[{j}].text")
    return msgs


def check_tool_fields(m: dict[str, Any], i: int) -> None:
    """A message's ``name`` and ``tool_call_id`` are strings (or absent or null), and its
    ``tool_calls`` a list of objects whose ``function`` has a string ``name`` and, if given, string
    ``arguments``; else :class:`BadRequest` naming the field."""
    for key in ("name", "tool_call_id"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise BadRequest(f"messages[{i}].{key} must be a string", f"messages[{i}].{key}")
    calls = m.get("tool_calls")
    if calls is None:
        return
    where = f"messages[{i}].tool_calls"
    if not isinstance(calls, list):
        raise BadRequest(f"{where} must be a list of tool calls", where)
    for j, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(
                f'{where}[{j}] must be an object with a "function": {{"name": ..., '
                '"arguments": "<JSON text>"}',
                f"{where}[{j}]",
            )
        if fn.get("arguments") is not None and not isinstance(fn["arguments"], str):
            raise BadRequest(
                f"{where}[{j}].function.arguments must be a string (JSON text)",
                f"{where}[{j}].function.arguments",
            )
        if c.get("id") is not None and not isinstance(c["id"], str):
            raise BadRequest(f"{where}[{j}].id must be a string", f"{where}[{j}].id")


def prompt_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A text completion's ``prompt`` (a string, or a list of exactly one) as one user message."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("'prompt' must be a non-empty string", "prompt")
    return [{"role": "user", "content": prompt}]


def number(body: dict[str, Any], key: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    """``body[key]`` if it is a number (an integer if asked) in ``[lo, hi]``; None if absent."""
    v = body.get(key)
    if v is None:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok or isinstance(v, bool) or not lo <= v <= hi:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"'{key}' must be {kind} in [{lo}, {hi}]", key)
    return v


MAX_STOPS = 4
"""The most stop sequences a request may give (OpenAI's limit)."""


def parse_stop(body: dict[str, Any]) -> list[str] | None:
    """The request's ``stop``: a string or a list of at most :data:`MAX_STOPS` non-empty
    strings, sent to every sample (beside each endpoint's own); None when absent or empty."""
    stop = body.get("stop")
    if stop is None:
        return None
    stops = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOPS
        or not all(isinstance(x, str) and x for x in stops)
    ):
        raise BadRequest(
            f"'stop' must be a non-empty string or a list of at most {MAX_STOPS} of them", "stop"
        )
    return stops or None


def parse_alpha(body: dict[str, Any]) -> float | None:
    """The request's ``alpha`` (cost/quality trade-off), which must lie in [0, 1]."""
    a = number(body, "alpha", 0.0, 1.0)
    return None if a is None else float(a)


def _plan(
    body: dict[str, Any], profiles: dict[str, Profile], max_tokens_limit: int
) -> tuple[Profile, dict[str, Any], int | None]:
    """The profile named by ``model``, the sampling overrides, and the completion length cap."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise BadRequest("'model' is required (e.g. 'avengers')", "model")
    prof = profiles.get(name)
    if prof is None:
        raise BadRequest(f"unknown model {name!r}; available: {sorted(profiles)}", "model", 404)
    over = dict(prof.overrides)
    t = number(body, "temperature", 0.0, 2.0)
    if t is not None:
        over["temperature"] = float(t)
    mt = number(body, "max_tokens", 1, max_tokens_limit, integer=True)
    if mt is None:
        mt = number(body, "max_completion_tokens", 1, max_tokens_limit, integer=True)
    number(body, "n", 1, 1, integer=True)  # only n=1 is served: one (voted) answer
    stops = parse_stop(body)
    if stops is not None:
        over["stop"] = stops
    ns = number(body, "n_samples", 1, 64, integer=True)
    if ns is not None:
        over["n_samples"] = ns
    a = parse_alpha(body)
    if a is not None:
        over["alpha"] = a
    mc = number(body, "max_cost", 0.0, float("inf"))
    if mc is not None:
        over["max_cost"] = float(mc)
    s = body.get("strategy")
    if s is not None:
        if s not in STRATEGIES:
            raise BadRequest(f"'strategy' must be one of {list(STRATEGIES)}", "strategy")
        over["strategy"] = s
    at = body.get("answer_type")
    if at is not None:
        over["answer_type"] = at
    try:
        SamplingConfig().updated(**over)
    except ConfigError as e:
        raise BadRequest(str(e)) from None
    return prof, over, mt
