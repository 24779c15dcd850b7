"""``ChatAvengers``: a LangChain chat model that routes, samples and votes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from avengers import Answerer, AnswerResult, Router, SamplingConfig
from avengers.adapting import (
    ROUTED,
    constructor_data,
    endpoints_data,
    missing_setup,
    pinned,
    router_data,
    sampling_data,
    token_ids,
    with_call_settings,
)
from avengers.answering.config import call_settings
from avengers.answering.toolcalls import OPTION_NAMES
from avengers.exceptions import ConfigError
from avengers.stores.feedback import Rating
from avengers.training.bundled import resolve_router
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from ._core import response_id, routing_text, to_openai
from ._tools import StructuredMethod, ai_message, last_chunk, openai_tool_choice, openai_tools
from ._tools import structured as _structured


def _usage(res: AnswerResult) -> UsageMetadata | None:
    """``usage_metadata``, summed over every sample; None when an endpoint reported no token
    counts (unknown, never zero), as ``ChatOpenAI`` leaves it when the upstream sends none."""
    if not res.tokens_known:
        return None
    return UsageMetadata(
        input_tokens=res.prompt_tokens,
        output_tokens=res.completion_tokens,
        total_tokens=res.prompt_tokens + res.completion_tokens,
    )


def token_usage(res: AnswerResult) -> dict[str, int] | None:
    """``token_usage`` as ``ChatOpenAI`` reports it (OpenAI's names), summed over every sample
    drawn (None when unknown); the answer's own usage is in the account's ``answer_usage``."""
    if not res.tokens_known:
        return None
    return {
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": res.completion_tokens,
        "total_tokens": res.prompt_tokens + res.completion_tokens,
    }


def finish_reason(res: AnswerResult) -> str:
    """Why the returned sample ended, as its candidate said (``stop``, ``length``,
    ``tool_calls``, ...); ``tool_calls`` or ``stop`` when the candidate did not say."""
    if res.finish_reason:
        return res.finish_reason
    return "tool_calls" if res.tool_calls else "stop"


def _metadata(res: AnswerResult) -> dict[str, Any]:
    """``response_metadata`` in ``ChatOpenAI``'s shape (``id``, ``model_name`` -- the candidate
    that answered --, ``model_provider``, ``finish_reason``, ``token_usage``) plus the account."""
    return {
        "id": res.id,
        "model_name": res.model,
        "model_provider": "avengers",
        "finish_reason": finish_reason(res),
        "token_usage": token_usage(res),
        "avengers": res.account(),
    }


_LC_ID = ("langchain_avengers", "chat_models", "ChatAvengers")
LOAD_MAPPINGS: dict[tuple[str, ...], tuple[str, ...]] = {_LC_ID: _LC_ID}
"""For ``langchain_core.load.load``/``loads``: ``additional_import_mappings=LOAD_MAPPINGS``
(with ``valid_namespaces=["langchain_avengers"]``) lets a serialised chain bring its
``ChatAvengers`` back beside LangChain's own classes."""


