"""Online learning with exact results (``benchmarks/mutation.py online``): the statistics an
update adds (weights, forgetting), global means, the prior of an added model, exploration picks
and their probabilities, and imputation; on hand-made embeddings (fast, no embedding model)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from avengers import Router, online
from avengers.exceptions import ConfigError, DataError
from avengers.stores.feedback import Rating, apply_rating
from avengers.training.data import OutcomeData
from test_estimate_bite import MODELS, QUERIES, fitted, table_fitted


def _arrays(r: object) -> dict[str, np.ndarray]:
    """Copies of the router's state arrays (``state()`` hands out the live ones)."""
    return {k: np.array(v, dtype=np.float64) for k, v in r.state()[1].items()}  # type: ignore[attr-defined]


def test_batches_are_checked() -> None:
    b = online.as_batch(None, models=["a", "b", "a"], scores=[1.0, 0.5, 0.0], costs=[1, 2, 3])
    assert b.models == ["a", "b"] and len(b) == 3 and b.queries is None
    np.testing.assert_array_equal(b.scores, [[1.0, np.nan], [np.nan, 0.5], [0.0, np.nan]])
    np.testing.assert_array_equal(b.costs, [[1.0, np.nan], [np.nan, 2.0], [3.0, np.nan]])
    w = online.as_batch(None, models=["a"], scores=[1.0], weights=[2.5])
    np.testing.assert_array_equal(w.weights, [2.5])
    cases = [
        (
            {"models": ["a"], "scores": [1.0], "weights": [0.0]},
            "weights must be finite numbers > 0",
        ),
        ({"models": ["a"], "scores": [1.0], "weights": [1, 2]}, "2 weights for 1 outcomes"),
        ({"models": ["a"]}, "update needs data, or models and scores"),
        ({"models": ["a", "b"], "scores": [1.0]}, "1 scores for 2 models"),
        ({"models": ["a"], "scores": [1.5]}, r"scores must be finite numbers in \[0, 1\]"),
        ({"models": ["a"], "scores": [-0.1]}, r"scores must be finite numbers in \[0, 1\]"),
        ({"models": ["a"], "scores": [0.5], "costs": [-1]}, "costs must be one finite number"),
        ({"models": ["a"], "scores": [0.5], "costs": [1, 2]}, "costs must be one finite number"),
        ({"models": ["a"], "scores": [0.5], "queries": ["q", "r"]}, "2 queries for 1 scores"),
    ]
    for kwargs, message in cases:
        with pytest.raises(DataError, match=message):
            online.as_batch(None, **kwargs)  # type: ignore[arg-type]
    rows = [{"query": "q", "scores": {"a": 1.0}}]
    with pytest.raises(DataError, match="give either data or models and scores, not both"):
        online.as_batch(rows, models=["a"], scores=[1.0])
    d = online.as_batch(rows)
    assert d.queries == ["q"] and d.models == ["a"]


def test_accumulate_weights_and_forgetting() -> None:
    sums, counts = np.zeros((2, 2)), np.zeros((2, 2))
    online.accumulate(sums, counts, [0, 0, 1], [1, 1, 0], [1.0, 0.5, 0.25], weights=[1, 2, 4])
    np.testing.assert_array_equal(sums, [[0.0, 2.0], [1.0, 0.0]])
    np.testing.assert_array_equal(counts, [[0.0, 3.0], [4.0, 0.0]])
    # forgetting: each new observation first multiplies its own cell by the factor
    sums, counts = np.array([[2.0, 1.0]]), np.array([[4.0, 2.0]])
    online.accumulate(sums, counts, [0, 0], [0, 0], [1.0, 0.0], decay=0.5, weights=[1, 3])
    np.testing.assert_allclose(sums, [[(2.0 * 0.5 + 1.0) * 0.5 + 0.0, 1.0]])
    np.testing.assert_allclose(counts, [[(4.0 * 0.5 + 1.0) * 0.5 + 3.0, 2.0]])
    assert online.decay_factor(None) == 1.0 and online.decay_factor(math.inf) == 1.0
    assert online.decay_factor(2.0) == pytest.approx(2**-0.5)


