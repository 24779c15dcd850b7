"""The Avengers router: embed, cluster, score, route.

>>> from avengers import Router
>>> router = Router(n_clusters=64).fit("outcomes.jsonl")          # doctest: +SKIP
>>> router.route("What is 17 * 23?").explain()                      # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import scoring
from .clustering import ALGORITHMS, fit_centroids, pairwise_sq_dist
from .data import OutcomeData, as_outcomes
from .decision import ModelScore, RouteDecision
from .embedders import Embedder, aembed, resolve_embedder
from .exceptions import ConfigError, DataError, NotFittedError

Scoring = Literal["cluster", "knn", "hybrid"]


@dataclass
class _Estimate:
    """Vectorized routing state for a batch of embedded queries."""

    perf: np.ndarray  # (n, m) expected score
    cost: np.ndarray | None  # (n, m) expected cost
    evidence: np.ndarray  # (n, m)
    nearest: np.ndarray  # (n,) nearest cluster
    distance: np.ndarray  # (n,)
    idx: np.ndarray  # (n, p) clusters used
    weights: np.ndarray  # (n, p)
    fallback: list[str | None]
    rank_score: np.ndarray  # (n, m)
    order: np.ndarray  # (n, m) model indices best first


class Router:
    """Routes a query to the candidate model(s) that did best on similar training queries.

    Parameters follow scikit-learn conventions: set in ``__init__``, learned in :meth:`fit`, and
    fitted attributes end in ``_``. Use :meth:`paper` for the plain setting of Zhang et al. (2025).

    The defaults differ from the paper in two measured ways (see ``docs/benchmarks.md``): soft
    routing over the 5 nearest clusters, and cluster estimates shrunk toward each model's global
    mean with 10 pseudo-observations, so thin or distant evidence leans on the global ranking.
    """

    def __init__(
        self,
        n_clusters: int = 64,
        *,
        top_k: int = 1,
        alpha: float = 1.0,
        n_nearest: int = 5,
        softmax_temperature: float = 0.05,
        scoring: Scoring = "cluster",
        n_neighbors: int = 32,
        knn_weight: float = 0.5,
        shrinkage: float = 10.0,
        min_cluster_size: int = 1,
        far_quantile: float | None = None,
        clustering: str = "kmeans",
        random_state: int | None = 0,
        embedder: Embedder | str | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.top_k = top_k
        self.alpha = alpha
        self.n_nearest = n_nearest
        self.softmax_temperature = softmax_temperature
        self.scoring = scoring
        self.n_neighbors = n_neighbors
        self.knn_weight = knn_weight
        self.shrinkage = shrinkage
        self.min_cluster_size = min_cluster_size
        self.far_quantile = far_quantile
        self.clustering = clustering
        self.random_state = random_state
        self.embedder = embedder
        self._embedder: Embedder | None = None

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def paper(cls, n_clusters: int = 64, **kwargs: Any) -> Router:
        """The plain method of the paper: k-means, nearest cluster, plain cluster means, top-1."""
        return cls(n_clusters, n_nearest=1, shrinkage=0.0, scoring="cluster", **kwargs)

    def get_params(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters,
            "top_k": self.top_k,
            "alpha": self.alpha,
            "n_nearest": self.n_nearest,
            "softmax_temperature": self.softmax_temperature,
            "scoring": self.scoring,
            "n_neighbors": self.n_neighbors,
            "knn_weight": self.knn_weight,
            "shrinkage": self.shrinkage,
            "min_cluster_size": self.min_cluster_size,
            "far_quantile": self.far_quantile,
            "clustering": self.clustering,
            "random_state": self.random_state,
        }

    def set_params(self, **params: Any) -> Router:
        """Change settings. Routing-time settings (alpha, top_k, n_nearest, temperature,
        shrinkage, knn options, fallbacks) take effect without refitting."""
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ConfigError(f"unknown router setting {k!r}; valid: {', '.join(valid)}")
            setattr(self, k, v)
        self._validate_params()
        return self

    def __repr__(self) -> str:
        default = Router.__new__(Router)
        Router.__init__(default)
        changed = {k: v for k, v in self.get_params().items() if v != default.get_params()[k]}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"Router({args})"

    def _validate_params(self) -> None:
        if not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 1:
            raise ConfigError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k!r}")
        if self.n_nearest < 1:
            raise ConfigError(f"n_nearest must be >= 1, got {self.n_nearest!r}")
        if self.scoring not in ("cluster", "knn", "hybrid"):
            raise ConfigError(f"scoring must be 'cluster', 'knn' or 'hybrid', got {self.scoring!r}")
        if self.clustering not in ALGORITHMS:
            raise ConfigError(f"clustering must be one of {ALGORITHMS}, got {self.clustering!r}")
        if self.shrinkage < 0:
            raise ConfigError(f"shrinkage must be >= 0, got {self.shrinkage!r}")
        if not 0.0 <= float(self.knn_weight) <= 1.0:
            raise ConfigError(f"knn_weight must be in [0, 1], got {self.knn_weight!r}")
        if self.far_quantile is not None and not 0.0 < float(self.far_quantile) <= 1.0:
            raise ConfigError(f"far_quantile must be in (0, 1] or None, got {self.far_quantile!r}")

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
    ) -> Router:
        """Learn clusters and per-cluster model scores from outcome data. ``embeddings`` may be
        given to skip embedding (rows aligned with ``data.queries``)."""
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
        centers = fit_centroids(
            X, self.n_clusters, algorithm=self.clustering, random_state=self.random_state
        )
        labels = pairwise_sq_dist(X, centers).argmin(axis=1)
        k = len(centers)

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
        self.train_distances_ = np.quantile(d_own, [0.5, 0.9, 0.95, 0.99, 1.0]).astype(np.float64)
        if self.scoring in ("knn", "hybrid"):
            self.train_embeddings_ = X.astype(np.float32)
            self.train_scores_ = data.scores.astype(np.float32)
        self.training_summary_ = data.summary()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

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
        return scoring.shrunk_means(
            self.score_sums_, self.score_counts_, self.global_scores_[None, :], self.shrinkage
        )

    def cluster_costs(self) -> np.ndarray | None:
        self._check_fitted()
        if self.cost_sums_ is None or self.cost_counts_ is None or self.global_costs_ is None:
            return None
        return scoring.shrunk_means(
            self.cost_sums_, self.cost_counts_, self.global_costs_[None, :], 0.0
        )

    def _far_threshold(self) -> float | None:
        if self.far_quantile is None:
            return None
        qs = np.array([0.5, 0.9, 0.95, 0.99, 1.0])
        return float(np.interp(self.far_quantile, qs, self.train_distances_))

    def _estimate(self, X: np.ndarray, alpha: float | None = None) -> _Estimate:
        self._check_fitted()
        self._validate_params()
        if alpha is None:
            alpha = float(self.alpha)
        elif not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"expected embeddings of shape (n, {self.n_features_in_}), got {X.shape}"
            )
        sq = pairwise_sq_dist(X, self.cluster_centers_)
        idx, w = scoring.softmax_weights(sq, self.n_nearest, self.softmax_temperature)
        nearest = idx[:, 0]
        distance = np.sqrt(sq[np.arange(len(X)), nearest])

        cs = self.cluster_scores()
        perf = np.einsum("np,npm->nm", w, cs[idx])
        evidence = np.einsum("np,npm->nm", w, self.score_counts_[idx])
        cc = self.cluster_costs()
        cost = None if cc is None else np.einsum("np,npm->nm", w, cc[idx])

        if self.scoring in ("knn", "hybrid"):
            sims = X @ self.train_embeddings_.T
            kperf, kcount = scoring.knn_estimate(
                sims,
                self.train_scores_.astype(np.float64),
                self.n_neighbors,
                self.global_scores_,
                self.shrinkage,
            )
            if self.scoring == "knn":
                perf, evidence = kperf, kcount
            else:
                perf = self.knn_weight * kperf + (1 - self.knn_weight) * perf

        fallback: list[str | None] = [None] * len(X)
        thin = self.cluster_sizes_[nearest] < self.min_cluster_size
        far_t = self._far_threshold()
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
        rank_score = scoring.tradeoff(perf, cost, float(alpha))
        # order: ranking score, then expected performance, then global score, then lower cost
        keys: list[np.ndarray] = []
        if cost is not None:
            keys.append(cost)
        keys += [-np.broadcast_to(self.global_scores_, perf.shape), -perf, -rank_score]
        order = np.lexsort(keys, axis=-1) if len(X) else np.zeros((0, len(self.models_)), int)
        return _Estimate(
            perf, cost, evidence, nearest, distance, idx, w, fallback, rank_score, order
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Index (into ``models_``) of the best model for each embedded query."""
        return self._estimate(X).order[:, 0]

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        """Expected score of every model for each embedded query, shape (n, M)."""
        return self._estimate(X).perf

    # ------------------------------------------------------------------ routing

    def route_embeddings(
        self,
        X: np.ndarray,
        queries: Sequence[str | None] | None = None,
        *,
        alpha: float | None = None,
    ) -> list[RouteDecision]:
        """Decisions for already-embedded queries. ``alpha`` overrides the router's trade-off
        for this call only."""
        est = self._estimate(X, alpha)
        method = (
            self.scoring if self.n_nearest == 1 or self.scoring != "cluster" else "soft-cluster"
        )
        out = []
        for i in range(len(est.order)):
            ranking = tuple(
                ModelScore(
                    model=self.models_[j],
                    score=float(est.rank_score[i, j]),
                    performance=float(est.perf[i, j]),
                    cost=None if est.cost is None else float(est.cost[i, j]),
                    evidence=float(est.evidence[i, j]),
                )
                for j in est.order[i]
            )
            out.append(
                RouteDecision(
                    query=None if queries is None else queries[i],
                    ranking=ranking,
                    cluster=int(est.nearest[i]),
                    distance=float(est.distance[i]),
                    top_k=min(self.top_k, len(self.models_)),
                    cluster_weights={
                        int(c): float(w) for c, w in zip(est.idx[i], est.weights[i], strict=True)
                    },
                    fallback=est.fallback[i],
                    method=method if est.fallback[i] is None else "global",
                )
            )
        return out

    def route_batch(
        self, queries: Sequence[str], *, alpha: float | None = None
    ) -> list[RouteDecision]:
        """Route many queries (embedded in one batch)."""
        self._check_fitted()
        queries = list(queries)
        _check_queries(queries)
        return self.route_embeddings(self.embed(queries), queries, alpha=alpha)

    def route(self, query: str, *, alpha: float | None = None) -> RouteDecision:
        """Route one query: ranked models with their cluster scores, cluster, distance, cost."""
        return self.route_batch([query], alpha=alpha)[0]

    async def aroute_batch(
        self, queries: Sequence[str], *, alpha: float | None = None
    ) -> list[RouteDecision]:
        """Async twin of :meth:`route_batch` (the embedder's async path, if it has one)."""
        self._check_fitted()
        queries = list(queries)
        _check_queries(queries)
        X = await aembed(self.get_embedder(), queries)
        self._check_dim(X)
        return self.route_embeddings(X, queries, alpha=alpha)

    async def aroute(self, query: str, *, alpha: float | None = None) -> RouteDecision:
        """Async twin of :meth:`route`."""
        return (await self.aroute_batch([query], alpha=alpha))[0]

    # ------------------------------------------------------------------ persistence

    def save_pretrained(self, path: str | Path, *, model_card: bool = True) -> Path:
        """Write ``config.json``, ``router.safetensors`` and a model card to ``path``."""
        from .artifact import save_router

        return save_router(self, Path(path), model_card=model_card)

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
        from .artifact import load_router

        return load_router(
            cls,
            path_or_repo_id,
            embedder=embedder,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str = "Upload Avengers router",
    ) -> str:
        """Upload the artifact to the Hugging Face Hub; returns the commit URL."""
        from .artifact import push_router

        return push_router(
            self, repo_id, private=private, token=token, commit_message=commit_message
        )


def _check_queries(queries: Sequence[Any]) -> None:
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise ConfigError(f"query {i} must be a string, got {type(q).__name__}")
