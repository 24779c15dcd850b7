"""``Router.estimate`` on hand-made embeddings, every figure worked out from the router's public
state (``state()``, ``cluster_scores()``) and the pure functions of :mod:`avengers.routing.scoring`:
nearest cluster and distance, soft weights (absolute and relative temperature), shrinkage,
costs and the trade-off, the global fallbacks, kNN and hybrid scoring, the success classifiers'
blend, task hints and sharpening. Each setting is checked on one row (the lean path) and on a
batch (the array path). Fast: no embedding model (``benchmarks/mutation.py router``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from avengers import Router
from avengers.exceptions import ConfigError
from avengers.routing.estimate import rank
from avengers.routing.logistic import success_probabilities
from avengers.routing.scoring import (
    evidence_share,
    knn_estimate,
    shrunk_means,
    softmax_weights,
    tradeoff,
)
from toy import toy_rows

CENTERS = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], dtype=np.float32
)
TOPIC = {"arithmetic": 0, "cooking": 1, "code": 2}
MODELS = ["math-model", "chef-model", "code-model"]


def _rows_and_vectors(with_cost: bool = True) -> tuple[list[dict[str, object]], np.ndarray]:
    rows = toy_rows(with_cost=with_cost)
    rng = np.random.default_rng(0)
    X = np.array([CENTERS[TOPIC[str(r["task"])]] for r in rows], dtype=np.float32)
    X += rng.normal(scale=0.05, size=X.shape).astype(np.float32)
    # a few training outcomes disagree with the topic's specialist, so that clusters, shrinkage
    # and the classifiers have something to weigh
    for i in (0, 11, 22):
        rows[i]["scores"] = {m: 0.5 for m in MODELS}
    return rows, X


def fitted(with_cost: bool = True, **params: Any) -> tuple[Router, np.ndarray]:
    params.setdefault("classifier_weight", 0.0)
    rows, X = _rows_and_vectors(with_cost)
    r = Router(n_clusters=3, embedder="precomputed", **params)
    return r.fit(rows, embeddings=X, centroids=CENTERS), X


class TableEmbedder:
    """An embedder that looks each toy query up in the hand-made vectors of
    :func:`_rows_and_vectors` (fast, exact: no model), recording what it was asked, so tests can
    let the router embed by itself. ``show_progress`` is set by ``Router.embed`` when asked."""

    name = "table:toy"
    dimension = 4

    def __init__(self, dtype: Any = np.float32) -> None:
        rows, X = _rows_and_vectors()
        self.vectors = {str(r["query"]): X[i].astype(dtype) for i, r in enumerate(rows)}
        self.calls: list[list[str]] = []
        self.show_progress = False

    def embed(self, texts: Any) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.vectors[t] for t in texts])


def table_fitted(**params: Any) -> tuple[Router, TableEmbedder, list[dict[str, object]]]:
    """As :func:`fitted` (costs kept), with a :class:`TableEmbedder` as the router's embedder."""
    params.setdefault("classifier_weight", 0.0)
    rows, X = _rows_and_vectors()
    emb = TableEmbedder()
    r = Router(n_clusters=3, embedder=emb, **params).fit(rows, embeddings=X, centroids=CENTERS)
    return r, emb, rows


QUERIES = np.array(
    [[0.9, 0.1, 0.0, 0.0], [0.1, 0.7, 0.3, 0.1], [0.0, 0.2, 0.8, 0.0], [0.0, 0.0, 0.0, 1.5]],
    dtype=np.float32,
)


def both_paths(r: Router, X: np.ndarray, **kw: Any) -> list[Any]:
    """The estimate of all rows at once (the batch path), after checking that each row alone
    (the one-row path) gives the same."""
    batch = r.estimate(X, **kw)
    for i in range(len(X)):
        one = r.estimate(X[i : i + 1], **kw)
        for name in ("performance", "weights", "evidence", "score", "distance"):
            np.testing.assert_allclose(
                getattr(one, name)[0], getattr(batch, name)[i], rtol=1e-6, err_msg=name
            )
        for name in ("order", "nearest", "clusters"):
            np.testing.assert_array_equal(getattr(one, name)[0], getattr(batch, name)[i])
        if batch.cost is not None:
            np.testing.assert_allclose(one.cost[0], batch.cost[i], rtol=1e-6)
        if batch.classifier_share is not None:
            np.testing.assert_allclose(one.classifier_share[0], batch.classifier_share[i])
        assert one.fallback[0] == batch.fallback[i] and one.signal[0] == batch.signal[i]
    return [batch]


