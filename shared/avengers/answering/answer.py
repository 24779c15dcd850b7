"""Answering: route a query, sample from the chosen model(s), vote, and account for everything.

Strategies (the paper's names and defaults):

* ``self_consistency`` -- the top model of the query's cluster answers ``n_samples`` times
  (10) at ``temperature`` 0.7; the majority answer wins.
* ``model_switch`` -- the top model samples; if its majority answer holds less than
  ``switch_threshold`` (0.8) of its votes, the second model samples too and the vote runs over
  the union of both models' samples.
* ``direct`` -- one sample from the top model.

Samples are drawn as concurrent single requests (servers such as llama.cpp ignore ``n > 1``),
at most the endpoint's concurrency at a time. With ``adaptive=True`` no further sample is drawn
once the leading answer can no longer be overtaken, which never changes the winner; with
``stop_on_agreement=k`` sampling also stops when the first ``k`` answers agree, which may.

Faults: a model whose every sample fails is skipped for the next model in the router's ranking;
a model that returns some samples is voted on with what arrived; the account lists each failure.
Only when every candidate fails does :class:`AnswerError` list them all.

The parts: :mod:`avengers.answering.messages` (message form, what is routed on),
:mod:`avengers.answering.config` (:class:`SamplingConfig`), :mod:`avengers.answering.sampler` (drawing
samples), :mod:`avengers.answering.tally` (the vote) and :mod:`avengers.answering.results` (what is returned). This
module plans each query and puts the parts together.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from .._sync import iterate_sync, run_sync
from ..decision import RouteDecision
from ..exceptions import BudgetError, ConfigError
from ..router import Router
from ..routing.estimator import require_fitted
from ..stores.conversations import ConversationStore, MemoryConversations, check_key
from ..stores.feedback import FeedbackStore, MemoryFeedbackStore, Rating, apply_rating
from ..stores.guard import StoreGuard, StoreUnavailable
from ..transport.backends import Backend, CallError, Completion, OpenAIBackend
from ..transport.breaker import OPEN_KIND, skip_reason
from ..transport.capabilities import CapabilityError, capabilities_of, request_needs, split_capable
from .config import SamplingConfig
from .messages import Message, as_messages, routing_text
from .results import (
    AnswerChunk,
    AnswerError,
    AnswerResult,
    Failure,
    Sample,
    answer_error,
    group_failures,
    new_response_id,
    total_cost,
)
from .sampler import ModelRun, Sampler, candidates, fallback_note
from .tally import decide, is_cut
from .toolcalls import ballot, split_options

Query = str | Sequence[Message]
T = TypeVar("T")


@dataclass(frozen=True)
class _Plan:
    """Where one query goes: what was routed on, the decision, the candidates to try."""

    question: str
    decision: RouteDecision
    order: list[str]
    notes: list[str]
    started: float
    routing_latency: float
    excluded: dict[str, str] | None = None
    """Candidates left out because they lack a capability the request needs, with why."""
    cfg: SamplingConfig | None = None
    """The sampling settings after the cost cap (fewer samples), when it changed them."""
    conversation: str | None = None
    """The conversation key, if the caller gave one."""
    stick: bool = False
    """Whether the model that answers becomes (or stays) the conversation's model: a new or
    expired conversation, or one whose model was put first (if it fails, the one that answers
    instead takes over). False when the conversation's model sat this turn out for a reason of
    this request's own (a capability, the cost cap, a pinned candidate)."""
    stuck: str | None = None
    """The model the conversation was on before this turn."""
    response_id: str | None = None
    unavailable: list[str] | None = None
    """The optional stores that failed for this query (``conversation``, ``feedback``)."""


