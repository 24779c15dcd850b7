"""Where a query's estimate is computed: :func:`estimate`, one pipeline for one query or many.

    cluster weights -> sources -> blend -> fallbacks -> trade-off -> order

1. **Cluster weights** (:func:`cluster_weights`): the ``n_nearest`` centroids of each query and a
   softmax of their distances, sharpened for queries far from the training data (:func:`sharpen`).
2. **Sources**: the weighted cluster statistics (:meth:`ClusterStatistics.estimate`, per task for
   hinted rows) and, for kNN or hybrid scoring, the nearest training queries
   (:func:`neighbour_source`).
3. **Blend** (:func:`blend_classifiers`): the success classifiers, weighted more where the local
   evidence is thin.
4. **Fallbacks** (:func:`fallbacks`): a query far from every cluster, or whose cluster is too
   small, gets the global ranking.
5. **Trade-off and order** (:func:`rank`): the Avengers-Pro score of performance against cost,
   and the models sorted by it.

What depends only on the fitted state and the settings (shrunk cluster scores, centroid norms,
thresholds, ...) is worked out once in a :class:`Prepared` and reused while neither changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..decision import RouteEstimate
from ..exceptions import ConfigError
from ..params import check_alpha
from . import scoring
from .parts import RouterParts

__all__ = ["Prepared", "Settings", "estimate"]


@dataclass(frozen=True)
class Settings:
    """The router settings the estimate reads."""

    n_nearest: int
    softmax_temperature: float
    relative: bool
    sharpen_width: float
    scoring: str
    knn_weight: float
    n_neighbors: int
    shrinkage: float
    classifier_weight: float
    classifier_evidence: float | None
    min_cluster_size: int

    @classmethod
    def of(cls, params: dict[str, Any]) -> Settings:
        names = [f for f in cls.__dataclass_fields__ if f != "relative"]
        return cls(
            **{name: params[name] for name in names},
            relative=params["temperature_mode"] == "relative",
        )


@dataclass(frozen=True, eq=False)
class Prepared:
    """What the estimate derives from a fitted router's state and settings alone, with the
    settings (``key``) and state objects (``state``) it came from."""

    key: tuple[Any, ...]
    state: tuple[Any, ...]
    settings: Settings
    alpha: float
    centers_t: np.ndarray
    center_norms: np.ndarray
    cluster_scores: np.ndarray
    cluster_costs: np.ndarray | None
    classifier_coef: np.ndarray | None  # in float64
    far_threshold: float | None
    sharpen_threshold: float | None
    knn_scores: np.ndarray | None  # the kept training outcomes in float64

    @classmethod
    def build(
        cls,
        params: dict[str, Any],
        parts: RouterParts,
        added: np.ndarray,
        key: tuple[Any, ...],
        state: tuple[Any, ...],
    ) -> Prepared:
        """Derive the arrays from ``parts`` and the router's ``params`` (checked already);
        ``added`` marks the models added after ``fit``."""
        stats = parts.statistics
        centers = stats.cluster_centers
        coef = parts.classifiers.classifier_coef
        train_scores = parts.neighbours.train_scores
        return cls(
            key=key,
            state=state,
            settings=Settings.of(params),
            alpha=check_alpha(params["alpha"]),
            centers_t=centers.T,
            center_norms=np.einsum("ij,ij->i", centers, centers)[None, :],
            cluster_scores=stats.cluster_scores(
                added, params["shrinkage"], params["new_model_prior"]
            ),
            cluster_costs=stats.cluster_costs(),
            classifier_coef=None if coef is None else np.asarray(coef, dtype=np.float64),
            far_threshold=stats.distance_threshold(params["far_quantile"]),
            sharpen_threshold=stats.distance_threshold(params["sharpen_quantile"]),
            knn_scores=(
                None
                if params["scoring"] == "cluster" or train_scores is None
                else np.asarray(train_scores, dtype=np.float64)
            ),
        )

    def fresh(self, key: tuple[Any, ...], state: tuple[Any, ...]) -> bool:
        """Whether these arrays still hold for the settings ``key`` and the state ``state``."""
        return self.key == key and all(a is b for a, b in zip(self.state, state, strict=True))


def estimate(
    parts: RouterParts,
    prep: Prepared,
    X: np.ndarray,
    alpha: float,
    hinted: np.ndarray | None = None,
) -> RouteEstimate:
    """Expected performance, cost and ranking of every model for the embedded queries ``X``
    (float32, checked), with trade-off ``alpha`` and task hints ``hinted`` (per row an index into
    the fitted tasks, -1 none; None: no hints). One query or many take the same steps."""
    s, stats = prep.settings, parts.statistics
    idx, w, nearest, distance = cluster_weights(X, prep)
    perf, evidence, cost = stats.estimate(
        idx, w, prep.cluster_scores, prep.cluster_costs, hinted, s.shrinkage
    )
    perf, evidence = neighbour_source(parts, prep, X, perf, evidence)
    perf, share, signal = blend_classifiers(parts, prep, X, perf, evidence)
    perf, cost, fallback = fallbacks(parts, prep, nearest, distance, perf, cost)
    score, order = rank(perf, cost, alpha, stats.global_scores)
    return RouteEstimate(
        performance=perf,
        cost=cost,
        evidence=evidence,
        nearest=nearest,
        distance=distance,
        clusters=idx,
        weights=w,
        fallback=tuple(fallback),
        score=score,
        order=order,
        classifier_share=share,
        signal=tuple(None if f else g for f, g in zip(fallback, signal, strict=True)),
    )


def cluster_weights(
    X: np.ndarray, prep: Prepared
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: its ``n_nearest`` clusters (nearest first), their softmax weights (sharpened
    far from the training data), the nearest cluster and the distance to it."""
    s = prep.settings
    sq = np.maximum(
        np.einsum("ij,ij->i", X, X)[:, None] + prep.center_norms - 2.0 * (X @ prep.centers_t),
        0.0,
    )  # pairwise_sq_dist(X, centroids) with the centroid norms computed once
    idx, w = scoring.softmax_weights(sq, s.n_nearest, s.softmax_temperature, relative=s.relative)
    nearest = idx[:, 0]
    distance = np.sqrt(sq[np.arange(len(X)), nearest])
    w = sharpen(w, distance, prep.sharpen_threshold, s.sharpen_width)
    return idx, w, nearest, distance


