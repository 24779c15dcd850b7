"""The per-cluster statistics (:mod:`avengers.routing.statistics`) with exact results: what an
update copies, the columns an added model brings, the cluster costs, a hint of the first task,
the added model's offset and prior at the logit's clip (``benchmarks/mutation.py statistics``).
Fast: hand-made embeddings, no embedding model."""

from __future__ import annotations

import numpy as np
import pytest
from avengers import Router
from avengers.routing.scoring import task_cluster_scores
from avengers.routing.statistics import _sigmoid, _solve_offset
from test_estimate_bite import QUERIES, TOPIC, fitted


def test_an_update_leaves_a_twin_made_from_the_same_state_alone() -> None:
    """A router made from another's ``state()`` shares its arrays; an update with costs gives
    the updated one new arrays and leaves the twin's as they were."""
    r, _ = fitted(n_nearest=1)
    config, arrays = r.state()
    twin = Router.from_state(config, arrays)
    before = {k: np.array(v) for k, v in twin.state()[1].items()}
    r.update(models=["code-model"], scores=[0.25], costs=[7.0], clusters=[2])
    for name, value in twin.state()[1].items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    after = r.state()[1]
    assert after["cost_sums"][2, 2] - before["cost_sums"][2, 2] == pytest.approx(7.0)
    assert after["cost_counts"][2, 2] - before["cost_counts"][2, 2] == 1


def test_cluster_costs_are_the_plain_means() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=5.0)  # shrinkage is for scores, never for costs
    a = r.state()[1]
    costs = r.cluster_costs()
    assert costs is not None
    np.testing.assert_allclose(costs, a["cost_sums"] / a["cost_counts"], rtol=1e-12)


def test_an_added_model_gets_empty_cost_and_task_columns() -> None:
    r, _ = fitted(n_nearest=1)
    before = r.state()[1]
    r.add_model("new-model")
    a = r.state()[1]
    for name in ("cost_sums", "cost_counts"):
        assert a[name].shape == (3, 4)
        np.testing.assert_array_equal(a[name][:, :3], before[name])
        np.testing.assert_array_equal(a[name][:, 3], 0.0)
    for name in ("task_score_sums", "task_score_counts"):
        assert a[name].shape == (3, 3, 4)
        np.testing.assert_array_equal(a[name][:, :, :3], before[name])
        np.testing.assert_array_equal(a[name][:, :, 3], 0.0)


def test_a_hint_of_the_first_task_uses_its_statistics() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=3.0)
    a = r.state()[1]
    ts = task_cluster_scores(a["task_score_sums"], a["task_score_counts"], a["global_scores"], 3.0)
    first = sorted(TOPIC)[0]
    assert r.tasks_[0] == first
    est = r.estimate(QUERIES[1:2], tasks=[first])
    c = int(est.nearest[0])
    np.testing.assert_allclose(est.performance[0], ts[0, c], atol=1e-12)
    np.testing.assert_array_equal(est.evidence[0], a["task_score_counts"][0, c])


def test_the_added_models_offset_solves_its_equation() -> None:
    base = np.array([-1.0, 0.5, 2.0])
    for counts, total, strength, mean, offset0 in [
        (np.array([4.0, 2.0, 0.0]), 5.5, 2.0, 0.3, 0.0),
        (np.array([0.5, 0.0, 0.0]), 0.1, 0.25, -0.2, 0.4),  # little evidence: under one count
    ]:
        d = _solve_offset(base, counts, total, strength, mean, offset0)
        fitted_total = float((counts * _sigmoid(base + d)).sum()) + strength * _sigmoid(mean + d)
        target = total + strength * _sigmoid(mean + offset0)
        assert fitted_total == pytest.approx(target, abs=1e-9)
        assert abs(d - offset0) > 0.1  # the evidence moved it
    # no evidence and no pseudo-counts: the starting offset
    assert _solve_offset(base, np.zeros(3), 0.0, 0.0, 0.3, 0.7) == 0.7


def test_an_added_models_prior_where_the_known_models_all_fail() -> None:
    """The known models' logits are clipped at 1e-3 as at 1 - 1e-3: a cluster where they all
    fail gives the added model a small finite prior, not 0 or NaN."""
    rows_r, _ = fitted(n_nearest=1, shrinkage=1.0)
    config, arrays = rows_r.state()
    arrays = dict(arrays)
    sums = arrays["score_sums"].copy()
    sums[0] = 0.0  # every known model fails in cluster 0
    arrays["score_sums"] = sums
    r = Router.from_state(config, arrays)
    r.add_model("new-model")
    p = r.cluster_scores()[0, 3]
    assert np.isfinite(p) and 0.0 < p < 0.05


