"""Online learning for a fitted router: the arithmetic behind :meth:`avengers.Router.update`,
:meth:`avengers.Router.add_model` and exploration (``Router(explore=...)``).

Everything here is pure NumPy over the router's per-cluster statistics, shaped (clusters,
models): ``sums`` (sum of observed scores) and ``counts`` (how many were observed). The router
keeps its methods thin and calls these functions.

**Exactness.** Without forgetting, :func:`accumulate` adds each observed outcome to the cell
(nearest cluster, model) exactly as ``fit`` counts it, so ``fit(A)`` then ``update(B)`` holds the
same statistics as ``fit(A + B)`` with the same centroids. Each model's global mean (the shrinkage
prior) is the total of its cells divided by their count, which is the column mean ``fit`` computes.

**Forgetting.** With a half-life ``h`` (in observations), each new observation of a model in a
cluster first multiplies that cell's sum and count by ``2 ** (-1 / h)``: after ``h`` further
observations of the same model in the same cluster, an old outcome weighs half. A cell nobody
observes keeps its evidence (a model that is no longer routed somewhere is not forgotten there).
The global means follow, since they are computed from the (decayed) cells.

**Added models (cold start).** A model added with :meth:`~avengers.Router.add_model` (or by an
update that names it) is not shrunk toward its own global mean, because that mean is learned from
the queries exploration happened to send it, which are mostly queries where the known models do
badly (selection bias). Its prior in cluster ``c`` is instead ``base[c] + offset``
(:func:`cluster_prior`): ``base[c]`` is the mean estimate of the models that were in the training
data in that cluster (how hard the cluster is), and ``offset`` is the new model's average
advantage over ``base`` on the cells where it was observed, ``sum(counts * (mean - base)) /
(n + shrinkage)`` with ``shrinkage`` pseudo-observations of ``new_model_prior - mean(known
global means)`` (0 when ``new_model_prior`` is unset: a typical model until shown otherwise).
Because each outcome is compared with its own cluster's difficulty, hard-query sampling no longer
drags the estimate down everywhere. The statistics (sums, counts, global means) are counted
exactly as for any other model; only the prior differs.

**Exploration.** :func:`explore_picks` draws, for a random share of queries, one sample from each
model's Beta posterior around its estimate (evidence plus shrinkage pseudo-observations as the
sample size: Thompson sampling), ranks the samples with the same cost trade-off as routing, and
picks the winner. Only a pick that differs from the greedy one counts as exploration, so the share
of exploration picks never exceeds the configured share (in expectation, and with high
probability over many queries).

**Weights and propensities.** An outcome may carry a weight (``update(..., weights=...)``): it is
counted that many times in its cell (sum and count; a weight of 1 is the exact update above).
:func:`pick_probabilities` estimates the chance that routing with exploration sends a query to
each model, so ``1 / p`` of the chosen model is its inverse-propensity weight. Measured on the
shared data, weighting bandit outcomes this way did worse than not weighting them
(docs/benchmarks.md, "Online learning"), so it is opt-in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from . import scoring
from .classifier import PRIOR_PRECISION, update_success_classifiers
from .data import OutcomeData, as_outcomes
from .exceptions import ConfigError, DataError
from .params import ImputeBy

__all__ = [
    "ADDED_KEY",
    "EXPLORE_PSEUDO_COUNT",
    "PARAM_DEFAULTS",
    "OutcomeBatch",
    "accumulate",
    "add_columns",
    "add_model_columns",
    "added_mask",
    "apply_batch",
    "as_batch",
    "cluster_prior",
    "decay_factor",
    "explore_picks",
    "global_means",
    "impute_outcomes",
    "observed_cells",
    "pick_first",
    "pick_probabilities",
    "task_means",
    "unknown_model_prior",
]


@dataclass
class OutcomeBatch:
    """New outcomes as a table: ``scores[i, j]`` is model ``models[j]``'s score on row ``i`` (NaN:
    not observed); ``queries`` may be None when the rows' clusters or embeddings are known."""

    queries: list[str] | None
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray | None
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)