def test_global_means_and_the_unknown_model_prior() -> None:
    sums = np.array([[1.0, 0.0, 0.0], [2.0, 0.5, 0.0]])
    counts = np.array([[2.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    prev = np.array([0.9, 0.9, 0.7])
    np.testing.assert_allclose(online.global_means(sums, counts, prev), [0.75, 0.5, 0.7])
    g = np.array([0.6, 0.2, 0.9])
    assert online.unknown_model_prior(g, counts) == pytest.approx(0.4)  # known models only
    assert online.unknown_model_prior(g, counts, 0.25) == 0.25
    assert online.unknown_model_prior(g, np.zeros((2, 3))) == 0.5


def test_update_adds_weighted_outcomes_exactly() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    before = _arrays(r)
    r.update(models=["chef-model", "math-model"], scores=[0.3, 1.0], costs=[0.2, 0.4],
             clusters=[1, 2], weights=[2.0, 0.5])  # fmt: skip
    after = _arrays(r)
    d_sums = after["score_sums"] - before["score_sums"]
    d_counts = after["score_counts"] - before["score_counts"]
    want_sums, want_counts = np.zeros((3, 3)), np.zeros((3, 3))
    want_sums[1, 1], want_counts[1, 1] = 0.6, 2.0
    want_sums[2, 0], want_counts[2, 0] = 0.5, 0.5
    np.testing.assert_allclose(d_sums, want_sums, atol=1e-12)
    np.testing.assert_allclose(d_counts, want_counts, atol=1e-12)
    np.testing.assert_allclose(
        after["cost_sums"] - before["cost_sums"], want_counts * [[0.4, 0.2, 0]], atol=1e-12
    )
    np.testing.assert_array_equal(after["cluster_sizes"] - before["cluster_sizes"], [0, 1, 1])
    np.testing.assert_allclose(
        after["global_scores"], after["score_sums"].sum(0) / after["score_counts"].sum(0)
    )
    summary = r.training_summary_
    assert summary["online_updates"] == 1 and summary["online_outcomes"] == 2
    r.update(models=["code-model"], scores=[1.0], clusters=[0])
    assert r.training_summary_["online_updates"] == 2
    assert r.training_summary_["online_outcomes"] == 3
    with pytest.raises(DataError, match=r"cluster ids must be in \[0, 3\)"):
        r.update(models=["code-model"], scores=[1.0], clusters=[3])
    with pytest.raises(DataError, match="2 clusters or embeddings for 1 outcomes"):
        r.update(models=["code-model"], scores=[1.0], clusters=[0, 1])
    with pytest.raises(DataError, match=r"expected embeddings of shape \(n, 4\)"):
        r.update(models=["code-model"], scores=[1.0], embeddings=np.zeros((1, 3)))
    with pytest.raises(DataError, match="update needs queries, embeddings or clusters"):
        r.update(models=["code-model"], scores=[1.0])
    # by embeddings: the nearest cluster
    mid = _arrays(r)
    r.update(models=["code-model"], scores=[0.25], embeddings=QUERIES[2:3])
    assert (_arrays(r)["score_sums"] - mid["score_sums"])[2, 2] == pytest.approx(0.25)


def test_forgetting_in_update() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0, half_life=1.0)
    before = _arrays(r)
    r.update(models=["math-model"], scores=[0.0], clusters=[0])
    after = _arrays(r)
    assert after["score_sums"][0, 0] == pytest.approx(before["score_sums"][0, 0] * 0.5)
    assert after["score_counts"][0, 0] == pytest.approx(before["score_counts"][0, 0] * 0.5 + 1)
    np.testing.assert_array_equal(after["score_sums"][1:], before["score_sums"][1:])


def test_added_model_prior_follows_the_clusters() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=10.0)
    known_global = r.global_scores_.copy()
    r.add_model("new-model")
    assert r.models_ == [*MODELS, "new-model"]
    assert r.training_summary_["added_models"] == ["new-model"]
    np.testing.assert_array_equal(online.added_mask(r), [False, False, False, True])
    assert r.global_scores_[3] == pytest.approx(known_global.mean())
    assert r.global_costs_ is not None and r.global_costs_[3] == pytest.approx(
        r.global_costs_[:3].mean()
    )
    a = _arrays(r)
    assert a["score_counts"][:, 3].tolist() == [0, 0, 0] and a["cost_counts"][:, 3].sum() == 0
    # no evidence, no fixed prior: in each cluster, the known models' mean estimate there
    cs = r.cluster_scores()
    np.testing.assert_allclose(cs[:, 3], cs[:, :3].mean(axis=1), atol=2e-3)
    assert np.ptp(cs[:, 3]) > 0.01  # it follows each cluster's difficulty
    with pytest.raises(ConfigError, match="model 'new-model' is already a candidate"):
        r.add_model("new-model")
    # with a prior: the offset moves every cluster the same way in logit terms
    fixed, _ = fitted(n_nearest=1, shrinkage=10.0, new_model_prior=0.9)
    fixed.add_model("new-model")
    assert fixed.global_scores_[3] == pytest.approx(0.9)
    hi = fixed.cluster_scores()[:, 3]
    assert (hi > cs[:, 3] + 0.05).all()
    # evidence pulls the added model's prior toward what it scored
    r.update(models=["new-model"] * 6, scores=[1.0] * 6, clusters=[0, 0, 1, 1, 2, 2])
    assert (r.cluster_scores()[:, 3] > cs[:, 3] + 0.1).all()


def test_cluster_prior_without_added_models_is_the_global_mean() -> None:
    sums, counts = np.ones((2, 2)), np.ones((2, 2)) * 2
    g = np.array([0.5, 0.25])
    none_added = online.cluster_prior(sums, counts, g, np.array([False, False]), 3.0)
    np.testing.assert_array_equal(none_added, [[0.5, 0.25], [0.5, 0.25]])
    all_added = online.cluster_prior(sums, counts, g, np.array([True, True]), 3.0)
    np.testing.assert_array_equal(all_added, [[0.5, 0.25], [0.5, 0.25]])


def test_exploration_picks_and_probabilities() -> None:
    perf = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5]])
    huge = np.full_like(perf, 1e9)  # posteriors so narrow that every draw is the estimate
    rng = np.random.default_rng(0)
    greedy = np.array([1, 1])
    picks = online.explore_picks(perf, huge, None, 1.0, greedy, share=1.0, pseudo_count=1.0,
                                 rng=rng)  # fmt: skip
    assert picks.tolist() == [0, -1]  # a different pick for the first, the greedy one kept
    none = online.explore_picks(perf, huge, None, 1.0, greedy, share=0.0, pseudo_count=1.0,
                                rng=rng)  # fmt: skip
    assert none.tolist() == [-1, -1]
    p = online.pick_probabilities(perf, huge, None, 1.0, greedy, share=0.25, pseudo_count=1.0,
                                  rng=rng, draws=8)  # fmt: skip
    np.testing.assert_allclose(p, [[0.25, 0.75, 0.0], [0.0, 1.0, 0.0]])
    p0 = online.pick_probabilities(perf, huge, None, 1.0, greedy, share=0.0, pseudo_count=1.0,
                                   rng=rng)  # fmt: skip
    np.testing.assert_array_equal(p0, [[0, 1, 0], [0, 1, 0]])
    cost = np.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0]])
    by_cost = online.top_two_pick(perf, huge, cost, 0.0, pseudo_count=1.0, rng=rng)
    assert by_cost.tolist() == [1, 1]  # alpha 0: the cheapest, nothing to explore
    two = online.top_two_pick(perf, huge, None, 1.0, pseudo_count=1.0, rng=rng)
    assert set(two.tolist()) <= {0, 1, 2}
    # top-two with narrow posteriors: the leader or its runner-up, nothing else
    many = np.repeat(perf[:1], 200, axis=0)
    picks = online.top_two_pick(many, np.full_like(many, 1e9), None, 1.0, pseudo_count=1.0,
                                rng=np.random.default_rng(1))  # fmt: skip
    share_leader = float((picks == 0).mean())
    assert set(picks.tolist()) == {0, 2} and 0.4 < share_leader < 0.6
    assert online.pick_first(np.array([2, 0, 1]), 1) == [1, 2, 0]
    assert online.pick_first(np.array([2, 0, 1]), -1) == [2, 0, 1]


