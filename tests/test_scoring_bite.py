"""Every function of :mod:`avengers.routing.scoring` on small arrays whose results are worked out by hand,
so that a changed operator, constant or axis shows (``benchmarks/mutation.py scoring``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from avengers.routing import scoring

nan = np.nan


def test_group_sums_counts_known_values_per_group() -> None:
    labels = np.array([0, 2, 0, 2, 2])
    values = np.array([[1.0, nan], [0.5, 0.25], [0.25, 1.0], [nan, nan], [1.0, 0.5]])
    sums, counts = scoring.group_sums(labels, values, 3)
    np.testing.assert_array_equal(sums, [[1.25, 1.0], [0.0, 0.0], [1.5, 0.75]])
    np.testing.assert_array_equal(counts, [[2, 1], [0, 0], [2, 2]])
    assert sums.shape == (3, 2) and counts.dtype == np.float64


def test_column_means_skip_unknown_values() -> None:
    values = np.array([[1.0, nan, nan], [0.5, 0.25, nan], [0.0, 0.75, nan]])
    np.testing.assert_array_equal(scoring.column_means(values), [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(scoring.column_means(values, default=0.3), [0.5, 0.5, 0.3])


def test_minmax_rows() -> None:
    v = np.array([[2.0, 4.0, 3.0], [1.0, 1.0, 1.0], [0.0, 1e-13, 0.0]])
    out = scoring.minmax(v)
    np.testing.assert_allclose(out[0], [0.0, 1.0, 0.5], atol=1e-15)
    np.testing.assert_array_equal(out[1], [1.0, 1.0, 1.0])  # a tie: no preference
    np.testing.assert_array_equal(out[2], [1.0, 1.0, 1.0])  # a span under 1e-12 is a tie
    small = scoring.minmax(np.array([[0.0, 2e-12]]))
    np.testing.assert_allclose(small, [[0.0, 1.0]])


def test_tradeoff_weighs_performance_against_cost() -> None:
    perf = np.array([[0.2, 0.6, 1.0]])
    cost = np.array([[1.0, 3.0, 5.0]])
    np.testing.assert_allclose(scoring.tradeoff(perf, None, 0.3), [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(scoring.tradeoff(perf, cost, 1.0), [[0.0, 0.5, 1.0]])
    # 0.25 * perf_n + 0.75 * (1 - cost_n)
    np.testing.assert_allclose(
        scoring.tradeoff(perf, cost, 0.25), [[0.75, 0.125 + 0.375, 0.25]], atol=1e-15
    )
    np.testing.assert_allclose(scoring.tradeoff(perf, cost, 0.0), [[1.0, 0.5, 0.0]], atol=1e-15)
    # tied costs: no cost penalty for anyone (1 - cost_n is 1 everywhere)
    tied = np.array([[2.0, 2.0, 2.0]])
    np.testing.assert_allclose(scoring.tradeoff(perf, tied, 0.5), [[0.5, 0.75, 1.0]], atol=1e-15)


def test_softmax_weights_absolute() -> None:
    sq = np.array([[4.0, 1.0, 9.0, 0.25]])  # distances 2, 1, 3, 0.5
    idx, w = scoring.softmax_weights(sq, 3, 0.5)
    np.testing.assert_array_equal(idx, [[3, 1, 0]])
    z = np.exp(-np.array([0.0, 0.5, 1.5]) / 0.5)
    np.testing.assert_allclose(w, [z / z.sum()], rtol=1e-12)
    idx, w = scoring.softmax_weights(sq, 10, 0.5)  # at most every centroid
    assert idx.shape == (1, 4) and w.sum() == pytest.approx(1.0)
    _, w0 = scoring.softmax_weights(sq, 2, 0.0)  # temperature 0: the nearest takes all
    np.testing.assert_allclose(w0, [[1.0, 0.0]])


def test_softmax_weights_relative() -> None:
    sq = np.array([[4.0, 16.0], [0.0001, 0.04]])  # distances (2, 4) and (0.01, 0.2)
    _, w = scoring.softmax_weights(sq, 2, 0.5, relative=True)
    z = np.exp(-np.array([0.0, 2.0]) / (2.0 * 0.5))  # scale = nearest distance * temperature
    np.testing.assert_allclose(w[0], z / z.sum(), rtol=1e-12)
    # a nearest distance under 0.05 is read as 0.05
    z = np.exp(-np.array([0.0, 0.19]) / (0.05 * 0.5))
    np.testing.assert_allclose(w[1], z / z.sum(), rtol=1e-12)


def test_knn_estimate_means_of_the_nearest() -> None:
    sims = np.array([[0.9, 0.1, 0.8, 0.5], [0.0, 1.0, 0.2, 0.3]])
    train = np.array([[1.0, 0.0], [0.0, nan], [0.5, 1.0], [0.25, 0.75]])
    prior = np.array([0.5, 0.5])
    est, counts = scoring.knn_estimate(sims, train, 2, prior, 0.0)
    # row 0: neighbours 0 and 2; row 1: neighbours 1 and 3 (model 1 known once)
    np.testing.assert_allclose(est, [[0.75, 0.5], [0.125, 0.75]])
    np.testing.assert_array_equal(counts, [[2, 2], [2, 1]])
    shrunk, _ = scoring.knn_estimate(sims, train, 2, prior, 2.0)
    np.testing.assert_allclose(shrunk, [[(1.5 + 1) / 4, (1 + 1) / 4], [(0.25 + 1) / 4, 1.75 / 3]])
    all_, counts = scoring.knn_estimate(sims, train, 9, prior, 0.0)  # k capped at the train size
    np.testing.assert_array_equal(counts, [[4, 3], [4, 3]])
    np.testing.assert_allclose(all_[0], [1.75 / 4, 1.75 / 3])


def test_evidence_share() -> None:
    ev = np.array([[0.0, 10.0], [30.0, 30.0]])
    np.testing.assert_allclose(scoring.evidence_share(ev, 0.4, 5.0), [0.4 * 5 / 10, 0.4 * 5 / 35])
    np.testing.assert_array_equal(scoring.evidence_share(ev, 0.4, None), [0.4, 0.4])
    np.testing.assert_array_equal(scoring.evidence_share(ev, 0.0, 5.0), [0.0, 0.0])
    np.testing.assert_array_equal(scoring.evidence_share(ev, -1.0, None), [0.0, 0.0])
    empty = scoring.evidence_share(np.zeros((2, 0)), 0.5, 4.0)  # no models: no evidence
    np.testing.assert_array_equal(empty, [0.5, 0.5])


def test_task_statistics() -> None:
    tasks = ["math", "", "code", "math", "code"]
    labels = np.array([0, 0, 1, 1, 1])
    values = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.5, nan], [0.25, 0.75]])
    names, sums, counts = scoring.task_group_sums(tasks, labels, values, 2)
    assert names == ["code", "math"]  # sorted; the empty label is skipped
    np.testing.assert_array_equal(sums[0], [[0.0, 0.0], [0.25, 1.75]])
    np.testing.assert_array_equal(counts[0], [[0, 0], [2, 2]])
    np.testing.assert_array_equal(sums[1], [[1.0, 0.0], [0.5, 0.0]])
    np.testing.assert_array_equal(counts[1], [[1, 1], [1, 0]])
    glob = np.array([0.6, 0.4])
    means = scoring.task_means(sums, counts, glob)
    np.testing.assert_allclose(means, [[0.125, 0.875], [0.75, 0.0]])
    est = scoring.task_cluster_scores(sums, counts, glob, 2.0)
    # code, cluster 0 is empty: the task mean; math, cluster 1, model 1 unseen: the task mean
    np.testing.assert_allclose(est[0, 0], [0.125, 0.875])
    np.testing.assert_allclose(est[0, 1], [(0.25 + 0.25) / 4, (1.75 + 1.75) / 4])
    np.testing.assert_allclose(est[1, 0], [(1.0 + 1.5) / 3, 0.0])
    np.testing.assert_allclose(est[1, 1], [(0.5 + 1.5) / 3, 0.0])
    no_task = scoring.task_means(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), glob)
    np.testing.assert_allclose(no_task, [glob])  # a task without outcomes: the global mean


def test_task_rows() -> None:
    known = ["code", "math"]
    rows = scoring.task_rows(known, ["math", None, "poetry", "code"])
    assert rows is not None and rows.tolist() == [1, -1, -1, 0]
    assert scoring.task_rows(known, [None, "poetry"]) is None
    assert scoring.task_rows(None, ["math"]) is None
    assert scoring.task_rows([], ["math"]) is None


def test_carried_by_on_ties_uses_the_first_best() -> None:
    a = np.array([[0.5, 0.5]])
    assert scoring.carried_by(a, np.array([[0.1, 0.9]]), np.array([[0.6, 0.6]])) == ["cluster"]
    assert math.isclose(float(scoring.minmax(np.array([[3.0, 1.0]]))[0, 0]), 1.0)


def test_knn_estimate_takes_exactly_the_k_most_similar() -> None:
    rng = np.random.default_rng(3)
    sims = rng.random((20, 50))
    train = rng.random((50, 3))
    prior = np.zeros(3)
    for k in (1, 2, 5, 17):
        est, counts = scoring.knn_estimate(sims, train, k, prior, 0.0)
        top = np.argsort(-sims, axis=1)[:, :k]  # brute force
        np.testing.assert_allclose(est, train[top].mean(axis=1), rtol=1e-12)
        np.testing.assert_array_equal(counts, np.full((20, 3), k))
    # many rows and a large k (370 and 212): where a partition short of k would differ
    rng = np.random.default_rng(45)
    n = int(rng.integers(3, 400))
    k = int(rng.integers(2, n))
    sims, train = rng.random((4, n)), np.random.default_rng(0).random((n, 2))
    est, _ = scoring.knn_estimate(sims, train, k, np.zeros(2), 0.0)
    top = np.argsort(-sims, axis=1)[:, :k]
    np.testing.assert_allclose(est, train[top].mean(axis=1), rtol=1e-12)


def test_edges_a_sample_missed() -> None:
    # a column with one known value: that value is its mean
    np.testing.assert_array_equal(scoring.column_means(np.array([[0.75, nan], [nan, nan]])),
                                  [0.75, 0.0])  # fmt: skip
    # a span of exactly 1e-12 is a tie (all ones), for performance and for costs
    np.testing.assert_array_equal(scoring.minmax(np.array([[0.0, 1e-12]])), [[1.0, 1.0]])
    tied = scoring.tradeoff(np.array([[1.0, 0.0]]), np.array([[0.0, 1e-12]]), 0.5)
    np.testing.assert_allclose(tied, [[1.0, 0.5]])  # no cost penalty
    # tied costs are judged per query: the second query's spread does not penalize the first's
    perf = np.array([[1.0, 0.0], [1.0, 0.0]])
    cost = np.array([[2.0, 2.0], [1.0, 3.0]])
    np.testing.assert_allclose(scoring.tradeoff(perf, cost, 0.5), [[1.0, 0.5], [1.0, 0.0]])
    # a hint of the first task alone is a usable hint
    np.testing.assert_array_equal(scoring.task_rows(["a", "b"], ["a", None]), [0, -1])
    assert scoring.task_rows(["a", "b"], ["z", None]) is None


def test_cost_spreads_under_1_still_count_and_ties_stay_quiet() -> None:
    """Costs that differ by less than 1 (0.1 against 0.5) are still a trade-off; a row where
    every value ties, and an empty cell without pseudo-observations, give their values without
    a NumPy warning (0/0 is expected there, and handled)."""
    perf, cost = np.array([[1.0, 0.0]]), np.array([[0.5, 0.1]])
    np.testing.assert_allclose(scoring.tradeoff(perf, cost, 0.25), [[0.25, 0.75]])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(scoring.minmax(np.array([[0.3, 0.3], [0.0, 2.0]])),
                                      [[1.0, 1.0], [0.0, 1.0]])  # fmt: skip
        means = scoring.shrunk_means(np.array([[0.0, 1.0]]), np.array([[0.0, 2.0]]),
                                     np.array([0.25, 0.75]), 0.0)  # fmt: skip
        np.testing.assert_array_equal(means, [[0.25, 0.5]])