def _sq(X: np.ndarray) -> np.ndarray:
    return ((X[:, None, :].astype(np.float64) - CENTERS[None, :, :]) ** 2).sum(axis=2)


def test_nearest_cluster_means_and_evidence() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    _, a = r.state()
    plain = a["score_sums"] / a["score_counts"]
    np.testing.assert_allclose(r.cluster_scores(), plain, atol=1e-12)
    for est in both_paths(r, QUERIES[:3]):
        n = len(est.nearest)
        sq = _sq(QUERIES[:n])
        np.testing.assert_array_equal(est.nearest, sq.argmin(axis=1))
        np.testing.assert_allclose(est.distance, np.sqrt(sq.min(axis=1)), rtol=1e-5)
        np.testing.assert_allclose(est.performance, plain[est.nearest], atol=1e-12)
        np.testing.assert_array_equal(est.evidence, a["score_counts"][est.nearest])
        np.testing.assert_array_equal(est.weights, np.ones((n, 1)))
        assert est.fallback == (None,) * n and est.classifier_share is None
    est = r.estimate(QUERIES[:3])
    assert [MODELS[b] for b in est.best] == MODELS
    # with costs, alpha 1 ranks by performance only
    np.testing.assert_allclose(est.score, tradeoff(est.performance, est.cost, 1.0), atol=1e-12)


def test_soft_weights_and_shrinkage() -> None:
    for mode in ("absolute", "relative"):
        r, _ = fitted(n_nearest=2, softmax_temperature=0.3, temperature_mode=mode, shrinkage=4.0)
        _, a = r.state()
        cs = shrunk_means(a["score_sums"], a["score_counts"], a["global_scores"][None, :], 4.0)
        np.testing.assert_allclose(r.cluster_scores(), cs, atol=1e-12)
        idx, w = softmax_weights(_sq(QUERIES), 2, 0.3, relative=mode == "relative")
        for est in both_paths(r, QUERIES):
            n = len(est.nearest)
            np.testing.assert_array_equal(est.clusters, idx[:n])
            np.testing.assert_allclose(est.weights, w[:n], rtol=1e-5, atol=1e-9)
            expected = np.einsum("np,npm->nm", w[:n], cs[idx[:n]])
            np.testing.assert_allclose(est.performance, expected, rtol=1e-5)
            counts = np.einsum("np,npm->nm", w[:n], a["score_counts"][idx[:n]])
            np.testing.assert_allclose(est.evidence, counts, rtol=1e-5)


def test_costs_and_the_trade_off() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0, alpha=0.4)
    _, a = r.state()
    costs = a["cost_sums"] / a["cost_counts"]
    np.testing.assert_allclose(r.cluster_costs(), costs, atol=1e-12)
    for est in both_paths(r, QUERIES[:3]):
        n = len(est.nearest)
        np.testing.assert_allclose(est.cost, costs[est.nearest], atol=1e-12)
        np.testing.assert_allclose(est.score, tradeoff(est.performance, est.cost, 0.4), atol=1e-12)
        for i in range(n):  # ranked by the trade-off score, best first
            assert list(est.order[i]) == sorted(range(3), key=lambda j: -est.score[i, j])
    # alpha for one call; 0 ranks by cost only: the chef model is the cheapest
    est = r.estimate(QUERIES[:1], alpha=0.0)
    assert MODELS[est.best[0]] == "chef-model"
    np.testing.assert_allclose(est.score, tradeoff(est.performance, est.cost, 0.0), atol=1e-12)
    none, _ = fitted(with_cost=False, n_nearest=1)
    assert none.cluster_costs() is None and none.estimate(QUERIES[:2]).cost is None