def sharpen(
    w: np.ndarray, distance: np.ndarray, threshold: float | None, width: float
) -> np.ndarray:
    """Distance-aware soft routing: beyond the ``threshold`` distance (the training queries'
    ``sharpen_quantile``), the softmax temperature falls linearly with the query's excess
    distance, reaching zero (the nearest cluster only) at ``1 + width`` times the threshold
    (``width`` 0: a step). Nearer queries keep ``w``. The soft weights average neighbouring
    clusters, which helps queries like the training data but pulls a query of an unseen task
    toward unrelated clusters."""
    if threshold is None or len(w) == 0:
        return w
    t = max(threshold, 1e-9)
    excess = distance / t - 1.0
    rows = np.flatnonzero(excess > 0)
    if len(rows) == 0:
        return w
    keep = np.zeros(len(rows)) if width <= 0 else np.clip(1.0 - excess[rows] / width, 0, 1)
    # a temperature times ``keep`` is the weights raised to the power 1 / keep
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(w[rows]) - np.log(w[rows, :1])) / keep[:, None]
    z = np.where(np.isnan(z), -np.inf, z)  # keep 0 and a zero gap: the first (nearest) wins
    z[:, 0] = 0.0
    e = np.exp(z)
    out = w.copy()
    out[rows] = e / e.sum(axis=1, keepdims=True)
    return out