def test_routing_with_exploration_uses_the_router_rng() -> None:
    r, _ = fitted(n_nearest=1, explore=1.0)
    probs = r.pick_probabilities(QUERIES[:3], draws=16)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    greedy, _ = fitted(n_nearest=1)
    assert (greedy.pick_probabilities(QUERIES[:3]).max(axis=1) == 1.0).all()


def test_impute_by_task_and_by_query() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    scores = np.array([[np.nan, 1.0, np.nan], [0.5, np.nan, np.nan]])
    data = OutcomeData(["q1", "q2"], ["math-model", "chef-model", "other"], scores, None,
                       ["code", ""])  # fmt: skip
    out = r.impute(data, by="task")
    a = _arrays(r)
    names = sorted(["arithmetic", "cooking", "code"])
    code_means = a["task_score_sums"][names.index("code")].sum(0) / a["task_score_counts"][
        names.index("code")
    ].sum(0)
    assert out.scores[0, 0] == pytest.approx(code_means[0])  # math-model on a code row
    assert out.scores[0, 1] == 1.0 and out.scores[1, 0] == 0.5  # known outcomes kept
    assert out.scores[1, 1] == pytest.approx(r.global_scores_[1])  # no task: the global mean
    assert np.isnan(out.scores[:, 2]).all()  # a model the router does not know
    assert out.notes == [
        "filled 2 unknown outcome(s) with the router's per-task mean scores",
        "not filled (models the router does not know): other",
        "not added (models the data never names): code-model",
    ]
    q = r.impute(data, embeddings=QUERIES[:2], by="query")
    est = r.estimate(QUERIES[:2], tasks=["code", ""])
    assert q.scores[0, 0] == pytest.approx(est.performance[0, 0])
    assert q.scores[1, 1] == pytest.approx(est.performance[1, 1])
    with pytest.raises(DataError, match="1 embeddings for 2 queries"):
        r.impute(data, embeddings=QUERIES[:1], by="query")
    with pytest.raises(ConfigError, match="by must be one of query, task, not 'model'"):
        r.impute(data, embeddings=QUERIES[:2], by="model")  # type: ignore[arg-type]
    untasked = OutcomeData(["q1"], ["math-model"], np.array([[np.nan]]), None, None)
    notes = r.impute(untasked, by="task").notes
    assert notes[1].startswith("no row has a task the router was fitted with: every gap got")


