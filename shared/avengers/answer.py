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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._sync import iterate_sync, run_sync
from .decision import RouteDecision
from .backends import Backend, CallError, Completion, Message, OpenAIBackend
from .exceptions import ConfigError, NotFittedError
from .results import (
    AnswerChunk,
    AnswerError,
    AnswerResult,
    Failure,
    Sample,
    SamplingConfig,
)
from .router import Router
from .voting import (
    Ballot,
    Extractor,
    VoteResult,
    counts_margin,
    get_extractor,
    infer_answer_type,
    medoid,
    vote,
    vote_equivalence,
)


def routing_text(messages: Sequence[Message]) -> str:
    """The text the router sees by default: the last user message (text parts joined)."""
    for m in reversed(messages):
        if m.get("role") in ("user", "human"):
            return _content_text(m.get("content"))
    raise ConfigError("no user message to route on")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") if isinstance(p, dict) else str(p) for p in content
        ).strip()
    return "" if content is None else str(content)


def _as_messages(query: str | Sequence[Message]) -> list[Message]:
    if isinstance(query, str):
        if not query.strip():
            raise ConfigError("the query is empty")
        return [{"role": "user", "content": query}]
    msgs = list(query)
    if not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
        raise ConfigError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    return msgs


@dataclass
class _Run:
    """Samples and failures gathered for one model."""

    model: str
    rank: int
    completions: list[Completion] = field(default_factory=list)
    failures: list[CallError] = field(default_factory=list)
    started: int = 0
    cancelled: int = 0