def test_a_centroid_without_training_rows_has_size_zero() -> None:
    from test_estimate_bite import CENTERS, _rows_and_vectors

    rows, X = _rows_and_vectors()
    four = np.vstack([CENTERS, [[0.0, 0.0, 0.0, 1.0]]]).astype(np.float32)  # no row near it
    r = Router(n_clusters=4, embedder="precomputed", n_nearest=1, classifier_weight=0.0)
    r.fit(rows, embeddings=X, centroids=four)
    assert r.cluster_sizes_.tolist() == [10, 10, 10, 0]


def test_full_run_survivors_of_the_statistics() -> None:
    import warnings

    from avengers.routing import statistics as st

    # a cluster where every known model fails, unshrunk: the added model's prior is the clip,
    # 1e-3, not 0
    prior = st.cluster_prior(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
                             np.array([[4.0, 4.0, 0.0], [2.0, 2.0, 0.0]]),
                             np.array([1 / 6, 0.0, 0.5]), np.array([False, False, True]), 0.0)  # fmt: skip
    assert prior[0, 2] == pytest.approx(1e-3, abs=1e-12)
    # the offset's bisection is bracketed at +-12 logits: all successes, or all failures
    up = _solve_offset(np.array([0.0]), np.array([10.0]), 10.0, 0.0, 0.0, 0.0)
    down = _solve_offset(np.array([0.0]), np.array([10.0]), 0.0, 0.0, 0.0, 0.0)
    assert up == pytest.approx(12.0, abs=1e-9) and down == pytest.approx(-12.0, abs=1e-9)
    # accumulate: an empty batch counts nothing; under forgetting, observations whose parts
    # differ in length are refused
    sums, counts = np.ones((2, 2)), np.ones((2, 2))
    st.accumulate(sums, counts, [], [], [])
    st.accumulate(sums, counts, [], [], [], decay=0.5)
    assert sums.tolist() == [[1.0, 1.0], [1.0, 1.0]] and counts.tolist() == sums.tolist()
    with pytest.raises(ValueError):
        st.accumulate(sums, counts, [0, 1], [0, 1], [1.0], decay=0.5)
    # a model with no evidence keeps its previous mean, quietly (0/0 is expected there)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = st.global_means(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]]), np.array([0.9, 0.4]))
    assert g.tolist() == [0.5, 0.4]


def test_costs_under_forgetting_and_an_added_models_global_cost() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0, half_life=1.0)
    before = {k: np.array(v) for k, v in r.state()[1].items()}
    r.update(models=["math-model"], scores=[1.0], costs=[3.0], clusters=[0])
    a = r.state()[1]
    assert a["cost_sums"][0, 0] == pytest.approx(before["cost_sums"][0, 0] * 0.5 + 3.0)
    assert a["cost_counts"][0, 0] == pytest.approx(before["cost_counts"][0, 0] * 0.5 + 1.0)
    # the cluster cost is the plain mean of the decayed cells, not shrunk toward the global one
    est = r.estimate(QUERIES[:1])
    assert est.cost is not None and int(est.nearest[0]) == 0
    assert est.cost[0, 0] == pytest.approx(a["cost_sums"][0, 0] / a["cost_counts"][0, 0])
    # an added model without costs keeps its prior global cost through updates of the others
    r.add_model("new-model")
    prior_cost = float(r.global_costs_[3])
    r.update(models=["chef-model"], scores=[1.0], costs=[0.25], clusters=[1])
    assert r.global_costs_.dtype == np.float64 and r.global_costs_[3] == prior_cost


def test_sizes_are_counts_and_a_router_fitted_without_tasks_has_none() -> None:
    from test_estimate_bite import CENTERS, _rows_and_vectors

    r, _ = fitted(n_nearest=1)
    assert r.cluster_sizes_.dtype == np.int64 and f"{r.cluster_sizes_[0]}" == "10"
    rows, X = _rows_and_vectors()
    plain = [{k: v for k, v in row.items() if k != "task"} for row in rows]
    u = Router(n_clusters=3, embedder="precomputed", n_nearest=1, classifier_weight=0.0)
    u.fit(plain, embeddings=X, centroids=CENTERS)
    assert u.tasks_ is None and "task_score_sums" not in u.state()[1]