def test_apply_rating_goes_through_update() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    before = _arrays(r)
    assert apply_rating(r, Rating(1, "id", "code-model", 2, 0.3, cost=0.1))
    after = _arrays(r)
    assert after["score_sums"][2, 2] - before["score_sums"][2, 2] == pytest.approx(0.3)
    assert after["cost_sums"][2, 2] - before["cost_sums"][2, 2] == pytest.approx(0.1)


def test_apply_rating_without_costs_without_a_cost_and_for_unknown_models() -> None:
    # a router that keeps no costs: a rating's cost is ignored, its score counted
    r, _ = fitted(with_cost=False, n_nearest=1, shrinkage=0.0)
    before = _arrays(r)
    assert "cost_sums" not in before
    assert apply_rating(r, Rating(1, "x", "code-model", 2, 0.75, cost=3.0)) is True
    after = _arrays(r)
    assert "cost_sums" not in after
    assert after["score_sums"][2, 2] - before["score_sums"][2, 2] == pytest.approx(0.75)
    # a model the router does not know: False, nothing changes
    assert apply_rating(r, Rating(2, "y", "retired-model", 2, 1.0)) is False
    for name, value in _arrays(r).items():
        np.testing.assert_array_equal(value, after[name], err_msg=name)
    # a router with costs and a rating without one: the score counts, the costs stay
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    before = _arrays(r)
    assert apply_rating(r, Rating(3, "z", "code-model", 2, 0.5)) is True
    after = _arrays(r)
    assert after["score_sums"][2, 2] - before["score_sums"][2, 2] == pytest.approx(0.5)
    np.testing.assert_array_equal(after["cost_sums"], before["cost_sums"])
    np.testing.assert_array_equal(after["cost_counts"], before["cost_counts"])


def test_apply_rating_holds_the_lock() -> None:
    """The server applies ratings under the lock its snapshots take: while another thread holds
    it, the rating waits, and it lands once the lock is free."""
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    before = _arrays(r)["score_sums"][2, 2]
    lock = threading.Lock()
    done = threading.Event()

    def rate() -> None:
        apply_rating(r, Rating(1, "id", "code-model", 2, 1.0), lock)
        done.set()

    with lock:
        t = threading.Thread(target=rate)
        t.start()
        assert not done.wait(0.5)  # still waiting for the lock
        assert _arrays(r)["score_sums"][2, 2] == before
    assert done.wait(30)
    t.join()
    assert _arrays(r)["score_sums"][2, 2] == pytest.approx(before + 1.0)


