"""``ChatAvengers``: a LangChain chat model that routes, samples and votes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from avengers import Answerer, AnswerResult, Router, SamplingConfig
from avengers.bundled import resolve_router
from avengers.exceptions import ConfigError
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from ._core import RoutingPolicy, routing_text, to_openai


def _usage(res: AnswerResult) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=res.prompt_tokens,
        output_tokens=res.completion_tokens,
        total_tokens=res.prompt_tokens + res.completion_tokens,
    )


def _metadata(res: AnswerResult) -> dict[str, Any]:
    return {"model_name": res.model, "model_provider": "avengers", "avengers": res.account()}


class ChatAvengers(BaseChatModel):
    """A chat model backed by a trained avengers router and OpenAI-compatible endpoints.

    Each call routes the conversation (by default its last human message) to the best candidate,
    samples it ``n_samples`` times and returns the voted answer. ``response_metadata`` holds
    ``model_name`` (the candidate that answered) and ``avengers`` (the full routing account:
    cluster, ranked models, votes, samples, failures, cost).

    ```python
    chat = ChatAvengers.from_pretrained("my-router", endpoints="endpoints.yaml")
    chain = prompt | chat | StrOutputParser()
    ```
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    router: Any = None
    """A fitted :class:`avengers.Router`, a folder it was saved to, a hub id, or ``"pretrained"``."""
    endpoints: Any = None
    """Endpoint file path (YAML/TOML/JSON), a mapping of settings, or ``Endpoint`` objects."""
    model_name: str = Field(default="avengers", alias="model")
    """The name this model reports (the candidate that answered is in ``response_metadata``).
    Passing ``model="<candidate>"`` to a call pins that candidate instead of routing."""
    strategy: str = "self_consistency"
    """``self_consistency``, ``model_switch`` or ``direct``."""
    n_samples: int = 10
    """Samples drawn from the chosen model (the paper: 10)."""
    temperature: float = 0.7
    """Sampling temperature (the paper: 0.7)."""
    alpha: float | None = None
    """Cost/quality trade-off for routing (None: the router's own)."""
    answer_type: str = "auto"
    """How answers are compared when voting: auto, choice, number, short, text or code."""
    adaptive: bool = True
    """Stop sampling once the leading answer cannot be overtaken."""
    max_tokens: int | None = None
    """Completion length cap per sample."""
    stop: list[str] | None = None
    """Accepted for compatibility; stop sequences belong in each endpoint's settings."""
    routing: Any = "last_human"
    """What the router reads: ``last_human``, ``conversation``, a template with ``{last_human}``
    or ``{conversation}``, or a function of the messages."""

    _answerer: Answerer | None = PrivateAttr(default=None)

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
        return {
            "model_name": self.model_name,
            "strategy": self.strategy,
            "n_samples": self.n_samples,
            "temperature": self.temperature,
            "alpha": self.alpha,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="avengers",
            ls_model_name=kwargs.get("model") or self.model_name,
            ls_model_type="chat",
            ls_temperature=self.temperature,
        )
        if self.max_tokens:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -------------------------------------------------------------------------------- core

    def answerer(self) -> Answerer:
        """The core :class:`avengers.Answerer` (created on first use; no network before)."""
        if self._answerer is None:
            if self.router is None or self.endpoints is None:
                raise ConfigError("ChatAvengers needs a router and endpoints")
            router = resolve_router(self.router)
            cfg = SamplingConfig(
                strategy=self.strategy,  # type: ignore[arg-type]
                n_samples=self.n_samples,
                temperature=self.temperature,
                alpha=self.alpha,
                answer_type=self.answer_type,
                adaptive=self.adaptive,
                max_tokens=self.max_tokens,
            )
            self._answerer = Answerer(router, self.endpoints, cfg)
        return self._answerer

    def _call_args(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
        policy: RoutingPolicy = self.routing
        overrides: dict[str, Any] = {
            k: kwargs[k] for k in ("n_samples", "alpha", "strategy", "temperature") if k in kwargs
        }
        pinned = kwargs.get("model")
        if pinned and pinned != self.model_name:
            overrides["prefer"] = pinned  # a per-call model= pins that candidate
        return {"text": routing_text(messages, policy), **overrides}

    def _result(self, res: AnswerResult) -> ChatResult:
        msg = AIMessage(
            content=res.text, response_metadata=_metadata(res), usage_metadata=_usage(res)
        )
        return ChatResult(
            generations=[ChatGeneration(message=msg)],
            llm_output={"model_name": res.model, "token_usage": dict(_usage(res))},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        res = self.answerer().answer(to_openai(messages), **self._call_args(messages, kwargs))
        return self._result(res)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        res = await self.answerer().aanswer(
            to_openai(messages), **self._call_args(messages, kwargs)
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
            to_openai(messages), **self._call_args(messages, kwargs)
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
            to_openai(messages), **self._call_args(messages, kwargs)
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
            message=AIMessageChunk(
                content="",
                response_metadata=_metadata(res),
                usage_metadata=_usage(res),
                chunk_position="last",
            )
        )