class Answerer:
    """Routes, samples and votes. ``backend`` is an :class:`OpenAIBackend`, anything that
    implements :class:`~avengers.backends.Backend`, or an endpoint config (file or mapping)."""

    def __init__(
        self,
        router: Router,
        backend: Backend | Any,
        config: SamplingConfig | None = None,
        **settings: Any,
    ) -> None:
        if not router.is_fitted():
            raise NotFittedError(
                "this Router is not fitted yet: call fit(...) or Router.from_pretrained(...)"
            )
        self.router = router
        self.backend: Backend = backend if isinstance(backend, Backend) else OpenAIBackend(backend)
        self.config = (
            (config or SamplingConfig()).updated(**settings)
            if settings
            else (config or SamplingConfig())
        )
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
        self, query: str | Sequence[Message], *, alpha: float | None = None, text: str | None = None
    ) -> RouteDecision:
        """The routing decision only (no model is called)."""
        msgs = _as_messages(query)
        a = alpha if alpha is not None else self.config.alpha
        return await self.router.aroute(text if text is not None else routing_text(msgs), alpha=a)

    def route(
        self, query: str | Sequence[Message], *, alpha: float | None = None, text: str | None = None
    ) -> RouteDecision:
        """Sync twin of :meth:`aroute`."""
        return run_sync(self.aroute(query, alpha=alpha, text=text))

    async def aanswer(
        self,
        query: str | Sequence[Message],
        *,
        text: str | None = None,
        decision: RouteDecision | None = None,
        prefer: str | None = None,
        **overrides: Any,
    ) -> AnswerResult:
        """Route ``query`` (a string or chat messages), sample, vote. ``text`` overrides the
        routing text (default: the last user message); ``decision`` skips routing; ``prefer``
        pins a candidate to the front of the ranking; other keywords override
        :class:`SamplingConfig` settings for this call."""
        cfg = self.config.updated(**overrides) if overrides else self.config
        msgs = _as_messages(query)
        t0 = time.perf_counter()
        question = text if text is not None else routing_text(msgs)
        decision, order, notes = await self._plan(question, decision, prefer, cfg)
        routing_latency = time.perf_counter() - t0
        result = await self._answer(msgs, question, order, cfg, notes)
        result.decision = decision
        result.routing_latency = routing_latency
        result.latency = time.perf_counter() - t0
        return result

    def answer(self, query: str | Sequence[Message], **kwargs: Any) -> AnswerResult:
        """Sync twin of :meth:`aanswer`."""
        return run_sync(self._closing(self.aanswer(query, **kwargs)))

    async def aanswer_batch(
        self, queries: Sequence[str | Sequence[Message]], *, max_concurrency: int = 8, **kwargs: Any
    ) -> list[AnswerResult]:
        """Answer many queries concurrently (at most ``max_concurrency`` at a time)."""
        sem = asyncio.Semaphore(max_concurrency)

        async def one(q: str | Sequence[Message]) -> AnswerResult:
            async with sem:
                return await self.aanswer(q, **kwargs)

        return list(await asyncio.gather(*(one(q) for q in queries)))

    def answer_batch(
        self, queries: Sequence[str | Sequence[Message]], **kwargs: Any
    ) -> list[AnswerResult]:
        """Sync twin of :meth:`aanswer_batch`."""
        return run_sync(self._closing(self.aanswer_batch(queries, **kwargs)))

    async def astream(
        self,
        query: str | Sequence[Message],
        *,
        text: str | None = None,
        decision: RouteDecision | None = None,
        prefer: str | None = None,
        **overrides: Any,
    ) -> AsyncIterator[AnswerChunk]:
        """Stream the answer. With one sample (``direct`` or ``n_samples=1``) tokens stream from
        the chosen model as they arrive (falling back to the next model if it fails before its
        first token); with voting, the winning answer is sent in one piece once decided. The last
        chunk has empty text and carries the :class:`AnswerResult`."""
        cfg = self.config.updated(**overrides) if overrides else self.config
        if cfg.samples_per_model > 1:
            res = await self.aanswer(
                query, text=text, decision=decision, prefer=prefer, **overrides
            )
            yield AnswerChunk(res.text)
            yield AnswerChunk("", res)
            return
        msgs = _as_messages(query)
        t0 = time.perf_counter()
        question = text if text is not None else routing_text(msgs)
        decision, order, notes = await self._plan(question, decision, prefer, cfg)
        routing_latency = time.perf_counter() - t0
        failures: list[CallError] = []
        for rank, model in enumerate(self._limit(order, cfg)):
            emitted = False
            try:
                async for piece in self.backend.stream(
                    model, msgs, temperature=cfg.temperature, max_tokens=cfg.max_tokens
                ):
                    if isinstance(piece, Completion):
                        run = _Run(model, rank, [piece], [], 1)
                        res = self._finish(
                            [run], cfg, "single", None, question="", failures=failures, notes=notes
                        )
                        res.strategy = cfg.strategy
                        res.decision, res.routing_latency = decision, routing_latency
                        res.latency = time.perf_counter() - t0
                        yield AnswerChunk("", res)
                        return
                    emitted = True
                    yield AnswerChunk(piece)
            except CallError as e:
                if emitted:
                    raise AnswerError(
                        f"{model} failed in the middle of a streamed answer", _group([e])
                    ) from None
                failures.append(e)
        raise AnswerError("every candidate model failed", _group(failures))

    def stream(self, query: str | Sequence[Message], **kwargs: Any) -> Iterator[AnswerChunk]:
        """Sync twin of :meth:`astream`."""
        return iterate_sync(lambda: self.astream(query, **kwargs), self._aclose)

    # ----------------------------------------------------------------------------- internals

    async def _aclose(self) -> None:
        close = getattr(self.backend, "aclose", None)
        if close is not None:
            await close()

    async def _closing(self, coro: Any) -> Any:
        try:
            return await coro
        finally:
            await self._aclose()

    async def _plan(
        self,
        question: str,
        decision: RouteDecision | None,
        prefer: str | None,
        cfg: SamplingConfig,
    ) -> tuple[RouteDecision, list[str], list[str]]:
        """Route ``question`` unless a decision is given; then the candidate order and notes."""
        if decision is None:
            decision = await self.router.aroute(question, alpha=cfg.alpha)
        order, notes = self._candidates(decision, prefer)
        return decision, order, notes

    def _candidates(
        self, decision: RouteDecision, prefer: str | None
    ) -> tuple[list[str], list[str]]:
        available = set(self.backend.models())
        ranked = [m.model for m in decision.ranking]
        if prefer is not None:
            if prefer not in available:
                raise ConfigError(f"cannot pin {prefer!r}: no endpoint for it")
            ranked = [prefer] + [m for m in ranked if m != prefer]
        order = [m for m in ranked if m in available]
        skipped = [m for m in ranked if m not in available]
        notes = []
        if skipped and ranked and ranked[0] in skipped:
            notes.append(
                f"router's top choice {ranked[0]!r} has no endpoint; "
                f"ranked models without one: {skipped}"
            )
        return order, notes

    def _limit(self, order: list[str], cfg: SamplingConfig) -> list[str]:
        need = 2 if cfg.strategy == "model_switch" else 1
        if cfg.max_fallbacks is None:
            return order
        return order[: need + cfg.max_fallbacks]

    async def _answer(
        self,
        msgs: list[Message],
        question: str,
        order: list[str],
        cfg: SamplingConfig,
        notes: list[str],
    ) -> AnswerResult:
        n = cfg.samples_per_model
        failures: list[CallError] = []
        runs: list[_Run] = []
        candidates = iter(enumerate(self._limit(order, cfg)))
        fallback: str | None = None

        async def next_model(role: str) -> _Run | None:
            nonlocal fallback
            for rank, model in candidates:
                run = await self._sample(model, rank, msgs, question, n, cfg, role)
                failures.extend(run.failures)
                if run.completions:
                    if rank > len(runs):
                        skipped = sorted({f.model for f in failures if f.model != model})
                        fallback = (
                            f"{', '.join(skipped)} failed; {model} (rank {rank + 1}) answered"
                        )
                    return run
            return None

        first = await next_model("first" if cfg.strategy == "model_switch" else "only")
        if first is None:
            raise AnswerError("every candidate model failed", _group(failures))
        runs.append(first)
        requested = n
        if cfg.answer_type == "auto":  # settle the type on the first model's answers
            cfg = cfg.updated(
                answer_type=self._resolve_type(cfg, question, [c.text for c in first.completions])
            )
        if cfg.strategy == "model_switch":
            res1 = self._vote([first], cfg, question)
            if res1[0].answer is None or res1[0].share < cfg.switch_threshold:
                requested += n
                second = await next_model("second")
                if second is not None:
                    runs.append(second)
                    notes.append(
                        f"{first.model}'s majority share {res1[0].share:.2f} < "
                        f"{cfg.switch_threshold}: voted over {first.model} and {second.model}"
                    )
                else:
                    notes.append("second model unavailable: voted over the first model alone")
            else:
                notes.append(
                    f"{first.model}'s majority share {res1[0].share:.2f} >= "
                    f"{cfg.switch_threshold}: second model not needed"
                )
        vote_res, method, resolved = self._vote(runs, cfg, question)
        res = self._finish(runs, cfg, method, vote_res, question, failures, notes, resolved)
        res.n_requested = requested
        res.samples_saved = max(0, requested - res.n_drawn)
        res.fallback = fallback
        if method == "medoid":
            await self._medoid(res)
        return res

    async def _sample(
        self,
        model: str,
        rank: int,
        msgs: list[Message],
        question: str,
        n: int,
        cfg: SamplingConfig,
        role: str,
    ) -> _Run:
        """Draw up to ``n`` samples from one model, at most its concurrency in flight, stopping
        early when the vote is decided (adaptive) or the first answers agree."""
        run = _Run(model, rank)
        limit = max(1, self.backend.concurrency(model))
        pending: set[asyncio.Task[Completion]] = set()

        def start() -> None:
            run.started += 1
            pending.add(
                asyncio.ensure_future(
                    self.backend.complete(
                        model, msgs, temperature=cfg.temperature, max_tokens=cfg.max_tokens
                    )
                )
            )

        try:
            while True:
                while (
                    run.started < n
                    and len(pending) < limit
                    and not self._decided(run, n, cfg, question, role, len(pending))
                ):
                    start()
                if not pending:
                    break
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    exc = t.exception()
                    if exc is None:
                        run.completions.append(t.result())
                    elif isinstance(exc, CallError):
                        run.failures.append(exc)
                    else:
                        run.failures.append(CallError(model, "bad_response", type(exc).__name__))
                if run.failures and not run.completions and len(run.failures) >= min(n, limit):
                    # the model is failing outright: stop hammering it
                    break
                if self._decided(run, n, cfg, question, role, len(pending)):
                    break
        finally:
            for t in pending:
                t.cancel()
                run.cancelled += 1
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        return run

    def _decided(
        self, run: _Run, n: int, cfg: SamplingConfig, question: str, role: str, in_flight: int
    ) -> bool:
        if not run.completions or cfg.samples_per_model == 1:
            return False
        if role == "second" or (not cfg.adaptive and cfg.stop_on_agreement is None):
            return False  # the second model of model_switch votes in a union: draw it all
        extractor = self._extractor(cfg, question, [c.text for c in run.completions])
        if extractor is None:
            return False
        answers = [extractor(c.text) for c in run.completions]
        counts: dict[str, int] = {}
        for a in answers:
            if a:
                counts[a] = counts.get(a, 0) + 1
        remaining = (n - run.started) + in_flight
        if cfg.stop_on_agreement and len(answers) >= cfg.stop_on_agreement:
            head = answers[: cfg.stop_on_agreement]
            if head[0] and all(a == head[0] for a in head):
                return True
        if not cfg.adaptive:
            return False
        if role == "first":
            # model_switch: done once the leader's share is sure to reach the threshold
            if not counts:
                return False
            lead = max(counts.values())
            valid = sum(counts.values())
            return lead >= cfg.switch_threshold * (valid + remaining)
        return counts_margin(counts, remaining)

    def _resolve_type(self, cfg: SamplingConfig, question: str, texts: Sequence[str]) -> str:
        if callable(cfg.answer_type):
            return "custom"
        if cfg.answer_type == "auto":
            return infer_answer_type(question, texts)
        return str(cfg.answer_type)

    def _extractor(
        self, cfg: SamplingConfig, question: str, texts: Sequence[str]
    ) -> Extractor | None:
        if callable(cfg.answer_type):
            return cfg.answer_type
        return get_extractor(self._resolve_type(cfg, question, texts), question)

    def _vote(
        self, runs: list[_Run], cfg: SamplingConfig, question: str
    ) -> tuple[VoteResult, str, str]:
        comps = [(r.rank, c) for r in runs for c in r.completions]
        texts = [c.text for _, c in comps]
        ranks = [rk for rk, _ in comps]
        atype = self._resolve_type(cfg, question, texts)
        if len(comps) == 1 and cfg.samples_per_model == 1:
            return VoteResult(None, 0, {}, 0, 0), "single", atype
        if cfg.equivalence is not None and atype in ("code", "text"):
            return vote_equivalence(texts, ranks, cfg.equivalence), "equivalence", atype
        if atype == "code":
            best = min(range(len(comps)), key=lambda i: (ranks[i], i))
            return (
                VoteResult(None, best, {}, 0, len(comps)),
                "first sample (code is not voted on without an equivalence check)",
                atype,
            )
        extractor = self._extractor(cfg, question, texts)
        if extractor is None:
            return VoteResult(None, None, {}, 0, len(comps)), "medoid", atype
        res = vote(
            [
                Ballot(extractor(t), rk, i)
                for i, (t, rk) in enumerate(zip(texts, ranks, strict=True))
            ]
        )
        if res.answer is None:
            return res, "medoid", atype
        return res, "majority", atype

    def _finish(
        self,
        runs: list[_Run],
        cfg: SamplingConfig,
        method: str,
        vote_res: VoteResult | None,
        question: str,
        failures: list[CallError],
        notes: list[str],
        atype: str = "",
    ) -> AnswerResult:
        comps = [(r, c) for r in runs for c in r.completions]
        extractor = None
        if method in ("majority",) and vote_res is not None:
            extractor = self._extractor(cfg, question, [c.text for _, c in comps])
        samples = [
            Sample(
                c.model,
                r.rank,
                c.text,
                extractor(c.text) if extractor else None,
                c.prompt_tokens,
                c.completion_tokens,
                c.latency,
                c.cost,
            )
            for r, c in comps
        ]
        winner = vote_res.winner if vote_res is not None and vote_res.winner is not None else 0
        if (
            method == "medoid"
            and vote_res is not None
            and vote_res.n_votes == 0
            and atype not in ("text",)
        ):
            notes.append(f"no sample yielded a {atype} answer: the most typical sample was chosen")
        chosen = samples[winner]
        all_failures = failures
        return AnswerResult(
            text=chosen.text,
            answer=vote_res.answer if vote_res is not None else None,
            model=chosen.model,
            strategy=cfg.strategy,
            answer_type=atype or self._resolve_type(cfg, question, [s.text for s in samples]),
            vote_method=method,
            decision=None,
            models_used=[r.model for r in runs],
            votes=dict(vote_res.counts) if vote_res is not None else {},
            samples=samples,
            n_requested=cfg.samples_per_model,
            n_drawn=sum(r.started - r.cancelled for r in runs),
            samples_saved=0,
            failures=_group(all_failures),
            fallback=None,
            latency=0.0,
            routing_latency=0.0,
            prompt_tokens=sum(s.prompt_tokens for s in samples),
            completion_tokens=sum(s.completion_tokens for s in samples),
            cost=sum(s.cost for s in samples),
            notes=list(notes)
            + ([f"tie broken by {vote_res.tie_break}"] if vote_res and vote_res.tie_break else []),
        )

    async def _medoid(self, res: AnswerResult) -> None:
        if len(res.samples) < 2:
            res.vote_method = "single"
            return
        from .embedders import aembed

        vecs = await aembed(self.router.get_embedder(), [s.text for s in res.samples])
        i = medoid(vecs)
        res.text, res.model = res.samples[i].text, res.samples[i].model
        res.notes.append(
            "no extractable answer to vote on: chose the sample most similar to the others "
            "(embedding medoid)"
        )


def _group(errors: Sequence[CallError]) -> list[Failure]:
    grouped: dict[tuple[str, str], Failure] = {}
    for e in errors:
        key = (e.model, e.kind)
        f = grouped.get(key)
        grouped[key] = Failure(e.model, e.kind, e.message, 1 if f is None else f.count + 1)
    return list(grouped.values())


__all__ = [
    "AnswerChunk",
    "AnswerError",
    "AnswerResult",
    "Answerer",
    "Failure",
    "Sample",
    "SamplingConfig",
    "routing_text",
]