def test_added_model_prior_in_a_cluster_the_known_models_all_solve() -> None:
    sums = np.array([[4.0, 4.0, 0.0], [1.0, 0.0, 0.0]])
    counts = np.array([[4.0, 4.0, 0.0], [2.0, 2.0, 0.0]])
    g = np.array([5 / 6, 4 / 6, 0.5])
    prior = online.cluster_prior(sums, counts, g, np.array([False, False, True]), 0.0)
    # cluster 0: the known models' estimate is 1, read as 0.999 (a logit must stay finite)
    assert prior[0, 2] == pytest.approx(0.999, abs=1e-9)
    assert prior[1, 2] == pytest.approx(0.25, abs=1e-9)
    np.testing.assert_array_equal(prior[:, :2], [g[:2], g[:2]])


def test_an_added_model_keeps_the_classifiers_usable() -> None:
    r, _ = fitted(n_nearest=1, classifier_weight=0.3)
    r.add_model("new-model")
    coef = r.state()[1]["classifier_coef"]
    assert coef.shape == (4, 4) and np.isnan(coef[3]).all() and not np.isnan(coef[:3]).any()
    est = r.estimate(QUERIES[:2])  # the new model's classifier share falls back to its cluster
    assert np.isfinite(est.performance).all()
    np.testing.assert_allclose(
        est.performance[:, 3], r.cluster_scores()[est.nearest, 3], atol=1e-12
    )


def test_impute_defaults_and_costs_a_router_does_not_keep() -> None:
    r, _ = fitted(with_cost=False, n_nearest=1, shrinkage=0.0)
    scores = np.array([[np.nan, 1.0, 0.5]])
    costs = np.array([[np.nan, 2.0, 1.0]])
    data = OutcomeData(["q1"], MODELS, scores, costs, ["code"])
    out = online.impute_outcomes(r, data, QUERIES[2:3])  # by="query" unless told
    assert out.notes[0] == "filled 1 unknown outcome(s) with the router's expected scores"
    assert out.scores[0, 0] == pytest.approx(
        r.estimate(QUERIES[2:3], tasks=["code"]).performance[0, 0]
    )
    for by in ("task", "query"):
        kept = r.impute(data, embeddings=QUERIES[2:3], by=by)  # type: ignore[arg-type]
        assert kept.costs is not None
        np.testing.assert_array_equal(kept.costs, costs)  # no cost estimate: gaps stay gaps


def test_update_refusals_in_full() -> None:
    r, _ = fitted(n_nearest=1)
    with pytest.raises(DataError) as e:
        r.update(models=["code-model"], scores=[0.5], costs=[-1.0], clusters=[0])
    assert str(e.value) == "costs must be one finite number >= 0 per score"
    with pytest.raises(DataError) as e:
        r.update(models=["code-model"], scores=[0.5])
    assert str(e.value) == "update needs queries, embeddings or clusters"


def test_impute_by_the_first_task_fills_costs_with_the_global_means() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    a = _arrays(r)
    assert r.tasks_[0] == "arithmetic"
    data = OutcomeData(["q1"], ["math-model", "chef-model"], np.array([[np.nan, np.nan]]),
                       np.array([[np.nan, 0.7]]), ["arithmetic"])  # fmt: skip
    out = r.impute(data, by="task")
    means = a["task_score_sums"][0].sum(0) / a["task_score_counts"][0].sum(0)
    np.testing.assert_allclose(out.scores[0], means[:2])
    assert out.costs is not None
    assert out.costs[0, 0] == pytest.approx(r.global_costs_[0]) and out.costs[0, 1] == 0.7
    assert out.notes[-1] == "not added (models the data never names): code-model"
    one = OutcomeData(["q1"], ["math-model"], np.array([[np.nan]]), None, ["arithmetic"])
    assert r.impute(one, by="task").notes[-1] == (
        "not added (models the data never names): chef-model, code-model"
    )


def test_update_from_outcome_data_records_labels() -> None:
    r, _ = fitted(n_nearest=1)
    before = _arrays(r)
    n = len(r.labels_)
    data = OutcomeData(["q"], ["code-model"], np.array([[0.25]]), None, None)
    r.update(data, clusters=np.array([2.0]))  # ids given as floats are ids
    after = _arrays(r)
    assert after["score_sums"][2, 2] - before["score_sums"][2, 2] == pytest.approx(0.25)
    assert len(r.labels_) == n + 1 and r.labels_[-1] == 2


def test_impute_defaults_to_query_and_keeps_the_source() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    data = OutcomeData(["q1", "q2"], ["math-model"], np.array([[np.nan], [0.5]]), None, None,
                       source="ratings.csv")  # fmt: skip
    by_default = r.impute(data, embeddings=QUERIES[:2])
    np.testing.assert_array_equal(
        by_default.scores, r.impute(data, embeddings=QUERIES[:2], by="query").scores
    )
    assert by_default.source == "ratings.csv"


