"""Online learning for a fitted router: what :meth:`avengers.Router.update`,
:meth:`avengers.Router.add_model` and exploration (``Router(explore=...)``) do, the outcome
batches they take, and refitting on a bandit log (:func:`impute_outcomes`).

The arithmetic works on the router's per-cluster statistics, shaped (clusters, models): ``sums``
(sum of observed scores) and ``counts`` (how many were observed). It lives with the parts of the
router that own those arrays, and is re-exported here: counting and the shrinkage prior in
:mod:`avengers.routing.statistics`, exploration in :mod:`avengers.routing.exploration`.

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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from .decision import RouteEstimate
from .exceptions import ConfigError, DataError
from .params import ImputeBy, check_alpha, check_queries
from .routing import scoring
from .routing.exploration import (
    EXPLORE_PSEUDO_COUNT,
    ExplorationPolicy,
    explore_picks,
    pick_first,
    pick_probabilities,
    thompson_pick,
    top_two_pick,
)
from .routing.parts import RouterParts
from .routing.statistics import (
    accumulate,
    add_columns,
    cluster_prior,
    decay_factor,
    global_means,
    observed_cells,
    unknown_model_prior,
)
from .training.data import OutcomeData, as_outcomes

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ADDED_KEY",
    "EXPLORE_PSEUDO_COUNT",
    "PARAM_DEFAULTS",
    "OnlineMixin",
    "OutcomeBatch",
    "accumulate",
    "add_columns",
    "added_mask",
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
    "thompson_pick",
    "top_two_pick",
    "unknown_model_prior",
    "updated_summary",
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


def added_mask(router: Any) -> np.ndarray:
    """Which of a router's models were added after ``fit`` (see :func:`cluster_prior`)."""
    added = set((getattr(router, "training_summary_", None) or {}).get(ADDED_KEY, []))
    return np.array([m in added for m in router.models_], dtype=bool)


ADDED_KEY = "added_models"
"""The training-summary entry naming the models added after ``fit`` (saved with the router)."""


def updated_summary(summary: dict[str, Any], batch: OutcomeBatch) -> dict[str, Any]:
    """A router's training summary after ``batch`` was counted: one more update, and its
    observed outcomes."""
    out = dict(summary)
    out["online_updates"] = int(out.get("online_updates", 0)) + 1
    out["online_outcomes"] = int(out.get("online_outcomes", 0)) + int(
        (~np.isnan(batch.scores)).sum()
    )
    return out


def with_added_model(summary: dict[str, Any], name: str) -> dict[str, Any]:
    """A router's training summary naming one more model added after ``fit``."""
    out = dict(summary)
    out[ADDED_KEY] = [*out.get(ADDED_KEY, []), name]
    return out


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


def _impute_notes(
    data: OutcomeData, known: list[str], gaps: int, by: ImputeBy, *, no_task: bool
) -> list[str]:
    """``data``'s notes plus what imputing did (``gaps`` filled) and did not do."""
    notes = list(data.notes)
    source = "expected scores" if by == "query" else "per-task mean scores"
    notes.append(f"filled {gaps} unknown outcome(s) with the router's {source}")
    if no_task:
        notes.append(
            "no row has a task the router was fitted with: every gap got the model's global "
            'mean, which made a much worse refit on the shared data than by="query"'
        )
    unknown = [m for m in data.models if m not in known]
    if unknown:
        notes.append(f"not filled (models the router does not know): {', '.join(unknown)}")
    absent = [m for m in known if m not in data.models]
    if absent:
        notes.append(f"not added (models the data never names): {', '.join(absent)}")
    return notes


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
    gaps = int(np.isnan(data.scores).sum() - np.isnan(scores).sum())
    notes = _impute_notes(data, router.models_, gaps, by, no_task=by == "task" and hinted is None)
    return OutcomeData(
        list(data.queries),
        list(data.models),
        scores,
        costs,
        None if data.tasks is None else list(data.tasks),
        source=data.source,
        notes=notes,
    )


