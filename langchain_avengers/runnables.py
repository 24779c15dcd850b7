"""Runnables for people whose candidates are already LangChain objects.

* :class:`AvengersRouterChain` sends each input to the candidate ``Runnable`` the router picks
  (optionally sampling it several times and voting), through the core answering layer.
* :class:`AvengersRouteOnly` returns the routing decision without calling any model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from avengers import Answerer, Router, SamplingConfig
from avengers.answering.answer import stick
from avengers.answering.config import fold_settings
from avengers.decision import RouteDecision
from avengers.exceptions import ConfigError
from avengers.stores.conversations import ConversationStore, MemoryConversations, check_key
from avengers.training.bundled import resolve_router
from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import patch_config
from langchain_core.runnables.utils import AddableDict
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from ._core import RunnableBackend, as_messages, routing_text, to_openai


def _load_router(router: Any) -> Router:
    return resolve_router(router)


def query_text(value: Any, *, input_key: str | None = None, routing: Any = "last_user") -> str:
    """The text to route on, from a chain input: a string, messages, a prompt value, or a dict
    (``input_key``, else its only or first string value)."""
    if isinstance(value, Mapping):
        if input_key is not None:
            if input_key not in value:
                raise ConfigError(f"input has no key {input_key!r} (keys: {sorted(value)})")
            return query_text(value[input_key], routing=routing)
        strings = [v for v in value.values() if isinstance(v, str)]
        if not strings:
            raise ConfigError("a dict input needs a string value to route on; set input_key")
        return strings[0]
    if isinstance(value, str):
        return value
    return routing_text(as_messages(value), routing)


class _RouterFields(RunnableSerializable[Any, Any]):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Any
    """A fitted :class:`avengers.Router`, a folder or hub id, or ``"pretrained"``."""
    input_key: str | None = None
    """For dict inputs: the key that holds the text to route on."""
    routing: Any = "last_user"
    """For message inputs: ``last_user``, ``conversation``, ``query``, a template, or a function
    (see :mod:`avengers.answering.messages`)."""
    alpha: float | None = None
    """Cost/quality trade-off for routing (None: the router's own)."""
    conversation: str | None = None
    """A conversation key: every call stays on the model the conversation's first routed call
    went to (see :mod:`avengers.stores.conversations`). A call's ``config={"configurable":
    {"conversation": ...}}`` replaces it, and ``conversation_key`` replaces both."""
    conversation_key: str | None = None
    """For dict inputs: the key that holds the conversation key (e.g. ``"session_id"``)."""

    _conversations: ConversationStore = PrivateAttr(default_factory=MemoryConversations)

    def _router(self) -> Router:
        r = _load_router(self.router)
        if r is not self.router:
            object.__setattr__(self, "router", r)
        return r

    def _text(self, value: Any) -> str:
        return query_text(value, input_key=self.input_key, routing=self.routing)

    def _conversation(self, value: Any, config: RunnableConfig | None) -> str | None:
        """This call's conversation key: the input's ``conversation_key`` (dict inputs), else
        the config's ``configurable["conversation"]``, else the ``conversation`` field."""
        if self.conversation_key is not None and isinstance(value, Mapping):
            if self.conversation_key not in value:
                raise ConfigError(
                    f"input has no conversation key {self.conversation_key!r} "
                    f"(keys: {sorted(value)})"
                )
            return check_key(value[self.conversation_key])
        configured = ((config or {}).get("configurable") or {}).get("conversation")
        key = configured if configured is not None else self.conversation
        return None if key is None else check_key(key)


class AvengersRouteOnly(_RouterFields):
    """Returns the :class:`~avengers.decision.RouteDecision` for the input (or its dict with
    ``as_dict=True``) without calling any model, for branching yourself. With a conversation
    key, a conversation's later turns get its first turn's model first, and ``decision.sticky``
    says so."""

    as_dict: bool = False
    """Return ``decision.to_dict()`` instead of the decision object."""

    def _stick(self, d: RouteDecision, conversation: str | None) -> Any:
        """As :meth:`avengers.Answerer.aroute`: the conversation's model first (``d.sticky``),
        or a new conversation sticks to ``d.model``."""
        if conversation is not None:
            stuck = self._conversations.get(conversation)
            sticky = stick(d, stuck) if stuck is not None else d
            if sticky.sticky:
                d = sticky
            else:
                self._conversations.set(conversation, d.model)
        return d.to_dict() if self.as_dict else d

    def _route(
        self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        conversation = self._conversation(value, config)
        d = self._router().route(self._text(value), alpha=self.alpha)
        return self._stick(d, conversation)

    async def _aroute(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        conversation = self._conversation(value, config)
        d = await self._router().aroute(self._text(value), alpha=self.alpha)
        return self._stick(d, conversation)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._route, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._aroute, input, config)


CHAIN_SAMPLING = SamplingConfig(n_samples=1, temperature=None)
"""The router chain's defaults: one call of the chosen candidate, at the candidate's own
temperature."""


class AvengersRouterChain(_RouterFields):
    """Routes each input to one of ``runnables`` (model name -> any ``Runnable``: a chat model,
    a prompt-and-model chain, ...). With ``sampling={"n_samples": 5}`` the chosen candidate runs
    several times and the outputs vote (the paper's self-consistency); a failing candidate falls
    back to the next-ranked one. The output is the winning candidate's own output, or
    ``{"output": ..., "account": {...}}`` with ``return_account=True``.

    ``temperature``, ``max_tokens`` and ``stop`` set in ``sampling`` reach candidates that are
    LangChain chat models or LLMs (through ``bind``); other candidates run with their own
    settings, with a warning. The former fields (``n_samples=5``, ``strategy=...``,
    ``answer_type=...``) still work as keywords and fold into ``sampling``.

    With a conversation key (``conversation``, per call ``config={"configurable":
    {"conversation": ...}}``, or the input's ``conversation_key``) a conversation's turns stay on
    the candidate its first turn went to, unless that candidate fails (see
    :mod:`avengers.stores.conversations`); the conversations are kept in this chain's memory."""

    runnables: dict[str, Runnable[Any, Any]] = Field(default_factory=dict)
    """Candidates by the router's model names."""
    sampling: SamplingConfig | dict[str, Any] | None = None
    """How to sample and vote: a :class:`avengers.SamplingConfig`, or a dict of settings over
    :data:`CHAIN_SAMPLING` (one sample at the candidate's own temperature). One sample means
    the ``direct`` strategy."""
    max_concurrency: int = 4
    """Most samples of one candidate running at once."""
    return_account: bool = False
    """Return ``{"output": ..., "account": ...}`` instead of the bare output."""

    @model_validator(mode="before")
    @classmethod
    def _fold_sampling(cls, data: Any) -> Any:
        return fold_settings(data, cls.__name__, cls.model_fields, CHAIN_SAMPLING)

    @property
    def sampling_config(self) -> SamplingConfig:
        """The sampling settings as a :class:`avengers.SamplingConfig`."""
        cfg = SamplingConfig.of(self.sampling, default=CHAIN_SAMPLING, alpha=self.alpha)
        return cfg.updated(strategy="direct") if cfg.n_samples == 1 else cfg

    def _answerer(
        self, value: Any, config: RunnableConfig | None, *, sync: bool = False
    ) -> tuple[Answerer, RunnableBackend]:
        router = self._router()
        missing = [m for m in self.runnables if m not in router.models_]
        if missing:
            raise ConfigError(
                f"runnables {missing} are not models of the router ({list(router.models_)})"
            )
        backend = RunnableBackend(
            self.runnables, value, config, max_concurrency=self.max_concurrency, sync=sync
        )
        answerer = Answerer(
            router, backend, self.sampling_config, conversations=self._conversations
        )
        return answerer, backend

    @staticmethod
    def _messages(value: Any, text: str) -> list[dict[str, Any]]:
        try:
            return to_openai(as_messages(value))
        except ConfigError:
            return [{"role": "user", "content": text}]

    def _finish(self, res: Any, backend: RunnableBackend) -> Any:
        out = backend.output_for(res.model, res.text)
        return {"output": out, "account": res.account()} if self.return_account else out

    def _run(
        self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        child = patch_config(config, callbacks=run_manager.get_child())
        answerer, backend = self._answerer(value, child, sync=True)
        text = self._text(value)
        conversation = self._conversation(value, config)
        res = answerer.answer(self._messages(value, text), text=text, conversation=conversation)
        return self._finish(res, backend)

    async def _arun(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        child = patch_config(config, callbacks=run_manager.get_child())
        answerer, backend = self._answerer(value, child)
        text = self._text(value)
        conversation = self._conversation(value, config)
        res = await answerer.aanswer(
            self._messages(value, text), text=text, conversation=conversation
        )
        return self._finish(res, backend)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._run, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._arun, input, config)

    # ------------------------------------------------------------------------- streaming

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """With one sample, the chosen candidate's own chunks as it streams them (falling back
        to the next candidate if it fails before its first text); with voting, the winning
        output in one piece once decided. With ``return_account``, ``{"output": chunk}``
        pieces and a last ``{"account": ...}``."""
        yield from self._transform_stream_with_config(iter([input]), self._stream_run, config)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async twin of :meth:`stream`."""

        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream_run, config):
            yield chunk

    def _out(self, chunk: Any) -> Any:
        return AddableDict(output=chunk) if self.return_account else chunk

    def _stream_run(
        self,
        inputs: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[Any]:
        value = next(iter(inputs))
        if self.sampling_config.samples_per_model > 1:
            yield self._run(value, run_manager, config)
            return
        child = patch_config(config, callbacks=run_manager.get_child())
        answerer, backend = self._answerer(value, child, sync=True)
        text = self._text(value)
        conversation = self._conversation(value, config)
        msgs = self._messages(value, text)
        for part in answerer.stream(msgs, text=text, conversation=conversation):
            for chunk in backend.take_chunks():
                yield self._out(chunk)
            if part.result is not None and self.return_account:
                yield AddableDict(account=part.result.account())

    async def _astream_run(
        self,
        inputs: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> AsyncIterator[Any]:
        value = await anext(inputs)
        if self.sampling_config.samples_per_model > 1:
            yield await self._arun(value, run_manager, config)
            return
        child = patch_config(config, callbacks=run_manager.get_child())
        answerer, backend = self._answerer(value, child)
        text = self._text(value)
        conversation = self._conversation(value, config)
        msgs = self._messages(value, text)
        async for part in answerer.astream(msgs, text=text, conversation=conversation):
            for chunk in backend.take_chunks():
                yield self._out(chunk)
            if part.result is not None and self.return_account:
                yield AddableDict(account=part.result.account())
