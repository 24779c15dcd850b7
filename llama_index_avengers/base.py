"""``Avengers``: a LlamaIndex ``LLM`` that routes, samples and votes through the avengers core."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from avengers import Answerer, AnswerResult, Router, SamplingConfig
from avengers.adapting import (
    ROUTED,
    constructor_data,
    missing_setup,
    pinned,
    with_call_settings,
)
from avengers.answering import messages as core
from avengers.answering.config import call_settings
from avengers.answering.messages import RoutingPolicy
from avengers.answering.toolcalls import OPTION_NAMES
from avengers.exceptions import ConfigError
from avengers.stores.conversations import ConversationStore, MemoryConversations
from avengers.stores.feedback import FeedbackStore, MemoryFeedbackStore, Rating
from avengers.training.bundled import resolve_router
from avengers.transport.backends import Backend, Completion, ObjectBackend
from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
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
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from ._tools import (
    has_tool_turns,
    openai_tool_choice,
    openai_tools,
    response_message,
    to_openai_with_tools,
    tool_selections,
)

DEFAULT_CONTEXT_WINDOW = 4096
_ROLE = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT, "system": MessageRole.SYSTEM}


def to_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex messages in the core's form."""
    return [{"role": m.role.value, "content": m.content or ""} for m in messages]


