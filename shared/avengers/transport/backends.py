"""Calling candidate models: a small backend protocol and its OpenAI-compatible implementation.

The answering layer talks to models only through :class:`Backend`, so the same routing, sampling
and voting code drives OpenAI-compatible servers (here), LangChain runnables and LlamaIndex LLMs
(in the adapters). A backend call either returns a :class:`Completion` or raises
:class:`CallError` with a short ``kind`` (``timeout``, ``connection``, ``rate_limit``,
``server_error``, ``bad_response``, ``client_error``, ``config``, ``truncated``: a stream that
ended without a finish reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from ..answering.messages import Message, content_text
from ..answering.toolcalls import ToolCallAccumulator, flatten_tool_turns, tool_calls_from
from ..exceptions import AvengersError, ConfigError
from .capabilities import Capabilities, wire_options
from .endpoints import Endpoint, load_endpoints
from .retry import GaveUp, retrying
from .upstream import BadReply, JSONClient, UnsendableRequest

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Completion:
    """One sampled answer."""

    model: str
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    cost: float | None = None
    """What the call cost (None: unknown: no prices configured, or no token counts returned)."""
    finish_reason: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    """Tool calls in the OpenAI wire form (see :mod:`avengers.answering.toolcalls`), if the model made any."""
    tokens_known: bool = True
    """Whether the endpoint reported token counts (False: it sent no ``usage``, and the zero
    counts above stand for unknown, never for zero tokens)."""


class CallError(AvengersError):
    """One failed call to a candidate model. ``kind`` classifies the fault."""

    def __init__(self, model: str, kind: str, message: str) -> None:
        super().__init__(f"{model}: {kind}: {message}")
        self.model = model
        self.kind = kind
        self.message = message


class ObjectBackend(Generic[T]):
    """Shared part of backends whose candidates are Python objects held by name (LangChain
    runnables, LlamaIndex LLMs): the names, one concurrency limit for every candidate, and the
    rule that anything a candidate raises becomes a :class:`CallError` of :attr:`error_kind`."""

    error_kind: ClassVar[str] = "candidate_error"

    def __init__(self, candidates: Mapping[str, T], *, max_concurrency: int = 4) -> None:
        if max_concurrency < 1:
            raise ConfigError("max_concurrency must be >= 1")
        self.candidates: dict[str, T] = dict(candidates)
        self.max_concurrency = max_concurrency

    def __repr__(self) -> str:
        return f"{type(self).__name__}(models={sorted(self.candidates)})"

    def models(self) -> Collection[str]:
        return self.candidates.keys()

    def concurrency(self, model: str) -> int:
        return self.max_concurrency

    def fault(self, model: str, exc: BaseException) -> CallError:
        """The recorded fault for an exception raised by candidate ``model``."""
        return CallError(model, self.error_kind, f"{type(exc).__name__}: {str(exc)[:200]}")


@runtime_checkable
class Backend(Protocol):
    """What the answering layer needs from a set of candidate models."""

    def models(self) -> Collection[str]:
        """Names of the candidates this backend can call."""
        ...

    def concurrency(self, model: str) -> int:
        """How many calls to ``model`` may be in flight at once."""
        ...

    async def complete(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        temperature: float | None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        """One sample. Raises :class:`CallError` on any failure. ``temperature`` None means
        the model's own setting; ``stop`` (extra stop sequences) is passed only when set, so a
        backend that takes no ``stop`` keeps working until someone asks for stop sequences."""
        ...

    def stream(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        temperature: float | None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncIterator[str | Completion]:
        """Text chunks as they arrive, then one final :class:`Completion` with usage."""
        ...


def prepare_messages(endpoint: Endpoint, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Apply the endpoint's system prompt and, for templates without a system role, merge
    system text into the first user turn."""
    msgs = [dict(m) for m in messages]
    if endpoint.system_prompt:
        msgs.insert(0, {"role": "system", "content": endpoint.system_prompt})
    if endpoint.system_role:
        return msgs
    system = "\n\n".join(str(m.get("content") or "") for m in msgs if m.get("role") == "system")
    rest = [m for m in msgs if m.get("role") != "system"]
    if system:
        for m in rest:
            if m.get("role") == "user":
                m["content"] = f"{system}\n\n{m.get('content') or ''}"
                break
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


def render_prompt(endpoint: Endpoint, messages: Sequence[Message]) -> str:
    """A conversation as one plain prompt, for ``api: completions`` endpoints (base models)."""
    parts: list[str] = []
    system = [str(m.get("content") or "") for m in messages if m.get("role") == "system"]
    if endpoint.system_prompt:
        system.insert(0, endpoint.system_prompt)
    if system:
        parts.append("\n".join(system) + "\n\n")
    for m in messages:
        role, content = m.get("role"), m.get("content")
        text = content_text(content)
        if role in ("user", "human"):
            parts.append(endpoint.prompt_template.replace("{prompt}", text))
        elif role in ("assistant", "ai"):
            parts.append(f" {text}\n\n")
    return "".join(parts)