def as_batch(
    data: OutcomeData | str | Path | Sequence[Any] | None,
    *,
    queries: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    costs: Sequence[float] | np.ndarray | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
) -> OutcomeBatch:
    """Outcome data (anything ``fit`` takes), or parallel observations (``models[i]`` scored
    ``scores[i]`` on ``queries[i]``, at cost ``costs[i]``; one row each, repeats included), as
    one :class:`OutcomeBatch`. ``weights`` (one per row, > 0) count a row as that many
    observations (inverse-propensity weights for bandit feedback, :func:`pick_probabilities`)."""
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(w)) or w.min(initial=1.0) <= 0:
            raise DataError("weights must be finite numbers > 0")
    batch = _as_batch(data, queries=queries, models=models, scores=scores, costs=costs)
    if w is not None and len(w) != len(batch):
        raise DataError(f"{len(w)} weights for {len(batch)} outcomes")
    batch.weights = w
    return batch


def _as_batch(
    data: OutcomeData | str | Path | Sequence[Any] | None,
    *,
    queries: Sequence[str] | None,
    models: Sequence[str] | None,
    scores: Sequence[float] | np.ndarray | None,
    costs: Sequence[float] | np.ndarray | None,
) -> OutcomeBatch:
    if data is not None:
        if models is not None or scores is not None or costs is not None:
            raise DataError("give either data or models and scores, not both")
        d = as_outcomes(data)
        return OutcomeBatch(list(d.queries), list(d.models), d.scores, d.costs)
    if models is None or scores is None:
        raise DataError("update needs data, or models and scores (and queries or clusters)")
    names = [str(m) for m in models]
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != len(names):
        raise DataError(f"{len(s)} scores for {len(names)} models")
    if not np.all(np.isfinite(s)) or s.min(initial=0.0) < 0 or s.max(initial=0.0) > 1:
        raise DataError("scores must be finite numbers in [0, 1]")
    c = None
    if costs is not None:
        c = np.asarray(costs, dtype=np.float64).reshape(-1)
        if len(c) != len(names) or not np.all(np.isfinite(c)) or c.min(initial=0.0) < 0:
            raise DataError("costs must be one finite number >= 0 per score")
    if queries is not None and len(queries) != len(names):
        raise DataError(f"{len(queries)} queries for {len(names)} scores")
    uniq = list(dict.fromkeys(names))
    col = np.array([uniq.index(m) for m in names], dtype=np.int64)
    rows = np.arange(len(names))
    table = np.full((len(names), len(uniq)), np.nan)
    table[rows, col] = s
    ctable = None
    if c is not None:
        ctable = np.full_like(table, np.nan)
        ctable[rows, col] = c
    return OutcomeBatch(None if queries is None else list(queries), uniq, table, ctable)


PARAM_DEFAULTS: dict[str, Any] = {
    "explore": 0.0,
    "explore_rule": "thompson",
    "half_life": None,
    "new_model_prior": None,
}
"""The router settings for online learning, and their defaults (a saved router records them only
when they differ, so routers that do not use them stay readable by older versions)."""


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
    With ``decay`` < 1 each observation first decays its own cell (see the module docstring)."""
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
    plus their own offset learned against it (see the module docstring, "Added models")."""
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


def added_mask(router: Any) -> np.ndarray:
    """Which of a router's models were added after ``fit`` (see :func:`cluster_prior`)."""
    added = set((getattr(router, "training_summary_", None) or {}).get(ADDED_KEY, []))
    return np.array([m in added for m in router.models_], dtype=bool)


EXPLORE_PSEUDO_COUNT = 1.0
"""Pseudo-observations added to an added model's evidence in the exploration posterior (models
from the training data use the router's ``shrinkage``). Small on purpose: a new model's cells get
a wide posterior and so a real chance; with ``shrinkage`` (10) its posterior was so narrow that
it was almost never tried. Using 1 for every model made the warm-start pass worse (40 % of the gap
closed instead of 60 % on dcrouter: docs/benchmarks.md, "Online learning")."""

ADDED_KEY = "added_models"
"""The training-summary entry naming the models added after ``fit`` (saved with the router)."""


def add_columns(a: np.ndarray | None, n: int, fill: float = 0.0) -> np.ndarray | None:
    """``a`` with ``n`` more columns (last axis) set to ``fill``."""
    if a is None or n == 0:
        return a
    pad = np.full((*a.shape[:-1], n), fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=-1)


