"""The OpenAI wire format, responses side: error bodies, completion bodies, the ``x-avengers-*``
headers, and the server-sent-event chunks of a streamed answer.

The routing account travels in an extra top-level ``avengers`` field, which standard clients
ignore.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse, Response

from ..answering.results import AnswerResult, Failure


def error_response(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    """An OpenAI-style ``{"error": {...}}`` response."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def upstream_error_response(failures: Sequence[Failure]) -> JSONResponse:
    """502: every candidate failed; the body lists what happened to each."""
    body = {
        "error": {
            "message": "every candidate model failed", "type": "upstream_error",
            "param": None, "code": "upstream_failed",
            "failures": [{"model": f.model, "kind": f.kind, "count": f.count} for f in failures],
        }
    }  # fmt: skip
    return JSONResponse(body, status_code=502)


def usage(res: AnswerResult) -> dict[str, Any] | None:
    """The ``usage`` object: tokens over every sample drawn, and ``cost`` (USD by the endpoints'
    prices, over every sample) when it is known; absent, never zero, when it is not. None
    (``"usage": null``) when an endpoint reported no token counts: unknown, never zero."""
    if not res.tokens_known:
        return None
    out: dict[str, Any] = {
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": res.completion_tokens,
        "total_tokens": res.prompt_tokens + res.completion_tokens,
    }
    if res.cost is not None:
        out["cost"] = res.cost
    return out


def headers_for(res: AnswerResult) -> dict[str, str]:
    """The ``x-avengers-*`` headers: who answered, how, and whether it was a fallback."""
    h = {
        "x-avengers-model": res.model,
        "x-avengers-strategy": res.strategy,
        "x-avengers-samples": str(res.n_drawn),
    }
    if res.decision is not None:
        h["x-avengers-cluster"] = str(res.decision.cluster)
    if res.fallback:
        h["x-avengers-fallback"] = "1"
    if res.cost is not None:
        h["x-avengers-cost"] = f"{res.cost:.10g}"
    if res.decision is not None and res.decision.sticky:
        h["x-avengers-sticky"] = "1"
    for store in res.unavailable:  # feedback: this id cannot be rated; conversation: afresh
        h[f"x-avengers-{store}"] = "unavailable"
    return h


class CompletionReply:
    """Identity of one completion (id, creation time, object kinds) and its response bodies."""

    def __init__(self, chat: bool, fingerprint: str = "") -> None:
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.echo = ""
        """Legacy ``echo``: the prompt, sent before the answer's text."""
        self.fingerprint = fingerprint or None
        """``system_fingerprint`` of the response and of every chunk (the server's; see
        :func:`avengers.server.state.fingerprint`)."""

    def response(self, res: AnswerResult) -> Response:
        """The whole (non-streamed) answer, with its account and headers."""
        choice: dict[str, Any]
        if self.chat:
            choice = {
                "index": 0, "message": {"role": "assistant", "content": res.text},
                "finish_reason": finish_reason(res), "logprobs": None,
            }  # fmt: skip
            if res.tool_calls:
                choice["message"].update(content=res.text or None, tool_calls=res.tool_calls)
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": self.echo + res.text,
                      "finish_reason": finish_reason(res), "logprobs": None}  # fmt: skip
            obj = "text_completion"
        payload = {
            "id": self.id, "object": obj, "created": self.created, "model": res.model,
            "system_fingerprint": self.fingerprint, "choices": [choice], "usage": usage(res),
            "avengers": res.account(),
        }  # fmt: skip
        return Response(dumps(payload), media_type="application/json", headers=headers_for(res))

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def chunk(
        self, piece: str | None, finish: str | None, model: str,
        extra: dict[str, Any] | None = None, first: bool = False,
    ) -> bytes:  # fmt: skip
        """One streamed piece of text (or the final, empty one with ``finish`` and ``extra``)."""
        if self.chat:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if piece is not None:
                delta["content"] = piece
            ch: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            ch = {"index": 0, "text": piece or "", "finish_reason": finish, "logprobs": None}
        d: dict[str, Any] = {
            "id": self.id,
            "object": self.chunk_object,
            "created": self.created,
            "model": model,
            "system_fingerprint": self.fingerprint,
            "choices": [ch],
        }
        if extra:
            d.update(extra)
        return sse(d)

    def tool_calls_chunk(self, res: AnswerResult, model: str, first: bool = False) -> bytes:
        """The streamed tool calls of the answer, whole, in one chunk (indexed as OpenAI's)."""
        calls = [{"index": i, **c} for i, c in enumerate(res.tool_calls)]
        delta: dict[str, Any] = {"tool_calls": calls}
        if first:
            delta = {"role": "assistant", "content": None, **delta}
        return sse({"id": self.id, "object": self.chunk_object, "created": self.created,
                    "model": model, "system_fingerprint": self.fingerprint,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})  # fmt: skip

    def usage_chunk(self, res: AnswerResult) -> bytes:
        """The extra last chunk a client asked for with ``stream_options.include_usage``."""
        return sse({"id": self.id, "object": self.chunk_object, "created": self.created,
                    "model": res.model, "system_fingerprint": self.fingerprint, "choices": [],
                    "usage": usage(res)})  # fmt: skip


try:  # orjson, when installed, writes the reply several times faster; it is optional
    import orjson

    def dumps(payload: dict[str, Any]) -> bytes:
        """``payload`` as JSON (NaN and infinities as null, NumPy scalars as numbers)."""
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY, default=_finite)

except ImportError:  # pragma: no cover - the standard library path

    def dumps(payload: dict[str, Any]) -> bytes:
        """``payload`` as JSON (NaN and infinities as null, NumPy scalars as numbers)."""
        return json.dumps(payload, default=_finite).encode()


def _finite(x: Any) -> Any:
    """JSON for what ``json`` cannot write itself (NumPy scalars)."""
    v = float(x)
    return v if math.isfinite(v) else None


def finish_reason(res: AnswerResult) -> str:
    """The returned sample's own finish reason, as its upstream said (``length``: cut off at the
    token limit); when the upstream said none, ``tool_calls`` for an answer that calls tools,
    else ``stop``."""
    if res.finish_reason:
        return res.finish_reason
    return "tool_calls" if res.tool_calls else "stop"


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return f"data: {json.dumps(data)}\n\n".encode()


def stream_upstream_error(failures: Sequence[Failure]) -> bytes:
    """The event that ends a stream when every candidate failed."""
    return sse({"error": {"message": "every candidate model failed", "type": "upstream_error",
                          "code": "upstream_failed", "param": None,
                          "failures": [{"model": f.model, "kind": f.kind} for f in failures]}})  # fmt: skip


def stream_internal_error() -> bytes:
    """The event that ends a stream on an unexpected server error (no internals leaked)."""
    return sse({"error": {"message": "internal server error", "type": "server_error",
                          "code": None, "param": None}})  # fmt: skip


STREAM_DONE = b"data: [DONE]\n\n"
"""The event that ends every stream."""