def test_pick_probabilities_at_the_alpha_asked() -> None:
    r, _ = fitted(n_nearest=1)  # alpha 1: each topic's specialist
    np.testing.assert_array_equal(r.pick_probabilities(QUERIES[:3], alpha=0.0),
                                  [[0.0, 1.0, 0.0]] * 3)  # all to the cheapest  # fmt: skip
    np.testing.assert_array_equal(r.pick_probabilities(QUERIES[:3]), np.eye(3))


def test_pick_probabilities_with_exploration_use_the_alpha_asked() -> None:
    """With exploration on, the draws are ranked with the trade-off: the alpha asked must reach
    that ranking too, not only the estimate (one router asked for alpha 0 equals a router set to
    alpha 0, and differs from the router's own alpha 1)."""
    r, _ = fitted(n_nearest=1, explore=1.0)
    at_zero, _ = fitted(n_nearest=1, explore=1.0, alpha=0.0)
    asked = r.pick_probabilities(QUERIES[:3], alpha=0.0, draws=32)
    np.testing.assert_array_equal(asked, at_zero.pick_probabilities(QUERIES[:3], draws=32))
    assert not np.array_equal(asked, r.pick_probabilities(QUERIES[:3], draws=32))


def test_update_and_impute_embed_the_queries_themselves() -> None:
    """Without embeddings or clusters, ``update`` and ``impute`` embed the queries with the
    router's embedder (a table of the hand-made vectors here): the same statistics and fills as
    when the vectors are given."""
    kw = {"n_nearest": 1, "shrinkage": 0.0, "scoring": "hybrid", "n_neighbors": 4}
    r, emb, rows = table_fitted(**kw)
    given, _, _ = table_fitted(**kw)
    queries = [str(rows[i]["query"]) for i in (25, 12, 3)]  # a code, cooking, arithmetic query
    X = np.array([emb.vectors[q] for q in queries])
    r.update(queries=queries, models=["code-model", "chef-model", "math-model"],
             scores=[0.25, 0.5, 0.75])  # fmt: skip
    assert emb.calls == [queries] and not emb.show_progress
    given.update(models=["code-model", "chef-model", "math-model"], scores=[0.25, 0.5, 0.75],
                 embeddings=X)  # fmt: skip
    mine, theirs = _arrays(r), _arrays(given)
    assert mine.keys() == theirs.keys() and "train_embeddings" in mine
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    np.testing.assert_array_equal(r.labels_[-3:], [2, 1, 0])
    # by query, without embeddings: embedded, and filled with the estimate of those vectors
    data = OutcomeData(queries, ["math-model"], np.array([[np.nan], [0.5], [np.nan]]), None,
                       None)  # fmt: skip
    emb.calls.clear()
    filled = r.impute(data)
    assert emb.calls == [queries]
    est = r.estimate(X)
    assert filled.scores[0, 0] == pytest.approx(est.performance[0, 0])
    assert filled.scores[2, 0] == pytest.approx(est.performance[2, 0])
    assert filled.scores[1, 0] == 0.5
    # by task: no embedding at all
    emb.calls.clear()
    r.impute(data, by="task")
    assert emb.calls == []
    # queries that are not strings: refused before embedding
    with pytest.raises(ConfigError, match="query 1 must be a string, got int"):
        r.update(queries=["q", 3], models=["code-model"] * 2, scores=[1.0, 1.0])  # type: ignore[list-item]
    assert emb.calls == []


