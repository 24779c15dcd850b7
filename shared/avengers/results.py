"""What answering is configured with and what it returns: sampling settings, samples, failures,
the answer with its account, stream chunks, and the all-candidates-failed error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .decision import RouteDecision
from .exceptions import AvengersError, ConfigError
from .voting import ANSWER_TYPES, Extractor

Strategy = Literal["self_consistency", "model_switch", "direct"]
STRATEGIES: tuple[str, ...] = ("self_consistency", "model_switch", "direct")


class AnswerError(AvengersError):
    """Every candidate failed. ``failures`` lists what happened to each."""

    def __init__(self, message: str, failures: Sequence[Failure]) -> None:
        lines = [message] + [f"  - {f.model}: {f.kind} x{f.count} ({f.message})" for f in failures]
        super().__init__("\n".join(lines))
        self.failures = list(failures)


@dataclass
class SamplingConfig:
    """How to sample and vote. Defaults are the paper's."""

    strategy: Strategy = "self_consistency"
    """``self_consistency``, ``model_switch`` or ``direct``."""
    n_samples: int = 10
    """Samples per model (the paper: 10)."""
    temperature: float = 0.7
    """Sampling temperature (the paper: 0.7)."""
    switch_threshold: float = 0.8
    """``model_switch``: majority share of the first model below which the second model joins."""
    answer_type: str | Extractor = "auto"
    """``auto``, ``choice``, ``number``, ``short``, ``text``, ``code``, or a function text -> answer."""
    equivalence: Callable[[str, str], bool] | None = None
    """For code (or any answers): two samples are the same answer if this returns True."""
    adaptive: bool = True
    """Stop drawing samples once the leading answer cannot be overtaken."""
    stop_on_agreement: int | None = None
    """Also stop once the first this-many answers all agree (may change the outcome)."""
    max_tokens: int | None = None
    """Completion length cap (None: the endpoint's default)."""
    max_fallbacks: int | None = None
    """How many further ranked models to try when one fails entirely (None: all)."""
    alpha: float | None = None
    """Cost/quality trade-off for routing (None: the router's own)."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        if (
            not isinstance(self.n_samples, int)
            or isinstance(self.n_samples, bool)
            or self.n_samples < 1
        ):
            raise ConfigError(f"n_samples must be a whole number >= 1, got {self.n_samples!r}")
        if not 0.0 <= float(self.temperature) <= 2.0:
            raise ConfigError(f"temperature must be in [0, 2], got {self.temperature!r}")
        if not 0.0 <= float(self.switch_threshold) <= 1.0:
            raise ConfigError(f"switch_threshold must be in [0, 1], got {self.switch_threshold!r}")
        if not callable(self.answer_type) and self.answer_type not in ANSWER_TYPES:
            raise ConfigError(
                f"unknown answer type {self.answer_type!r}; use one of {', '.join(ANSWER_TYPES)}"
            )
        if self.stop_on_agreement is not None and self.stop_on_agreement < 2:
            raise ConfigError("stop_on_agreement must be >= 2 (or None)")
        if self.alpha is not None and not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.max_fallbacks is not None and self.max_fallbacks < 0:
            raise ConfigError("max_fallbacks must be >= 0 (or None)")

    def updated(self, **overrides: Any) -> SamplingConfig:
        """A copy with some settings changed (None values are ignored)."""
        d = {k: v for k, v in asdict(self).items()}
        d["answer_type"], d["equivalence"] = self.answer_type, self.equivalence
        d.update({k: v for k, v in overrides.items() if v is not None})
        return SamplingConfig(**d)

    @property
    def samples_per_model(self) -> int:
        return 1 if self.strategy == "direct" else self.n_samples


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
    cost: float


@dataclass(frozen=True)
class Failure:
    """Failed calls to one model, grouped by kind."""

    model: str
    kind: str
    message: str
    count: int = 1


@dataclass
class AnswerResult:
    """The winning answer and the full account of how it was reached."""

    text: str
    """The full text of the chosen sample."""
    answer: str | None
    """The extracted answer that won the vote (None if no vote took place)."""
    model: str
    """The model whose sample was chosen."""
    strategy: str
    answer_type: str
    vote_method: str
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
    cost: float
    notes: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Share of valid votes held by the winner."""
        total = sum(self.votes.values())
        return self.votes.get(self.answer, 0) / total if self.answer and total else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["decision"] = self.decision.to_dict() if self.decision else None
        d["share"] = self.share
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
            f"tokens: {self.prompt_tokens} in / {self.completion_tokens} out  cost ${self.cost:.6f}",
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