def neighbour_source(
    parts: RouterParts, prep: Prepared, X: np.ndarray, perf: np.ndarray, evidence: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The nearest training queries' scores: instead of the cluster estimate (``"knn"``),
    mixed into it with ``knn_weight`` (``"hybrid"``), or not at all (``"cluster"``)."""
    s = prep.settings
    if s.scoring == "cluster":
        return perf, evidence
    neighbours = parts.neighbours
    if not neighbours.fitted or prep.knn_scores is None:
        raise ConfigError(
            f"scoring {s.scoring!r} needs the training embeddings, which a router "
            "fitted with scoring 'cluster' does not keep: fit again"
        )
    kperf, kcount = neighbours.estimate(
        X, prep.knn_scores, s.n_neighbors, parts.statistics.global_scores, s.shrinkage
    )
    if s.scoring == "knn":
        return kperf, kcount
    return s.knn_weight * kperf + (1 - s.knn_weight) * perf, evidence


def blend_classifiers(
    parts: RouterParts, prep: Prepared, X: np.ndarray, perf: np.ndarray, evidence: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
    """The hybrid estimate: ``perf`` blended with the success classifiers (see
    :meth:`SuccessClassifiers.blend`); returns the blend, each row's classifier share (None: no
    classifiers) and which signal carried each choice."""
    s = prep.settings
    if s.classifier_weight <= 0:
        return perf, None, [None] * len(X)
    if not parts.classifiers.fitted or prep.classifier_coef is None:
        raise ConfigError(
            "classifier_weight > 0 needs the success classifiers, which a router fitted "
            "with classifier_weight 0 does not have: fit again"
        )
    return parts.classifiers.blend(
        X, perf, evidence, prep.classifier_coef, s.classifier_weight, s.classifier_evidence
    )


def fallbacks(
    parts: RouterParts,
    prep: Prepared,
    nearest: np.ndarray,
    distance: np.ndarray,
    perf: np.ndarray,
    cost: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
    """The global ranking for a query far from every cluster (beyond ``far_quantile`` of the
    training distances) or whose nearest cluster has fewer than ``min_cluster_size`` training
    queries; returns performance, cost and per row why it fell back (None: it did not)."""
    stats = parts.statistics
    fallback: list[str | None] = [None] * len(nearest)
    min_size = prep.settings.min_cluster_size
    use_global = thin = stats.cluster_sizes[nearest] < min_size
    far_t = prep.far_threshold
    if far_t is not None:
        far = distance > far_t
        use_global = thin | far
    if not use_global.any():
        return perf, cost, fallback
    perf = np.where(use_global[:, None], stats.global_scores[None, :], perf)
    if cost is not None and stats.global_costs is not None:
        cost = np.where(use_global[:, None], stats.global_costs[None, :], cost)
    for i in np.flatnonzero(use_global):
        c = int(nearest[i])
        if far_t is not None and far[i]:
            fallback[i] = (
                f"query is far from every cluster (distance {distance[i]:.3f} > "
                f"{far_t:.3f}): global ranking used"
            )
        else:
            fallback[i] = (
                f"cluster {c} has {int(stats.cluster_sizes[c])} training queries "
                f"(< {min_size}): global ranking used"
            )
    return perf, cost, fallback


def rank(
    perf: np.ndarray, cost: np.ndarray | None, alpha: float, global_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The trade-off score of every model (:func:`avengers.routing.scoring.tradeoff`) and the models in
    order: by that score, then expected performance, then global score, then lower cost."""
    score = scoring.tradeoff(perf, cost, alpha)
    if not len(perf):
        return score, np.zeros((0, len(global_scores)), int)
    by_global = np.empty_like(perf)
    by_global[:] = -global_scores  # one row per query (lexsort takes keys of one shape)
    keys = [by_global, -perf, -score]
    return score, np.lexsort(keys if cost is None else [cost, *keys], axis=-1)
