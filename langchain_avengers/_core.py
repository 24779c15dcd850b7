"""Glue between LangChain objects and the avengers core: message conversion, routing-text
policies, and a :class:`~avengers.backends.Backend` over arbitrary runnables. No routing or
voting happens here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from avengers.backends import Completion, ObjectBackend
from avengers.exceptions import ConfigError
from langchain_core.messages import (
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig

RoutingPolicy = str | Callable[[Sequence[BaseMessage]], str]
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def to_openai(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI-style dicts (text content only)."""
    out = []
    for m in messages:
        role = _ROLES.get(m.type, "user")
        if isinstance(m, ToolMessage):
            role = "user"  # plain candidates know no tools: show the tool result as text
        out.append(
            {"role": role, "content": m.text if not isinstance(m.content, str) else m.content}
        )
    return out


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


def routing_text(messages: Sequence[BaseMessage], policy: RoutingPolicy = "last_human") -> str:
    """The text the router sees. ``last_human`` (default): the last human message;
    ``conversation``: every message, one per line with its role; a string containing
    ``{last_human}`` or ``{conversation}``: that template filled in; or a function of the
    messages."""
    if callable(policy):
        return str(policy(messages))
    humans = [m for m in messages if isinstance(m, HumanMessage)]
    last = humans[-1].text if humans else (messages[-1].text if messages else "")
    conversation = "\n".join(f"{m.type}: {m.text}" for m in messages)
    if policy == "last_human":
        return last
    if policy == "conversation":
        return conversation
    if isinstance(policy, str) and ("{last_human}" in policy or "{conversation}" in policy):
        return policy.replace("{last_human}", last).replace("{conversation}", conversation)
    raise ConfigError(
        "routing must be 'last_human', 'conversation', a template with {last_human} or "
        f"{{conversation}}, or a function; got {policy!r}"
    )


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


class RunnableBackend(ObjectBackend[Runnable[Any, Any]]):
    """Candidates that are LangChain runnables. Each call hands the runnable the chain's original
    input (so a candidate can be a whole chain expecting a dict) and keeps its original output,
    so the router chain can return the winning candidate's own output object."""

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

    async def complete(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        temperature: float,
        max_tokens: int | None = None,
    ) -> Completion:
        t0 = time.perf_counter()
        try:
            r = self.runnables[model]
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
        temperature: float,
        max_tokens: int | None = None,
    ) -> AsyncIterator[str | Completion]:
        t0 = time.perf_counter()
        parts: list[str] = []
        full: Any = None
        try:
            async for chunk in self.runnables[model].astream(self.original_input, self.config):
                full = chunk if full is None else _add(full, chunk)
                piece = output_text(chunk)
                if piece:
                    parts.append(piece)
                    yield piece
        except Exception as e:
            raise self.fault(model, e) from None
        text = "".join(parts)
        self.outputs.append((model, text, full))
        pt, ct = _usage(full)
        yield Completion(model, text, pt, ct, time.perf_counter() - t0)

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