def test_order_breaks_ties_by_performance_then_global_score_then_cost() -> None:
    # alpha 0 with equal costs: every model scores 1; then the expected performance decides
    r2, X = fitted(with_cost=False, n_nearest=1, shrinkage=0.0, alpha=0.0)
    for est in both_paths(r2, QUERIES[:3]):
        for i in range(len(est.nearest)):
            perf = est.performance[i]
            assert list(est.order[i]) == sorted(range(3), key=lambda j: (-perf[j], j))
    # a query whose cluster has all three models tied: the global means decide
    rows, X = _rows_and_vectors(with_cost=False)
    for row in rows[:10]:
        row["scores"] = {m: 0.5 for m in MODELS}
    tied = Router(n_clusters=3, embedder="precomputed", n_nearest=1, shrinkage=0.0,
                  classifier_weight=0.0).fit(rows, embeddings=X, centroids=CENTERS)  # fmt: skip
    g = tied.state()[1]["global_scores"]
    for est in both_paths(tied, QUERIES[:1]):
        np.testing.assert_allclose(est.performance[0], [0.5, 0.5, 0.5])
        assert list(est.order[0]) == sorted(range(3), key=lambda j: (-g[j], j))
    # ... and with costs, then the cheaper one
    rows, X = _rows_and_vectors(with_cost=True)
    for row in rows:
        row["scores"] = {m: 0.5 for m in MODELS}
    flat = Router(n_clusters=3, embedder="precomputed", n_nearest=1, shrinkage=0.0,
                  classifier_weight=0.0, alpha=1.0).fit(rows, embeddings=X, centroids=CENTERS)  # fmt: skip
    for est in both_paths(flat, QUERIES[:2]):
        assert [MODELS[j] for j in est.order[0]] == ["chef-model", "math-model", "code-model"]


NEAR = np.array(
    [[0.98, 0.02, 0.0, 0.0], [0.0, 1.0, 0.03, 0.0], [0.0, 0.0, 0.99, 0.02], [0.0, 0.0, 0.0, 1.5]],
    dtype=np.float32,
)


def test_far_and_thin_clusters_fall_back_to_the_global_means() -> None:
    r, _ = fitted(n_nearest=1, far_quantile=1.0)
    _, a = r.state()
    far_t = float(a["train_distances"][-1])  # the largest training distance
    ests = both_paths(r, NEAR)
    d = float(np.sqrt(_sq(NEAR[3:]).min()))
    said = f"query is far from every cluster (distance {d:.3f} > {far_t:.3f}): global ranking used"
    for est in ests:
        if len(est.nearest) == 4:
            assert est.fallback == (None, None, None, said)
            np.testing.assert_allclose(est.performance[3], a["global_scores"], atol=1e-12)
            np.testing.assert_allclose(est.cost[3], a["global_costs"], atol=1e-12)
            assert est.signal[3] is None
    one = r.estimate(NEAR[3:])
    assert one.fallback == (said,)
    np.testing.assert_allclose(one.cost[0], a["global_costs"], atol=1e-12)
    # a query exactly at the threshold is not beyond it
    at = (CENTERS[0] + np.array([0, 0, 0, far_t], dtype=np.float32))[None, :]
    if np.sqrt(_sq(at).min()) <= far_t:
        assert r.estimate(at).fallback == (None,)

    thin, _ = fitted(n_nearest=1, min_cluster_size=11)
    for est in both_paths(thin, QUERIES[:3]):
        n = len(est.nearest)
        sizes = thin.state()[1]["cluster_sizes"]
        for i in range(n):
            c = int(est.nearest[i])
            if sizes[c] < 11:
                assert est.fallback[i] == (
                    f"cluster {c} has {int(sizes[c])} training queries (< 11): global ranking used"
                )
                np.testing.assert_allclose(est.performance[i], thin.global_scores_, atol=1e-12)
            else:
                assert est.fallback[i] is None
    sizes = thin.state()[1]["cluster_sizes"]
    assert sorted(sizes.tolist()) == [10, 10, 10]  # every cluster is under 11: all fall back
    ok, _ = fitted(n_nearest=1, min_cluster_size=10)
    assert ok.estimate(QUERIES[:3]).fallback == (None, None, None)


