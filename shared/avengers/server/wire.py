"""The OpenAI wire format, requests side: reading and validating the bodies of
``/v1/chat/completions`` and ``/v1/completions`` into one :class:`CompletionRequest`.

Anything wrong with a request raises :class:`BadRequest`, which the route turns into an
OpenAI-style error body (see :mod:`.replies`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ..conversations import check_key
from ..exceptions import ConfigError
from ..results import STRATEGIES, SamplingConfig
from ..toolcalls import OPTION_NAMES, request_options
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

    @property
    def include_usage(self) -> bool:
        """Whether a stream should end with a usage chunk (``stream_options.include_usage``)."""
        return bool((self.body.get("stream_options") or {}).get("include_usage"))


async def read_json(request: Request, max_body_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, at most ``max_body_bytes`` long."""
    raw = await request.body()
    if len(raw) > max_body_bytes:
        raise BadRequest(f"request body larger than {max_body_bytes} bytes", None, 413)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def parse_request(
    body: dict[str, Any], profiles: dict[str, Profile], max_tokens_limit: int, *, chat: bool
) -> CompletionRequest:
    """Validate a chat (``chat=True``) or text completion body, in the order clients see errors:
    model and sampling settings first, then the messages or prompt, then ``stream``."""
    prof, over, mt = _plan(body, profiles, max_tokens_limit)
    msgs = messages_from(body) if chat else prompt_messages(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", "stream")
    if mt is not None:
        over["max_tokens"] = mt
    if chat:
        over.update(tool_options(body))
    return CompletionRequest(chat, msgs, prof, over, stream, body)


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
    (see :func:`avengers.toolcalls.request_options`), for the answerer to pass on."""
    try:
        return request_options(**{k: body[k] for k in OPTION_NAMES if body.get(k) is not None})
    except ConfigError as e:
        param = next((k for k in OPTION_NAMES if k in str(e)), None)
        raise BadRequest(str(e), param) from None


def messages_from(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages, reduced to role and content; at least one must be the user's."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a 'role'", f"messages[{i}]")
        c = m.get("content")
        if c is not None and not isinstance(c, (str, list)):
            raise BadRequest(
                f"messages[{i}].content must be a string or a list of parts",
                f"messages[{i}].content",
            )
        out.append({"role": m["role"], "content": c})
        out[-1].update({k: m[k] for k in ("tool_calls", "tool_call_id", "name") if m.get(k)})
    if not any(m["role"] == "user" for m in out):
        raise BadRequest("at least one user message is needed to route on", "messages")
    return out


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