class OnlineMixin:
    """Online learning for :class:`avengers.Router`: :meth:`update`, :meth:`add_model`,
    :meth:`impute` and :meth:`pick_probabilities`, on the router's parts."""

    if TYPE_CHECKING:
        models_: list[str]
        n_features_in_: int
        labels_: np.ndarray
        training_summary_: dict[str, Any]
        alpha: float
        shrinkage: float
        half_life: float | None
        new_model_prior: float | None
        explore: float
        explore_rule: str
        random_state: int | None
        _exploration: ExplorationPolicy

        def _fitted_parts(self) -> RouterParts: ...
        def _validate_params(self) -> None: ...
        def embed(self, queries: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...
        def estimate(
            self,
            X: np.ndarray,
            *,
            alpha: float | None = None,
            tasks: Sequence[str | None] | None = None,
        ) -> RouteEstimate: ...

    def update(
        self,
        data: OutcomeData | str | Path | Sequence[Any] | None = None,
        *,
        queries: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        scores: Sequence[float] | np.ndarray | None = None,
        costs: Sequence[float] | np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
        clusters: Sequence[int] | np.ndarray | None = None,
        weights: Sequence[float] | np.ndarray | None = None,
    ) -> Self:
        """Add new outcomes to the per-cluster statistics without re-clustering, exactly as
        :meth:`fit` counts them (see :mod:`avengers.online`; ``half_life`` forgets old ones).

        Give outcome ``data`` (anything :meth:`fit` takes), or parallel observations: ``models``,
        ``scores`` (and ``costs``), one per query in ``queries``. ``embeddings`` skip embedding,
        ``clusters`` (each row's nearest cluster) skip it and the cluster search. Models the router
        does not know are added first (:meth:`add_model`). The far-query threshold keeps its
        fitted value. ``weights`` (one per row, > 0; default 1) count each outcome that many
        times: inverse-propensity weights ``1 / p`` for bandit feedback, with ``p`` from
        :meth:`pick_probabilities` (see ``docs/online.md``)."""
        parts = self._fitted_parts()
        self._validate_params()
        batch = as_batch(
            data, queries=queries, models=models, scores=scores, costs=costs, weights=weights
        )
        labels, X = self._batch_clusters(batch, embeddings, clusters)
        if len(labels) != len(batch):
            raise DataError(f"{len(labels)} clusters or embeddings for {len(batch)} outcomes")
        for name in batch.models:
            if name not in self.models_:
                self.add_model(name)
        parts.update(
            batch.scores,
            batch.costs,
            np.array([self.models_.index(m) for m in batch.models], dtype=np.int64),
            labels,
            X,
            n_models=len(self.models_),
            decay=decay_factor(self.half_life),
            weights=batch.weights,
        )
        if getattr(self, "labels_", None) is not None and len(self.labels_):
            self.labels_ = np.concatenate([self.labels_, labels])
        self.training_summary_ = updated_summary(self.training_summary_, batch)
        return self

    def _batch_clusters(
        self,
        batch: OutcomeBatch,
        embeddings: np.ndarray | None,
        clusters: Sequence[int] | np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The cluster of each row of an update (given, or nearest to its embedding, embedded
        if need be) and its embedding (None when not known)."""
        X = None if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        k = len(self._fitted_parts().statistics.cluster_centers)
        if clusters is not None:
            labels = np.asarray(clusters, dtype=np.int64).reshape(-1)
            if labels.size and (labels.min() < 0 or labels.max() >= k):
                raise DataError(f"cluster ids must be in [0, {k})")
            return labels, X
        if X is None:
            if batch.queries is None:
                raise DataError("update needs queries, embeddings or clusters")
            check_queries(batch.queries)
            X = self.embed(batch.queries)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise DataError(f"expected embeddings of shape (n, {self.n_features_in_})")
        return self._fitted_parts().statistics.nearest(X), X

    def add_model(self, name: str) -> Self:
        """Add a candidate model with no evidence yet. In each cluster its estimate shrinks toward
        the known models' mean estimate there plus an offset it learns from its outcomes
        (``new_model_prior`` sets the offset's starting point; see :mod:`avengers.online`)."""
        parts = self._fitted_parts()
        if name in self.models_:
            raise ConfigError(f"model {name!r} is already a candidate")
        parts.add_model(self.new_model_prior)
        self.models_ = [*self.models_, str(name)]
        self.training_summary_ = with_added_model(self.training_summary_, str(name))
        return self

    def impute(
        self,
        data: OutcomeData | str | Path | Sequence[Any],
        *,
        embeddings: np.ndarray | None = None,
        by: ImputeBy = "query",
    ) -> OutcomeData:
        """A copy of outcome ``data`` with every unknown outcome of a model this router knows
        filled in (known outcomes kept): with the router's expected score for that query
        (``by="query"``, the data's task labels as hints) or the model's mean score on the row's
        task in the data the router was fitted on (``by="task"``). For refitting on a bandit
        log: ``Router(...).fit(router.impute(log))`` re-clusters on every logged query without
        learning each model only where it was picked. ``embeddings`` (rows of ``data``) skip
        embedding. See :func:`avengers.online.impute_outcomes`."""
        self._fitted_parts()
        check_impute_by(by)
        data = as_outcomes(data)
        X = embeddings
        if X is None and by == "query":
            X = self.embed(data.queries)
        return impute_outcomes(self, data, X, by=by)

    def pick_probabilities(
        self, X: np.ndarray, *, alpha: float | None = None, draws: int = 64
    ) -> np.ndarray:
        """(n, m): the chance that routing (with this router's exploration) sends each embedded
        query to each model, estimated with ``draws`` Thompson draws (see
        :func:`avengers.online.pick_probabilities`). For bandit feedback, ``1 / p`` of the chosen
        model is its inverse-propensity weight in :meth:`update`. Uses its own random draws, not
        those of :meth:`route_embeddings`."""
        est = self.estimate(X, alpha=alpha)
        alpha = check_alpha(self.alpha if alpha is None else alpha)
        policy = self._exploration.follow(self.explore, self.explore_rule, self.random_state)
        pseudo = policy.pseudo_counts(added_mask(self), self.shrinkage)
        return policy.probabilities(est, alpha, pseudo, draws)
