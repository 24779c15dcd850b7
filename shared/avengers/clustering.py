"""Clustering of query embeddings. Every algorithm ends as a set of centroids: a query belongs to
the cluster of its nearest centroid, whatever algorithm found the clusters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import numpy as np

from .exceptions import ConfigError

ClusterAlgorithm = Literal["kmeans", "minibatch", "gmm", "agglomerative"]
ALGORITHMS: tuple[str, ...] = get_args(ClusterAlgorithm)


def fit_centroids(
    X: np.ndarray,
    n_clusters: int,
    *,
    algorithm: ClusterAlgorithm = "kmeans",
    random_state: int | None = 0,
    n_init: int = 3,
) -> np.ndarray:
    """Cluster the rows of ``X`` into at most ``n_clusters`` groups and return the centroids
    (float32, shape (k, d)). ``k`` is lowered to the number of distinct rows when needed."""
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown clustering algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    n_distinct = len(np.unique(X, axis=0)) if len(X) <= 50_000 else len(X)
    k = max(1, min(int(n_clusters), n_distinct))
    X64 = np.asarray(X, dtype=np.float64)
    if algorithm == "kmeans":
        from sklearn.cluster import KMeans

        centers = (
            KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(X64).cluster_centers_
        )
    elif algorithm == "minibatch":
        from sklearn.cluster import MiniBatchKMeans

        centers = (
            MiniBatchKMeans(n_clusters=k, n_init=n_init, random_state=random_state, batch_size=1024)
            .fit(X64)
            .cluster_centers_
        )
    elif algorithm == "gmm":
        from sklearn.mixture import GaussianMixture

        centers = (
            GaussianMixture(
                n_components=k, covariance_type="diag", random_state=random_state, reg_covar=1e-4
            )
            .fit(X64)
            .means_
        )
    else:
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(X64)
        centers = np.stack([X64[labels == c].mean(axis=0) for c in range(k)])
    return np.asarray(centers, dtype=np.float32)


def pairwise_sq_dist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of X (n, d) and C (k, d)."""
    xx = np.einsum("ij,ij->i", X, X)[:, None]
    cc = np.einsum("ij,ij->i", C, C)[None, :]
    return np.maximum(xx + cc - 2.0 * (X @ C.T), 0.0)


def minibatch_centroids(
    rows: Callable[[np.ndarray], np.ndarray],
    n_rows: int,
    n_clusters: int,
    *,
    batch_size: int = 4096,
    epochs: float = 2.0,
    init_rows: int = 20_000,
    random_state: int | None = 0,
) -> np.ndarray:
    """Mini-batch k-means over ``n_rows`` rows that need not fit in memory: ``rows(index)``
    returns the rows at the sorted positions ``index`` (for example from a memory-mapped file).
    The centroids start from k-means++ on a uniform sample of ``init_rows`` rows, then take
    ``epochs * n_rows / batch_size`` steps, each on a uniform random batch, so the order of the
    rows in the file does not matter. ``k`` is lowered to the number of distinct rows of the
    sample when needed. Returns float32 centroids (k, d)."""
    from sklearn.cluster import MiniBatchKMeans

    if n_rows < 1:
        raise ConfigError("no rows to cluster")
    rng = np.random.default_rng(random_state)
    m = min(n_rows, max(int(init_rows), 3 * int(n_clusters)))
    init_idx = np.sort(rng.choice(n_rows, size=m, replace=False))
    sample = np.asarray(rows(init_idx), dtype=np.float32)
    k = max(1, min(int(n_clusters), len(np.unique(sample, axis=0))))
    km = MiniBatchKMeans(
        n_clusters=k,
        batch_size=batch_size,
        random_state=random_state,
        n_init=3,
        init_size=m,
        max_no_improvement=None,
    )
    km.partial_fit(sample)
    steps = max(1, int(np.ceil(epochs * n_rows / batch_size)))
    for _ in range(steps):
        idx = np.unique(rng.integers(0, n_rows, size=min(batch_size, n_rows)))
        km.partial_fit(np.asarray(rows(idx), dtype=np.float32))
    return np.asarray(km.cluster_centers_, dtype=np.float32)
