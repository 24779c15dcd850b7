"""Clustering of query embeddings. Every algorithm ends as a set of centroids: a query belongs to
the cluster of its nearest centroid, whatever algorithm found the clusters."""

from __future__ import annotations

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
