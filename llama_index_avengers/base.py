"""``Avengers``: a LlamaIndex ``LLM`` that routes, samples and votes through the avengers core."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from avengers import Answerer, AnswerResult, Router, SamplingConfig
from avengers.bundled import resolve_router
from avengers.backends import Backend, Completion, ObjectBackend
from avengers.exceptions import ConfigError
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from pydantic import ConfigDict, Field, PrivateAttr

DEFAULT_CONTEXT_WINDOW = 4096
_ROLE = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT, "system": MessageRole.SYSTEM}


def _to_openai(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        role = m.role.value if m.role.value in ("user", "assistant", "system") else "user"
        out.append({"role": role, "content": m.content or ""})
    return out


def _from_openai(messages: Sequence[Mapping[str, Any]]) -> list[ChatMessage]:
    return [
        ChatMessage(
            role=_ROLE.get(str(m.get("role")), MessageRole.USER),
            content=str(m.get("content") or ""),
        )
        for m in messages
    ]


def routing_text(messages: Sequence[ChatMessage], policy: Any = "last_user") -> str:
    """The text the router reads: ``last_user`` (default), ``query`` (the part of the last user
    message after its last ``Query:`` line -- the question inside a query engine's
    context-stuffed prompt -- else the whole message), ``full`` (every message, one per line), or
    a function of the messages."""
    if callable(policy):
        return str(policy(messages))
    if policy == "query":
        text = routing_text(messages, "last_user")
        if "Query:" in text:
            text = text.rsplit("Query:", 1)[1].split("\nAnswer:", 1)[0]
        return text.strip()
    if policy == "last_user":
        users = [m for m in messages if m.role == MessageRole.USER]
        return (users[-1] if users else messages[-1]).content or ""
    if policy == "full":
        return "\n".join(f"{m.role.value}: {m.content or ''}" for m in messages)
    raise ConfigError(f"routing must be 'last_user', 'query', 'full' or a function, got {policy!r}")


class LLMBackend(ObjectBackend[LLM]):
    """Candidates that are LlamaIndex ``LLM`` objects (e.g. ``OpenAILike`` clients you already
    configured), called through their native async chat API."""

    error_kind = "llm_error"

    def __init__(self, llms: Mapping[str, LLM], *, max_concurrency: int = 4) -> None:
        super().__init__(llms, max_concurrency=max_concurrency)
        self.llms = self.candidates

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
            resp = await self.llms[model].achat(_from_openai(messages))
        except Exception as e:  # a candidate failure becomes a recorded fault
            raise self.fault(model, e) from None
        text = resp.message.content or ""
        return Completion(model, text, latency=time.perf_counter() - t0)

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
        try:
            gen = await self.llms[model].astream_chat(_from_openai(messages))
            async for r in gen:
                if r.delta:
                    parts.append(r.delta)
                    yield r.delta
        except Exception as e:
            raise self.fault(model, e) from None
        yield Completion(model, "".join(parts), latency=time.perf_counter() - t0)


class Avengers(LLM):
    """An LLM that routes each prompt to the best candidate model, samples it and votes.

    Build it from a router (object, folder, hub id or ``"pretrained"``) and either endpoints
    (OpenAI-compatible servers) or ``llms``, a mapping of model name to LlamaIndex LLMs you
    already configured. Each response's ``raw`` and ``additional_kwargs`` carry the routing
    account (cluster, ranked models, votes, samples, failures, cost).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Any = Field(default=None, description="Router, folder, hub id or 'pretrained'.")
    endpoints: Any = Field(default=None, description="Endpoint file or mapping (or use llms).")
    llms: dict[str, Any] | None = Field(
        default=None, description="Model name -> LlamaIndex LLM, instead of endpoints."
    )
    model_name: str = Field(default="avengers", description="The name this LLM reports.")
    strategy: str = Field(
        default="self_consistency", description="self_consistency, model_switch or direct."
    )
    n_samples: int = Field(default=10, description="Samples from the chosen model (the paper: 10).")
    temperature: float = Field(default=0.7, description="Sampling temperature (the paper: 0.7).")
    alpha: float | None = Field(
        default=None, description="Cost/quality trade-off (None: router's)."
    )
    answer_type: str = Field(default="auto", description="How answers are compared when voting.")
    adaptive: bool = Field(default=True, description="Stop sampling once the vote is decided.")
    max_tokens: int | None = Field(default=None, description="Completion length cap per sample.")
    context_window: int | None = Field(
        default=None,
        description="Context window to report (default: the smallest among candidates, else 4096).",
    )
    routing: Any = Field(
        default="last_user",
        description="What the router reads: 'last_user', 'query', 'full', or a function.",
    )

    _answerer: Answerer | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "Avengers"

    @classmethod
    def from_pretrained(
        cls, router: str | Path | Router, endpoints: Any = None, **kwargs: Any
    ) -> Avengers:
        """From a saved router and endpoints (or ``llms=``)."""
        return cls(router=router, endpoints=endpoints, **kwargs)

    # ------------------------------------------------------------------------- core plumbing

    def answerer(self) -> Answerer:
        """The core :class:`avengers.Answerer` (created on first use)."""
        if self._answerer is None:
            if self.router is None:
                raise ConfigError("Avengers needs a router")
            router = resolve_router(self.router)
            backend: Backend | Any
            if self.llms:
                backend = LLMBackend(self.llms)
            elif self.endpoints is not None:
                backend = self.endpoints
            else:
                raise ConfigError("Avengers needs endpoints or llms")
            cfg = SamplingConfig(
                strategy=self.strategy,  # type: ignore[arg-type]
                n_samples=self.n_samples,
                temperature=self.temperature,
                alpha=self.alpha,
                answer_type=self.answer_type,
                adaptive=self.adaptive,
                max_tokens=self.max_tokens,
            )
            self._answerer = Answerer(router, backend, cfg)
        return self._answerer

    @property
    def metadata(self) -> LLMMetadata:
        window = self.context_window
        if window is None:
            windows: list[int] = []
            if self.llms:
                windows = [llm.metadata.context_window for llm in self.llms.values()]
            elif self.endpoints is not None:
                try:
                    from avengers.endpoints import load_endpoints

                    windows = [
                        e.context_window
                        for e in load_endpoints(self.endpoints).values()
                        if e.context_window
                    ]
                except ConfigError:
                    windows = []
            window = min(windows) if windows else DEFAULT_CONTEXT_WINDOW
        return LLMMetadata(
            context_window=window,
            num_output=self.max_tokens or 256,
            is_chat_model=True,
            model_name=self.model_name,
        )

    def _args(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
        over: dict[str, Any] = {
            k: kwargs[k] for k in ("n_samples", "alpha", "strategy", "temperature") if k in kwargs
        }
        return {"text": routing_text(messages, self.routing), **over}

    @staticmethod
    def _extra(res: AnswerResult) -> dict[str, Any]:
        return {"model": res.model, "avengers": res.account()}

    def _chat_response(self, res: AnswerResult) -> ChatResponse:
        extra = self._extra(res)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=res.text),
            raw=extra,
            additional_kwargs={
                **extra,
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
            },
        )

    @staticmethod
    def _completion(res: ChatResponse) -> CompletionResponse:
        return CompletionResponse(
            text=res.message.content or "", raw=res.raw, additional_kwargs=res.additional_kwargs
        )

    @staticmethod
    def _prompt_messages(prompt: str) -> list[ChatMessage]:
        return [ChatMessage(role=MessageRole.USER, content=prompt)]

    # ---------------------------------------------------------------------------- chat

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        res = self.answerer().answer(_to_openai(messages), **self._args(messages, kwargs))
        return self._chat_response(res)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        res = await self.answerer().aanswer(_to_openai(messages), **self._args(messages, kwargs))
        return self._chat_response(res)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        return await self._astream_chat(messages, **kwargs)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        parts = self.answerer().stream(_to_openai(messages), **self._args(messages, kwargs))

        def gen() -> ChatResponseGen:
            text = ""
            for part in parts:
                if part.result is not None:
                    extra = self._extra(part.result)
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                                       delta="", raw=extra, additional_kwargs=extra)  # fmt: skip
                    return
                text += part.text
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=part.text
                )

        return gen()

    async def _astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        parts = self.answerer().astream(_to_openai(messages), **self._args(messages, kwargs))

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for part in parts:
                if part.result is not None:
                    extra = self._extra(part.result)
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                                       delta="", raw=extra, additional_kwargs=extra)  # fmt: skip
                    return
                text += part.text
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=part.text
                )

        return gen()

    # ------------------------------------------------------------------------ completion

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._completion(self._chat(self._prompt_messages(prompt), **kwargs))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        res = await self._achat(self._prompt_messages(prompt), **kwargs)
        return self._completion(res)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        chats = self._stream_chat(self._prompt_messages(prompt), **kwargs)

        def gen() -> CompletionResponseGen:
            for r in chats:
                yield CompletionResponse(text=r.message.content or "", delta=r.delta, raw=r.raw,
                                         additional_kwargs=r.additional_kwargs)  # fmt: skip

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        chats = await self._astream_chat(self._prompt_messages(prompt), **kwargs)

        async def gen() -> CompletionResponseAsyncGen:
            async for r in chats:
                yield CompletionResponse(text=r.message.content or "", delta=r.delta, raw=r.raw,
                                         additional_kwargs=r.additional_kwargs)  # fmt: skip

        return gen()


__all__ = ["Avengers", "LLMBackend", "routing_text"]
