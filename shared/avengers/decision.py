"""Routing results: the per-query decision (everything needed to act on a route and to explain
it) and the vectorized estimate for a batch of embedded queries it is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelScore:
    """One candidate model's standing for a query."""

    model: str
    """Candidate model name, as in the training data."""
    score: float
    """The ranking score (performance blended with cost by ``Router.alpha``); higher is better."""
    performance: float
    """Expected score of this model on the query, estimated from training outcomes, in [0, 1]."""
    cost: float | None
    """Expected cost of one call to this model (training data units, e.g. USD); None if unknown."""
    evidence: float
    """How many training outcomes back the estimate (weighted by cluster membership)."""


@dataclass(frozen=True)
class RouteDecision:
    """Where a query goes and why. ``ranking`` holds every candidate, best first."""

    query: str | None
    ranking: tuple[ModelScore, ...]
    cluster: int
    """The nearest cluster (or -1 for kNN scoring)."""
    distance: float
    """Euclidean distance between the query embedding and the nearest centroid."""
    top_k: int = 1
    cluster_weights: dict[int, float] = field(default_factory=dict)
    """Soft-routing weights of the clusters used (one entry with weight 1.0 for hard routing)."""
    fallback: str | None = None
    """Why the global ranking was blended in or used (thin cluster, far query), else None."""
    method: str = "cluster"
    explored: bool = False
    """Whether the first model was picked by exploration (``Router(explore=...)``) rather than
    being the best estimate; the ranking after it is the greedy one."""
    signal: str | None = None
    """Which estimate carried the choice when the hybrid is on: ``"both"`` (cluster and
    classifier agree), ``"cluster"``, ``"classifier"`` or ``"blend"`` (neither alone); else None."""
    classifier_share: float | None = None
    """Weight of the success classifiers in the hybrid estimate (None: hybrid off)."""
    task: str | None = None
    """The task hint the estimate used (evidence restricted to that task), else None."""
    sticky: bool = False
    """Whether the first model was kept from the conversation's earlier turns (see
    :mod:`avengers.stores.conversations`) rather than chosen for this query; the ranking after it is
    this query's own."""

    @property
    def models(self) -> list[str]:
        """The ``top_k`` chosen models, best first."""
        return [m.model for m in self.ranking[: self.top_k]]

    @property
    def model(self) -> str:
        """The single best model."""
        return self.ranking[0].model

    @property
    def expected_cost(self) -> float | None:
        """Expected cost of one call to the best model, if the router knows costs."""
        return self.ranking[0].cost

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-able values (cluster weights keyed by string), plus
        ``models``. Built field by field: ``dataclasses.asdict`` deep-copies every value and
        cost a routed request more than its routing."""
        return {
            "query": self.query,
            "ranking": [
                {
                    "model": m.model,
                    "score": m.score,
                    "performance": m.performance,
                    "cost": m.cost,
                    "evidence": m.evidence,
                }
                for m in self.ranking
            ],
            "cluster": self.cluster,
            "distance": self.distance,
            "top_k": self.top_k,
            "cluster_weights": {str(k): v for k, v in self.cluster_weights.items()},
            "fallback": self.fallback,
            "method": self.method,
            "explored": self.explored,
            "signal": self.signal,
            "classifier_share": self.classifier_share,
            "task": self.task,
            "sticky": self.sticky,
            "models": self.models,
        }

    def explain(self) -> str:
        """A short human-readable account of the decision."""
        lines = [
            f"cluster {self.cluster} (distance {self.distance:.3f}, method {self.method})"
            + (f"; fallback: {self.fallback}" if self.fallback else "")
            + ("; first pick is exploration" if self.explored else ""),
        ]
        if self.sticky:
            own = max(self.ranking, key=lambda m: m.score)
            lines.append(
                f"sticky: kept {self.model} from the conversation's earlier turns"
                + (
                    f" (this query alone would pick {own.model})"
                    if own.score > self.ranking[0].score
                    else ""
                )
            )
        if self.task is not None:
            lines.append(f"task hint: {self.task} (only that task's training outcomes used)")
        if self.signal is not None:
            share = self.classifier_share or 0.0
            lines.append(
                f"signal: {self.signal} (cluster estimate weight {1 - share:.2f}, "
                f"success classifier weight {share:.2f})"
            )
        if len(self.cluster_weights) > 1:
            ws = ", ".join(f"{c}:{w:.2f}" for c, w in self.cluster_weights.items())
            lines.append(f"soft weights: {ws}")
        for i, m in enumerate(self.ranking):
            mark = "*" if i < self.top_k else " "
            cost = "n/a" if m.cost is None else f"{m.cost:.3g}"
            lines.append(
                f"{mark} {i + 1:>2}. {m.model:<40} score {m.score:.3f}  perf {m.performance:.3f}"
                f"  cost {cost}  evidence {m.evidence:.0f}"
            )
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class RouteEstimate:
    """What :meth:`avengers.Router.estimate` works out for ``n`` embedded queries and ``m``
    candidate models (columns in the order of ``Router.models_``), as arrays."""

    performance: np.ndarray
    """(n, m) expected score of each model on each query."""
    cost: np.ndarray | None
    """(n, m) expected cost of each model on each query; None if the router knows no costs."""
    evidence: np.ndarray
    """(n, m) how many training outcomes back each estimate (weighted by cluster membership)."""
    nearest: np.ndarray
    """(n,) index of each query's nearest cluster."""
    distance: np.ndarray
    """(n,) Euclidean distance from each query to its nearest centroid."""
    clusters: np.ndarray
    """(n, p) indices of the clusters each estimate draws on, nearest first."""
    weights: np.ndarray
    """(n, p) soft-routing weight of each of those clusters (rows sum to 1)."""
    fallback: tuple[str | None, ...]
    """Per query, why the global ranking was used instead (thin cluster, far query), else None."""
    score: np.ndarray
    """(n, m) ranking score: performance blended with cost by ``alpha``; higher is better."""
    order: np.ndarray
    """(n, m) model indices, best first (by score, then performance, global score, lower cost)."""
    classifier_share: np.ndarray | None = None
    """(n,) weight of the success classifiers in the hybrid estimate; None if it is off."""
    signal: tuple[str | None, ...] = ()
    """Per query, which estimate carried the choice (see :attr:`RouteDecision.signal`)."""

    @property
    def best(self) -> np.ndarray:
        """(n,) index of the best model for each query."""
        return self.order[:, 0]