def test_batch_messages_in_full_and_the_inputs_batches_take() -> None:
    """The refusals word for word (no stray text around them); an empty batch is a batch; a
    column of numbers is read as a list; a missing number (None) is refused as not finite."""
    cases = [
        ({"models": ["a"], "scores": [1.0], "weights": [-1.0]},
         "weights must be finite numbers > 0"),
        ({"models": ["a"], "scores": [1.0], "weights": [None]},
         "weights must be finite numbers > 0"),
        ({"models": ["a"]}, "update needs data, or models and scores (and queries or clusters)"),
        ({"models": ["a"], "scores": [2.0]}, "scores must be finite numbers in [0, 1]"),
        ({"models": ["a"], "scores": [None]}, "scores must be finite numbers in [0, 1]"),
        ({"models": ["a"], "scores": [0.5], "costs": [None]},
         "costs must be one finite number >= 0 per score"),
    ]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises(DataError) as e:
            online.as_batch(None, **kwargs)  # type: ignore[arg-type]
        assert str(e.value) == message, kwargs
    rows = [{"query": "q", "scores": {"a": 1.0}, "costs": {"a": 0.25}}]
    for extra in ({"scores": [1.0]}, {"costs": [1.0]}, {"models": ["a"]}):
        with pytest.raises(DataError) as e:
            online.as_batch(rows, **extra)  # type: ignore[arg-type]
        assert str(e.value) == "give either data or models and scores, not both", extra
    # outcome data keeps its costs
    d = online.as_batch(rows)
    assert d.costs is not None and d.costs.tolist() == [[0.25]]
    # an empty batch
    empty = online.as_batch(None, models=[], scores=[], costs=[], weights=[])
    assert len(empty) == 0 and empty.models == [] and empty.weights is not None
    assert empty.costs is not None and empty.costs.shape == (0, 0)
    # columns (n, 1) of scores, costs and weights are read as lists
    col = online.as_batch(None, models=["a", "b"], scores=np.array([[0.5], [1.0]]),
                          costs=[[1.0], [2.0]], weights=np.array([[2.0], [3.0]]))  # fmt: skip
    np.testing.assert_array_equal(col.scores, [[0.5, np.nan], [np.nan, 1.0]])
    assert col.costs is not None
    np.testing.assert_array_equal(col.costs, [[1.0, np.nan], [np.nan, 2.0]])
    np.testing.assert_array_equal(col.weights, [2.0, 3.0])  # type: ignore[arg-type]


def test_updates_empty_in_columns_by_new_models_and_on_a_loaded_router() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    before = _arrays(r)
    n = len(r.labels_)
    r.update(models=[], scores=[], costs=[], weights=[], clusters=[])  # counts nothing
    for name, value in _arrays(r).items():  # (the global means recomputed, to the last bit)
        np.testing.assert_allclose(value, before[name], rtol=0, atol=1e-12, err_msg=name)
    assert r.training_summary_["online_updates"] == 1 and len(r.labels_) == n
    # cluster ids as a column
    r.update(models=["math-model"], scores=[0.5], clusters=np.array([[1]]))
    assert _arrays(r)["score_sums"][1, 0] - before["score_sums"][1, 0] == pytest.approx(0.5)
    assert r.labels_.tolist()[n:] == [1]
    # models the router does not know are added by their names, in order
    r.update(models=["new-a", "new-b", "new-a"], scores=[1.0, 0.0, 0.5], clusters=[0, 1, 2])
    assert r.models_ == [*MODELS, "new-a", "new-b"]
    assert r.training_summary_["added_models"] == ["new-a", "new-b"]
    np.testing.assert_array_equal(online.added_mask(r), [False] * 3 + [True] * 2)
    a = _arrays(r)
    np.testing.assert_array_equal(a["score_sums"][:, 3], [1.0, 0.0, 0.5])
    np.testing.assert_array_equal(a["score_counts"][:, 4], [0.0, 1.0, 0.0])
    # a loaded router keeps no cluster labels (routing does not need them): an update starts
    # no partial list
    loaded = Router.from_state(*r.state())
    assert loaded.labels_.tolist() == []
    loaded.update(models=["math-model"], scores=[1.0], clusters=[2])
    assert loaded.labels_.tolist() == []
    # an object without a training summary has no added models
    from types import SimpleNamespace

    assert online.added_mask(SimpleNamespace(models_=["a", "b"])).tolist() == [False, False]


def test_update_reads_given_vectors_as_routing_does() -> None:
    """Float64 vectors on the border of two clusters: ``update`` counts the outcome in the
    cluster routing sends the same vector to (both read vectors as float32)."""
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    v = np.array([[0.5 - 1e-9, 0.5 + 1e-9, 0.0, 0.0]])  # nearer cluster 1 in float64 only
    routed = int(r.estimate(v).nearest[0])
    assert routed == 0  # a tie in float32: the first
    before = _arrays(r)
    r.update(models=["chef-model"], scores=[1.0], embeddings=v)
    d = _arrays(r)["score_counts"] - before["score_counts"]
    assert d[routed, 1] == 1.0 and d.sum() == 1.0 and r.labels_[-1] == routed