def to_openai(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex messages as candidates take them: plain text (other roles as user turns), or,
    when the conversation holds tool calls or tool results, the OpenAI form with them."""
    if has_tool_turns(messages):
        return to_openai_with_tools(messages)
    return core.for_candidates(to_dicts(messages))


def _from_openai(messages: Sequence[Mapping[str, Any]]) -> list[ChatMessage]:
    return [
        ChatMessage(
            role=_ROLE.get(str(m.get("role")), MessageRole.USER),
            content=str(m.get("content") or ""),
        )
        for m in messages
    ]


def routing_text(messages: Sequence[ChatMessage], policy: RoutingPolicy = "last_user") -> str:
    """The text the router reads, by the core's policy (:func:`avengers.answering.messages.routing_text`):
    ``last_user`` (default), ``query`` (the question after the last ``Query:`` line of a query
    engine's context-stuffed prompt), ``conversation`` (``full`` is the same), a template, or a
    function of the LlamaIndex messages."""
    return core.routing_text(to_dicts(messages), policy, native=messages)


def response_id(response: Any) -> str:
    """The answer id of a response: ``raw["id"]`` (set by :class:`Avengers`) or ``raw.id`` (an
    ``OpenAILike`` pointed at an avengers server), or the id itself."""
    if isinstance(response, str) and response:
        return response
    raw = getattr(response, "raw", None)
    rid = raw.get("id") if isinstance(raw, Mapping) else getattr(raw, "id", None)
    if not isinstance(rid, str) or not rid:
        raise ConfigError(
            f"cannot find an answer id in {type(response).__name__}: rate a response an avengers "
            "LLM returned (its raw['id']), or pass the id"
        )
    return rid


class LLMBackend(ObjectBackend[LLM]):
    """Candidates that are LlamaIndex ``LLM`` objects (e.g. ``OpenAILike`` clients you already
    configured), called through their native async chat API, or with ``sync=True`` through their
    sync API on worker threads. Sampling settings that are set (``temperature``, ``max_tokens``,
    ``stop``) are passed as call keywords, which LlamaIndex LLMs hand to their API."""

    error_kind = "llm_error"

    def __init__(
        self, llms: Mapping[str, LLM], *, max_concurrency: int = 4, sync: bool = False
    ) -> None:
        super().__init__(llms, max_concurrency=max_concurrency)
        self.llms = self.candidates
        self.sync = sync
        """For sync callers, whose every call runs on a fresh event loop: clients such as
        ``OpenAILike`` keep their async HTTP client bound to the first loop they ran on."""

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
        llm, msgs = self.llms[model], _from_openai(messages)
        kwargs = _settings(temperature=temperature, max_tokens=max_tokens, stop=stop)
        try:
            if self.sync:
                resp = await asyncio.to_thread(llm.chat, msgs, **kwargs)
            else:
                resp = await llm.achat(msgs, **kwargs)
        except Exception as e:  # a candidate failure becomes a recorded fault
            raise self.fault(model, e) from None
        text = resp.message.content or ""
        return Completion(model, text, latency=time.perf_counter() - t0)

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
        llm, msgs = self.llms[model], _from_openai(messages)
        kwargs = _settings(temperature=temperature, max_tokens=max_tokens, stop=stop)
        parts: list[str] = []
        try:
            async for r in self._responses(llm, msgs, kwargs):
                if r.delta:
                    parts.append(r.delta)
                    yield r.delta
        except Exception as e:
            raise self.fault(model, e) from None
        yield Completion(model, "".join(parts), latency=time.perf_counter() - t0)

    async def _responses(
        self, llm: LLM, msgs: list[ChatMessage], kwargs: dict[str, Any]
    ) -> AsyncIterator[ChatResponse]:
        if not self.sync:
            async for r in await llm.astream_chat(msgs, **kwargs):
                yield r
            return
        gen = await asyncio.to_thread(llm.stream_chat, msgs, **kwargs)
        while (item := await asyncio.to_thread(next, gen, None)) is not None:
            yield item


def _settings(**settings: Any) -> dict[str, Any]:
    return {k: list(v) if k == "stop" else v for k, v in settings.items() if v is not None}


class Avengers(FunctionCallingLLM):
    """An LLM that routes each prompt to the best candidate model, samples it and votes.

    It is a ``FunctionCallingLLM``: ``chat_with_tools``, ``predict_and_call``, function-calling
    agents, ``structured_predict`` and ``as_structured_llm`` work when some endpoint declares
    ``capabilities: {tools: true}`` (only those candidates are routed to for tool calls; samples
    vote on their calls, see :mod:`avengers.answering.toolcalls`).

    Build it from a router (object, folder, hub id or ``"pretrained"``) and either endpoints
    (OpenAI-compatible servers) or ``llms``, a mapping of model name to LlamaIndex LLMs you
    already configured; ``sampling`` says how to sample and vote. Each response's ``raw`` and
    ``additional_kwargs`` carry the routing account (cluster, ranked models, votes, samples,
    failures, cost); ``raw["id"]`` is the answer's id, to rate it with :meth:`feedback` or
    :func:`llama_index_avengers.send_feedback`. ``max_cost`` (per instance, or per call:
    ``llm.complete(..., max_cost=0.01)``) caps a call's expected cost
    (:class:`avengers.BudgetError` when no candidate fits); ``conversation`` (per instance or
    per call) keeps a conversation on one model (see :mod:`avengers.stores.conversations`). The
    sampling settings that used to be fields (``n_samples=3``, ...) still work as keywords: they
    fold into ``sampling``, with a deprecation warning (``temperature``, ``max_tokens`` and
    ``max_cost`` without one); any other unknown keyword is an error naming it. ``model``
    works as ``OpenAILike``'s: ``avengers`` (the default) routes, a candidate's name pins that
    candidate (per instance, or per call: ``llm.complete(..., model="gemma3-270m")``). Without
    ``router`` or ``endpoints`` the environment variables ``AVENGERS_ROUTER`` and
    ``AVENGERS_ENDPOINTS`` (the server's) supply them.

    Usage is where LlamaIndex's ``TokenCountingHandler`` and OpenAI's LLMs put it:
    ``raw["usage"]`` and ``additional_kwargs`` hold ``prompt_tokens``, ``completion_tokens`` and
    ``total_tokens`` summed over every sample drawn (what was paid); the answer's own are in
    ``raw["avengers"]["answer_usage"]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Any = Field(default=None, description="Router, folder, hub id or 'pretrained'.")
    endpoints: Any = Field(default=None, description="Endpoint file or mapping (or use llms).")
    llms: dict[str, Any] | None = Field(
        default=None, description="Model name -> LlamaIndex LLM, instead of endpoints."
    )
    model: str = Field(
        default=ROUTED,
        description="'avengers' routes; a candidate's name pins that candidate (as OpenAILike's "
        "model names the model it calls).",
    )
    model_name: str = Field(default="avengers", description="The name this LLM reports.")
    sampling: SamplingConfig | dict[str, Any] | None = Field(
        default=None,
        description="How to sample and vote: an avengers.SamplingConfig, a dict of its settings, "
        "or None for the paper's defaults.",
    )
    context_window: int | None = Field(
        default=None,
        description="Context window to report (default: the smallest among candidates, else 4096).",
    )
    routing: Any = Field(
        default="last_user",
        description="What the router reads: 'last_user', 'query', 'conversation', a template, "
        "or a function of the messages.",
    )

    conversation: str | None = Field(
        default=None,
        description="A conversation key: calls stay on the model the first one went to, unless "
        "it fails (a call's conversation= replaces it).",
    )
    timeout: float | None = Field(
        default=None,
        description="Seconds before one call to a candidate is abandoned, for every endpoint "
        "(None: each endpoint's own).",
    )
    max_retries: int | None = Field(
        default=None,
        description="Retries of one call to a candidate, for every endpoint (None: each "
        "endpoint's own).",
    )

    _answerers: dict[bool, Answerer] = PrivateAttr(default_factory=dict)
    _conversations: ConversationStore = PrivateAttr(default_factory=MemoryConversations)
    _feedback: FeedbackStore = PrivateAttr(default_factory=MemoryFeedbackStore)

    @model_validator(mode="before")
    @classmethod
    def _fold_sampling(cls, data: Any) -> Any:
        return constructor_data(cls.__name__, data, cls.model_fields)

    @classmethod
    def class_name(cls) -> str:
        return "Avengers"

    @classmethod
    def from_pretrained(
        cls, router: str | Path | Router, endpoints: Any = None, **kwargs: Any
    ) -> Avengers:
        """From a saved router and endpoints (or ``llms=``)."""
        return cls(router=router, endpoints=endpoints, **kwargs)

    @property
    def sampling_config(self) -> SamplingConfig:
        """The sampling settings as a :class:`avengers.SamplingConfig`."""
        return SamplingConfig.of(self.sampling)

    # ------------------------------------------------------------------------- core plumbing

    def answerer(self, *, sync: bool = False) -> Answerer:
        """The core :class:`avengers.Answerer` (created on first use). With ``llms``, sync calls
        get their own, which calls the LLMs' sync API (see :class:`LLMBackend`)."""
        key = sync and bool(self.llms)
        if key not in self._answerers:
            if self.router is None or (self.endpoints is None and not self.llms):
                given = self.llms or self.endpoints
                hint = "" if given is not None else " (or llms, a mapping of LlamaIndex LLMs)"
                raise missing_setup("Avengers", self.router, given, hint)
            backend: Backend | Any
            if self.llms:
                backend = LLMBackend(self.llms, sync=key)
            else:
                backend = with_call_settings(
                    self.endpoints, timeout=self.timeout, max_retries=self.max_retries
                )
            router = resolve_router(self.router)
            self._answerers[key] = Answerer(  # sync and async answerers share the stores
                router, backend, self.sampling_config, conversations=self._conversations,
                feedback_store=self._feedback,
            )  # fmt: skip
        return self._answerers[key]

    @property
    def metadata(self) -> LLMMetadata:
        window = self.context_window
        if window is None:
            windows: list[int] = []
            if self.llms:
                windows = [llm.metadata.context_window for llm in self.llms.values()]
            elif self.endpoints is not None:
                try:
                    from avengers.transport.endpoints import load_endpoints

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
            num_output=self.sampling_config.max_tokens or 256,
            is_chat_model=True,
            is_function_calling_model=self._tool_capable(),
            model_name=self.model_name,
        )

    def _tool_capable(self) -> bool:
        """Whether some endpoint declares tool calling (then structured output and agents use
        tool calls; otherwise LlamaIndex falls back to prompting for text, as before)."""
        if self.llms or self.endpoints is None:
            return False
        try:
            from avengers.transport.endpoints import load_endpoints

            return any(e.capabilities.tools for e in load_endpoints(self.endpoints).values())
        except ConfigError:
            return False

    # ------------------------------------------------------------------------- tools

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The chat keywords for a call with tools: messages, OpenAI tool definitions and the
        tool choice (``tool_required`` -> ``required``; a tool's name -> that tool)."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        specs = openai_tools(tools)
        out: dict[str, Any] = {"messages": messages, **kwargs}
        if specs:
            out["tools"] = specs
            names = [spec["function"]["name"] for spec in specs]
            choice = openai_tool_choice(tool_choice, tool_required, names)
            if choice is not None:
                out["tool_choice"] = choice
        return out

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[Any],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel calls are allowed."""
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not allow_parallel_tool_calls and len(calls) > 1:
            message = response_message(response.message.content or "", calls[:1])
            return ChatResponse(
                message=message,
                raw=response.raw,
                delta=response.delta,
                additional_kwargs=response.additional_kwargs,
            )
        return response

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The tool calls of a response (the voted sample's)."""
        return tool_selections(response, error_on_no_tool_call)

    def _args(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
        over = call_settings("Avengers", kwargs, also=("conversation", "model", *OPTION_NAMES))
        over.update({k: kwargs[k] for k in OPTION_NAMES if kwargs.get(k) is not None})
        pin = pinned(kwargs.get("model") or self.model)
        if pin is not None:
            over["prefer"] = pin  # model="<candidate>", per instance or per call, pins it
        conversation = kwargs.get("conversation")
        if conversation is None:
            conversation = self.conversation
        if conversation is not None:
            over["conversation"] = conversation
        return {"text": routing_text(messages, self.routing), **over}

    def feedback(self, response: Any, score: float, *, cost: float | None = None) -> Rating:
        """Rate an answer of this LLM (its response, or ``raw["id"]``) with a score in [0, 1]:
        the router learns from it at once (see :meth:`avengers.Answerer.feedback`)."""
        return self.answerer().feedback(response_id(response), score, cost=cost)

    async def afeedback(self, response: Any, score: float, *, cost: float | None = None) -> Rating:
        """Async twin of :meth:`feedback`."""
        return await self.answerer().afeedback(response_id(response), score, cost=cost)

    @staticmethod
    def _response(
        text: str, delta: str | None = None, res: AnswerResult | None = None
    ) -> ChatResponse:
        """A chat response; the last one carries the account in ``raw`` and
        ``additional_kwargs`` (which LlamaIndex's chat-to-completion helpers carry over)."""
        extra: dict[str, Any] = {}
        if res is not None:
            usage = {
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
                "total_tokens": res.prompt_tokens + res.completion_tokens,
            } if res.tokens_known else None  # unknown, never zero  # fmt: skip
            extra = {"id": res.id, "model": res.model, "avengers": res.account(),
                     "usage": usage, **(usage or {})}  # fmt: skip
        message = response_message(text, res.tool_calls if res is not None else ())
        return ChatResponse(
            message=message, delta=delta, raw=extra or None, additional_kwargs=extra
        )

    # ---------------------------------------------------------------------------- chat

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        res = self.answerer(sync=True).answer(to_openai(messages), **self._args(messages, kwargs))
        return self._response(res.text, res=res)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        res = await self.answerer().aanswer(to_openai(messages), **self._args(messages, kwargs))
        return self._response(res.text, res=res)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        parts = self.answerer(sync=True).stream(to_openai(messages), **self._args(messages, kwargs))

        def gen() -> ChatResponseGen:
            text = ""
            for part in parts:
                text += part.text
                yield self._response(text, part.text, part.result)

        return gen()

    async def _astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        parts = self.answerer().astream(to_openai(messages), **self._args(messages, kwargs))

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for part in parts:
                text += part.text
                yield self._response(text, part.text, part.result)

        return gen()

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

    # ------------------------------------------------------------------------ completion

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return chat_to_completion_decorator(self._chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return await achat_to_completion_decorator(self._achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        return stream_chat_to_completion_decorator(self._stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        return await astream_chat_to_completion_decorator(self._astream_chat)(prompt, **kwargs)


__all__ = ["Avengers", "LLMBackend", "response_id", "routing_text"]