def test_knn_and_hybrid_scoring() -> None:
    r, X = fitted(scoring="knn", n_neighbors=4, shrinkage=2.0, n_nearest=1)
    rows, _ = _rows_and_vectors()
    train = np.array([[row["scores"][m] for m in MODELS] for row in rows])  # type: ignore[index]
    g = r.state()[1]["global_scores"]
    sims = QUERIES @ X.T  # in float32, as the router computes them
    kperf, kcount = knn_estimate(sims, train, 4, g, 2.0)
    est = r.estimate(QUERIES)
    np.testing.assert_allclose(est.performance, kperf, rtol=1e-5)
    np.testing.assert_array_equal(est.evidence, kcount)
    one = r.estimate(QUERIES[:1])
    np.testing.assert_allclose(one.performance[0], kperf[0], rtol=1e-5)

    h, _ = fitted(scoring="hybrid", n_neighbors=4, knn_weight=0.25, shrinkage=2.0, n_nearest=1)
    cs = h.cluster_scores()
    for est in both_paths(h, QUERIES[:3]):
        n = len(est.nearest)
        expected = 0.25 * kperf[:n] + 0.75 * cs[est.nearest]
        np.testing.assert_allclose(est.performance, expected, rtol=1e-5)
    plain, _ = fitted(scoring="cluster")
    with pytest.raises(Exception, match="needs the training embeddings"):
        plain.set_params(scoring="knn").estimate(QUERIES)


def test_knn_rows_follow_updates_and_added_models() -> None:
    """The kept training rows of kNN scoring: float32 (the memory they take), one more row per
    update row whose embedding is known (its model's score, NaN for the others), none for an
    update by cluster ids, and an unknown (NaN) column for an added model."""
    r, X = fitted(scoring="knn", n_neighbors=4, shrinkage=2.0, n_nearest=1)
    n = len(X)
    assert r.train_embeddings_.dtype == np.float32 and r.train_scores_.dtype == np.float32
    np.testing.assert_array_equal(r.train_embeddings_, X)
    new = np.array([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.1, 0.9]])  # given in float64
    r.update(models=["chef-model", "math-model"], scores=[0.25, 1.0], embeddings=new)
    assert r.train_embeddings_.dtype == np.float32 and r.train_scores_.dtype == np.float32
    np.testing.assert_array_equal(r.train_embeddings_[n:], new.astype(np.float32))
    nan = np.nan
    np.testing.assert_array_equal(r.train_scores_[n:], [[nan, 0.25, nan], [1.0, nan, nan]])
    kept = r.train_scores_.copy()
    r.update(models=["code-model"], scores=[1.0], clusters=[2])  # no embedding: no row
    np.testing.assert_array_equal(r.train_scores_, kept)
    assert len(r.train_embeddings_) == n + 2
    r.add_model("new-model")
    assert r.train_scores_.shape == (n + 2, 4) and r.train_scores_.dtype == np.float32
    assert np.isnan(r.train_scores_[:, 3]).all()
    np.testing.assert_array_equal(r.train_scores_[:, :3], kept)


def test_success_classifiers_blend() -> None:
    for pc in (None, 5.0):
        r, _ = fitted(n_nearest=1, shrinkage=0.0, classifier_weight=0.3, classifier_evidence=pc)
        _, a = r.state()
        probs = success_probabilities(QUERIES, a["classifier_coef"], a["classifier_intercept"])
        for est in both_paths(r, QUERIES[:3]):
            n = len(est.nearest)
            perf = (a["score_sums"] / a["score_counts"])[est.nearest]
            share = evidence_share(a["score_counts"][est.nearest], 0.3, pc)
            np.testing.assert_allclose(est.classifier_share, share, rtol=1e-6)
            blended = (1 - share[:, None]) * perf + share[:, None] * probs[:n]
            np.testing.assert_allclose(est.performance, blended, rtol=1e-5)
            for i in range(n):
                b, p, s = blended[i].argmax(), perf[i].argmax(), probs[i].argmax()
                want = {(True, True): "both", (True, False): "cluster",
                        (False, True): "classifier", (False, False): "blend"}[(p == b, s == b)]  # fmt: skip
                assert est.signal[i] == want
    off, _ = fitted(classifier_weight=0.0)
    assert off.estimate(QUERIES[:2]).signal == (None, None)
    with pytest.raises(Exception, match="needs the success classifiers"):
        off.set_params(classifier_weight=0.2).estimate(QUERIES[:2])


