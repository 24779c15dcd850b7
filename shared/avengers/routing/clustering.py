"""Clustering of query embeddings. Every algorithm ends as a set of centroids: a query belongs to
the cluster of its nearest centroid, whatever algorithm found the clusters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import numpy as np

from ..exceptions import ConfigError

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
    init_rows: int | None = None,
    random_state: int | None = 0,
) -> np.ndarray:
    """Mini-batch k-means (Sculley 2010) over ``n_rows`` rows that need not fit in memory:
    ``rows(index)`` returns the rows at the sorted positions ``index`` (for example from a file on
    disk). The centroids start from k-means++ and ten Lloyd steps on a uniform sample of
    ``init_rows`` rows (default 40 per cluster), then take ``epochs * n_rows / batch_size`` steps,
    each on a uniform random batch, so the order of the rows does not matter: every centroid moves
    to the running mean of the rows assigned to it so far. A centroid no row has reached by the
    end of an epoch restarts at a random row. ``k`` is lowered to the number of distinct rows of
    the sample when needed. Returns float32 centroids (k, d)."""
    if n_rows < 1:
        raise ConfigError("no rows to cluster")
    rng = np.random.default_rng(random_state)
    m = min(n_rows, max(int(init_rows or 40 * n_clusters), 3 * int(n_clusters)))
    sample = np.asarray(rows(np.sort(rng.choice(n_rows, size=m, replace=False))), np.float32)
    k = max(1, min(int(n_clusters), len(np.unique(sample, axis=0))))
    C = _kmeans_plus_plus(sample, k, rng)
    for _ in range(10):  # Lloyd steps on the sample
        labels = pairwise_sq_dist(sample, C).argmin(axis=1)
        sizes = np.bincount(labels, minlength=k)
        sums = _row_sums(sample, labels, k)
        C = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], C).astype(np.float32)
    counts = np.zeros(k)
    steps = max(1, int(np.ceil(epochs * n_rows / batch_size)))
    per_epoch = max(1, int(np.ceil(n_rows / batch_size)))
    for step in range(steps):
        X = np.asarray(rows(np.unique(rng.integers(0, n_rows, size=batch_size))), np.float32)
        labels = pairwise_sq_dist(X, C).argmin(axis=1)
        b = np.bincount(labels, minlength=k).astype(np.float64)
        sums = _row_sums(X, labels, k)
        hit = b > 0
        counts[hit] += b[hit]
        means = sums[hit] / b[hit, None]
        C[hit] += ((b[hit] / counts[hit])[:, None] * (means - C[hit])).astype(np.float32)
        if (step + 1) % per_epoch == 0 and (counts == 0).any():
            dead = np.flatnonzero(counts == 0)
            C[dead] = X[rng.choice(len(X), size=len(dead), replace=len(dead) > len(X))]
    return np.asarray(C, dtype=np.float32)


def _kmeans_plus_plus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centroid drawn with probability proportional to the squared
    distance to the nearest one chosen so far."""
    C = np.empty((k, X.shape[1]), dtype=np.float32)
    C[0] = X[rng.integers(len(X))]
    d = pairwise_sq_dist(X, C[:1])[:, 0].astype(np.float64)
    for j in range(1, k):
        total = d.sum()
        i = int(rng.choice(len(X), p=d / total)) if total > 0 else int(rng.integers(len(X)))
        C[j] = X[i]
        d = np.minimum(d, pairwise_sq_dist(X, C[j : j + 1])[:, 0])
    return C


def _row_sums(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per label, the sum of the rows of ``X`` with it (k, d), float64."""
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    out = np.zeros((k, X.shape[1]), dtype=np.float64)
    out[present] = np.add.reduceat(X[order].astype(np.float64), starts, axis=0)
    return out
