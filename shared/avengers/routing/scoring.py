"""Turning outcome tables into per-cluster model estimates, and estimates into rankings.

All functions are pure NumPy over arrays shaped (rows, models); NaN marks an unknown outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# nearest distance below which a relative temperature is read against this floor instead (a
# query that coincides with a centroid would otherwise get a zero temperature)
_MIN_RELATIVE_DISTANCE = 0.05


def group_sums(
    labels: np.ndarray, values: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per group and column: sum of known values and how many were known."""
    known = ~np.isnan(values)
    filled = np.where(known, values, 0.0)
    sums = np.zeros((n_groups, values.shape[1]))
    counts = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, labels, filled)
    np.add.at(counts, labels, known.astype(np.float64))
    return sums, counts


def column_means(values: np.ndarray, default: float = 0.0) -> np.ndarray:
    """NaN-aware column means; a column with nothing known gets ``default``."""
    known = ~np.isnan(values)
    n = known.sum(axis=0)
    s = np.where(known, values, 0.0).sum(axis=0)
    return np.where(n > 0, s / np.maximum(n, 1), default)


def shrunk_means(
    sums: np.ndarray, counts: np.ndarray, prior: np.ndarray, strength: float
) -> np.ndarray:
    """Posterior-mean style estimate: ``(sum + strength * prior) / (count + strength)``. With
    strength 0 this is the plain cluster mean (the paper); an empty cell then takes the prior."""
    prior = np.broadcast_to(prior, sums.shape)
    denom = counts + strength
    with np.errstate(invalid="ignore", divide="ignore"):
        est = (sums + strength * prior) / denom
    return np.where(denom > 0, est, prior)