def test_task_hints_use_the_task_statistics() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=3.0)
    _, a = r.state()
    from avengers.routing.scoring import task_cluster_scores

    ts = task_cluster_scores(a["task_score_sums"], a["task_score_counts"], a["global_scores"], 3.0)
    names = sorted(TOPIC)
    est = r.estimate(QUERIES[:3], tasks=["code", None, "unknown"])
    c = int(est.nearest[0])
    np.testing.assert_allclose(est.performance[0], ts[names.index("code"), c], atol=1e-12)
    np.testing.assert_array_equal(est.evidence[0], a["task_score_counts"][names.index("code"), c])
    plain = r.estimate(QUERIES[1:3])
    np.testing.assert_allclose(est.performance[1:], plain.performance, atol=1e-12)
    one = r.estimate(QUERIES[:1], tasks=["code"])
    np.testing.assert_allclose(one.performance[0], est.performance[0], atol=1e-12)
    with pytest.raises(Exception, match="2 task hints for 3 queries"):
        r.estimate(QUERIES[:3], tasks=["code", None])


def test_sharpening_beyond_the_quantile() -> None:
    r, _ = fitted(n_nearest=3, softmax_temperature=1.0, sharpen_quantile=0.5, sharpen_width=0.5)
    _, a = r.state()
    t = float(np.interp(0.5, [0.5, 0.9, 0.95, 0.99, 1.0], a["train_distances"]))
    extra = np.array([[1.1, 0.0, 0.0, 0.0], [0.0, 0.0, 1.11, 0.0]], dtype=np.float32)
    Q = np.vstack([NEAR[:3], extra, QUERIES[1:3]])
    _, w = softmax_weights(_sq(Q), 3, 1.0)
    d = np.sqrt(_sq(Q).min(axis=1))
    excess = d / t - 1.0
    keep = np.clip(1.0 - excess / 0.5, 0, 1)
    assert (excess <= 0).sum() == 3 and ((keep > 0) & (keep < 1) & (excess > 0)).sum() == 2
    est = r.estimate(Q)
    for i in range(len(Q)):
        if excess[i] <= 0:  # nearer than the quantile: unchanged
            np.testing.assert_allclose(est.weights[i], w[i], rtol=1e-5)
        elif keep[i] == 0:  # beyond 1 + width times it: the nearest only
            np.testing.assert_allclose(est.weights[i], [1.0, 0.0, 0.0], atol=1e-12)
        else:  # between: the temperature times keep
            z = np.exp((np.log(w[i]) - np.log(w[i, 0])) / keep[i])
            np.testing.assert_allclose(est.weights[i], z / z.sum(), rtol=1e-4, atol=1e-12)
    step, _ = fitted(n_nearest=3, softmax_temperature=1.0, sharpen_quantile=0.5, sharpen_width=0)
    sharp = step.estimate(Q)
    for i in range(len(Q)):
        want = w[i] if excess[i] <= 0 else [1.0, 0.0, 0.0]
        np.testing.assert_allclose(sharp.weights[i], want, rtol=1e-5, atol=1e-12)


def test_bad_inputs() -> None:
    r, _ = fitted()
    with pytest.raises(Exception, match=r"expected embeddings of shape \(n, 4\), got \(2, 3\)"):
        r.estimate(np.zeros((2, 3)))
    with pytest.raises(Exception, match="not fitted"):
        Router().estimate(QUERIES)
    assert r.estimate(np.zeros((0, 4))).order.shape == (0, 3)
    np.testing.assert_array_equal(r.predict(QUERIES[:3]), [0, 1, 2])
    np.testing.assert_allclose(r.predict_scores(QUERIES[:1]), r.estimate(QUERIES[:1]).performance)


def test_fallback_costs_are_the_global_means() -> None:
    rows, X = _rows_and_vectors()
    for row in rows:  # costs differ by topic, so cluster and global costs differ
        scale = 1.0 + TOPIC[str(row["task"])]
        row["costs"] = {m: c * scale for m, c in row["costs"].items()}  # type: ignore[attr-defined]
    r = Router(n_clusters=3, embedder="precomputed", n_nearest=1, far_quantile=1.0,
               classifier_weight=0.0).fit(rows, embeddings=X, centroids=CENTERS)  # fmt: skip
    _, a = r.state()
    (est,) = both_paths(r, NEAR)
    np.testing.assert_allclose(est.cost[3], a["global_costs"], atol=1e-12)
    assert est.fallback[3] is not None and est.fallback[0] is None
    np.testing.assert_allclose(est.cost[0], r.cluster_costs()[est.nearest[0]], atol=1e-12)
    assert np.abs(r.cluster_costs()[est.nearest[0]] - a["global_costs"]).max() > 0.1


