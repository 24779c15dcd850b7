"""The adaptive sampler: draws samples from the ranked candidates until the vote is decided or
the budget is spent, falling back down the ranking when a model fails outright.

Samples are concurrent single requests, at most the model's concurrency in flight. With
``adaptive`` no further sample is requested once the leading answer can no longer be overtaken;
with ``stop_on_agreement=k`` sampling also stops once the first ``k`` answers agree. For
``model_switch`` the first model's majority share decides whether a second model samples too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..transport.backends import Backend, CallError, Completion
from ..transport.breaker import OPEN_KIND, skip_reason
from .config import Role, SamplingConfig
from .messages import Message
from .tally import count, counted, extractor_for, is_cut, resolve_type, stopping_rule
from .toolcalls import ballot
from .voting import counts_margin


@dataclass(frozen=True)
class ModelRun:
    """What sampling one model gave: its samples, its failed calls, and how many it drew."""

    model: str
    rank: int
    """The model's place in the candidate order (0: the router's top choice)."""
    completions: tuple[Completion, ...]
    failures: tuple[CallError, ...]
    drawn: int
    """Requests that ran to an end (started and not cancelled)."""


@dataclass(frozen=True)
class Draw:
    """Everything the sampler gathered for one query, ready for the vote."""

    runs: list[ModelRun]
    """The models that answered, in the order they were sampled."""
    failures: list[CallError]
    notes: list[str]
    n_requested: int
    """Samples the strategy would draw without adaptive stopping."""
    fallback: str | None
    """Why a lower-ranked model answered, if one did."""
    cfg: SamplingConfig
    """The config the vote uses (``auto`` settled on the first model's answers)."""


def candidates(order: Sequence[str], cfg: SamplingConfig) -> list[str]:
    """The models to try, in order: the one (or two) the strategy needs plus the fallbacks."""
    if cfg.max_fallbacks is None:
        return list(order)
    return list(order[: (2 if cfg.strategy == "model_switch" else 1) + cfg.max_fallbacks])


def fallback_note(failures: Sequence[CallError], model: str, rank: int) -> str:
    """Why ``model`` at ``rank`` answered instead of the better-ranked models that failed."""
    failed = sorted({f.model for f in failures if f.model != model and f.kind != OPEN_KIND})
    opened = sorted({f.model for f in failures if f.model != model and f.kind == OPEN_KIND})
    why = [f"{', '.join(failed)} failed"] if failed else []
    why += [f"{', '.join(opened)} skipped (circuit open)"] if opened else []
    return f"{'; '.join(why)}; {model} (rank {rank + 1}) answered"


class Sampler:
    """Samples one query's messages from a backend under one config."""

    def __init__(
        self,
        backend: Backend,
        msgs: list[Message],
        question: str,
        cfg: SamplingConfig,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.options = dict(options or {})
        """Tool and response-format options sent with every call (only when set)."""
        self.backend = backend
        self.msgs = msgs
        self.question = question
        self.cfg = cfg

    async def draw(self, order: Sequence[str]) -> Draw:
        """Sample the strategy's model(s) from ``order``, falling back down it on failure."""
        cfg, n = self.cfg, self.cfg.samples_per_model
        failures: list[CallError] = []
        runs: list[ModelRun] = []
        notes: list[str] = []
        todo = iter(enumerate(candidates(order, cfg)))
        fallback: str | None = None

        async def next_model(role: Role) -> ModelRun | None:
            nonlocal fallback
            for rank, model in todo:
                if (reason := skip_reason(self.backend, model)) is not None:
                    failures.append(CallError(model, OPEN_KIND, reason))
                    continue
                run = await self.sample(model, rank, role)
                failures.extend(run.failures)
                if run.completions:
                    if rank > len(runs):
                        fallback = fallback_note(failures, model, rank)
                    return run
            return None

        first = await next_model("first" if cfg.strategy == "model_switch" else "only")
        if first is None:
            return Draw([], failures, notes, n, None, cfg)
        runs.append(first)
        requested = n
        if cfg.answer_type == "auto":  # settle the type on the first model's answers
            texts = [ballot(c) for c in first.completions]
            self.cfg = cfg = cfg.updated(answer_type=resolve_type(cfg, self.question, texts))
        if cfg.strategy == "model_switch":
            texts = [ballot(c) for c in first.completions]
            cut = [is_cut(c.finish_reason) for c in first.completions]
            vote = count(texts, [first.rank] * len(texts), cfg, self.question, cut)[0]
            verdict = f"{first.model}'s majority share {vote.share:.2f}"
            if vote.answer is not None and vote.share >= cfg.switch_threshold:
                notes.append(f"{verdict} >= {cfg.switch_threshold}: second model not needed")
            else:
                requested += n
                second = await next_model("second")
                if second is None:
                    notes.append("second model unavailable: voted over the first model alone")
                else:
                    runs.append(second)
                    notes.append(
                        f"{verdict} < {cfg.switch_threshold}: "
                        f"voted over {first.model} and {second.model}"
                    )
        return Draw(runs, failures, notes, requested, fallback, cfg)

    async def sample(self, model: str, rank: int, role: Role) -> ModelRun:
        """Draw up to ``n_samples`` from one model, at most its concurrency in flight, stopping
        early when the vote is decided (adaptive) or the first answers agree."""
        n = self.cfg.samples_per_model
        limit = max(1, self.backend.concurrency(model))
        completions: list[Completion] = []
        failures: list[CallError] = []
        pending: set[asyncio.Task[Completion]] = set()
        started = cancelled = 0
        options = {**self.cfg.call_options(), **self.options}

        def decided() -> bool:
            texts = [ballot(c) for c in completions]
            cut = [is_cut(c.finish_reason) for c in completions]
            return self.decided(texts, n - started + len(pending), role, cut)

        try:
            while True:
                while started < n and len(pending) < limit and not decided():
                    started += 1
                    call = self.backend.complete(model, self.msgs, **options)
                    pending.add(asyncio.ensure_future(call))
                if not pending:
                    break
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    exc = t.exception()
                    if exc is None:
                        completions.append(t.result())
                    elif isinstance(exc, CallError):
                        failures.append(exc)
                    else:
                        failures.append(CallError(model, "bad_response", type(exc).__name__))
                if failures and not completions and len(failures) >= min(n, limit):
                    break  # the model is failing outright: stop hammering it
                if decided():
                    break
        finally:
            for t in pending:
                t.cancel()
                cancelled += 1
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        return ModelRun(model, rank, tuple(completions), tuple(failures), started - cancelled)

    def decided(
        self, texts: list[str], remaining: int, role: Role, cut: Sequence[bool] = ()
    ) -> bool:
        """Whether more samples are pointless: the leader cannot be overtaken by the
        ``remaining`` ones (adaptive), or the first answers agree (``stop_on_agreement``).
        ``cut`` marks samples cut off at the token limit: their answers count as in the vote
        (:func:`avengers.answering.tally.weigh_cut`)."""
        cfg = self.cfg
        if not texts or cfg.samples_per_model == 1:
            return False
        if role == "second" or (not cfg.adaptive and cfg.stop_on_agreement is None):
            return False  # the second model of model_switch votes in a union: draw it all
        extractor = extractor_for(cfg, self.question, texts)
        if extractor is None:
            return False
        answers = counted(extractor, texts, cut, stopping_rule())[0]
        counts: dict[str, int] = {}
        for a in answers:
            if a:
                counts[a] = counts.get(a, 0) + 1
        agree = cfg.stop_on_agreement
        if agree and len(answers) >= agree and answers[0] and len(set(answers[:agree])) == 1:
            return True
        if not cfg.adaptive:
            return False
        if role == "first":
            # model_switch: done once the leader's share is sure to reach the threshold
            if not counts:
                return False
            return max(counts.values()) >= cfg.switch_threshold * (sum(counts.values()) + remaining)
        return counts_margin(counts, remaining)
