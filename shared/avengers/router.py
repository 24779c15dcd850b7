"""The Avengers router: embed, cluster, score, route.

>>> from avengers import Router
>>> router = Router(n_clusters=64).fit("outcomes.jsonl")          # doctest: +SKIP
>>> router.route("What is 17 * 23?").explain()                      # doctest: +SKIP

:class:`Router` is the scikit-learn estimator users see; it composes the parts in
:mod:`avengers.routing` (per-cluster statistics, nearest-neighbour scores, success classifiers,
exploration) and runs the one estimate pipeline of :mod:`avengers.routing.estimate`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import numpy as np
from sklearn.base import BaseEstimator

from . import online
from .artifact import PretrainedMixin
from .decision import RouteDecision, RouteEstimate
from .embedding.embedders import Embedder, aembed, resolve_embedder
from .exceptions import (
    ArtifactError,
    ClusterCountWarning,
    ConfigError,
    DataError,
    EmbedderMismatchError,
    NotFittedError,
)
from .online import OnlineMixin
from .params import (
    ROUTER_PARAMS,
    ExploreRule,
    Scoring,
    TemperatureMode,
    check_alpha,
    check_params,
    check_queries,
)
from .routing import estimate as pipeline
from .routing.clustering import ClusterAlgorithm, fit_centroids
from .routing.decisions import decisions, method_name
from .routing.exploration import ExplorationPolicy
from .routing.parts import RouterParts
from .routing.persistence import QUIET_DEFAULTS, SavedConfig, router_config
from .training.calibration import CalibrationResult, calibrate
from .training.data import OutcomeData, as_outcomes

__all__ = ["RouteEstimate", "Router", "Scoring"]

T = TypeVar("T")


class _Fitted(Generic[T]):
    """A fitted attribute of the router (``score_sums_``) that one of its parts keeps (as
    ``score_sums``): reading it before ``fit`` raises AttributeError, as for any attribute."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = name.removesuffix("_")

    def _part(self, obj: object) -> Any:
        parts = vars(obj).get("_parts")
        if parts is None:
            raise AttributeError(f"{type(obj).__name__} is not fitted: no {self.field}_")
        return parts.part_of(self.field)

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _Fitted[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(self._part(obj), self.field)

    def __set__(self, obj: object, value: T) -> None:
        setattr(self._part(obj), self.field, value)


class Router(OnlineMixin, PretrainedMixin, BaseEstimator):
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

    The fitted arrays live in the router's parts (:class:`avengers.routing.parts.RouterParts`)
    and are reachable by their usual names below.
    """

    # per-cluster statistics (avengers.routing.statistics)
    cluster_centers_: _Fitted[np.ndarray] = _Fitted()
    cluster_sizes_: _Fitted[np.ndarray] = _Fitted()
    score_sums_: _Fitted[np.ndarray] = _Fitted()
    score_counts_: _Fitted[np.ndarray] = _Fitted()
    global_scores_: _Fitted[np.ndarray] = _Fitted()
    train_distances_: _Fitted[np.ndarray] = _Fitted()
    cost_sums_: _Fitted[np.ndarray | None] = _Fitted()
    cost_counts_: _Fitted[np.ndarray | None] = _Fitted()
    global_costs_: _Fitted[np.ndarray | None] = _Fitted()
    tasks_: _Fitted[list[str] | None] = _Fitted()
    task_score_sums_: _Fitted[np.ndarray | None] = _Fitted()
    task_score_counts_: _Fitted[np.ndarray | None] = _Fitted()
    # nearest-neighbour scores (avengers.routing.knn) and classifiers (routing.classifiers)
    train_embeddings_: _Fitted[np.ndarray | None] = _Fitted()
    train_scores_: _Fitted[np.ndarray | None] = _Fitted()
    classifier_coef_: _Fitted[np.ndarray | None] = _Fitted()
    classifier_intercept_: _Fitted[np.ndarray | None] = _Fitted()
    classifier_covariance_: _Fitted[np.ndarray | None] = _Fitted()

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
        self._parts: RouterParts | None = None  # the fitted parts (fit, from_state)
        self._exploration = ExplorationPolicy()  # its generator is made on first use
        self._routing: pipeline.Prepared | None = None  # see _prepared

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
        in a :class:`~avengers.embedding.embedders.BatchingEmbedder`). Vectors are still checked against the
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
        X = self._training_vectors(data, embeddings, show_progress)
        centers = (
            fit_centroids(
                X, self.n_clusters, algorithm=self.clustering, random_state=self.random_state
            )
            if centroids is None
            else np.asarray(centroids, dtype=np.float32)
        )
        k = len(centers)
        if k < self.n_clusters:
            warnings.warn(
                f"n_clusters={self.n_clusters} but the training data has only {k} distinct "
                f"queries: fitted {k} clusters (pass n_clusters<={k}, or more data)",
                ClusterCountWarning,
                stacklevel=2,
            )
        self._parts, self.labels_ = RouterParts.fit(
            X,
            centers,
            data,
            keep_rows=self.scoring in ("knn", "hybrid"),
            classifier_weight=self.classifier_weight,
            online_classifiers=self.online_classifiers,
        )
        self.models_ = list(data.models)
        self.n_features_in_ = int(X.shape[1])
        self.training_summary_ = data.summary()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _training_vectors(
        self, data: OutcomeData, embeddings: np.ndarray | None, show_progress: bool
    ) -> np.ndarray:
        """The training queries' vectors (embedded, or ``embeddings`` checked), recording the
        embedder's name."""
        if embeddings is None:
            X = (
                self.get_embedder().embed(list(data.queries))
                if not show_progress
                else self.embed(data.queries, show_progress=True)
            )
            self.embedder_name_ = self.get_embedder().name
            return X
        X = np.asarray(embeddings, dtype=np.float32)
        if X.shape[0] != len(data):
            raise DataError(f"{len(X)} embeddings for {len(data)} queries")
        self.embedder_name_ = (
            self._embedder.name
            if self._embedder is not None
            else str(self.embedder or "precomputed")
        )
        return X

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
        each fold's fit and alphas). See :mod:`avengers.training.calibration`."""
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
        return vars(self).get("_parts") is not None

    def _check_fitted(self) -> None:
        self._fitted_parts()

    def _fitted_parts(self) -> RouterParts:
        parts: RouterParts | None = vars(self).get("_parts")
        if parts is None:
            raise NotFittedError(
                "this Router is not fitted yet: call fit(...) or Router.from_pretrained(...)"
            )
        return parts

    # ------------------------------------------------------------------ estimates

    def cluster_scores(self) -> np.ndarray:
        """Per-cluster expected score of each model (K, M), after shrinkage."""
        return self._fitted_parts().statistics.cluster_scores(
            online.added_mask(self), self.shrinkage, self.new_model_prior
        )

    def cluster_costs(self) -> np.ndarray | None:
        return self._fitted_parts().statistics.cluster_costs()

    def _prepared(self) -> pipeline.Prepared:
        """What the estimate derives from the fitted state and settings alone (shrunk cluster
        scores and costs, centroid norms, thresholds, ...), worked out once and reused while
        neither changes; the settings are checked when they do. The state objects are compared
        by identity: :meth:`fit`, :meth:`update` and :meth:`add_model` assign new arrays and a
        new training summary; :meth:`set_params` changes a setting."""
        parts = self._fitted_parts()
        key = tuple(getattr(self, name) for name in _param_names(type(self)))
        state = (*parts.watched(), self.training_summary_, self.models_)
        cached = self._routing
        if cached is not None and cached.fresh(key, state):
            return cached
        self._validate_params()
        params, added = self.get_params(deep=False), online.added_mask(self)
        self._routing = pipeline.Prepared.build(params, parts, added, key, state)
        return self._routing

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
        prep = self._prepared()  # also checks the settings (and that the router is fitted)
        alpha = prep.alpha if alpha is None else check_alpha(alpha)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"expected embeddings of shape (n, {self.n_features_in_}), got {X.shape}"
            )
        parts = self._fitted_parts()
        hinted = parts.statistics.task_rows(tasks, len(X))
        return pipeline.estimate(parts, prep, X, alpha, hinted)

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
        hinted = self._fitted_parts().statistics.task_rows(tasks, len(est.order))
        names = self.tasks_ or []
        return decisions(
            est,
            self.models_,
            queries=queries,
            picks=self._exploration_picks(est, alpha).tolist(),
            top_k=self.top_k,
            method=method_name(self.scoring, self.n_nearest),
            tasks=_task_names(hinted, names, len(est.order)),
        )

    def _exploration_picks(self, est: RouteEstimate, alpha: float | None) -> np.ndarray:
        """Per query, the model index exploration picks, or -1 (see
        :class:`~avengers.routing.exploration.ExplorationPolicy`)."""
        policy = self._exploration.follow(self.explore, self.explore_rule, self.random_state)
        if policy.share <= 0.0:
            return np.full(len(est.order), -1, dtype=np.int64)
        alpha = check_alpha(self.alpha if alpha is None else alpha)
        return policy.picks(
            est, alpha, policy.pseudo_counts(online.added_mask(self), self.shrinkage)
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
        check_queries(queries)
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
        check_queries(queries)
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
        return router_config(
            self.get_params(deep=False),
            {**online.PARAM_DEFAULTS, **QUIET_DEFAULTS},
            models=self.models_,
            n_clusters=len(self.cluster_centers_),
            embedder=self.embedder_name_,
            dimension=self.n_features_in_,
            summary=self.training_summary_,
            tasks=self.tasks_,
        )

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything a fitted router needs to route again, for saving: a JSON-able config
        (settings, model names, embedder name and dimension, training summary) and named arrays
        (centroids, per-cluster sums and counts, ...). :meth:`from_state` restores it."""
        config = self._config()
        return config, self._fitted_parts().state()

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
        saved = SavedConfig.read(config)
        parts = RouterParts.from_state(arrays, saved.tasks)
        router = cls(**saved.params, embedder=embedder if embedder is not None else saved.embedder)
        try:
            router._validate_params()
        except ConfigError as e:
            raise ArtifactError(f"config: {e}") from None
        router._parts = parts
        router.models_ = saved.models
        router.n_features_in_ = saved.dimension
        router.embedder_name_ = saved.embedder
        router.labels_ = np.zeros(0, dtype=np.int64)  # not kept: routing does not need them
        router.training_summary_ = saved.summary
        parts.check_shapes(
            len(saved.models), saved.dimension, router.scoring, router.classifier_weight
        )
        if embedder is not None:
            emb = resolve_embedder(embedder)
            if emb.dimension != saved.dimension:
                raise EmbedderMismatchError(
                    f"embedder {emb.name!r} gives {emb.dimension}-d vectors but the router was "
                    f"trained with {saved.embedder!r} ({saved.dimension}-d)"
                )
            router._embedder = emb
        return router

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


_PARAM_NAMES: dict[type, tuple[str, ...]] = {}


def _param_names(cls: type[Router]) -> tuple[str, ...]:
    names = _PARAM_NAMES.get(cls)
    if names is None:
        names = _PARAM_NAMES[cls] = tuple(BaseEstimator._get_param_names.__func__(cls))
    return names


def _task_names(hinted: np.ndarray | None, names: list[str], n: int) -> list[str | None]:
    """Per row, the name of the task hint it was scored with (None: none)."""
    if hinted is None:
        return [None] * n
    return [None if t < 0 else names[t] for t in hinted.tolist()]