def thompson_pick(
    performance: np.ndarray,
    evidence: np.ndarray,
    cost: np.ndarray | None,
    alpha: float,
    *,
    pseudo_count: float | np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per query, the model whose Thompson draw wins: every model's score is drawn from
    ``Beta(1 + p * n, 1 + (1 - p) * n)`` (``p`` its estimate, ``n`` its evidence plus
    ``pseudo_count``) and the draws are ranked by the routing trade-off (``alpha``, ``cost``)."""
    a, b = _beta_posterior(performance, evidence, pseudo_count)
    pick: np.ndarray = scoring.tradeoff(rng.beta(a, b), cost, alpha).argmax(axis=1)
    return pick


def _beta_posterior(
    performance: np.ndarray, evidence: np.ndarray, pseudo_count: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The Beta parameters exploration draws each model's score from: ``1 + p * n`` and
    ``1 + (1 - p) * n``, ``p`` the estimate (clipped to [0, 1]), ``n`` evidence + pseudo count."""
    p = np.clip(performance, 0.0, 1.0)
    n = np.maximum(evidence, 0.0) + pseudo_count
    return 1.0 + p * n, 1.0 + (1.0 - p) * n


TOP_TWO_LEADER = 0.5
"""Top-two Thompson sampling: the chance a candidate goes to the leader rather than the
challenger."""
TOP_TWO_REDRAWS = 10
"""Top-two Thompson sampling: draws tried to find a challenger before the leader's runner-up in
its own draw stands in."""


def top_two_pick(
    performance: np.ndarray,
    evidence: np.ndarray,
    cost: np.ndarray | None,
    alpha: float,
    *,
    pseudo_count: float | np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per query, a top-two Thompson sampling pick: a Thompson draw (as :func:`thompson_pick`)
    names the leader; with chance :data:`TOP_TWO_LEADER` the query goes to it, otherwise draws
    are repeated until another model wins (the challenger; after :data:`TOP_TWO_REDRAWS` draws
    without one, the leader's runner-up in its own draw) and the query goes to the challenger.
    Half the queries thus compare the two models most likely to be best, which is what finding
    the best model of each cluster needs; plain Thompson sampling mostly confirms the leader.
    With ``alpha`` 0 (a ranking by cost alone) the leader is returned: performance cannot change
    the pick, so there is nothing to explore."""
    n_queries = len(performance)
    a, b = _beta_posterior(performance, evidence, pseudo_count)
    first = scoring.tradeoff(rng.beta(a, b), cost, alpha)
    leader = first.argmax(axis=1)
    if first.shape[1] < 2 or (alpha <= 0.0 and cost is not None):
        return leader  # nothing to compare, or a ranking by cost alone: nothing to learn
    ranked = np.argsort(-first, axis=1)
    challenger = ranked[:, 1].copy()  # stands in where no redraw finds another winner
    found = np.zeros(n_queries, dtype=bool)
    for _ in range(TOP_TWO_REDRAWS):
        win = scoring.tradeoff(rng.beta(a, b), cost, alpha).argmax(axis=1)
        new = ~found & (win != leader)
        challenger[new] = win[new]
        found |= new
        if found.all():
            break
    to_leader = rng.random(n_queries) < TOP_TWO_LEADER
    pick: np.ndarray = np.where(to_leader, leader, challenger)
    return pick


def explore_picks(
    performance: np.ndarray,
    evidence: np.ndarray,
    cost: np.ndarray | None,
    alpha: float,
    greedy: np.ndarray,
    *,
    share: float,
    pseudo_count: float | np.ndarray,
    rng: np.random.Generator,
    rule: str = "thompson",
) -> np.ndarray:
    """Per query, the index of a model picked by exploration, or -1 to keep the greedy pick.

    Each query is a candidate with probability ``share``; for a candidate, every model's score is
    drawn from ``Beta(1 + p * n, 1 + (1 - p) * n)`` where ``p`` is its estimate and ``n`` its
    evidence plus ``pseudo_count``, the draws are ranked by the routing trade-off (``alpha``,
    ``cost``), and the winner (``rule`` "thompson") or the top-two pick (``rule`` "top-two",
    :func:`top_two_pick`) is returned when it differs from ``greedy``. ``pseudo_count`` may be
    one number per model."""
    n_queries = len(performance)
    out = np.full(n_queries, -1, dtype=np.int64)
    if share <= 0.0 or n_queries == 0:
        return out
    candidate = rng.random(n_queries) < share
    if not candidate.any():
        return out
    c = None if cost is None else cost[candidate]
    pick = _RULES[rule](
        performance[candidate], evidence[candidate], c, alpha, pseudo_count=pseudo_count, rng=rng
    )
    idx = np.flatnonzero(candidate)
    changed = pick != greedy[idx]
    out[idx[changed]] = pick[changed]
    return out


def pick_probabilities(
    performance: np.ndarray,
    evidence: np.ndarray,
    cost: np.ndarray | None,
    alpha: float,
    greedy: np.ndarray,
    *,
    share: float,
    pseudo_count: float | np.ndarray,
    rng: np.random.Generator,
    draws: int = 64,
    rule: str = "thompson",
) -> np.ndarray:
    """(n, m): the chance that routing with exploration (:func:`explore_picks`) sends each query
    to each model: ``1 - share`` on the greedy pick plus ``share`` times the share of ``draws``
    picks of ``rule`` each model gets (a Monte Carlo estimate, so a model may get 0). The inverse
    of the chosen model's entry is its inverse-propensity weight for ``Router.update``."""
    n, m = performance.shape
    out = np.zeros((n, m))
    if n == 0:
        return out
    out[np.arange(n), greedy] = 1.0 - share
    if share <= 0.0:
        out[np.arange(n), greedy] = 1.0
        return out
    wins = np.zeros((n, m))
    for _ in range(draws):
        pick = _RULES[rule](performance, evidence, cost, alpha, pseudo_count=pseudo_count, rng=rng)
        wins[np.arange(n), pick] += 1.0
    return out + share * wins / draws


_RULES = {"thompson": thompson_pick, "top-two": top_two_pick}


def pick_first(order: np.ndarray, pick: int) -> list[int]:
    """A ranking (model indices, best first) with ``pick`` moved to the front (-1: unchanged)."""
    row = [int(j) for j in order]
    if pick < 0:
        return row
    return [pick] + [j for j in row if j != pick]


# --------------------------------------------------------------------------- router state
# The two functions below change a fitted router's arrays in place. They take the router as
# ``Any`` because this module sits below :mod:`avengers.router` (which imports it).


def add_model_columns(router: Any, name: str) -> None:
    """Give a fitted router one more candidate ``name`` with no evidence (zero counts, a prior
    global mean, NaN training scores)."""
    prior = unknown_model_prior(router.global_scores_, router.score_counts_, router.new_model_prior)
    router.models_ = [*router.models_, name]
    router.score_sums_ = add_columns(router.score_sums_, 1)
    router.score_counts_ = add_columns(router.score_counts_, 1)
    router.global_scores_ = np.append(router.global_scores_, prior)
    if router.cost_sums_ is not None and router.cost_counts_ is not None:
        cost_prior = unknown_model_prior(router.global_costs_, router.cost_counts_)
        router.cost_sums_ = add_columns(router.cost_sums_, 1)
        router.cost_counts_ = add_columns(router.cost_counts_, 1)
        router.global_costs_ = np.append(router.global_costs_, cost_prior)
    router.train_scores_ = add_columns(router.train_scores_, 1, np.nan)
    # Per-task statistics (task hints) start empty. Its success classifier (hybrid estimate) is a
    # NaN row until its first update with embeddings (until then the estimate uses the cluster's),
    # which starts it from the known models' mean weights with the prior's covariance only.
    router.task_score_sums_ = add_columns(getattr(router, "task_score_sums_", None), 1)
    router.task_score_counts_ = add_columns(getattr(router, "task_score_counts_", None), 1)
    coef = getattr(router, "classifier_coef_", None)
    if coef is not None:
        router.classifier_coef_ = np.vstack([coef, np.full((1, coef.shape[1]), np.nan, coef.dtype)])
        router.classifier_intercept_ = np.append(router.classifier_intercept_, np.nan)
    covariance = getattr(router, "classifier_covariance_", None)
    if covariance is not None:
        fresh = np.eye(covariance.shape[1], dtype=covariance.dtype) / PRIOR_PRECISION
        router.classifier_covariance_ = np.concatenate([covariance, fresh[None]])
    summary = dict(router.training_summary_)
    summary[ADDED_KEY] = [*summary.get(ADDED_KEY, []), name]
    router.training_summary_ = summary


def _update_classifiers(
    router: Any, batch: OutcomeBatch, cols: np.ndarray, X: np.ndarray | None
) -> None:
    """Move the success classifiers of the hybrid estimate toward the batch (Laplace update, see
    :mod:`avengers.classifier`), without forgetting: ``half_life`` counts observations of a model
    in one cluster, and applied per outcome of a model anywhere it left each classifier only its
    last few dozen outcomes (noise; the drifted model of the benchmark then took 552 task queries
    to lose its task instead of 119). Needs the batch's embeddings and the classifiers' covariances
    (a router saved before they existed, or streamed with ``avengers.stream``, keeps its
    classifiers as fitted)."""
    covariance = getattr(router, "classifier_covariance_", None)
    coef = getattr(router, "classifier_coef_", None)
    if X is None or covariance is None or coef is None or len(batch) == 0:
        return
    full = np.full((len(batch), len(router.models_)), np.nan)
    full[:, cols] = batch.scores
    router.classifier_coef_, router.classifier_intercept_, router.classifier_covariance_ = (
        update_success_classifiers(
            X, full, coef, router.classifier_intercept_, covariance,
            weights=batch.weights,
        )
    )  # fmt: skip


def apply_batch(router: Any, batch: OutcomeBatch, labels: np.ndarray, X: np.ndarray | None) -> None:
    """Count ``batch`` (rows in clusters ``labels``) into a fitted router that knows all its
    models: cluster statistics, global means, cluster sizes, costs (if both have them) and, for
    kNN scoring, the training rows (when embeddings ``X`` are known)."""
    cols = np.array([router.models_.index(m) for m in batch.models], dtype=np.int64)
    decay = decay_factor(router.half_life)
    rw = batch.weights
    rows, j, v = observed_cells(batch.scores)
    accumulate(
        router.score_sums_, router.score_counts_, labels[rows], cols[j], v, decay=decay,
        weights=None if rw is None else rw[rows],
    )  # fmt: skip
    router.global_scores_ = global_means(
        router.score_sums_, router.score_counts_, router.global_scores_
    )
    if batch.costs is not None and router.cost_sums_ is not None:
        rows, j, v = observed_cells(batch.costs)
        accumulate(
            router.cost_sums_, router.cost_counts_, labels[rows], cols[j], v, decay=decay,
            weights=None if rw is None else rw[rows],
        )  # fmt: skip
        router.global_costs_ = global_means(
            router.cost_sums_, router.cost_counts_, router.global_costs_
        )
    _update_classifiers(router, batch, cols, X)
    k = len(router.cluster_centers_)
    router.cluster_sizes_ = router.cluster_sizes_ + np.bincount(labels, minlength=k)
    if router.train_embeddings_ is not None and X is not None:
        full = np.full((len(batch), len(router.models_)), np.nan, dtype=np.float32)
        full[:, cols] = batch.scores
        router.train_embeddings_ = np.vstack([router.train_embeddings_, X.astype(np.float32)])
        router.train_scores_ = np.vstack([router.train_scores_, full])
    if getattr(router, "labels_", None) is not None and len(router.labels_):
        router.labels_ = np.concatenate([router.labels_, labels])
    summary = dict(router.training_summary_)
    summary["online_updates"] = int(summary.get("online_updates", 0)) + 1
    summary["online_outcomes"] = int(summary.get("online_outcomes", 0)) + int(
        (~np.isnan(batch.scores)).sum()
    )
    router.training_summary_ = summary


IMPUTE_BY = get_args(ImputeBy)


def check_impute_by(by: Any) -> None:
    if by not in IMPUTE_BY:
        raise ConfigError(f"by must be one of {', '.join(IMPUTE_BY)}, not {by!r}")


def task_means(router: Any, rows: np.ndarray | None, n: int) -> np.ndarray:
    """(n, m) each model's mean score on each row's task in the data the router was fitted on
    (``update`` does not change these); its global mean for a row without a known task. ``rows``:
    each row's index in ``router.tasks_`` (-1: none), as :func:`scoring.task_rows` gives them (None:
    no row has a known task)."""
    out = np.tile(np.asarray(router.global_scores_, dtype=np.float64), (n, 1))
    if rows is not None:
        means = scoring.task_means(
            router.task_score_sums_, router.task_score_counts_, np.asarray(router.global_scores_)
        )
        hit = rows >= 0
        out[hit] = means[rows[hit]]
    return out


def impute_outcomes(
    router: Any, data: OutcomeData, X: np.ndarray | None, *, by: ImputeBy = "query"
) -> OutcomeData:
    """``data`` with each unknown outcome (NaN score) of a model the router knows filled in;
    known outcomes are kept as they are.

    ``by="query"``: the router's expected score for that model on that query
    (``Router.estimate``, with ``data.tasks`` as hints). ``by="task"``: the model's mean score on
    the row's task in the data the router was fitted on (:func:`task_means`; its global mean for
    an unlabelled row). Unknown costs are filled with the expected cost (``"query"``) or the
    model's mean cost (``"task"``) when both have costs. A model the router does not know keeps its
    gaps, and a model of the router that the data never names is not added (both said in
    ``notes``). ``X`` (the rows' embeddings) is needed for ``"query"`` only.

    This is the direct method of off-policy learning: a bandit log reveals a model's outcome
    where the policy picked it, which is where it looked good, so a fresh ``fit`` on the plain log
    learns each model from its best part; filled in, every query counts for every model. The task
    fill brings no local estimate of its own, so the refit's local differences come from revealed
    outcomes only; with task labels it was the better refit on the shared data, without them (a
    global mean for every gap) much the worse (docs/benchmarks.md, "Online learning")."""
    check_impute_by(by)
    known = [m for m in data.models if m in router.models_]
    d_cols = [data.models.index(m) for m in known]
    r_cols = [router.models_.index(m) for m in known]
    hinted = None
    if by == "task" and data.tasks is not None:
        hinted = scoring.task_rows(getattr(router, "tasks_", None), data.tasks)
    if by == "query":
        if X is None or len(X) != len(data):
            raise DataError(f"{0 if X is None else len(X)} embeddings for {len(data)} queries")
        est = router.estimate(np.asarray(X), tasks=data.tasks)
        perf, cost = est.performance, est.cost
    else:
        perf = task_means(router, hinted, len(data))
        gc = getattr(router, "global_costs_", None)
        cost = None if gc is None else np.tile(np.asarray(gc, dtype=np.float64), (len(data), 1))

    def fill(table: np.ndarray, expected: np.ndarray) -> np.ndarray:
        out = table.copy()
        part = out[:, d_cols]
        out[:, d_cols] = np.where(np.isnan(part), expected[:, r_cols], part)
        return out

    scores = fill(data.scores, perf)
    costs = data.costs
    if costs is not None and cost is not None:
        costs = fill(costs, cost)
    notes = list(data.notes)
    unknown = [m for m in data.models if m not in router.models_]
    gaps = int(np.isnan(data.scores).sum() - np.isnan(scores).sum())
    source = "expected scores" if by == "query" else "per-task mean scores"
    notes.append(f"filled {gaps} unknown outcome(s) with the router's {source}")
    if by == "task" and hinted is None:
        notes.append(
            "no row has a task the router was fitted with: every gap got the model's global "
            'mean, which made a much worse refit on the shared data than by="query"'
        )
    if unknown:
        notes.append(f"not filled (models the router does not know): {', '.join(unknown)}")
    absent = [m for m in router.models_ if m not in data.models]
    if absent:
        notes.append(f"not added (models the data never names): {', '.join(absent)}")
    return OutcomeData(
        list(data.queries),
        list(data.models),
        scores,
        costs,
        None if data.tasks is None else list(data.tasks),
        source=data.source,
        notes=notes,
    )
