"""The per-cluster statistics of a router: centroids, and per cluster (and per task) the sum and
count of every model's observed scores and costs, with each model's global means.

:class:`ClusterStatistics` is the part of :class:`avengers.Router` that ``fit`` counts, ``update``
adds to and the cluster source of the estimate reads. The arithmetic below is shared with
training in chunks (:mod:`avengers.training.chunked`) and described in :mod:`avengers.online`:

* **counting** (:func:`accumulate`, :func:`global_means`, :func:`decay_factor`): an outcome is
  added to the cell (nearest cluster, model) exactly as ``fit`` counts it, optionally after the
  cell decays (forgetting with a half-life, in observations);
* **the shrinkage prior** (:func:`cluster_prior`, :func:`unknown_model_prior`): each model's
  global mean, except for models added after ``fit``, whose prior in a cluster is the known
  models' mean estimate there plus an offset learned from their own outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import ConfigError
from ..training.data import OutcomeData
from . import scoring
from .clustering import pairwise_sq_dist

__all__ = [
    "DISTANCE_QUANTILES",
    "ClusterStatistics",
    "accumulate",
    "add_columns",
    "cluster_prior",
    "decay_factor",
    "global_means",
    "observed_cells",
    "unknown_model_prior",
]

DISTANCE_QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)
"""The quantiles of the training queries' distances to their own centroid that a router keeps
(``train_distances_``): the far-query fallback and sharpening read thresholds from them."""


# --------------------------------------------------------------------------- counting


def decay_factor(half_life: float | None) -> float:
    """The factor an old observation is multiplied by at each new one (1.0: no forgetting)."""
    if half_life is None or math.isinf(half_life):
        return 1.0
    return float(2.0 ** (-1.0 / half_life))


def observed_cells(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The known cells of a (queries, models) table, row by row: (rows, columns, values)."""
    rows, cols = np.nonzero(~np.isnan(values))
    return rows, cols, values[rows, cols].astype(np.float64)