def minmax(values: np.ndarray) -> np.ndarray:
    """Min-max normalize each row across models to [0, 1]. A row where every model ties has no
    preference to express, so it maps to all ones."""
    lo = values.min(axis=1, keepdims=True)
    hi = values.max(axis=1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (values - lo) / span
    return np.where(span > 1e-12, out, 1.0)


def tradeoff(perf: np.ndarray, cost: np.ndarray | None, alpha: float) -> np.ndarray:
    """The Avengers-Pro ranking score ``alpha * perf_n + (1 - alpha) * (1 - cost_n)``, where
    ``perf_n`` and ``cost_n`` are min-max normalized across models for each query. With no costs,
    or alpha = 1, it orders models exactly as performance does."""
    p = minmax(perf)
    if cost is None or alpha >= 1.0:
        return p
    c = minmax(cost)
    c = np.where(np.ptp(cost, axis=1, keepdims=True) > 1e-12, c, 0.0)  # tied costs: no penalty
    return alpha * p + (1.0 - alpha) * (1.0 - c)


def softmax_weights(
    sq_dist: np.ndarray, p: int, temperature: float, *, relative: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``p`` nearest centroids and their weights, a softmax of negative distance
    divided by ``temperature``. With ``relative``, the temperature is a share of each query's
    nearest distance (the softmax then reads distance ratios, ``d / d_nearest``), so the weights
    do not depend on the scale of the embedding space. Returns (idx (n, p), weights (n, p))."""
    p = min(p, sq_dist.shape[1])
    idx = np.argsort(sq_dist, axis=1)[:, :p]
    rows = np.arange(len(sq_dist))[:, None]  # (indexing beats take_along_axis on few rows)
    d = np.sqrt(sq_dist[rows, idx].astype(np.float64))
    t = max(temperature, 1e-9)
    scale = np.maximum(d[:, :1], _MIN_RELATIVE_DISTANCE) * t if relative else t
    z = -(d - d[:, :1]) / scale
    w = np.exp(z)
    return idx, w / w.sum(axis=1, keepdims=True)


def knn_estimate(
    sims: np.ndarray, train_scores: np.ndarray, k: int, prior: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per query, each model's mean score over the ``k`` most similar training queries (shrunk
    toward ``prior`` with ``strength``). ``sims`` is (n_queries, n_train) cosine similarity."""
    k = min(k, sims.shape[1])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    vals = train_scores[idx]  # (n, k, m)
    known = ~np.isnan(vals)
    sums = np.where(known, vals, 0.0).sum(axis=1)
    counts = known.sum(axis=1).astype(np.float64)
    return shrunk_means(sums, counts, prior[None, :], strength), counts


def evidence_share(evidence: np.ndarray, weight: float, pseudo_count: float | None) -> np.ndarray:
    """Per query, the weight a second estimate gets beside the cluster estimate: ``weight`` times
    ``pseudo_count / (pseudo_count + evidence)``, so it carries more where the cluster has few
    training outcomes for the query; with ``pseudo_count`` None it is ``weight`` everywhere.
    ``evidence`` is (n, m) outcome counts; their row mean is the local evidence. Returns (n,)."""
    n = len(evidence)
    if weight <= 0.0:
        return np.zeros(n)
    if pseudo_count is None:
        return np.full(n, float(weight))
    local = evidence.mean(axis=1) if evidence.size else np.zeros(n)
    return float(weight) * pseudo_count / (pseudo_count + local)


def carried_by(primary: np.ndarray, secondary: np.ndarray, blended: np.ndarray) -> list[str]:
    """For each row, which estimate the blended choice agrees with: ``"both"`` (the two estimates
    pick the same model), ``"cluster"`` or ``"classifier"`` (only that one picks it), or
    ``"blend"`` (neither alone would)."""
    b = blended.argmax(axis=1)
    p = (primary.argmax(axis=1) == b).tolist()
    s = (secondary.argmax(axis=1) == b).tolist()
    return [
        ("both" if si else "cluster") if pi else ("classifier" if si else "blend")
        for pi, si in zip(p, s, strict=True)
    ]


def task_group_sums(
    tasks: list[str], labels: np.ndarray, values: np.ndarray, n_groups: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per task label (empty labels skipped), :func:`group_sums` of the rows with that label.
    Returns the task names (sorted) and sums and counts shaped (tasks, groups, columns)."""
    names = sorted({t for t in tasks if t})
    task_arr = np.array(tasks, dtype=object)
    sums = np.zeros((len(names), n_groups, values.shape[1]))
    counts = np.zeros_like(sums)
    for i, name in enumerate(names):
        rows = task_arr == name
        sums[i], counts[i] = group_sums(labels[rows], values[rows], n_groups)
    return names, sums, counts


def task_rows(known: Sequence[str] | None, tasks: Sequence[str | None]) -> np.ndarray | None:
    """Per row, the index of its task hint in ``known`` (the fitted task names; -1: no hint or
    an unknown one); None when no row has a usable hint."""
    if not known:
        return None
    pos = {t: i for i, t in enumerate(known)}
    out = np.array([pos.get(t, -1) if t is not None else -1 for t in tasks], dtype=np.int64)
    return out if (out >= 0).any() else None


def task_means(sums: np.ndarray, counts: np.ndarray, global_scores: np.ndarray) -> np.ndarray:
    """(tasks, columns) each column's mean over a task's rows, from :func:`task_group_sums` (a
    task without outcomes for a column: the global mean)."""
    return shrunk_means(sums.sum(axis=1), counts.sum(axis=1), global_scores[None, :], 0.0)


def task_cluster_scores(
    sums: np.ndarray, counts: np.ndarray, global_scores: np.ndarray, strength: float
) -> np.ndarray:
    """(tasks, groups, columns) estimates from :func:`task_group_sums`: each cell shrunk toward
    its task's mean score with ``strength`` (a task without outcomes for a column: the global
    mean). With strength 0 an empty cell takes the task's mean."""
    means = task_means(sums, counts, global_scores)
    return shrunk_means(sums, counts, means[:, None, :], strength)