def _classify(exc: BaseException) -> tuple[str, str]:
    import openai

    if isinstance(exc, GaveUp):  # a retryable error not retried (deadline, long Retry-After)
        kind, msg = _classify(exc.cause)
        return kind, f"{msg}; {exc.reason}"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", "no answer within the timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection", "cannot connect"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit", "HTTP 429 (rate limited)"
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        kind = "server_error" if code >= 500 else "client_error"
        return kind, f"HTTP {code}"
    if isinstance(exc, openai.APIResponseValidationError):
        return "bad_response", "response did not match the OpenAI schema"
    if isinstance(exc, ConfigError):
        return "config", str(exc)
    if isinstance(exc, BadReply):
        return "bad_response", str(exc)
    if isinstance(exc, UnsendableRequest):
        return "client_error", str(exc)
    return "bad_response", f"{type(exc).__name__}"


class _LoopState:
    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}
        self.json_clients: dict[str, JSONClient] = {}
        self.limits: dict[str, asyncio.Semaphore] = {}


class OpenAIBackend:
    """Candidate models behind OpenAI-compatible endpoints. Whole answers go through the lean
    :class:`~avengers.transport.upstream.JSONClient`, streamed ones through the official ``openai`` client;
    one client of each kind (made when first needed) and one concurrency limit per endpoint, per
    event loop (an async HTTP connection pool belongs to the loop that made it); retries with
    exponential backoff and timeouts come from each endpoint's settings."""

    def __init__(self, endpoints: Any) -> None:
        self.endpoints: dict[str, Endpoint] = load_endpoints(endpoints)
        self._state: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(models={sorted(self.endpoints)})"

    def models(self) -> Collection[str]:
        return self.endpoints.keys()

    def concurrency(self, model: str) -> int:
        return self.endpoints[model].max_concurrency

    def capabilities(self, model: str) -> Capabilities | None:
        """What ``model``'s endpoint declares it supports (see :mod:`avengers.transport.capabilities`)."""
        ep = self.endpoints.get(model)
        return ep.capabilities if ep is not None else None

    def endpoint(self, model: str) -> Endpoint:
        try:
            return self.endpoints[model]
        except KeyError:
            raise ConfigError(f"no endpoint configured for model {model!r}") from None

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        st = self._state.get(loop)
        if st is None:
            st = self._state[loop] = _LoopState()
        return st

    def _limit(self, st: _LoopState, model: str, ep: Endpoint) -> asyncio.Semaphore:
        if model not in st.limits:
            st.limits[model] = asyncio.Semaphore(ep.max_concurrency)
        return st.limits[model]

    def _client(self, model: str) -> tuple[Any, asyncio.Semaphore]:
        """The official client (streamed calls) and the endpoint's concurrency limit."""
        from openai import AsyncOpenAI

        st = self._loop_state()
        ep = self.endpoint(model)
        if model not in st.clients:
            st.clients[model] = AsyncOpenAI(
                base_url=ep.base_url,
                api_key=ep.api_key(),
                timeout=ep.timeout,
                max_retries=0,  # retried in .retry.retrying, within the request's deadline
            )
        return st.clients[model], self._limit(st, model, ep)

    def _json_client(self, model: str) -> tuple[JSONClient, asyncio.Semaphore]:
        """The lean JSON client (whole answers) and the endpoint's concurrency limit."""
        st = self._loop_state()
        ep = self.endpoint(model)
        if model not in st.json_clients:
            st.json_clients[model] = JSONClient(
                ep.base_url, ep.api_key(), timeout=ep.timeout, max_connections=ep.max_concurrency
            )
        return st.json_clients[model], self._limit(st, model, ep)

    def _request(
        self,
        ep: Endpoint,
        messages: Sequence[Message],
        temperature: float | None,
        max_tokens: int | None,
        stop: Sequence[str] | None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        req: dict[str, Any] = {"model": ep.model_id, **wire_options(ep.capabilities, options or {})}
        if not ep.capabilities.tools:
            messages = flatten_tool_turns(messages)
        if temperature is not None:
            req["temperature"] = temperature
        own: tuple[str, ...] | None
        if ep.api == "completions":
            req["prompt"] = render_prompt(ep, messages)
            own = ep.stop if ep.stop is not None else ("\n\n", "Question:")
        else:
            req["messages"] = prepare_messages(ep, messages)
            own = ep.stop
        stops = list(dict.fromkeys([*(own or ()), *(stop or ())]))
        if stops:
            req["stop"] = stops
        mt = max_tokens if max_tokens is not None else ep.max_tokens
        if mt is not None:
            req["max_tokens"] = mt
        if ep.extra_body:
            req["extra_body"] = dict(ep.extra_body)
        return req

    async def complete(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        temperature: float | None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        **options: Any,
    ) -> Completion:
        """``options``: tool and response-format options (:func:`avengers.answering.toolcalls.request_options`)."""
        try:
            ep = self.endpoint(model)
            client, limit = self._json_client(model)
        except ConfigError as e:
            raise CallError(model, "config", str(e)) from None
        req = self._request(ep, messages, temperature, max_tokens, stop, options)
        path = "/completions" if ep.api == "completions" else "/chat/completions"
        async with limit:
            t0 = time.perf_counter()
            try:
                resp = await retrying(lambda: client.post(path, req), ep.max_retries)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                kind, msg = _classify(e)
                log.info("call to %s failed: %s (%s)", model, kind, msg)
                raise CallError(model, kind, msg) from None
            latency = time.perf_counter() - t0
        return _completion_from(model, ep, resp, latency)

    async def stream(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        temperature: float | None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        **options: Any,
    ) -> AsyncIterator[str | Completion]:
        try:
            ep = self.endpoint(model)
            client, limit = self._client(model)
        except ConfigError as e:
            raise CallError(model, "config", str(e)) from None
        req = self._request(ep, messages, temperature, max_tokens, stop, options)
        calls = ToolCallAccumulator()
        req["stream"] = True
        req["stream_options"] = {"include_usage": True}
        parts: list[str] = []
        usage = None
        finish = None
        async with limit:
            t0 = time.perf_counter()
            try:
                api = client.completions if ep.api == "completions" else client.chat.completions
                stream = await retrying(lambda: api.create(**req), ep.max_retries)
                async for chunk in stream:
                    if getattr(chunk, "usage", None):
                        usage = chunk.usage
                    for ch in chunk.choices or []:
                        if ep.api == "completions":
                            piece = getattr(ch, "text", None)
                        else:
                            delta = getattr(ch, "delta", None)
                            piece = getattr(delta, "content", None) if delta else None
                            calls.add(getattr(delta, "tool_calls", None) if delta else None)
                        if piece:
                            parts.append(piece)
                            yield piece
                        if ch.finish_reason:
                            finish = ch.finish_reason
            except asyncio.CancelledError:
                raise
            except CallError:
                raise
            except Exception as e:
                kind, msg = _classify(e)
                raise CallError(model, kind, msg) from None
            latency = time.perf_counter() - t0
        if finish is None:  # the connection closed early: a truncated answer, not an answer
            raise CallError(model, "truncated", "stream ended without a finish reason")
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = ep.cost(pt, ct) if usage is not None else None
        yield Completion(
            model, "".join(parts), pt, ct, latency, cost, finish, calls.calls(), usage is not None
        )

    async def aclose(self) -> None:
        """Close the HTTP clients made on the running loop."""
        st = self._state.pop(asyncio.get_running_loop(), None)
        if st:
            await asyncio.gather(
                *(c.close() for c in st.clients.values()),
                *(c.aclose() for c in st.json_clients.values()),
            )


def _completion_from(
    model: str, ep: Endpoint, resp: Mapping[str, Any], latency: float
) -> Completion:
    """A whole answer from the endpoint's JSON reply (see :class:`~avengers.transport.upstream.JSONClient`)."""
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise CallError(model, "bad_response", "response holds no choices")
    first = choices[0]
    calls: tuple[dict[str, Any], ...] = ()
    if ep.api == "completions":
        text = first.get("text")
    else:
        message = first.get("message")
        if not isinstance(message, Mapping):
            raise CallError(model, "bad_response", "response holds no message")
        text = message.get("content")
        calls = tool_calls_from(message)
        if calls and text is None:
            text = ""
    if not isinstance(text, str):
        raise CallError(model, "bad_response", "response holds no message text")
    usage = resp.get("usage")
    if not isinstance(usage, Mapping):
        usage = None
    pt = _count(usage, "prompt_tokens")
    ct = _count(usage, "completion_tokens")
    finish = first.get("finish_reason")
    return Completion(
        model,
        text,
        pt,
        ct,
        latency,
        ep.cost(pt, ct) if usage is not None else None,
        finish if isinstance(finish, str) else None,
        calls,
        usage is not None,
    )


def _count(usage: Mapping[str, Any] | None, name: str) -> int:
    v = usage.get(name) if usage is not None else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0