def test_impute_keeps_tasks_and_needs_vectors_by_query() -> None:
    r, _ = fitted(n_nearest=1, shrinkage=0.0)
    data = OutcomeData(["q1", "q2"], ["math-model", "other", "more"],
                       np.array([[np.nan, 1.0, 0.0], [0.5, np.nan, 1.0]]), None,
                       ["code", "cooking"])  # fmt: skip
    out = r.impute(data, embeddings=QUERIES[:2])
    assert out.tasks == ["code", "cooking"] and out.queries == ["q1", "q2"]
    assert out.notes[1] == "not filled (models the router does not know): other, more"
    assert r.impute(data, by="task").tasks == ["code", "cooking"]
    with pytest.raises(DataError) as e:
        online.impute_outcomes(r, data, None)
    assert str(e.value) == "0 embeddings for 2 queries"
    untasked = OutcomeData(["q1"], ["math-model"], np.array([[np.nan]]), None, None)
    assert r.impute(untasked, by="task").notes[1] == (
        "no row has a task the router was fitted with: every gap got the model's global "
        'mean, which made a much worse refit on the shared data than by="query"'
    )


def _explore_router() -> tuple[Router, np.ndarray]:
    r, _ = fitted(n_nearest=1, shrinkage=10.0, explore=0.5, random_state=7)
    r.add_model("new-model")
    r.update(models=["new-model"] * 3, scores=[0.8, 0.8, 0.8], clusters=[0, 1, 2])
    X = np.repeat(QUERIES[:3], 12, axis=0)
    return r, X


def test_routing_with_exploration_picks_what_the_policy_draws() -> None:
    """Routing with exploration: the picks are :func:`online.explore_picks` on the estimate at
    the alpha asked (else the router's), with the added model's posterior counting its
    EXPLORE_PSEUDO_COUNT pseudo-observations, drawn from one generator seeded with
    ``random_state`` that goes on from call to call."""
    r, X = _explore_router()
    pseudo = np.array([10.0, 10.0, 10.0, online.EXPLORE_PSEUDO_COUNT])
    rng = np.random.default_rng(7)

    def want(alpha: float, pseudo_count: np.ndarray, gen: np.random.Generator) -> list[int]:
        est = r.estimate(X, alpha=alpha)
        return online.explore_picks(est.performance, est.evidence, est.cost, alpha, est.best,
                                    share=0.5, pseudo_count=pseudo_count,
                                    rng=gen).tolist()  # fmt: skip

    def got(alpha: float | None) -> list[int]:
        out = []
        for d in r.route_embeddings(X, alpha=alpha):
            out.append(r.models_.index(d.ranking[0].model) if d.explored else -1)
        return out

    first = want(0.25, pseudo, rng)
    assert got(0.25) == first
    assert 0 < sum(p >= 0 for p in first) < len(first)  # some explored, not all
    second = want(1.0, pseudo, rng)  # the router's alpha; the generator goes on
    assert got(None) == second
    # the test tells these apart: other pseudo counts, alpha or seed draw other picks
    assert want(0.25, np.full(4, 10.0), np.random.default_rng(7)) != first
    assert want(1.0, pseudo, np.random.default_rng(7)) != second
    assert want(0.25, pseudo, np.random.default_rng(8)) != first
    off, _ = fitted(n_nearest=1, shrinkage=2.0, random_state=7)
    assert not any(d.explored for d in off.route_embeddings(X))


def test_pick_probabilities_follow_the_seed_the_draws_and_the_added_models() -> None:
    r, X = _explore_router()
    est = r.estimate(X)
    pseudo = np.array([10.0, 10.0, 10.0, online.EXPLORE_PSEUDO_COUNT])

    def want(pseudo_count: np.ndarray, seed: int, draws: int) -> np.ndarray:
        return online.pick_probabilities(est.performance, est.evidence, est.cost, 1.0, est.best,
                                         share=0.5, pseudo_count=pseudo_count,
                                         rng=np.random.default_rng(seed), draws=draws)  # fmt: skip

    p = r.pick_probabilities(X)
    np.testing.assert_array_equal(p, want(pseudo, 7, 64))
    assert not np.array_equal(p, want(np.full(4, 10.0), 7, 64))
    assert not np.array_equal(p, want(pseudo, 8, 64))
    assert not np.array_equal(p, want(pseudo, 7, 65))
    np.testing.assert_array_equal(r.pick_probabilities(X), p)  # fresh draws from the seed