def test_settings_a_router_was_not_fitted_for_are_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError) as e:
        fitted()[0].set_params(scoring="knn").estimate(QUERIES)
    assert str(e.value) == (
        "scoring 'knn' needs the training embeddings, which a router fitted with scoring "
        "'cluster' does not keep: fit again"
    )
    with pytest.raises(ConfigError) as e:
        fitted()[0].set_params(classifier_weight=0.3).estimate(QUERIES)
    assert str(e.value) == (
        "classifier_weight > 0 needs the success classifiers, which a router fitted with "
        "classifier_weight 0 does not have: fit again"
    )


def test_no_queries_give_an_empty_integer_order() -> None:
    est = fitted()[0].estimate(np.zeros((0, 4), dtype=np.float32))
    assert est.order.shape == (0, 3) and est.order.dtype.kind == "i"
    assert est.performance.shape == (0, 3)


def test_tied_trade_off_scores_go_to_the_better_performance() -> None:
    # alpha 0.5, performance and cost rising together: every model scores 0.5
    score, order = rank(np.array([[1.0, 0.0, 0.5]]), np.array([[1.0, 0.0, 0.5]]), 0.5,
                        np.array([0.2, 0.3, 0.1]))  # fmt: skip
    np.testing.assert_allclose(score, [[0.5, 0.5, 0.5]])
    assert order.tolist() == [[0, 2, 1]]


def test_sharpening_of_a_lone_far_query_and_of_a_tie() -> None:
    step, _ = fitted(n_nearest=3, softmax_temperature=1.0, sharpen_quantile=0.5, sharpen_width=0)
    # one query beyond the threshold, alone (the one-row path): the nearest cluster only
    far = np.array([[0.0, 0.0, 1.6, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(step.estimate(far).weights[0], [1.0, 0.0, 0.0], atol=1e-12)
    # beyond it and as near to two clusters: the first of them takes it all (no NaN)
    tie = np.array([[1.5, 1.5, 0.0, 0.0]], dtype=np.float32)
    est = step.estimate(tie)
    assert est.clusters[0, :2].tolist() in ([0, 1], [1, 0])
    np.testing.assert_array_equal(est.weights[0], [1.0, 0.0, 0.0])


def test_an_added_models_prior_follows_new_model_prior() -> None:
    for prior in (None, 0.9, 0.1):
        r, _ = fitted(n_nearest=1, shrinkage=2.0, new_model_prior=prior)
        r.add_model("new-model")
        for est in both_paths(r, QUERIES[:3]):
            np.testing.assert_allclose(est.performance, r.cluster_scores()[est.nearest])
        assert r.estimate(QUERIES[:1]).performance[0, 3] == pytest.approx(
            {None: 0.435, 0.9: 0.909, 0.1: 0.110}[prior], abs=1e-3
        )


def test_a_fallback_row_names_no_signal() -> None:
    r, _ = fitted(n_nearest=1, classifier_weight=0.3, far_quantile=0.99)
    est = r.estimate(np.vstack([NEAR[:1], QUERIES[3:]]))
    assert est.fallback[1] is not None and est.signal[1] is None  # far: the global ranking
    assert est.fallback[0] is None and est.signal[0] is not None


def test_knn_means_are_summed_in_float64() -> None:
    """The kept outcomes are stored as float32 (0.2 is 0.20000000298...) and summed in float64:
    the kNN estimate equals :func:`knn_estimate` on the float64 cast to the last bits, not a
    float32 sum (which is off by about 1e-8)."""
    r, X = fitted(scoring="knn", n_neighbors=4, shrinkage=2.0, n_nearest=1)
    kept = r.state()[1]["train_scores"]
    assert kept.dtype == np.float32
    g = r.state()[1]["global_scores"]
    sims = QUERIES @ X.T
    want, _ = knn_estimate(sims, kept.astype(np.float64), 4, g, 2.0)
    np.testing.assert_allclose(r.estimate(QUERIES).performance, want, rtol=1e-13, atol=0)
