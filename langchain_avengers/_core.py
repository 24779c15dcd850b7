"""Glue between LangChain objects and the avengers core: message conversion, the routing-text
policy (the core's, see :mod:`avengers.answering.messages`), and a :class:`~avengers.transport.backends.Backend`
over arbitrary runnables. No routing or voting happens here."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from avengers.answering import messages as core
from avengers.answering.messages import RoutingPolicy
from avengers.exceptions import ConfigError
from avengers.transport.backends import Completion, ObjectBackend
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import BaseMessage, ChatMessage, HumanMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig

__all__ = [
    "RoutingPolicy",
    "RunnableBackend",
    "as_messages",
    "response_id",
    "routing_text",
    "to_openai",
]


def to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages in the core's form (``human`` -> ``user``, ``ai`` -> ``assistant``)."""
    return [
        {"role": m.role if isinstance(m, ChatMessage) else m.type, "content": m.text}
        for m in messages
    ]


def to_openai(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as candidates take them: plain text, or, when the conversation holds
    tool calls or tool results, the OpenAI form with them (candidates without tool calling see
    those turns as text; see :func:`avengers.answering.toolcalls.flatten_tool_turns`)."""
    from ._tools import has_tool_turns

    if has_tool_turns(messages):
        from langchain_core.messages import convert_to_openai_messages

        return list(convert_to_openai_messages(list(messages)))
    return core.for_candidates(to_dicts(messages))


def response_id(response: Any) -> str:
    """The answer id of a chat model's reply: a message's ``response_metadata["id"]`` (set by
    ``ChatAvengers``, and by ``ChatOpenAI`` pointed at an avengers server), a chat result's
    first message's, or the id itself."""
    if isinstance(response, str) and response:
        return response
    generations = getattr(response, "generations", None)
    if generations:
        first = generations[0]
        first = first[0] if isinstance(first, list) else first
        response = getattr(first, "message", response)
    rid = (getattr(response, "response_metadata", None) or {}).get("id")
    if not isinstance(rid, str) or not rid:
        raise ConfigError(
            f"cannot find an answer id in {type(response).__name__}: rate the message an "
            "avengers model returned (its response_metadata['id']), or pass the id"
        )
    return rid


def as_messages(value: Any) -> list[BaseMessage]:
    """Messages from what a chain hands over: a string, messages, a prompt value, or a dict."""
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(m, BaseMessage) for m in value):
        return list(value)
    raise ConfigError(f"cannot read messages from {type(value).__name__}")


def routing_text(messages: Sequence[BaseMessage], policy: RoutingPolicy = "last_user") -> str:
    """The text the router sees, by the core's policy (:func:`avengers.answering.messages.routing_text`):
    ``last_user`` (default; ``last_human`` is the same), ``conversation``, ``query``, a template
    such as ``"{last_user}"``, or a function of the LangChain messages."""
    return core.routing_text(to_dicts(messages), policy, native=messages)


def output_text(output: Any) -> str:
    """The text of a runnable's output (a message, a string, or anything printable)."""
    if isinstance(output, BaseMessage):
        return output.text
    if isinstance(output, str):
        return output
    if isinstance(output, Mapping):
        for key in ("output", "answer", "text", "content", "result"):
            if isinstance(output.get(key), str):
                return str(output[key])
    return str(output)


def _usage(output: Any) -> tuple[int, int]:
    meta = getattr(output, "usage_metadata", None) or {}
    return int(meta.get("input_tokens", 0) or 0), int(meta.get("output_tokens", 0) or 0)


_warned: set[tuple[str, str, tuple[str, ...]]] = set()


def takes_settings(runnable: Runnable[Any, Any]) -> bool:
    """Whether a candidate takes ``temperature``, ``max_tokens`` and ``stop`` per call: a
    LangChain chat model or LLM, possibly wrapped by ``bind`` or ``with_config``."""
    while isinstance(runnable, RunnableBinding):
        runnable = runnable.bound
    return isinstance(runnable, BaseLanguageModel)