def accumulate(
    sums: np.ndarray,
    counts: np.ndarray,
    clusters: np.ndarray,
    models: np.ndarray,
    values: np.ndarray,
    *,
    decay: float = 1.0,
    weights: np.ndarray | None = None,
) -> None:
    """Add observations ``values[i]`` of model ``models[i]`` in cluster ``clusters[i]`` to
    ``sums`` and ``counts`` in place, in order, each counted ``weights[i]`` times (default 1).
    With ``decay`` < 1 each observation first decays its own cell."""
    clusters = np.asarray(clusters, dtype=np.int64)
    models = np.asarray(models, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    if decay >= 1.0:
        np.add.at(sums, (clusters, models), w * values)
        np.add.at(counts, (clusters, models), w)
        return
    for c, m, v, wi in zip(
        clusters.tolist(), models.tolist(), values.tolist(), w.tolist(), strict=True
    ):
        sums[c, m] = decay * sums[c, m] + wi * v
        counts[c, m] = decay * counts[c, m] + wi


def global_means(sums: np.ndarray, counts: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Each model's mean over all its cells; a model with no evidence keeps ``previous``."""
    total = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums.sum(axis=0) / total
    return np.where(total > 0, means, previous)


def add_columns(a: np.ndarray | None, n: int, fill: float = 0.0) -> np.ndarray | None:
    """``a`` with ``n`` more columns (last axis) set to ``fill``."""
    if a is None or n == 0:
        return a
    pad = np.full((*a.shape[:-1], n), fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=-1)


# --------------------------------------------------------------------------- the prior


def unknown_model_prior(
    global_values: np.ndarray, counts: np.ndarray, fixed: float | None = None
) -> float:
    """The prior of a model with no evidence: ``fixed`` if given, else the mean of the global
    values of the models that have evidence (0.5 if none has)."""
    if fixed is not None:
        return float(fixed)
    known = counts.sum(axis=0) > 0
    return float(global_values[known].mean()) if known.any() else 0.5


def cluster_prior(
    sums: np.ndarray,
    counts: np.ndarray,
    global_values: np.ndarray,
    added: np.ndarray,
    strength: float,
    fixed: float | None = None,
) -> np.ndarray:
    """The (clusters, models) shrinkage prior: each model's global value, except for the
    ``added`` models (a boolean mask), which get the known models' mean estimate in the cluster
    plus their own offset learned against it (see :mod:`avengers.online`, "Added models")."""
    prior = np.array(np.broadcast_to(global_values[None, :], sums.shape), dtype=np.float64)
    added = np.asarray(added, dtype=bool)
    known = ~added
    if not added.any() or not known.any():
        return prior
    base = scoring.shrunk_means(
        sums[:, known], counts[:, known], global_values[None, known], strength
    ).mean(axis=1)
    base_logit = _logit(base)
    mean_logit = _logit(float(global_values[known].mean()))
    offset0 = 0.0 if fixed is None else _logit(float(fixed)) - mean_logit
    for m in np.flatnonzero(added):
        offset = _solve_offset(
            base_logit, counts[:, m], float(sums[:, m].sum()), strength, mean_logit, offset0
        )
        prior[:, m] = _sigmoid(base_logit + offset)
    return prior


_EPS = 1e-3


def _logit(p: Any) -> Any:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def _sigmoid(z: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-z))


def _solve_offset(
    base_logit: np.ndarray,
    counts: np.ndarray,
    total: float,
    strength: float,
    mean_logit: float,
    offset0: float,
) -> float:
    """The logit offset ``d`` at which the expected total ``sum(counts * sigmoid(base + d))``
    matches the observed ``total``, with ``strength`` pseudo-observations that expect
    ``sigmoid(mean + offset0)`` on an average cluster (bisection; the left side grows with d)."""
    if counts.sum() + strength <= 0:
        return offset0
    target = total + strength * float(_sigmoid(mean_logit + offset0))
    lo, hi = -12.0, 12.0
    for _ in range(50):
        d = 0.5 * (lo + hi)
        fitted = float((counts * _sigmoid(base_logit + d)).sum()) + strength * float(
            _sigmoid(mean_logit + d)
        )
        if fitted < target:
            lo = d
        else:
            hi = d
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- the part


@dataclass
class ClusterStatistics:
    """Centroids and what was observed in each cluster. Every field is a fitted attribute of the
    router (``Router.<field>_``) and, but ``tasks``, an array of its saved state by the same
    name. Shapes: ``k`` clusters, ``m`` models, ``t`` tasks."""

    cluster_centers: np.ndarray  # (k, d)
    cluster_sizes: np.ndarray  # (k,) training queries per cluster
    score_sums: np.ndarray  # (k, m)
    score_counts: np.ndarray  # (k, m)
    global_scores: np.ndarray  # (m,)
    train_distances: np.ndarray  # the DISTANCE_QUANTILES of the distance to the own centroid
    cost_sums: np.ndarray | None = None  # (k, m)
    cost_counts: np.ndarray | None = None
    global_costs: np.ndarray | None = None  # (m,)
    tasks: list[str] | None = None  # the task labels of the training data, sorted
    task_score_sums: np.ndarray | None = None  # (t, k, m)
    task_score_counts: np.ndarray | None = None

    ARRAYS = ("cluster_centers", "cluster_sizes", "score_sums", "score_counts", "global_scores",
              "train_distances")  # fmt: skip
    OPTIONAL = ("cost_sums", "cost_counts", "global_costs", "task_score_sums", "task_score_counts")

    @classmethod
    def fit(
        cls, X: np.ndarray, centers: np.ndarray, data: OutcomeData
    ) -> tuple[ClusterStatistics, np.ndarray]:
        """Count ``data`` (rows embedded as ``X``) in the clusters of ``centers``; returns the
        statistics and each row's cluster."""
        k = len(centers)
        sq = pairwise_sq_dist(X, centers)
        labels = sq.argmin(axis=1)
        sums, counts = scoring.group_sums(labels, data.scores, k)
        stats = cls(
            cluster_centers=centers,
            cluster_sizes=np.bincount(labels, minlength=k).astype(np.int64),
            score_sums=sums,
            score_counts=counts,
            global_scores=scoring.column_means(data.scores),
            train_distances=np.quantile(
                np.sqrt(sq[np.arange(len(X)), labels]), DISTANCE_QUANTILES
            ).astype(np.float64),
        )
        if data.costs is not None:
            stats.cost_sums, stats.cost_counts = scoring.group_sums(labels, data.costs, k)
            stats.global_costs = scoring.column_means(data.costs)
        if data.tasks is not None and any(data.tasks):
            stats.tasks, stats.task_score_sums, stats.task_score_counts = scoring.task_group_sums(
                data.tasks, labels, data.scores, k
            )
        return stats, labels

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], tasks: list[str] | None) -> Any:
        """The statistics from saved arrays (the required ones present: checked by the caller)."""
        values: dict[str, Any] = {name: arrays.get(name) for name in cls.ARRAYS + cls.OPTIONAL}
        return cls(**values, tasks=tasks)

    def state(self) -> dict[str, np.ndarray]:
        """The saved arrays (those that are set)."""
        names = self.ARRAYS + self.OPTIONAL
        return {name: value for name in names if (value := getattr(self, name)) is not None}

    def nearest(self, X: np.ndarray) -> np.ndarray:
        """Each row's nearest cluster."""
        labels: np.ndarray = pairwise_sq_dist(X, self.cluster_centers).argmin(axis=1)
        return labels

    def update(
        self,
        scores: np.ndarray,
        costs: np.ndarray | None,
        cols: np.ndarray,
        labels: np.ndarray,
        *,
        decay: float,
        weights: np.ndarray | None,
    ) -> None:
        """Count a batch of outcomes (``scores``/``costs`` rows in clusters ``labels``, their
        columns the models ``cols``) as ``fit`` does. Every array that changes is a new one (the
        old ones may be shared: a router made from another's ``state()`` holds the same arrays,
        and the estimate's cache compares arrays by identity)."""
        self.score_sums, self.score_counts = self.score_sums.copy(), self.score_counts.copy()
        if self.cost_sums is not None and self.cost_counts is not None:
            self.cost_sums, self.cost_counts = self.cost_sums.copy(), self.cost_counts.copy()
        rows, j, v = observed_cells(scores)
        accumulate(
            self.score_sums, self.score_counts, labels[rows], cols[j], v, decay=decay,
            weights=None if weights is None else weights[rows],
        )  # fmt: skip
        self.global_scores = global_means(self.score_sums, self.score_counts, self.global_scores)
        if costs is not None and self.cost_sums is not None and self.cost_counts is not None:
            rows, j, v = observed_cells(costs)
            accumulate(
                self.cost_sums, self.cost_counts, labels[rows], cols[j], v, decay=decay,
                weights=None if weights is None else weights[rows],
            )  # fmt: skip
            assert self.global_costs is not None
            self.global_costs = global_means(self.cost_sums, self.cost_counts, self.global_costs)
        k = len(self.cluster_centers)
        self.cluster_sizes = self.cluster_sizes + np.bincount(labels, minlength=k)

    def add_model(self, new_model_prior: float | None) -> None:
        """One more model column with no evidence, and a prior global mean."""
        prior = unknown_model_prior(self.global_scores, self.score_counts, new_model_prior)
        self.score_sums = add_columns(self.score_sums, 1)  # type: ignore[assignment]
        self.score_counts = add_columns(self.score_counts, 1)  # type: ignore[assignment]
        self.global_scores = np.append(self.global_scores, prior)
        if self.cost_sums is not None and self.cost_counts is not None:
            assert self.global_costs is not None
            cost_prior = unknown_model_prior(self.global_costs, self.cost_counts)
            self.cost_sums = add_columns(self.cost_sums, 1)
            self.cost_counts = add_columns(self.cost_counts, 1)
            self.global_costs = np.append(self.global_costs, cost_prior)
        # per-task statistics start empty
        self.task_score_sums = add_columns(self.task_score_sums, 1)
        self.task_score_counts = add_columns(self.task_score_counts, 1)

    # ---------------------------------------------------------------- estimates

    def cluster_scores(
        self, added: np.ndarray, shrinkage: float, new_model_prior: float | None
    ) -> np.ndarray:
        """(k, m) each model's expected score per cluster, shrunk toward its prior."""
        prior = cluster_prior(
            self.score_sums,
            self.score_counts,
            self.global_scores,
            added,
            shrinkage,
            new_model_prior,
        )
        return scoring.shrunk_means(self.score_sums, self.score_counts, prior, shrinkage)

    def cluster_costs(self) -> np.ndarray | None:
        """(k, m) each model's mean cost per cluster (None: no costs)."""
        if self.cost_sums is None or self.cost_counts is None or self.global_costs is None:
            return None
        return scoring.shrunk_means(
            self.cost_sums, self.cost_counts, self.global_costs[None, :], 0.0
        )

    def distance_threshold(self, quantile: float | None) -> float | None:
        """The training-distance ``quantile`` as a distance, interpolated between the stored
        quantiles (None: the setting is off)."""
        if quantile is None:
            return None
        return float(np.interp(quantile, DISTANCE_QUANTILES, self.train_distances))

    def task_rows(self, hints: Any, n: int) -> np.ndarray | None:
        """Per row, the index of its task hint in ``tasks`` (-1: none or unknown); None when no
        row has a usable hint (or ``hints`` is None)."""
        if hints is None:
            return None
        if len(hints) != n:
            raise ConfigError(f"{len(hints)} task hints for {n} queries")
        return scoring.task_rows(self.tasks, hints)

    def estimate(
        self,
        idx: np.ndarray,
        w: np.ndarray,
        scores: np.ndarray,
        costs: np.ndarray | None,
        hinted: np.ndarray | None,
        shrinkage: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The cluster source: per row, the ``w``-weighted mean over its clusters ``idx`` of the
        cluster ``scores`` (and ``costs``), with the evidence (outcome counts) behind them. A row
        with a known task hint (``hinted``, see :meth:`task_rows`) reads its task's cells."""
        perf = np.einsum("np,npm->nm", w, scores[idx])
        evidence = np.einsum("np,npm->nm", w, self.score_counts[idx])
        cost = None if costs is None else np.einsum("np,npm->nm", w, costs[idx])
        if hinted is not None:
            assert self.task_score_sums is not None and self.task_score_counts is not None
            ts = scoring.task_cluster_scores(
                self.task_score_sums, self.task_score_counts, self.global_scores, shrinkage
            )
            rows = np.flatnonzero(hinted >= 0)
            t = hinted[rows]
            perf[rows] = np.einsum("np,npm->nm", w[rows], ts[t[:, None], idx[rows]])
            evidence[rows] = np.einsum(
                "np,npm->nm", w[rows], self.task_score_counts[t[:, None], idx[rows]]
            )
        return perf, evidence, cost

    def task_means(self, rows: np.ndarray | None, n: int) -> np.ndarray:
        """(n, m) each model's mean score on each row's task in the training data (``rows``: task
        indices, -1 none); its global mean for a row without a known task."""
        out = np.tile(np.asarray(self.global_scores, dtype=np.float64), (n, 1))
        if rows is not None:
            assert self.task_score_sums is not None and self.task_score_counts is not None
            means = scoring.task_means(
                self.task_score_sums, self.task_score_counts, np.asarray(self.global_scores)
            )
            hit = rows >= 0
            out[hit] = means[rows[hit]]
        return out