class ChatAvengers(BaseChatModel):
    """A chat model backed by a trained avengers router and OpenAI-compatible endpoints.

    Each call routes the conversation (by default its last human message) to the best candidate,
    samples it and returns the voted answer; ``sampling`` says how (a
    :class:`avengers.SamplingConfig` or a dict of its settings, e.g. ``{"n_samples": 5}``).
    ``response_metadata`` holds ``id`` (the answer's id, to rate it with :meth:`feedback` or
    :func:`langchain_avengers.send_feedback`), ``model_name`` (the candidate that answered) and
    ``avengers`` (the full routing account: cluster, ranked models, votes, samples, failures,
    cost). ``max_cost`` (per instance, or per call: ``chat.invoke(..., max_cost=0.01)``) caps a
    call's expected cost (:class:`avengers.BudgetError` when no candidate fits);
    ``conversation`` (per instance or per call) keeps a conversation on one model (see
    :mod:`avengers.stores.conversations`).

    ```python
    chat = ChatAvengers.from_pretrained("my-router", endpoints="endpoints.yaml")
    chain = prompt | chat | StrOutputParser()
    ```

    The sampling settings that used to be fields (``n_samples=5``, ``strategy=...``) still work
    as keywords: they fold into ``sampling``, with a deprecation warning (``temperature`` and
    ``max_tokens`` without one). Any other unknown keyword is an error naming it (never
    swallowed). Without ``router`` or ``endpoints`` the environment variables
    ``AVENGERS_ROUTER`` and ``AVENGERS_ENDPOINTS`` (the server's) supply them.

    Like ``ChatOpenAI`` it serialises (``dumpd``/``dumps``; ``load(...,
    valid_namespaces=["langchain_avengers"], additional_import_mappings=LOAD_MAPPINGS)`` brings
    it back) when its router is given by folder, hub id or ``"pretrained"``; then it also
    pickles, before and after calls (the copy opens its own connections). It deep-copies at any
    time (a ``Router`` object is shared by the copy).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    router: Any = None
    """A fitted :class:`avengers.Router`, a folder it was saved to, a hub id, or ``"pretrained"``."""
    endpoints: Any = None
    """Endpoint file path (YAML/TOML/JSON), a mapping of settings, or ``Endpoint`` objects."""
    model_name: str = Field(default=ROUTED, alias="model")
    """``avengers`` (the default) routes; a candidate's name pins that candidate for every call,
    as ``ChatOpenAI(model=...)`` names its model. A call's ``model=`` replaces it. The candidate
    that answered is ``response_metadata["model_name"]``."""
    sampling: SamplingConfig | dict[str, Any] | None = None
    """How to sample and vote: a :class:`avengers.SamplingConfig`, a dict of its settings, or
    None for the paper's defaults (10 samples at temperature 0.7, majority vote)."""
    stop: list[str] | None = None
    """Stop sequences sent with every sample (added to each endpoint's own); a call's ``stop``
    replaces them."""
    routing: Any = "last_user"
    """What the router reads: ``last_user``, ``conversation``, ``query``, a template such as
    ``"{last_user}"``, or a function of the messages (see :mod:`avengers.answering.messages`)."""
    conversation: str | None = None
    """A conversation key: every call of this model stays on the model its first call went to,
    unless that model fails (a call's ``conversation=`` replaces it)."""
    timeout: float | None = None
    """Seconds before one call to a candidate is abandoned, for every endpoint (None: each
    endpoint's own ``timeout``)."""
    max_retries: int | None = None
    """Retries of one call to a candidate, for every endpoint (None: each endpoint's own)."""
    streaming: bool = False
    """Whether ``invoke`` streams (and so fires ``on_llm_new_token``) by default."""

    _answerer: Answerer | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _fold_sampling(cls, data: Any) -> Any:
        return constructor_data(cls.__name__, data, cls.model_fields)

    # --------------------------------------------------------------- serialisation, copies

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["langchain_avengers", "chat_models"]

    @property
    def lc_attributes(self) -> dict[str, Any]:
        """Settings as plain data for ``dumpd``: the sampling settings that differ from the
        defaults, endpoints as their settings, a router folder as a string."""
        out: dict[str, Any] = {"sampling": sampling_data(self.sampling)}
        if self.endpoints is not None:
            out["endpoints"] = endpoints_data(self.endpoints)
        if self.router is not None:
            out["router"] = router_data(self.router)
        return out

    def __getstate__(self) -> dict[Any, Any]:
        """Pickled without the live answerer (its connections and locks); the copy makes its
        own on first use."""
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private:
            state["__pydantic_private__"] = {**private, "_answerer": None}
        return state

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> ChatAvengers:
        """A copy without the live answerer (it makes its own); a ``Router`` object given as
        ``router`` is shared, not copied (its embedder holds a model, caches and locks)."""
        memo = {} if memo is None else memo
        if self._answerer is not None:
            memo[id(self._answerer)] = None
        if isinstance(self.router, Router):
            memo[id(self.router)] = self.router
        return super().__deepcopy__(memo)

    @property
    def sampling_config(self) -> SamplingConfig:
        """The sampling settings as a :class:`avengers.SamplingConfig`."""
        return SamplingConfig.of(self.sampling)

    @classmethod
    def from_pretrained(
        cls, router: str | Path | Router, endpoints: Any, **kwargs: Any
    ) -> ChatAvengers:
        """A chat model from a saved router (folder, hub id or ``"pretrained"``) and endpoints."""
        return cls(router=router, endpoints=endpoints, **kwargs)

    @property
    def _llm_type(self) -> str:
        return "avengers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        cfg = self.sampling_config
        return {
            "model_name": self.model_name,
            "strategy": cfg.strategy,
            "n_samples": cfg.n_samples,
            "temperature": cfg.temperature,
            "alpha": cfg.alpha,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        cfg = self.sampling_config
        params = LangSmithParams(
            ls_provider="avengers",
            ls_model_name=kwargs.get("model") or self.model_name,
            ls_model_type="chat",
        )
        if cfg.temperature is not None:
            params["ls_temperature"] = cfg.temperature
        if cfg.max_tokens:
            params["ls_max_tokens"] = cfg.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -------------------------------------------------------------------------------- core

    def answerer(self) -> Answerer:
        """The core :class:`avengers.Answerer` (created on first use; no network before)."""
        if self._answerer is None:
            if self.router is None or self.endpoints is None:
                raise missing_setup("ChatAvengers", self.router, self.endpoints)
            endpoints = with_call_settings(
                self.endpoints, timeout=self.timeout, max_retries=self.max_retries
            )
            self._answerer = Answerer(resolve_router(self.router), endpoints, self.sampling_config)
        return self._answerer

    def get_token_ids(self, text: str) -> list[int]:
        """``text``'s tokens by the router's own tokenizer (MiniLM's WordPiece, shipped with the
        package, so counting works offline): an estimate; candidates' tokenizers differ."""
        return token_ids(text)

    def _call_args(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The core call's keywords: routing text, per-call sampling settings, stop sequences
        and a pinned candidate. Anything else is reported, not silently dropped."""
        args = call_settings(
            "ChatAvengers", kwargs, also=("stop", "model", "conversation", *OPTION_NAMES)
        )
        args.update({k: kwargs[k] for k in OPTION_NAMES if kwargs.get(k) is not None})
        conversation = kwargs.get("conversation")
        if conversation is None:
            conversation = self.conversation
        if conversation is not None:
            args["conversation"] = conversation
        stops = stop if stop is not None else self.stop
        if stops:
            args["stop"] = stops
        pin = pinned(kwargs.get("model") or self.model_name)
        if pin is not None:
            args["prefer"] = pin  # model="<candidate>", per instance or per call, pins it
        return {"text": routing_text(messages, self.routing), **args}

    def feedback(self, response: Any, score: float, *, cost: float | None = None) -> Rating:
        """Rate an answer of this model (its message, or the ``response_metadata["id"]``) with a
        score in [0, 1]: the router learns from it at once (see
        :meth:`avengers.Answerer.feedback`)."""
        return self.answerer().feedback(response_id(response), score, cost=cost)

    async def afeedback(self, response: Any, score: float, *, cost: float | None = None) -> Rating:
        """Async twin of :meth:`feedback`."""
        return await self.answerer().afeedback(response_id(response), score, cost=cost)

    # ------------------------------------------------------------------ tools and structure

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer ``tools`` to the candidates that support tool calling (``capabilities: {tools:
        true}`` in the endpoints file; the others are left out of the routing for these calls).
        ``tool_choice``: ``auto``, ``none``, ``any``/``required``/``True`` (some tool must be
        called) or a tool's name. Samples vote on their calls (tool name and canonical
        arguments; see :mod:`avengers.answering.toolcalls`)."""
        formatted = openai_tools(tools, strict=strict)
        choice = openai_tool_choice(tool_choice, formatted)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: StructuredMethod = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers parsed into ``schema`` (a pydantic model, a TypedDict or a JSON schema).
        ``method``: ``function_calling`` (a forced tool call; needs tool-calling candidates),
        ``json_schema`` (``response_format`` with the schema; candidates with ``json_schema``)
        or ``json_mode`` (``response_format`` ``json_object``; say the keys in the prompt).
        Samples vote on their canonical JSON; one that does not parse or match does not vote."""
        if kwargs:
            raise ConfigError(f"with_structured_output got unknown keywords {sorted(kwargs)}")
        return _structured(self, schema, method=method, include_raw=include_raw, strict=strict)

    def _result(self, res: AnswerResult) -> ChatResult:
        msg = ai_message(
            res.text, res.tool_calls, response_metadata=_metadata(res), usage_metadata=_usage(res)
        )
        info = {"finish_reason": finish_reason(res)}
        return ChatResult(
            generations=[ChatGeneration(message=msg, generation_info=info)],
            llm_output={
                "token_usage": token_usage(res),
                "model_provider": "avengers",
                "model_name": res.model,
                "id": res.id,
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        res = self.answerer().answer(to_openai(messages), **self._call_args(messages, stop, kwargs))
        return self._result(res)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        res = await self.answerer().aanswer(
            to_openai(messages), **self._call_args(messages, stop, kwargs)
        )
        return self._result(res)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for part in self.answerer().stream(
            to_openai(messages), **self._call_args(messages, stop, kwargs)
        ):
            chunk = self._chunk(part.text, part.result)
            if run_manager and part.text:
                run_manager.on_llm_new_token(part.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for part in self.answerer().astream(
            to_openai(messages), **self._call_args(messages, stop, kwargs)
        ):
            chunk = self._chunk(part.text, part.result)
            if run_manager and part.text:
                await run_manager.on_llm_new_token(part.text, chunk=chunk)
            yield chunk

    @staticmethod
    def _chunk(text: str, res: AnswerResult | None) -> ChatGenerationChunk:
        if res is None:
            return ChatGenerationChunk(message=AIMessageChunk(content=text))
        return ChatGenerationChunk(
            message=last_chunk(
                res.tool_calls,
                response_metadata=_metadata(res),
                usage_metadata=_usage(res),
                chunk_position="last",
            ),
            generation_info={"finish_reason": finish_reason(res), "model_name": res.model},
        )