def fit_budget(
    order: list[str], costs: dict[str, float | None], cfg: SamplingConfig
) -> tuple[list[str], SamplingConfig, list[str]]:
    """Apply ``cfg.max_cost`` to the ranked candidates ``order``, given each model's expected
    cost per call: keep the models whose cost times the samples drawn from each fits. If none
    fits with full sampling, the best-ranked model that fits with at least one sample is kept
    with as many samples as fit (and the others that fit with that many). Returns the order, the
    (possibly reduced) settings and notes; raises :class:`BudgetError` when nothing fits.
    With ``model_switch`` each model is checked on its own samples."""
    cap = cfg.max_cost
    if cap is None or not order:
        return order, cfg, []
    unknown = [m for m in order if costs.get(m) is None]
    if unknown:
        raise BudgetError(
            f"max_cost needs expected costs, but the router knows none for {unknown}: "
            "train it on outcome data with costs"
        )
    price = {m: float(costs[m] or 0.0) for m in order}
    n = cfg.samples_per_model
    eps = 1e-12 * max(1.0, cap)
    fits = [m for m in order if price[m] * n <= cap + eps]
    notes = []
    if fits:
        dropped = [m for m in order if m not in fits]
        if dropped:
            notes.append(
                f"max_cost {cap:g}: left out {', '.join(dropped)} (expected cost of {n} "
                f"sample(s) above the cap)"
            )
        return fits, cfg, notes
    best = next((m for m in order if price[m] <= cap + eps), None)
    if best is None:
        cheapest = min(order, key=lambda m: price[m])
        raise BudgetError(
            f"no candidate model fits max_cost {cap:g}, even with one sample: the cheapest, "
            f"{cheapest!r}, is expected to cost {price[cheapest]:.4g} per call"
        )
    k = max(1, min(n, int((cap + eps) // price[best]))) if price[best] > 0 else n
    reduced = cfg.updated(n_samples=k)
    keep = [m for m in order if price[m] * k <= cap + eps]
    notes.append(
        f"max_cost {cap:g}: no model fits with {n} samples; {best!r} samples {k} time(s) "
        f"(expected cost {price[best] * k:.4g})"
    )
    return keep, reduced, notes


def one_greedy_sample(cfg: SamplingConfig) -> tuple[SamplingConfig, list[str]]:
    """``cfg`` with one sample per model when ``temperature`` is 0, and a note saying so.
    Temperature 0 decodes greedily: every sample of a model is the same answer, so the vote
    would only count (and the caller pay for) copies of the first."""
    if cfg.temperature is None or cfg.temperature > 0 or cfg.samples_per_model == 1:
        return cfg, []
    note = (
        f"temperature 0: one sample per model instead of {cfg.n_samples} (greedy decoding "
        "gives the same answer every time)"
    )
    return cfg.updated(n_samples=1), [note]


def stick(decision: RouteDecision, model: str) -> RouteDecision:
    """``decision`` with ``model`` (the conversation's) moved to the front of its ranking and
    marked sticky; unchanged if ``model`` is not among its candidates."""
    first = next((m for m in decision.ranking if m.model == model), None)
    if first is None:
        return decision
    rest = tuple(m for m in decision.ranking if m.model != model)
    return replace(decision, ranking=(first, *rest), sticky=True, explored=False)


class Answerer:
    """Routes, samples and votes. ``backend`` is an :class:`OpenAIBackend`, anything that
    implements :class:`~avengers.transport.backends.Backend`, or an endpoint config (file or mapping).
    ``config`` and keyword ``settings`` are :class:`SamplingConfig` settings.

    ``conversations`` keeps each conversation on the model its first routed turn went to (see
    :mod:`avengers.stores.conversations`; default: a bounded, expiring store in this process's memory).
    ``feedback_store`` remembers which model gave each answer so that :meth:`feedback` can rate
    it (default: the last 10,000 answers in memory; None: answers are not remembered)."""

    def __init__(
        self,
        router: Router,
        backend: Backend | Any,
        config: SamplingConfig | None = None,
        *,
        conversations: ConversationStore | None = None,
        feedback_store: FeedbackStore | str | None = "memory",
        **settings: Any,
    ) -> None:
        require_fitted(router)
        self.router = router
        self.backend: Backend = backend if isinstance(backend, Backend) else OpenAIBackend(backend)
        self.config = SamplingConfig.of(config, **settings)
        self.conversations: ConversationStore = (
            conversations if conversations is not None else MemoryConversations()
        )
        if isinstance(feedback_store, str):
            if feedback_store != "memory":
                raise ConfigError(
                    f"feedback_store must be a store, 'memory' or None, got {feedback_store!r}"
                )
            feedback_store = MemoryFeedbackStore()
        self.feedback_store: FeedbackStore | None = feedback_store
        self.store_guard: StoreGuard | None = None
        """Set (the server does): store calls run on the guard's own pool, bounded by its timeout
        and the deadline, and a failing store degrades an answer instead of failing it (see
        :mod:`avengers.stores.guard`)."""
        known = set(self.backend.models())
        if not known & set(router.models_):
            raise ConfigError(
                f"no endpoint matches any router model; router models: {list(router.models_)}, "
                f"endpoints: {sorted(known)}"
            )

    def __repr__(self) -> str:
        return f"Answerer(router={self.router!r}, backend={self.backend!r}, config={self.config!r})"

    # ----------------------------------------------------------------------------- public API

    async def aroute(
        self,
        query: Query,
        *,
        alpha: float | None = None,
        text: str | None = None,
        conversation: str | None = None,
        task: str | None = None,
    ) -> RouteDecision:
        """The routing decision only (no model is called). With ``conversation``, a model the
        conversation already sticks to comes first (``decision.sticky``); a new conversation
        sticks to this decision's model. ``task``: an optional task hint (see
        :meth:`Router.estimate <avengers.Router.estimate>`)."""
        question = text if text is not None else routing_text(as_messages(query))
        decision = await self.router.aroute(
            question, alpha=alpha if alpha is not None else self.config.alpha, task=task
        )
        if conversation is None:
            return decision
        key = check_key(conversation)
        stuck = await self._store(self.conversations.get, key)
        if stuck is not None and stuck in self.backend.models():
            out = stick(decision, stuck)
            if out.sticky:
                return out
        await self._store(self.conversations.set, key, decision.model)
        return decision

    def route(
        self,
        query: Query,
        *,
        alpha: float | None = None,
        text: str | None = None,
        conversation: str | None = None,
        task: str | None = None,
    ) -> RouteDecision:
        """Sync twin of :meth:`aroute`."""
        return run_sync(
            self.aroute(query, alpha=alpha, text=text, conversation=conversation, task=task)
        )

    async def aanswer(
        self,
        query: Query,
        *,
        text: str | None = None,
        decision: RouteDecision | None = None,
        prefer: str | None = None,
        conversation: str | None = None,
        response_id: str | None = None,
        **overrides: Any,
    ) -> AnswerResult:
        """Route ``query`` (a string or chat messages), sample, vote. ``text`` overrides the
        routing text (default: the last user message); ``decision`` skips routing; ``prefer``
        pins a candidate to the front of the ranking; ``conversation`` (any string naming the
        conversation) keeps the conversation on the model its first routed turn went to, unless
        that model fails (see :mod:`avengers.stores.conversations`); ``response_id`` names the answer
        (default: a fresh id, ``result.id``); ``tools``, ``tool_choice``,
        ``parallel_tool_calls`` and ``response_format`` (OpenAI's) go to the candidates that
        support them (see :mod:`avengers.answering.toolcalls`); other keywords override
        :class:`SamplingConfig` settings for this call."""
        cfg, opts = split_options(self.config, dict(overrides))
        cfg, greedy = one_greedy_sample(cfg)
        msgs = as_messages(query)
        plan = await self._plan(msgs, text, decision, prefer, cfg, opts, conversation, response_id)
        cfg = plan.cfg or cfg
        draw = await Sampler(self.backend, msgs, plan.question, cfg, opts).draw(plan.order)
        if not draw.runs:
            raise answer_error("every candidate model failed", group_failures(draw.failures))
        notes = [*greedy, *plan.notes, *draw.notes]
        return await self._result(
            plan, draw.runs, draw.cfg, draw.failures, notes, draw.n_requested, draw.fallback
        )

    def answer(self, query: Query, **kwargs: Any) -> AnswerResult:
        """Sync twin of :meth:`aanswer`."""
        return run_sync(self._closing(self.aanswer(query, **kwargs)))

    async def aanswer_batch(
        self, queries: Sequence[Query], *, max_concurrency: int = 8, **kwargs: Any
    ) -> list[AnswerResult]:
        """Answer many queries concurrently (at most ``max_concurrency`` at a time)."""
        sem = asyncio.Semaphore(max_concurrency)

        async def one(q: Query) -> AnswerResult:
            async with sem:
                return await self.aanswer(q, **kwargs)

        return list(await asyncio.gather(*(one(q) for q in queries)))

    def answer_batch(self, queries: Sequence[Query], **kwargs: Any) -> list[AnswerResult]:
        """Sync twin of :meth:`aanswer_batch`."""
        return run_sync(self._closing(self.aanswer_batch(queries, **kwargs)))

    async def astream(
        self,
        query: Query,
        *,
        text: str | None = None,
        decision: RouteDecision | None = None,
        prefer: str | None = None,
        conversation: str | None = None,
        response_id: str | None = None,
        **overrides: Any,
    ) -> AsyncIterator[AnswerChunk]:
        """Stream the answer. With one sample (``direct`` or ``n_samples=1``) tokens stream from
        the chosen model as they arrive (falling back to the next model if it fails before its
        first token); with voting, the winning answer is sent in one piece once decided. The last
        chunk has empty text and carries the :class:`AnswerResult`."""
        cfg, opts = split_options(self.config, dict(overrides))
        cfg, greedy = one_greedy_sample(cfg)
        if cfg.samples_per_model > 1:
            res = await self.aanswer(
                query, text=text, decision=decision, prefer=prefer, conversation=conversation,
                response_id=response_id, **overrides,
            )  # fmt: skip
            yield AnswerChunk(res.text, model=res.model)
            yield AnswerChunk("", res, res.model)
            return
        msgs = as_messages(query)
        plan = await self._plan(msgs, text, decision, prefer, cfg, opts, conversation, response_id)
        failures: list[CallError] = []
        for rank, model in enumerate(candidates(plan.order, cfg)):
            if (reason := skip_reason(self.backend, model)) is not None:
                failures.append(CallError(model, OPEN_KIND, reason))
                continue
            emitted = False
            try:
                async for piece in self.backend.stream(model, msgs, **cfg.call_options(), **opts):
                    if isinstance(piece, Completion):
                        run = ModelRun(model, rank, (piece,), (), 1)
                        fallback = fallback_note(failures, model, rank) if rank else None
                        res = await self._result(
                            plan, [run], cfg, failures, [*greedy, *plan.notes], 1, fallback
                        )
                        yield AnswerChunk("", res, model)
                        return
                    emitted = True
                    yield AnswerChunk(piece, model=model)
            except CallError as e:
                if emitted:
                    raise answer_error(
                        f"{model} failed in the middle of a streamed answer", group_failures([e])
                    ) from None
                failures.append(e)
        raise answer_error("every candidate model failed", group_failures(failures))

    def stream(self, query: Query, **kwargs: Any) -> Iterator[AnswerChunk]:
        """Sync twin of :meth:`astream`."""
        return iterate_sync(lambda: self.astream(query, **kwargs), self.aclose)

    async def afeedback(
        self, response: AnswerResult | str, score: float, *, cost: float | None = None
    ) -> Rating:
        """Rate an answer (an :class:`AnswerResult` or its id) with a score in [0, 1] (and
        optionally what it cost): the rating is kept in :attr:`feedback_store` and counted into
        the router at once (:meth:`avengers.Router.update`). Raises
        :class:`~avengers.stores.feedback.FeedbackError` (unknown or already rated id, score out of
        range) or :class:`ConfigError` when answers are not remembered."""
        store = self.feedback_store
        if store is None:
            raise ConfigError("this Answerer keeps no feedback store (feedback_store=None)")
        rid = response.id if isinstance(response, AnswerResult) else response
        rating: Rating = await self._store(store.rate, rid, score, cost)
        apply_rating(self.router, rating)
        return rating

    def feedback(
        self, response: AnswerResult | str, score: float, *, cost: float | None = None
    ) -> Rating:
        """Sync twin of :meth:`afeedback`."""
        return run_sync(self.afeedback(response, score, cost=cost))

    # ----------------------------------------------------------------------------- internals

    async def aclose(self) -> None:
        """Close the backend's connections (the backend's own ``aclose``, if it has one)."""
        close = getattr(self.backend, "aclose", None)
        if close is not None:
            await close()

    async def _closing(self, coro: Any) -> Any:
        try:
            return await coro
        finally:
            await self.aclose()

    async def _store(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a store method; off the event loop unless the store is in memory (on the
        :attr:`store_guard`'s pool when there is one: :class:`StoreUnavailable` on failure)."""
        if isinstance(getattr(fn, "__self__", None), (MemoryConversations, MemoryFeedbackStore)):
            return fn(*args)
        if self.store_guard is not None:
            return await self.store_guard.call(fn, *args)
        return await asyncio.to_thread(fn, *args)

    def _order(
        self,
        decision: RouteDecision,
        msgs: list[Message],
        prefer: str | None,
        cfg: SamplingConfig,
        opts: dict[str, Any] | None,
    ) -> tuple[list[str], SamplingConfig, list[str], dict[str, str]]:
        """The candidates to try, best first: those with a backend and every capability the
        request needs, within the cost cap. Returns them, the (possibly reduced) settings, notes
        and the candidates left out for lack of a capability."""
        available = set(self.backend.models())
        ranked = [m.model for m in decision.ranking]
        if prefer is not None:
            if prefer not in available:
                raise ConfigError(f"cannot pin {prefer!r}: no endpoint for it")
            ranked = [prefer] + [m for m in ranked if m != prefer]
        skipped = [m for m in ranked if m not in available]
        notes = []
        if ranked and ranked[0] in skipped:
            notes.append(
                f"router's top choice {ranked[0]!r} has no endpoint; "
                f"ranked models without one: {skipped}"
            )
        order = [m for m in ranked if m in available]
        needs = request_needs(msgs, opts)
        order, excluded = split_capable(order, needs, capabilities_of(self.backend))
        if excluded:
            if not order:
                raise CapabilityError(needs, excluded)
            notes.append(f"excluded for lack of capabilities: {', '.join(excluded)}")
        costs = {m.model: m.cost for m in decision.ranking}
        order, budget_cfg, budget_notes = fit_budget(order, costs, cfg)
        return order, budget_cfg, notes + budget_notes, excluded

    async def _plan(
        self,
        msgs: list[Message],
        text: str | None,
        decision: RouteDecision | None,
        prefer: str | None,
        cfg: SamplingConfig,
        opts: dict[str, Any] | None = None,
        conversation: str | None = None,
        response_id: str | None = None,
    ) -> _Plan:
        """Route (unless a decision is given), keep the conversation's model first (if any and
        it can serve this request), then order the candidates that have a backend and every
        capability the request needs."""
        started = time.perf_counter()
        question = text if text is not None else routing_text(msgs)
        if decision is None:
            decision = await self.router.aroute(question, alpha=cfg.alpha)
        stuck: str | None = None
        stick_answer = conversation is not None and prefer is None
        if conversation is not None:
            check_key(conversation)
        unavailable: list[str] = []
        if stick_answer and not decision.sticky:
            try:
                stuck = await self._store(self.conversations.get, conversation)
            except StoreUnavailable:  # the answer never waits on the store: routed afresh
                stick_answer = False
                unavailable.append("conversation")
        fresh, kept = decision, False
        if stuck is not None and stuck in self.backend.models():
            decision = stick(decision, stuck)
            kept = decision.sticky
        order, budget_cfg, notes, excluded = self._order(decision, msgs, prefer, cfg, opts)
        if kept and (not order or order[0] != stuck):
            # the conversation's model cannot serve this request (a capability it lacks, the
            # cost cap): this turn is routed afresh and the conversation keeps its model
            decision, stick_answer = fresh, False
            order, budget_cfg, notes, excluded = self._order(decision, msgs, prefer, cfg, opts)
            notes.append(
                f"conversation's model {stuck!r} cannot serve this request; routed afresh "
                "(the conversation keeps its model)"
            )
        elif stuck is not None and not kept:
            notes.append(f"conversation's model {stuck!r} is no longer a candidate; routed afresh")
        if unavailable:
            notes.append("conversation store unavailable: this turn was routed afresh")
        return _Plan(
            question,
            decision,
            order,
            notes,
            started,
            time.perf_counter() - started,
            excluded,
            budget_cfg if budget_cfg is not cfg else None,
            conversation,
            stick_answer,
            stuck,
            response_id,
            unavailable,
        )

    async def _embed(self, texts: list[str]) -> np.ndarray:
        from ..embedding.embedders import aembed

        return await aembed(self.router.get_embedder(), texts)

    async def _result(
        self,
        plan: _Plan,
        runs: list[ModelRun],
        cfg: SamplingConfig,
        failures: list[CallError],
        notes: list[str],
        n_requested: int,
        fallback: str | None,
    ) -> AnswerResult:
        """Vote over the runs' samples and build the complete result with its account."""
        comps = [(r, c) for r in runs for c in r.completions]
        texts = [ballot(c) for _, c in comps]
        ranks = [r.rank for r, _ in comps]
        cut = [is_cut(c.finish_reason) for _, c in comps]
        verdict = await decide(texts, ranks, cfg, plan.question, self._embed, cut)
        samples = [
            Sample(c.model, r.rank, c.text, answer, c.prompt_tokens, c.completion_tokens,
                   c.latency, c.cost, list(c.tool_calls), c.tokens_known, c.finish_reason)
            for (r, c), answer in zip(comps, verdict.extracted, strict=True)
        ]  # fmt: skip
        chosen = samples[verdict.winner]
        drawn = sum(r.drawn for r in runs)
        notes = list(notes)
        ended = Counter(sorted(s.finish_reason for s in samples if s.finish_reason))
        if len(ended) > 1:  # e.g. some cut off at the token limit: the caller should know
            how = ", ".join(f"{n} {why}" for why, n in sorted(ended.items(), key=lambda x: -x[1]))
            notes.append(f"samples ended differently ({how}); the answer's: {chosen.finish_reason}")
        unavailable = list(plan.unavailable or ())
        if plan.conversation is not None and plan.stick:
            answered = runs[0].model  # the model the turn went to (first of model_switch)
            if answered != plan.stuck:
                try:
                    await self._store(self.conversations.set, plan.conversation, answered)
                except StoreUnavailable:
                    unavailable.append("conversation")
                    notes.append("conversation store unavailable: this turn was not recorded")
                if plan.stuck is not None:
                    notes.append(
                        f"conversation moved from {plan.stuck} to {answered} ({plan.stuck} failed)"
                    )
        expected = {m.model: m.cost for m in plan.decision.ranking}
        result = AnswerResult(
            text=chosen.text,
            answer=verdict.answer,
            model=chosen.model,
            strategy=cfg.strategy,
            answer_type=verdict.answer_type,
            vote_method=verdict.method,
            decision=plan.decision,
            models_used=[r.model for r in runs],
            votes=verdict.votes,
            samples=samples,
            n_requested=n_requested,
            n_drawn=drawn,
            samples_saved=max(0, n_requested - drawn),
            failures=group_failures(failures),
            fallback=fallback,
            latency=time.perf_counter() - plan.started,
            routing_latency=plan.routing_latency,
            prompt_tokens=sum(s.prompt_tokens for s in samples),
            completion_tokens=sum(s.completion_tokens for s in samples),
            cost=total_cost([s.cost for s in samples]),
            notes=[*notes, *verdict.notes],
            tool_calls=list(comps[verdict.winner][1].tool_calls),
            excluded=dict(plan.excluded or {}),
            id=plan.response_id or new_response_id(),
            expected_cost=total_cost([expected.get(s.model) for s in samples]),
            conversation=plan.conversation,
            unavailable=unavailable,
            tokens_known=all(s.tokens_known for s in samples),
            finish_reason=chosen.finish_reason,
            chosen=verdict.winner,
        )
        if self.feedback_store is not None:
            store = self.feedback_store
            try:
                await self._store(store.remember, result.id, result.model, plan.decision.cluster)
            except StoreUnavailable:  # served all the same; this answer cannot be rated
                unavailable.append("feedback")
                result.notes.append("feedback store unavailable: this answer cannot be rated")
        return result


__all__ = [
    "AnswerChunk",
    "AnswerError",
    "AnswerResult",
    "Answerer",
    "BudgetError",
    "Failure",
    "Sample",
    "SamplingConfig",
    "fit_budget",
    "one_greedy_sample",
    "routing_text",
    "stick",
]
