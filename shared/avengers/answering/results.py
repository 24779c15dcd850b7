"""What answering returns: samples, failures, the answer with its account, stream chunks, and
the all-candidates-failed error. (The settings live in :mod:`avengers.answering.config`; they are
re-exported here for existing imports.)"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..decision import RouteDecision
from ..exceptions import AvengersError
from ..transport.backends import CallError
from ..transport.endpoints import round_cost
from .config import STRATEGIES, SamplingConfig, Strategy, VoteMethod


class AnswerError(AvengersError):
    """Every candidate failed. ``failures`` lists what happened to each; :attr:`retryable` says
    whether every failure was transient (rate limits, timeouts, connection and server errors,
    open circuits, cut streams). Raised through :func:`answer_error`, which makes it an
    instance of the matching ``openai`` error too when every failure is of one transient kind."""

    def __init__(self, message: str, failures: Sequence[Failure]) -> None:
        lines = [message] + [f"  - {f.model}: {f.kind} x{f.count} ({f.message})" for f in failures]
        Exception.__init__(self, "\n".join(lines))
        self.failures = list(failures)

    @property
    def retryable(self) -> bool:
        """Whether every failure was transient, so the same request may succeed later."""
        return bool(self.failures) and all(f.kind in TRANSIENT_KINDS for f in self.failures)


TRANSIENT_KINDS = frozenset(
    {"rate_limit", "timeout", "connection", "server_error", "circuit_open", "truncated"}
)
"""Failure kinds that may pass by themselves (see :mod:`avengers.transport.backends`)."""

_OPENAI_TWINS: dict[type[Exception], type[AnswerError]] = {}


def answer_error(message: str, failures: Sequence[Failure]) -> AnswerError:
    """The :class:`AnswerError` for ``failures``. When every failure is of one transient kind it
    is also the ``openai`` error a single call would have raised, so retry rules written for
    the official client (``with_retry(retry_if_exception_type=(openai.RateLimitError,))``)
    match it: every ``rate_limit`` -> ``openai.RateLimitError``, every ``timeout`` ->
    ``openai.APITimeoutError``, every ``connection`` or ``timeout`` ->
    ``openai.APIConnectionError``, every ``server_error`` -> ``openai.InternalServerError``."""
    kinds = frozenset(f.kind for f in failures)
    twin = _twin(kinds) if kinds else None
    return (twin or AnswerError)(message, failures)


def _twin(kinds: frozenset[str]) -> type[AnswerError] | None:
    """The class that is both an :class:`AnswerError` and the openai error for ``kinds``."""
    import httpx
    import openai

    base: type[Exception]
    status: int | None
    if kinds == {"rate_limit"}:
        base, status = openai.RateLimitError, 429
    elif kinds == {"timeout"}:
        base, status = openai.APITimeoutError, None
    elif kinds <= {"timeout", "connection"}:
        base, status = openai.APIConnectionError, None
    elif kinds == {"server_error"}:
        base, status = openai.InternalServerError, 500
    else:
        return None
    if base in _OPENAI_TWINS:
        return _OPENAI_TWINS[base]

    def init(self: Any, message: str, failures: Sequence[Failure]) -> None:
        AnswerError.__init__(self, message, failures)
        self.message = str(self)
        self.request = httpx.Request("POST", "http://avengers.invalid/candidates")
        self.body = None
        self.code = self.param = self.type = None
        if status is not None:
            self.response = httpx.Response(status, request=self.request)
            self.status_code = status
            self.request_id = None

    cls = type(f"Answer{base.__name__}", (AnswerError, base), {"__init__": init})
    cls.__module__ = __name__
    cls.__doc__ = f"Every candidate failed with one transient kind of fault: {base.__name__}."
    _OPENAI_TWINS[base] = cls
    return cls


@dataclass(frozen=True)
class Sample:
    """One answer drawn from a model, with what voting made of it."""

    model: str
    model_rank: int
    text: str
    answer: str | None
    prompt_tokens: int
    completion_tokens: int
    latency: float
    cost: float | None
    """What the call cost by its endpoint's prices (None: unknown, e.g. no prices configured)."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """The sample's tool calls in the OpenAI wire form (empty for a text answer)."""
    tokens_known: bool = True
    """Whether the endpoint reported the token counts (False: unknown, counted as 0 above)."""
    finish_reason: str | None = None
    """Why the upstream stopped this sample, as it said (``stop``, ``length``: cut off at the
    token limit, ``tool_calls``...; None when the backend does not say)."""


@dataclass(frozen=True)
class Failure:
    """Failed calls to one model, grouped by kind."""

    model: str
    kind: str
    message: str
    count: int = 1


@dataclass(frozen=True)
class AnswerResult:
    """The winning answer and the full account of how it was reached."""

    text: str
    """The full text of the chosen sample."""
    answer: str | None
    """The extracted answer that won the vote (None if no vote took place)."""
    model: str
    """The model whose sample was chosen."""
    strategy: Strategy
    answer_type: str
    vote_method: VoteMethod
    """``majority``, ``equivalence``, ``medoid``, ``single`` or ``first sample (...)``."""
    decision: RouteDecision | None
    models_used: list[str]
    votes: dict[str, int]
    samples: list[Sample]
    n_requested: int
    """Samples the strategy would draw without adaptive stopping."""
    n_drawn: int
    """Samples actually requested from the models."""
    samples_saved: int
    failures: list[Failure]
    fallback: str | None
    """Why a lower-ranked model answered, if one did."""
    latency: float
    routing_latency: float
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    """What the samples cost by their endpoints' prices, summed; None when any sample's cost is
    unknown (never a made-up zero)."""
    notes: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """The winning sample's tool calls in the OpenAI wire form (empty for a text answer)."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Candidates left out because they lack a capability the request needs, with why."""
    id: str = field(default_factory=lambda: new_response_id())
    """This answer's id, to rate it later (:meth:`avengers.Answerer.feedback`; the server's
    response id for answers served over HTTP)."""
    expected_cost: float | None = None
    """The router's expected cost of the samples drawn (its per-call estimate from the outcome
    data, in that data's unit, times the samples of each model); None if it knows no costs."""
    conversation: str | None = None
    """The conversation key the answer belongs to, if one was given."""
    unavailable: list[str] = field(default_factory=list)
    """The optional stores that failed while answering: ``feedback`` (the answer was not
    remembered, so it cannot be rated) and ``conversation`` (the turn was routed afresh and not
    recorded). Empty when every store answered, or none is used."""
    tokens_known: bool = True
    """Whether every sample's endpoint reported its token counts; when not, the token totals
    above are incomplete and the server reports ``usage`` as unknown (null), never as zero."""
    finish_reason: str | None = None
    """The chosen sample's upstream finish reason (see :attr:`Sample.finish_reason`)."""
    chosen: int = 0
    """The index in :attr:`samples` of the sample returned as the answer."""

    @property
    def share(self) -> float:
        """Share of valid votes held by the winner."""
        total = sum(self.votes.values())
        return self.votes.get(self.answer, 0) / total if self.answer and total else 0.0

    @property
    def answer_usage(self) -> dict[str, int] | None:
        """The returned sample's own tokens (``prompt_tokens``, ``completion_tokens``,
        ``total_tokens``): what one call would have reported; None when its endpoint reported
        none (unknown, never zero). :attr:`prompt_tokens` and :attr:`completion_tokens` sum
        every sample drawn (what was paid)."""
        if not self.samples:
            return None
        s = self.samples[min(self.chosen, len(self.samples) - 1)]
        if not s.tokens_known:
            return None
        return {
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "total_tokens": s.prompt_tokens + s.completion_tokens,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able values (what ``dataclasses.asdict`` gives, built field
        by field: ``asdict`` deep-copies every value and cost a routed request milliseconds),
        the decision as :meth:`RouteDecision.to_dict`, plus ``share`` and ``answer_usage``."""
        d = {f.name: getattr(self, f.name) for f in _RESULT_FIELDS}
        d["decision"] = self.decision.to_dict() if self.decision else None
        d["models_used"] = list(self.models_used)
        d["votes"] = dict(self.votes)
        d["samples"] = [_sample_dict(x) for x in self.samples]
        d["failures"] = [
            {"model": f.model, "kind": f.kind, "message": f.message, "count": f.count}
            for f in self.failures
        ]
        d["notes"] = list(self.notes)
        d["tool_calls"] = copy.deepcopy(self.tool_calls) if self.tool_calls else []
        d["excluded"] = dict(self.excluded)
        d["unavailable"] = list(self.unavailable)
        d["share"] = self.share
        d["answer_usage"] = self.answer_usage
        return d

    def account(self) -> dict[str, Any]:
        """A compact account for response metadata: everything but the sample texts."""
        d = self.to_dict()
        d.pop("text")
        d["samples"] = [{k: v for k, v in s.items() if k != "text"} for s in d["samples"]]
        if self.decision is not None:
            d["decision"] = {
                "cluster": self.decision.cluster,
                "distance": self.decision.distance,
                "method": self.decision.method,
                "fallback": self.decision.fallback,
                "sticky": self.decision.sticky,
                "ranking": [
                    {
                        "model": m.model,
                        "score": m.score,
                        "performance": m.performance,
                        "cost": m.cost,
                    }
                    for m in self.decision.ranking
                ],
            }
        return d

    def summary(self) -> str:
        """A few human-readable lines."""
        votes = ", ".join(f"{a!r}: {c}" for a, c in self.votes.items()) or "none"
        lines = [
            f"answer: {self.answer if self.answer is not None else self.text.strip()[:200]!s}",
            f"model: {self.model}  strategy: {self.strategy}  vote: {self.vote_method}"
            f"  ({self.answer_type})",
            f"votes: {votes}",
            f"samples: {self.n_drawn} drawn of {self.n_requested} ({self.samples_saved} saved)"
            f"  latency {self.latency:.2f}s (routing {self.routing_latency * 1000:.1f} ms)",
            f"tokens: {self.prompt_tokens} in / {self.completion_tokens} out  cost "
            + ("unknown" if self.cost is None else f"${self.cost:.6f}"),
        ]
        if self.decision is not None:
            lines.insert(
                1,
                f"cluster: {self.decision.cluster}  ranking: "
                + ", ".join(f"{m.model} ({m.performance:.2f})" for m in self.decision.ranking[:3]),
            )
        if self.fallback:
            lines.append(f"fallback: {self.fallback}")
        for f in self.failures:
            lines.append(f"failed: {f.model} {f.kind} x{f.count} ({f.message})")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class AnswerChunk:
    """A piece of a streamed answer; the last chunk carries the full result and no text."""

    text: str
    result: AnswerResult | None = None
    model: str | None = None
    """The candidate the text comes from (the answer's model; set on every text chunk)."""


def new_response_id() -> str:
    """A fresh answer id."""
    return f"avengers-{uuid.uuid4().hex[:24]}"


def total_cost(costs: Sequence[float | None]) -> float | None:
    """The sum of ``costs``, or None if any is unknown (or there are none)."""
    if not costs or any(c is None for c in costs):
        return None
    return round_cost(sum(c for c in costs if c is not None))


def group_failures(errors: Sequence[CallError]) -> list[Failure]:
    """Failed calls grouped by model and kind, in the order each group first failed."""
    grouped: dict[tuple[str, str], Failure] = {}
    for e in errors:
        f = grouped.get((e.model, e.kind))
        grouped[(e.model, e.kind)] = Failure(
            e.model, e.kind, e.message, 1 if f is None else f.count + 1
        )
    return list(grouped.values())


def _sample_dict(x: Sample) -> dict[str, Any]:
    return {
        "model": x.model,
        "model_rank": x.model_rank,
        "text": x.text,
        "answer": x.answer,
        "prompt_tokens": x.prompt_tokens,
        "completion_tokens": x.completion_tokens,
        "latency": x.latency,
        "cost": x.cost,
        "tool_calls": copy.deepcopy(x.tool_calls) if x.tool_calls else [],
        "tokens_known": x.tokens_known,
        "finish_reason": x.finish_reason,
    }


_RESULT_FIELDS = fields(AnswerResult)


__all__ = [
    "STRATEGIES",
    "AnswerChunk",
    "AnswerError",
    "AnswerResult",
    "Failure",
    "Sample",
    "SamplingConfig",
    "Strategy",
    "answer_error",
    "group_failures",
    "new_response_id",
    "total_cost",
]
