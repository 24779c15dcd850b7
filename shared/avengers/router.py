"""The Avengers router: embed, cluster, score, route.

>>> from avengers import Router
>>> router = Router(n_clusters=64).fit("outcomes.jsonl")          # doctest: +SKIP
>>> router.route("What is 17 * 23?").explain()                      # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from . import online, scoring
from .artifact import push_artifact, read_artifact, write_artifact
from .calibration import CalibrationResult, calibrate
from .card import model_card as make_model_card
from .classifier import classifier_covariance, fit_success_classifiers, success_probabilities
from .clustering import ClusterAlgorithm, fit_centroids, pairwise_sq_dist
from .data import OutcomeData, as_outcomes
from .decision import ModelScore, RouteDecision, RouteEstimate
from .embedders import Embedder, aembed, resolve_embedder
from .exceptions import (
    ArtifactError,
    ClusterCountWarning,
    ConfigError,
    DataError,
    EmbedderMismatchError,
    NotFittedError,
)
from .params import (
    ROUTER_PARAMS,
    ExploreRule,
    ImputeBy,
    Scoring,
    TemperatureMode,
    check_alpha,
    check_params,
)

__all__ = ["RouteEstimate", "Router", "Scoring"]

# Fitted arrays in the router's state, by name; the fitted attribute is the name plus "_".
_STATE_ARRAYS = (
    "cluster_centers",
    "cluster_sizes",
    "score_sums",
    "score_counts",
    "global_scores",
    "train_distances",
)
_OPTIONAL_STATE_ARRAYS = (
    "cost_sums",
    "cost_counts",
    "global_costs",
    "train_embeddings",
    "train_scores",
    "classifier_coef",
    "classifier_intercept",
    "classifier_covariance",
    "task_score_sums",
    "task_score_counts",
)
# Arrays kept in a smaller dtype in the state: halves the file; routing is insensitive to it.
_STATE_DTYPES = {"train_embeddings": np.float16}
_DISTANCE_QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)
# Settings saved only when they differ from these values, so that older versions still read the
# artifacts that do not use them.
_QUIET_DEFAULTS: dict[str, Any] = {
    "sharpen_quantile": None,
    "sharpen_width": 0.1,
    "online_classifiers": False,
}


class Router(BaseEstimator):
    """Routes a query to the candidate model(s) that did best on similar training queries.

    A scikit-learn estimator: settings are set in ``__init__`` (``get_params``, ``set_params``
    and ``sklearn.base.clone`` work as usual, ``embedder`` included), learned in :meth:`fit`,
    and fitted attributes end in ``_``. Use :meth:`paper` for the plain setting of Zhang et al.
    (2025). The allowed values of every setting are declared in :data:`avengers.params.ROUTER_PARAMS`.

    The defaults differ from the paper in three measured ways (see ``docs/benchmarks.md``): soft
    routing over the 5 nearest clusters, cluster estimates shrunk toward each model's global
    mean with 10 pseudo-observations, so thin or distant evidence leans on the global ranking,
    and a hybrid estimate that gives per-model success classifiers on the same embeddings a
    weight of 0.2 (chosen by cross-validation on training data), which carries queries of tasks
    the training data lacks. ``Router.paper`` turns all three off.
    """

    # one query without task hints takes the lean path of ``_estimate_one`` (False: the batch
    # path for every call; the tests compare the two)
    _single_row_path = True

    def __init__(
        self,
        n_clusters: int = 64,
        *,
        top_k: int = 1,
        alpha: float = 1.0,
        n_nearest: int = 5,
        softmax_temperature: float = 0.05,
        temperature_mode: TemperatureMode = "absolute",
        scoring: Scoring = "cluster",
        n_neighbors: int = 32,
        knn_weight: float = 0.5,
        shrinkage: float = 10.0,
        min_cluster_size: int = 1,
        far_quantile: float | None = None,
        sharpen_quantile: float | None = None,
        sharpen_width: float = 0.1,
        classifier_weight: float = 0.2,
        classifier_evidence: float | None = None,
        clustering: ClusterAlgorithm = "kmeans",
        random_state: int | None = 0,
        embedder: Embedder | str | None = None,
        explore: float = 0.0,
        explore_rule: ExploreRule = "thompson",
        half_life: float | None = None,
        new_model_prior: float | None = None,
        online_classifiers: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.top_k = top_k
        self.alpha = alpha
        self.n_nearest = n_nearest
        self.softmax_temperature = softmax_temperature
        self.temperature_mode = temperature_mode
        self.scoring = scoring
        self.n_neighbors = n_neighbors
        self.knn_weight = knn_weight
        self.shrinkage = shrinkage
        self.min_cluster_size = min_cluster_size
        self.far_quantile = far_quantile
        self.sharpen_quantile = sharpen_quantile
        self.sharpen_width = sharpen_width
        self.classifier_weight = classifier_weight
        self.classifier_evidence = classifier_evidence
        self.clustering = clustering
        self.random_state = random_state
        self.embedder = embedder
        self.explore = explore
        self.explore_rule = explore_rule
        self.online_classifiers = online_classifiers
        self.half_life = half_life
        self.new_model_prior = new_model_prior
        self._embedder: Embedder | None = None  # ``embedder`` resolved, on first use
        self._rng: np.random.Generator | None = None  # exploration draws, on first use
        self._routing: _RoutingArrays | None = None  # derived arrays, see _routing_arrays

    # ------------------------------------------------------------------ settings

    @classmethod
    def paper(cls, n_clusters: int = 64, **kwargs: Any) -> Router:
        """The plain method of the paper: k-means, nearest cluster, plain cluster means, top-1."""
        kwargs.setdefault("classifier_weight", 0.0)
        return cls(n_clusters, n_nearest=1, shrinkage=0.0, scoring="cluster", **kwargs)

    def set_params(self, **params: Any) -> Router:
        """Change settings. Routing-time settings (alpha, top_k, n_nearest, temperature,
        shrinkage, knn options, fallbacks) take effect without refitting. An unknown name or a
        bad value raises :class:`~avengers.ConfigError` and leaves the router unchanged."""
        current = self.get_params(deep=False)
        for name in params:
            if name not in current:
                raise ConfigError(
                    f"unknown router setting {name!r}; valid: {', '.join(ROUTER_PARAMS)}"
                )
        super().set_params(**params)
        try:
            self._validate_params()
        except ConfigError:
            super().set_params(**{name: current[name] for name in params})
            raise
        if "embedder" in params and params["embedder"] is not current["embedder"]:
            self._embedder = None
        return self

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The settings' names (scikit-learn's hook, which reads the signature on every call;
        cached here because routing checks the settings on every call)."""
        return list(_param_names(cls))

    def _validate_params(self) -> None:
        """Check every setting against :data:`avengers.params.ROUTER_PARAMS` (this overrides
        scikit-learn's hook of the same name)."""
        check_params(self.get_params(deep=False))

    def __sklearn_clone__(self) -> Router:
        """An unfitted router with the same settings (what ``sklearn.base.clone`` returns).

        The embedder object is shared rather than deep-copied as scikit-learn would: an
        embedder is a stateless service (a loaded model, an HTTP client, a disk cache), and
        copying one costs time and memory or fails on its locks. Every other setting is an
        immutable number or string."""
        return type(self)(**self.get_params(deep=False))

    def __sklearn_is_fitted__(self) -> bool:
        """Lets ``sklearn.utils.validation.check_is_fitted`` ask :meth:`is_fitted`."""
        return self.is_fitted()

    # ------------------------------------------------------------------ embedding

    def get_embedder(self) -> Embedder:
        """The embedder used for queries (created on first use)."""
        if self._embedder is None:
            self._embedder = resolve_embedder(self.embedder)
        return self._embedder

    def set_embedder(self, embedder: Embedder) -> Router:
        """Use this embedder instance for queries from now on (for example the same model wrapped
        in a :class:`~avengers.embedders.BatchingEmbedder`). Vectors are still checked against the
        trained dimension."""
        self._embedder = embedder
        return self

    def embed(self, queries: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        emb = self.get_embedder()
        if show_progress and hasattr(emb, "show_progress"):
            emb.show_progress = True
        X = emb.embed(list(queries))
        self._check_dim(X)
        return X

    def _check_dim(self, X: np.ndarray) -> None:
        d = getattr(self, "n_features_in_", None)
        if d is not None and X.shape[1] != d:
            raise ConfigError(
                f"embedder {self.get_embedder().name!r} gives {X.shape[1]}-d vectors, but this "
                f"router was trained on {d}-d vectors from {self.embedder_name_!r}"
            )

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        data: OutcomeData | str | Path | Sequence[Any],
        *,
        embeddings: np.ndarray | None = None,
        show_progress: bool = False,
        centroids: np.ndarray | None = None,
    ) -> Router:
        """Learn clusters and per-cluster model scores from outcome data. ``embeddings`` may be
        given to skip embedding (rows aligned with ``data.queries``); ``centroids`` (k, d) to
        skip clustering and count outcomes in these clusters."""
        self._validate_params()
        t0 = time.perf_counter()
        data = as_outcomes(data)
        if len(data) == 0:
            raise DataError(f"{data.source}: no training queries")
        if embeddings is None:
            X = (
                self.get_embedder().embed(list(data.queries))
                if not show_progress
                else self.embed(data.queries, show_progress=True)
            )
        else:
            X = np.asarray(embeddings, dtype=np.float32)
            if X.shape[0] != len(data):
                raise DataError(f"{len(X)} embeddings for {len(data)} queries")
        centers = (
            fit_centroids(
                X, self.n_clusters, algorithm=self.clustering, random_state=self.random_state
            )
            if centroids is None
            else np.asarray(centroids, dtype=np.float32)
        )
        labels = pairwise_sq_dist(X, centers).argmin(axis=1)
        k = len(centers)
        if k < self.n_clusters:
            warnings.warn(
                f"n_clusters={self.n_clusters} but the training data has only {k} distinct "
                f"queries: fitted {k} clusters (pass n_clusters<={k}, or more data)",
                ClusterCountWarning,
                stacklevel=2,
            )

        self.models_ = list(data.models)
        self.n_features_in_ = int(X.shape[1])
        self.embedder_name_ = (
            self.get_embedder().name
            if embeddings is None
            else (
                self._embedder.name
                if self._embedder is not None
                else str(self.embedder or "precomputed")
            )
        )
        self.cluster_centers_ = centers
        self.labels_ = labels
        self.cluster_sizes_ = np.bincount(labels, minlength=k).astype(np.int64)
        self.score_sums_, self.score_counts_ = scoring.group_sums(labels, data.scores, k)
        self.global_scores_ = scoring.column_means(data.scores)
        self.cost_sums_: np.ndarray | None = None
        self.cost_counts_: np.ndarray | None = None
        self.global_costs_: np.ndarray | None = None
        if data.costs is not None:
            self.cost_sums_, self.cost_counts_ = scoring.group_sums(labels, data.costs, k)
            self.global_costs_ = scoring.column_means(data.costs)
        d_own = np.sqrt(pairwise_sq_dist(X, centers)[np.arange(len(X)), labels])
        self.train_distances_ = np.quantile(d_own, _DISTANCE_QUANTILES).astype(np.float64)
        self.train_embeddings_: np.ndarray | None = None
        self.train_scores_: np.ndarray | None = None
        if self.scoring in ("knn", "hybrid"):
            self.train_embeddings_ = X.astype(np.float32)
            self.train_scores_ = data.scores.astype(np.float32)
        self.tasks_: list[str] | None = None
        self.task_score_sums_: np.ndarray | None = None
        self.task_score_counts_: np.ndarray | None = None
        if data.tasks is not None and any(data.tasks):
            self.tasks_, self.task_score_sums_, self.task_score_counts_ = scoring.task_group_sums(
                data.tasks, labels, data.scores, k
            )
        self.classifier_coef_: np.ndarray | None = None
        self.classifier_intercept_: np.ndarray | None = None
        self.classifier_covariance_: np.ndarray | None = None  # for online updates of the above
        if self.classifier_weight > 0:
            self.classifier_coef_, self.classifier_intercept_ = fit_success_classifiers(
                X, data.scores
            )
            if self.online_classifiers:
                self.classifier_covariance_ = classifier_covariance(
                    X, data.scores, self.classifier_coef_, self.classifier_intercept_
                )
        self.training_summary_ = data.summary()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

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
    ) -> Router:
        """Add new outcomes to the per-cluster statistics without re-clustering, exactly as
        :meth:`fit` counts them (see :mod:`avengers.online`; ``half_life`` forgets old ones).

        Give outcome ``data`` (anything :meth:`fit` takes), or parallel observations: ``models``,
        ``scores`` (and ``costs``), one per query in ``queries``. ``embeddings`` skip embedding,
        ``clusters`` (each row's nearest cluster) skip it and the cluster search. Models the router
        does not know are added first (:meth:`add_model`). The far-query threshold keeps its
        fitted value. ``weights`` (one per row, > 0; default 1) count each outcome that many
        times: inverse-propensity weights ``1 / p`` for bandit feedback, with ``p`` from
        :meth:`pick_probabilities` (see ``docs/online.md``)."""
        self._check_fitted()
        self._validate_params()
        batch = online.as_batch(
            data, queries=queries, models=models, scores=scores, costs=costs, weights=weights
        )
        X = None if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        if clusters is not None:
            labels = np.asarray(clusters, dtype=np.int64).reshape(-1)
            if labels.size and (labels.min() < 0 or labels.max() >= len(self.cluster_centers_)):
                raise DataError(f"cluster ids must be in [0, {len(self.cluster_centers_)})")
        else:
            if X is None:
                if batch.queries is None:
                    raise DataError("update needs queries, embeddings or clusters")
                _check_queries(batch.queries)
                X = self.embed(batch.queries)
            if X.ndim != 2 or X.shape[1] != self.n_features_in_:
                raise DataError(f"expected embeddings of shape (n, {self.n_features_in_})")
            labels = pairwise_sq_dist(X, self.cluster_centers_).argmin(axis=1)
        if len(labels) != len(batch):
            raise DataError(f"{len(labels)} clusters or embeddings for {len(batch)} outcomes")
        for name in batch.models:
            if name not in self.models_:
                self.add_model(name)
        online.apply_batch(self, batch, labels, X)
        return self

    def add_model(self, name: str) -> Router:
        """Add a candidate model with no evidence yet. In each cluster its estimate shrinks toward
        the known models' mean estimate there plus an offset it learns from its outcomes
        (``new_model_prior`` sets the offset's starting point; see :mod:`avengers.online`)."""
        self._check_fitted()
        if name in self.models_:
            raise ConfigError(f"model {name!r} is already a candidate")
        online.add_model_columns(self, str(name))
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
        self._check_fitted()
        online.check_impute_by(by)
        data = as_outcomes(data)
        X = embeddings
        if X is None and by == "query":
            X = self.embed(data.queries)
        return online.impute_outcomes(self, data, X, by=by)

    def calibrate(
        self,
        data: OutcomeData | str | Path | Sequence[Any],
        *,
        target_cost: float | None = None,
        target_share: tuple[Sequence[str], float] | None = None,
        folds: int = 5,
        embeddings: np.ndarray | None = None,
        show_progress: bool = False,
    ) -> CalibrationResult:
        """Choose ``alpha`` by cross-validation on training ``data`` so the expected average cost
        per query stays within ``target_cost`` (or at most ``share`` of queries go to the named
        ``models`` with ``target_share=(models, share)``), set it, and return the expected cost
        and accuracy with their standard errors. Warns and picks the closest setting when the
        target cannot be met. ``show_progress`` shows progress bars on stderr (embedding, then
        each fold's fit and alphas). See :mod:`avengers.calibration`."""
        return calibrate(
            self,
            data,
            target_cost=target_cost,
            target_share=target_share,
            folds=folds,
            embeddings=embeddings,
            show_progress=show_progress,
        )

    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_pretrained`) has given this router its state."""
        return hasattr(self, "cluster_centers_")

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(
                "this Router is not fitted yet: call fit(...) or Router.from_pretrained(...)"
            )

    # ------------------------------------------------------------------ estimates

    def cluster_scores(self) -> np.ndarray:
        """Per-cluster expected score of each model (K, M), after shrinkage."""
        self._check_fitted()
        prior = online.cluster_prior(
            self.score_sums_,
            self.score_counts_,
            self.global_scores_,
            online.added_mask(self),
            self.shrinkage,
            self.new_model_prior,
        )
        return scoring.shrunk_means(self.score_sums_, self.score_counts_, prior, self.shrinkage)

    def cluster_costs(self) -> np.ndarray | None:
        self._check_fitted()
        if self.cost_sums_ is None or self.cost_counts_ is None or self.global_costs_ is None:
            return None
        return scoring.shrunk_means(
            self.cost_sums_, self.cost_counts_, self.global_costs_[None, :], 0.0
        )

    def _routing_arrays(self) -> _RoutingArrays:
        """What routing derives from the fitted arrays and settings alone (shrunk cluster scores
        and costs, centroid norms, the far threshold, ...), worked out once and reused while
        neither changes; the settings are checked when they do.

        The cache holds the state objects it was computed from and is used only while each of
        them is still the router's (``is``) and every setting is equal: :meth:`fit`,
        :meth:`update` and :meth:`add_model` assign new arrays (an update also writes into the
        per-cluster sums in place, but always assigns new global means and a new training
        summary with them), and :meth:`set_params` changes a setting."""
        params = tuple(getattr(self, name) for name in _param_names(type(self)))
        state = tuple(getattr(self, name, None) for name in _ROUTING_STATE)
        cached = getattr(self, "_routing", None)
        if (
            cached is not None
            and cached.params == params
            and all(a is b for a, b in zip(cached.state, state, strict=True))
        ):
            return cached
        self._validate_params()
        centers = self.cluster_centers_
        coef = getattr(self, "classifier_coef_", None)
        fresh = _RoutingArrays(
            params=params,
            state=state,
            alpha=check_alpha(self.alpha),
            centers_t=centers.T,
            center_norms=np.einsum("ij,ij->i", centers, centers)[None, :],
            cluster_scores=self.cluster_scores(),
            cluster_costs=self.cluster_costs(),
            classifier_coef=None if coef is None else np.asarray(coef, dtype=np.float64),
            far_threshold=self._far_threshold(),
            knn_scores=(
                None
                if self.scoring == "cluster" or getattr(self, "train_scores_", None) is None
                else np.asarray(self.train_scores_, dtype=np.float64)
            ),
        )
        self._routing = fresh
        return fresh

    def _far_threshold(self, quantile: float | None = None) -> float | None:
        """The training-distance quantile ``quantile`` (default ``far_quantile``) as a distance,
        interpolated between the stored quantiles; None when the setting is off."""
        q = self.far_quantile if quantile is None else quantile
        if q is None:
            return None
        return float(np.interp(q, _DISTANCE_QUANTILES, self.train_distances_))

    def _knn_estimate(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shrunk mean scores of each row's ``n_neighbors`` nearest training queries, and their
        evidence (the batch and the one-row path share it)."""
        assert self.train_embeddings_ is not None and self.train_scores_ is not None
        scores = self._routing_arrays().knn_scores  # cast once, not per call
        assert scores is not None
        return scoring.knn_estimate(
            X @ self.train_embeddings_.T,
            scores,
            self.n_neighbors,
            self.global_scores_,
            self.shrinkage,
        )

    def _sharpen_weights(self, w: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Distance-aware soft routing: beyond the ``sharpen_quantile`` of the training queries'
        distances to their own centroid, the softmax temperature falls linearly with the
        query's excess distance, reaching zero (the nearest cluster only) at ``1 +
        sharpen_width`` times that distance (``sharpen_width`` 0: a step). Nearer queries keep
        ``w``. The soft weights average neighbouring clusters, which helps queries like the
        training data but pulls a query of an unseen task toward unrelated clusters."""
        if self.sharpen_quantile is None or len(w) == 0:
            return w
        t = self._far_threshold(self.sharpen_quantile)
        if t is None:
            return w
        t = max(t, 1e-9)
        excess = distance / t - 1.0
        rows = np.flatnonzero(excess > 0)
        if len(rows) == 0:
            return w
        width = self.sharpen_width
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

    def estimate(
        self,
        X: np.ndarray,
        *,
        alpha: float | None = None,
        tasks: Sequence[str | None] | None = None,
    ) -> RouteEstimate:
        """Expected performance, cost and ranking of every model for a batch of embedded
        queries (rows of ``X``), as arrays: what :meth:`route_embeddings` turns into decisions.
        ``alpha`` overrides the router's trade-off for this call only. ``tasks`` are optional
        task hints, one per row: a row whose task was labelled in the training data is scored
        on that task's outcomes only (per cluster, shrunk toward the task's mean); a None or
        unknown hint changes nothing."""
        self._check_fitted()
        fixed = self._routing_arrays()  # also checks the settings
        alpha = fixed.alpha if alpha is None else check_alpha(alpha)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"expected embeddings of shape (n, {self.n_features_in_}), got {X.shape}"
            )
        sq = np.maximum(
            np.einsum("ij,ij->i", X, X)[:, None] + fixed.center_norms - 2.0 * (X @ fixed.centers_t),
            0.0,
        )  # pairwise_sq_dist(X, self.cluster_centers_) with the centroid norms computed once
        if (
            len(X) == 1
            and self._single_row_path
            and self.scoring != "knn"
            and self.sharpen_quantile is None
            and self._task_rows(tasks, 1) is None
        ):
            return self._estimate_one(X, sq[0], alpha, fixed)
        idx, w = scoring.softmax_weights(
            sq,
            self.n_nearest,
            self.softmax_temperature,
            relative=self.temperature_mode == "relative",
        )
        nearest = idx[:, 0]
        distance = np.sqrt(sq[np.arange(len(X)), nearest])
        w = self._sharpen_weights(w, distance)

        cs = fixed.cluster_scores
        perf = np.einsum("np,npm->nm", w, cs[idx])
        evidence = np.einsum("np,npm->nm", w, self.score_counts_[idx])
        cc = fixed.cluster_costs
        cost = None if cc is None else np.einsum("np,npm->nm", w, cc[idx])
        hinted = self._task_rows(tasks, len(X))
        if hinted is not None:
            assert self.task_score_sums_ is not None and self.task_score_counts_ is not None
            ts = scoring.task_cluster_scores(
                self.task_score_sums_, self.task_score_counts_, self.global_scores_, self.shrinkage
            )
            rows = np.flatnonzero(hinted >= 0)
            t = hinted[rows]
            perf[rows] = np.einsum("np,npm->nm", w[rows], ts[t[:, None], idx[rows]])
            evidence[rows] = np.einsum(
                "np,npm->nm", w[rows], self.task_score_counts_[t[:, None], idx[rows]]
            )

        if self.scoring in ("knn", "hybrid"):
            if self.train_embeddings_ is None or self.train_scores_ is None:
                raise ConfigError(
                    f"scoring {self.scoring!r} needs the training embeddings, which a router "
                    "fitted with scoring 'cluster' does not keep: fit again"
                )
            kperf, kcount = self._knn_estimate(X)
            if self.scoring == "knn":
                perf, evidence = kperf, kcount
            else:
                perf = self.knn_weight * kperf + (1 - self.knn_weight) * perf
        perf, share, signal = self._blend_classifier(X, perf, evidence, fixed.classifier_coef)

        fallback: list[str | None] = [None] * len(X)
        thin = self.cluster_sizes_[nearest] < self.min_cluster_size
        far_t = fixed.far_threshold
        far = distance > far_t if far_t is not None else np.zeros(len(X), dtype=bool)
        use_global = thin | far
        if use_global.any():
            perf = np.where(use_global[:, None], self.global_scores_[None, :], perf)
            if cost is not None and self.global_costs_ is not None:
                cost = np.where(use_global[:, None], self.global_costs_[None, :], cost)
            for i in np.flatnonzero(use_global):
                c = int(nearest[i])
                if far[i]:
                    fallback[i] = (
                        f"query is far from every cluster (distance {distance[i]:.3f} > "
                        f"{far_t:.3f}): global ranking used"
                    )
                else:
                    fallback[i] = (
                        f"cluster {c} has {int(self.cluster_sizes_[c])} training queries "
                        f"(< {self.min_cluster_size}): global ranking used"
                    )
        rank_score = scoring.tradeoff(perf, cost, alpha)
        # order: ranking score, then expected performance, then global score, then lower cost
        keys: list[np.ndarray] = []
        if cost is not None:
            keys.append(cost)
        keys += [-np.broadcast_to(self.global_scores_, perf.shape), -perf, -rank_score]
        order = np.lexsort(keys, axis=-1) if len(X) else np.zeros((0, len(self.models_)), int)
        return RouteEstimate(
            performance=perf,
            cost=cost,
            evidence=evidence,
            nearest=nearest,
            distance=distance,
            clusters=idx,
            weights=w,
            fallback=tuple(fallback),
            score=rank_score,
            order=order,
            classifier_share=share,
            signal=tuple(None if f else g for f, g in zip(fallback, signal, strict=True)),
        )

    def _estimate_one(
        self, X: np.ndarray, sq: np.ndarray, alpha: float, fixed: _RoutingArrays
    ) -> RouteEstimate:
        """:meth:`estimate` for one embedded query (``X`` of shape (1, d), ``sq`` its squared
        distances to the centroids) without task hints or kNN scoring: the same arithmetic on
        1-d rows, which for one query costs a fraction of the batch path's array bookkeeping
        (``tests/test_route_fast.py`` checks that both give identical decisions)."""
        if self.temperature_mode == "relative":
            idx2, w2 = scoring.softmax_weights(
                sq[None], self.n_nearest, self.softmax_temperature, relative=True
            )
            idx, w = idx2[0], w2[0]
        else:  # scoring.softmax_weights on one row
            idx = np.argsort(sq)[: min(self.n_nearest, len(sq))]
            d = np.sqrt(sq[idx].astype(np.float64))
            w = np.exp(-(d - d[0]) / max(self.softmax_temperature, 1e-9))
            w = w / w.sum()
        nearest = int(idx[0])
        distance = np.sqrt(sq[nearest])

        perf = np.einsum("p,pm->m", w, fixed.cluster_scores[idx])
        evidence = np.einsum("p,pm->m", w, self.score_counts_[idx])
        cc = fixed.cluster_costs
        cost = None if cc is None else np.einsum("p,pm->m", w, cc[idx])
        if self.scoring == "hybrid":
            kperf, _ = self._knn_estimate(X)
            perf = self.knn_weight * kperf[0] + (1 - self.knn_weight) * perf
        blended, shares, signals = self._blend_classifier(
            X, perf[None], evidence[None], fixed.classifier_coef
        )
        perf = blended[0]

        fallback = None
        far_t = fixed.far_threshold
        if far_t is not None and distance > far_t:
            fallback = (
                f"query is far from every cluster (distance {distance:.3f} > "
                f"{far_t:.3f}): global ranking used"
            )
        elif self.cluster_sizes_[nearest] < self.min_cluster_size:
            fallback = (
                f"cluster {nearest} has {int(self.cluster_sizes_[nearest])} training queries "
                f"(< {self.min_cluster_size}): global ranking used"
            )
        if fallback is not None:
            perf = self.global_scores_.astype(np.float64)
            if cost is not None and self.global_costs_ is not None:
                cost = self.global_costs_.astype(np.float64)
        rank_score = scoring.tradeoff(perf[None], None if cost is None else cost[None], alpha)[0]
        keys = [-self.global_scores_, -perf, -rank_score]
        order = np.lexsort(keys if cost is None else [cost, *keys])
        return RouteEstimate(
            performance=perf[None],
            cost=None if cost is None else cost[None],
            evidence=evidence[None],
            nearest=idx[:1],
            distance=distance[None],
            clusters=idx[None],
            weights=w[None],
            fallback=(fallback,),
            score=rank_score[None],
            order=order[None],
            classifier_share=shares,
            signal=(None if fallback else signals[0],),
        )

    def _task_rows(self, tasks: Sequence[str | None] | None, n: int) -> np.ndarray | None:
        """Per row, the index of its task hint in ``tasks_`` (-1: none or unknown); None when
        no row has a usable hint."""
        if tasks is None:
            return None
        if len(tasks) != n:
            raise ConfigError(f"{len(tasks)} task hints for {n} queries")
        return scoring.task_rows(getattr(self, "tasks_", None), tasks)

    def _blend_classifier(
        self,
        X: np.ndarray,
        perf: np.ndarray,
        evidence: np.ndarray,
        coef: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
        """The hybrid estimate: ``perf`` blended with the per-model success classifiers, which
        weigh more where the local evidence is thin (see :func:`scoring.evidence_share`).
        Returns the blend, each query's classifier share (None: no classifier) and which signal
        carried each choice. ``coef``: the classifier coefficients already in float64."""
        if self.classifier_weight <= 0:
            return perf, None, [None] * len(X)
        if self.classifier_coef_ is None or self.classifier_intercept_ is None:
            raise ConfigError(
                "classifier_weight > 0 needs the success classifiers, which a router fitted "
                "with classifier_weight 0 does not have: fit again"
            )
        probs = success_probabilities(
            X, self.classifier_coef_ if coef is None else coef, self.classifier_intercept_
        )
        probs = np.where(np.isnan(probs), perf, probs)  # a model added online has no classifier
        share = scoring.evidence_share(evidence, self.classifier_weight, self.classifier_evidence)
        blended = (1 - share[:, None]) * perf + share[:, None] * probs
        signal: list[str | None] = list(scoring.carried_by(perf, probs, blended))
        return blended, share, signal

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Index (into ``models_``) of the best model for each embedded query."""
        return self.estimate(X).best

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        """Expected score of every model for each embedded query, shape (n, M)."""
        return self.estimate(X).performance

    # ------------------------------------------------------------------ routing

    def route_embeddings(
        self,
        X: np.ndarray,
        queries: Sequence[str | None] | None = None,
        *,
        alpha: float | None = None,
        tasks: Sequence[str | None] | None = None,
    ) -> list[RouteDecision]:
        """Decisions for already-embedded queries. ``alpha`` overrides the router's trade-off
        for this call only; ``tasks`` are optional task hints (see :meth:`estimate`)."""
        est = self.estimate(X, alpha=alpha, tasks=tasks)
        picks = self._exploration_picks(est, alpha).tolist()
        hinted = self._task_rows(tasks, len(est.order))
        method = (
            self.scoring if self.n_nearest == 1 or self.scoring != "cluster" else "soft-cluster"
        )
        # Python numbers row by row (``tolist`` gives the same floats as ``float()`` of each
        # NumPy scalar, at a fraction of the cost of indexing the arrays cell by cell)
        models = self.models_
        top_k = min(self.top_k, len(models))
        scores, perfs, evidences = (
            est.score.tolist(),
            est.performance.tolist(),
            est.evidence.tolist(),
        )
        costs = None if est.cost is None else est.cost.tolist()
        nearest, distance = est.nearest.tolist(), est.distance.tolist()
        clusters, weights = est.clusters.tolist(), est.weights.tolist()
        shares = None if est.classifier_share is None else est.classifier_share.tolist()
        out = []
        for i, order in enumerate(est.order.tolist()):
            score, perf, evidence = scores[i], perfs[i], evidences[i]
            cost = None if costs is None else costs[i]
            ranking = tuple(
                ModelScore(
                    model=models[j],
                    score=score[j],
                    performance=perf[j],
                    cost=None if cost is None else cost[j],
                    evidence=evidence[j],
                )
                for j in (order if picks[i] < 0 else online.pick_first(np.array(order), picks[i]))
            )
            out.append(
                RouteDecision(
                    query=None if queries is None else queries[i],
                    ranking=ranking,
                    cluster=nearest[i],
                    distance=distance[i],
                    top_k=top_k,
                    cluster_weights=dict(zip(clusters[i], weights[i], strict=True)),
                    fallback=est.fallback[i],
                    method=method if est.fallback[i] is None else "global",
                    explored=picks[i] >= 0,
                    signal=est.signal[i],
                    task=(
                        None
                        if hinted is None or hinted[i] < 0 or self.tasks_ is None
                        else self.tasks_[int(hinted[i])]
                    ),
                    classifier_share=None if shares is None else shares[i],
                )
            )
        return out

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
        return online.pick_probabilities(
            est.performance,
            est.evidence,
            est.cost,
            alpha,
            est.best,
            share=self.explore,
            pseudo_count=self._explore_pseudo_counts(),
            rng=np.random.default_rng(self.random_state),
            draws=draws,
            rule=self.explore_rule,
        )

    def _explore_pseudo_counts(self) -> np.ndarray:
        return np.where(online.added_mask(self), online.EXPLORE_PSEUDO_COUNT, self.shrinkage)

    def _exploration_picks(self, est: RouteEstimate, alpha: float | None) -> np.ndarray:
        """Per query, the model index exploration picks, or -1 (see :func:`online.explore_picks`)."""
        if self.explore <= 0.0:
            return np.full(len(est.order), -1, dtype=np.int64)
        if self._rng is None:
            self._rng = np.random.default_rng(self.random_state)
        alpha = check_alpha(self.alpha if alpha is None else alpha)
        return online.explore_picks(
            est.performance,
            est.evidence,
            est.cost,
            alpha,
            est.best,
            share=self.explore,
            pseudo_count=self._explore_pseudo_counts(),
            rng=self._rng,
            rule=self.explore_rule,
        )

    def route_batch(
        self,
        queries: Sequence[str],
        *,
        alpha: float | None = None,
        tasks: Sequence[str | None] | None = None,
    ) -> list[RouteDecision]:
        """Route many queries (embedded in one batch); ``tasks``: optional task hints."""
        self._check_fitted()
        queries = list(queries)
        _check_queries(queries)
        return self.route_embeddings(self.embed(queries), queries, alpha=alpha, tasks=tasks)

    def route(
        self, query: str, *, alpha: float | None = None, task: str | None = None
    ) -> RouteDecision:
        """Route one query: ranked models with their cluster scores, cluster, distance, cost.
        ``task``: an optional task hint (see :meth:`estimate`)."""
        return self.route_batch([query], alpha=alpha, tasks=None if task is None else [task])[0]

    async def aroute_batch(
        self,
        queries: Sequence[str],
        *,
        alpha: float | None = None,
        tasks: Sequence[str | None] | None = None,
    ) -> list[RouteDecision]:
        """Async twin of :meth:`route_batch` (the embedder's async path, if it has one)."""
        self._check_fitted()
        queries = list(queries)
        _check_queries(queries)
        X = await aembed(self.get_embedder(), queries)
        self._check_dim(X)
        return self.route_embeddings(X, queries, alpha=alpha, tasks=tasks)

    async def aroute(
        self, query: str, *, alpha: float | None = None, task: str | None = None
    ) -> RouteDecision:
        """Async twin of :meth:`route`."""
        tasks = None if task is None else [task]
        return (await self.aroute_batch([query], alpha=alpha, tasks=tasks))[0]

    # ------------------------------------------------------------------ persistence

    def _config(self) -> dict[str, Any]:
        """The JSON-able part of the state (see :meth:`state`)."""
        self._check_fitted()
        params = self.get_params(deep=False)
        # in the order of ROUTER_PARAMS (that of __init__); the embedder is recorded below
        params = {name: params[name] for name in ROUTER_PARAMS if name != "embedder"}
        for name, default in {
            **online.PARAM_DEFAULTS,
            **_QUIET_DEFAULTS,
        }.items():  # recorded only when set, so that
            if params[name] == default:  # older versions still read the artifact
                del params[name]
        tasks: list[str] | None = getattr(self, "tasks_", None)
        return {
            "models": list(self.models_),
            "n_clusters_fitted": len(self.cluster_centers_),
            "embedder": {"name": self.embedder_name_, "dimension": int(self.n_features_in_)},
            "params": _jsonable(params),
            "training_summary": _jsonable(self.training_summary_),
            **({"tasks": list(tasks)} if tasks else {}),
        }

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything a fitted router needs to route again, for saving: a JSON-able config
        (settings, model names, embedder name and dimension, training summary) and named arrays
        (centroids, per-cluster sums and counts, ...). :meth:`from_state` restores it."""
        config = self._config()
        arrays: dict[str, np.ndarray] = {}
        for name in _STATE_ARRAYS + _OPTIONAL_STATE_ARRAYS:
            value = getattr(self, name + "_", None)
            if value is not None:
                arrays[name] = np.asarray(value, dtype=_STATE_DTYPES.get(name, value.dtype))
        return config, arrays

    @classmethod
    def from_state(
        cls,
        config: dict[str, Any],
        arrays: dict[str, np.ndarray],
        *,
        embedder: Embedder | str | None = None,
    ) -> Router:
        """A fitted router from :meth:`state`'s config and arrays. ``embedder`` overrides the
        recorded one (same dimension required, else :class:`~avengers.EmbedderMismatchError`);
        a config or arrays that do not fit together raise :class:`~avengers.ArtifactError`."""
        try:
            params = dict(config["params"])
            models = [str(m) for m in config["models"]]
            emb_name = str(config["embedder"]["name"])
            dim = int(config["embedder"]["dimension"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"config: missing or bad field {e}") from None
        params.pop("embedder", None)
        # a state saved before the hybrid estimate existed routes as it did then
        params.setdefault("classifier_weight", 0.0)
        unknown = sorted(set(params) - set(ROUTER_PARAMS))
        if unknown:
            raise ArtifactError(f"config: unknown settings {unknown} (from a newer version?)")
        missing = [name for name in _STATE_ARRAYS if name not in arrays]
        if missing:
            raise ArtifactError(f"missing arrays {missing}")
        router = cls(**params, embedder=embedder if embedder is not None else emb_name)
        try:
            router._validate_params()
        except ConfigError as e:
            raise ArtifactError(f"config: {e}") from None
        router.models_ = models
        router.n_features_in_ = dim
        router.embedder_name_ = emb_name
        for name in _STATE_ARRAYS + _OPTIONAL_STATE_ARRAYS:
            value = arrays.get(name)
            if value is not None and name in _STATE_DTYPES:
                value = value.astype(np.float32)
            setattr(router, name + "_", value)
        router.labels_ = np.zeros(0, dtype=np.int64)  # not kept: routing does not need them
        router.training_summary_ = config.get("training_summary") or {}
        router.tasks_ = [str(t) for t in config["tasks"]] if config.get("tasks") else None
        router._check_state_shapes()
        if embedder is not None:
            emb = resolve_embedder(embedder)
            if emb.dimension != dim:
                raise EmbedderMismatchError(
                    f"embedder {emb.name!r} gives {emb.dimension}-d vectors but the router was "
                    f"trained with {emb_name!r} ({dim}-d)"
                )
            router._embedder = emb
        return router

    def _check_state_shapes(self) -> None:
        k, d = self.cluster_centers_.shape
        m = len(self.models_)
        n = None if self.train_scores_ is None else len(self.train_scores_)
        expect = {
            "cluster_sizes": (k,),
            "score_sums": (k, m),
            "score_counts": (k, m),
            "global_scores": (m,),
            "train_distances": (len(_DISTANCE_QUANTILES),),
            "cost_sums": (k, m),
            "cost_counts": (k, m),
            "global_costs": (m,),
            "train_embeddings": (n, d),
            "train_scores": (n, m),
            "classifier_coef": (m, d),
            "classifier_intercept": (m,),
            "classifier_covariance": (m, d + 1, d + 1),
            "task_score_sums": (len(self.tasks_ or ()), k, m),
            "task_score_counts": (len(self.tasks_ or ()), k, m),
        }
        for name, shape in expect.items():
            value = getattr(self, name + "_")
            if value is not None and value.shape != shape:
                raise ArtifactError(
                    f"array {name} has shape {value.shape}, expected {shape} (corrupted artifact?)"
                )
        if d != self.n_features_in_:
            raise ArtifactError(f"centroids are {d}-d but config says {self.n_features_in_}")
        if self.scoring in ("knn", "hybrid") and self.train_embeddings_ is None:
            raise ArtifactError(f"scoring {self.scoring!r} needs the arrays train_embeddings")
        if self.classifier_weight > 0 and self.classifier_coef_ is None:
            raise ArtifactError("classifier_weight > 0 needs the arrays classifier_coef")

    def summary(self) -> dict[str, Any]:
        """A plain, JSON-able description of the fitted router (what its model card shows): the
        config of :meth:`state` plus one row per cluster with its size and each model's expected
        score there."""
        config = self._config()
        scores = self.cluster_scores()
        config["clusters"] = [
            {
                "cluster": c,
                "size": int(size),
                "scores": {m: float(s) for m, s in zip(self.models_, scores[c], strict=True)},
            }
            for c, size in enumerate(self.cluster_sizes_)
        ]
        return config

    def save_pretrained(self, path: str | Path, *, model_card: bool = True) -> Path:
        """Write ``config.json``, ``router.safetensors`` and a model card to ``path``."""
        config, arrays = self.state()
        card = make_model_card(self.summary()) if model_card else None
        return write_artifact(Path(path), config, arrays, card=card)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | Path,
        *,
        embedder: Embedder | str | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | None = None,
    ) -> Router:
        """Load a router from a local folder or a Hugging Face Hub repo id (honours
        ``HF_HUB_OFFLINE``). ``embedder`` overrides the recorded one (same dimension required)."""
        config, arrays, folder = read_artifact(
            path_or_repo_id, revision=revision, cache_dir=cache_dir, token=token
        )
        try:
            return cls.from_state(config, arrays, embedder=embedder)
        except ArtifactError as e:  # EmbedderMismatchError included: same type, with the folder
            raise type(e)(f"{folder}: {e}") from None

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str = "Upload Avengers router",
    ) -> str:
        """Upload the artifact to the Hugging Face Hub; returns the commit URL."""
        config, arrays = self.state()
        return push_artifact(
            repo_id,
            config,
            arrays,
            card=make_model_card(self.summary()),
            private=private,
            token=token,
            commit_message=commit_message,
        )


# The fitted state :meth:`Router._routing_arrays` derives its arrays from (compared by identity).
_ROUTING_STATE = (
    "cluster_centers_",
    "score_sums_",
    "score_counts_",
    "global_scores_",
    "cost_sums_",
    "cost_counts_",
    "global_costs_",
    "classifier_coef_",
    "train_distances_",
    "training_summary_",
    "models_",
    "train_scores_",
)


@dataclass(frozen=True, eq=False)
class _RoutingArrays:
    """Arrays routing derives from a fitted router's state and settings (see
    :meth:`Router._routing_arrays`), with the settings and state objects they came from."""

    params: tuple[Any, ...]
    state: tuple[Any, ...]
    alpha: float
    centers_t: np.ndarray
    center_norms: np.ndarray
    cluster_scores: np.ndarray
    cluster_costs: np.ndarray | None
    classifier_coef: np.ndarray | None
    far_threshold: float | None
    knn_scores: np.ndarray | None  # the training outcomes in float64, for knn/hybrid scoring


_PARAM_NAMES: dict[type, tuple[str, ...]] = {}


def _param_names(cls: type[Router]) -> tuple[str, ...]:
    names = _PARAM_NAMES.get(cls)
    if names is None:
        names = _PARAM_NAMES[cls] = tuple(BaseEstimator._get_param_names.__func__(cls))
    return names


def _jsonable(x: Any) -> Any:
    """``x`` with NumPy scalars as Python numbers and NaN as None, so JSON can hold it."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _check_queries(queries: Sequence[Any]) -> None:
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise ConfigError(f"query {i} must be a string, got {type(q).__name__}")