def with_settings(model: str, runnable: Runnable[Any, Any], **settings: Any) -> Runnable[Any, Any]:
    """``runnable`` bound to the sampling settings that are set; a candidate that cannot take
    them (a chain, a function) runs with its own, and a warning says so once."""
    given = {k: v for k, v in settings.items() if v is not None}
    if not given:
        return runnable
    if takes_settings(runnable):
        return runnable.bind(**given)
    key = (model, type(runnable).__name__, tuple(sorted(given)))
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"candidate {model!r} is a {type(runnable).__name__}, not a LangChain chat model or "
            f"LLM: {', '.join(sorted(given))} cannot be passed to it, so it runs with its own "
            "settings (set them on the candidate, or leave them unset in sampling)",
            UserWarning,
            stacklevel=2,
        )
    return runnable


class RunnableBackend(ObjectBackend[Runnable[Any, Any]]):
    """Candidates that are LangChain runnables. Each call hands the runnable the chain's original
    input (so a candidate can be a whole chain expecting a dict) and keeps its original output,
    so the router chain can return the winning candidate's own output object. Sampling settings
    go to chat-model candidates through ``bind`` (see :func:`with_settings`)."""

    error_kind = "runnable_error"

    def __init__(
        self,
        runnables: Mapping[str, Runnable[Any, Any]],
        original_input: Any,
        config: RunnableConfig | None = None,
        *,
        max_concurrency: int = 4,
        sync: bool = False,
    ) -> None:
        super().__init__(runnables, max_concurrency=max_concurrency)
        self.sync = sync
        """Call candidates with their sync ``invoke`` on worker threads (for sync callers: some
        clients, e.g. langchain-openai's cached async HTTP client, must not cross event loops)."""
        self.runnables = self.candidates
        self.original_input = original_input
        self.config = config
        self.outputs: list[tuple[str, str, Any]] = []
        self.pending: list[Any] = []
        """The streaming candidate's own chunks not yet handed on (see :meth:`take_chunks`);
        a candidate that fails before its first text takes its chunks back."""

    async def complete(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        t0 = time.perf_counter()
        r = with_settings(
            model, self.runnables[model], temperature=temperature, max_tokens=max_tokens, stop=stop
        )
        try:
            if self.sync:
                out = await asyncio.to_thread(r.invoke, self.original_input, self.config)
            else:
                out = await r.ainvoke(self.original_input, self.config)
        except Exception as e:  # any candidate failure becomes a recorded fault
            raise self.fault(model, e) from None
        text = output_text(out)
        self.outputs.append((model, text, out))
        pt, ct = _usage(out)
        return Completion(model, text, pt, ct, time.perf_counter() - t0)

    async def stream(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncIterator[str | Completion]:
        t0 = time.perf_counter()
        r = with_settings(
            model, self.runnables[model], temperature=temperature, max_tokens=max_tokens, stop=stop
        )
        parts: list[str] = []
        full: Any = None
        start = len(self.pending)
        try:
            async for chunk in self._chunks(r):
                full = chunk if full is None else _add(full, chunk)
                self.pending.append(chunk)
                piece = output_text(chunk)
                if piece:
                    parts.append(piece)
                    yield piece
        except Exception as e:
            if not parts:
                del self.pending[start:]
            raise self.fault(model, e) from None
        text = "".join(parts)
        self.outputs.append((model, text, full))
        pt, ct = _usage(full)
        yield Completion(model, text, pt, ct, time.perf_counter() - t0)

    async def _chunks(self, r: Runnable[Any, Any]) -> AsyncIterator[Any]:
        """The runnable's stream: its native async one, or (``sync``) its sync one read on
        worker threads."""
        if not self.sync:
            async for chunk in r.astream(self.original_input, self.config):
                yield chunk
            return
        it = await asyncio.to_thread(lambda: iter(r.stream(self.original_input, self.config)))
        done = object()
        while (chunk := await asyncio.to_thread(next, it, done)) is not done:
            yield chunk

    def take_chunks(self) -> list[Any]:
        """The streamed chunks of the candidate since the last call, as it produced them."""
        out, self.pending[:] = list(self.pending), []
        return out

    def output_for(self, model: str, text: str) -> Any:
        """The original output object of the sample that won."""
        for m, t, out in self.outputs:
            if m == model and t == text:
                return out
        return text


def _add(a: Any, b: Any) -> Any:
    try:
        return a + b
    except TypeError:
        return b
