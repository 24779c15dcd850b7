from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
from avengers import (
    ArtifactError,
    ConfigError,
    NotFittedError,
    Router,
    evaluate,
    outcomes_from_rows,
)
from avengers.routing.scoring import minmax, tradeoff
from toy import SKILL, toy_rows


def test_routes_each_topic_to_its_specialist(toy_router: Router) -> None:
    cases = {
        "What is 56 times 3?": "math-model",
        "How do I bake a lemon cake?": "chef-model",
        "Write a Python function that merges two sorted lists.": "code-model",
    }
    decisions = toy_router.route_batch(list(cases))
    assert [d.model for d in decisions] == list(cases.values())
    d = decisions[0]
    assert d.query == "What is 56 times 3?"
    # the cluster is (mostly) the arithmetic questions: the estimate is near the math model's 1.0
    assert d.ranking[0].performance > 0.8 > d.ranking[1].performance
    assert d.ranking[0].evidence >= 8
    assert d.expected_cost == pytest.approx(1.0)
    assert 0 <= d.cluster < 3 and d.distance > 0
    assert d.cluster_weights == {d.cluster: 1.0}
    assert "math-model" in d.explain()


def test_fit_returns_self_and_fitted_attributes(embedder) -> None:
    r = Router.paper(3, embedder=embedder)
    assert r.fit(toy_rows()) is r
    assert r.models_ == list(SKILL)
    assert r.cluster_centers_.shape == (3, 384)
    assert r.cluster_sizes_.sum() == 30
    np.testing.assert_allclose(r.global_scores_, [0.4, 0.3666667, 0.4333333], atol=1e-6)


def test_unfitted_router_raises() -> None:
    r = Router()
    with pytest.raises(NotFittedError, match="not fitted"):
        r.route("hello")
    # also catchable as scikit-learn's NotFittedError
    from sklearn.exceptions import NotFittedError as SkNotFitted

    with pytest.raises(SkNotFitted):
        r.predict(np.zeros((1, 384), dtype=np.float32))
    # evaluating or answering with it says the same, before touching the data or the endpoints
    said = "this Router is not fitted yet: call fit(...) or Router.from_pretrained(...)"
    with pytest.raises(NotFittedError) as e:
        evaluate(r, outcomes_from_rows(toy_rows()))
    assert str(e.value) == said
    from avengers import Answerer

    with pytest.raises(NotFittedError) as e:
        Answerer(r, {"m": {"base_url": "http://127.0.0.1:9/v1"}})
    assert str(e.value) == said


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"alpha": 1.5}, "alpha must be in"),
        ({"n_clusters": 0}, "n_clusters must be a positive"),
        ({"scoring": "magic"}, "scoring must be"),
        ({"clustering": "dbscan"}, "clustering must be one of"),
        ({"top_k": 0}, "top_k must be"),
    ],
)
def test_bad_settings(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Router(**kw).fit(toy_rows())  # type: ignore[arg-type]


def test_set_params_rejects_unknown(toy_router: Router) -> None:
    with pytest.raises(ConfigError, match="unknown router setting 'k'"):
        toy_router.set_params(k=3)


def test_alpha_trades_quality_for_cost(embedder) -> None:
    r = Router.paper(3, embedder=embedder).fit(toy_rows())
    q = "How many grams are in a kilogram times 3?"
    assert r.route(q).model == "math-model"
    r.set_params(alpha=0.0)  # pure cost: the cheapest model wins everywhere
    assert {d.model for d in r.route_batch(["What is 5 + 5?", "Write a sort in Python"])} == {
        "chef-model"
    }
    r.set_params(alpha=1.0)


def test_tradeoff_normalization_and_ties() -> None:
    perf = np.array([[0.2, 0.4, 0.6], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(minmax(perf), [[0, 0.5, 1], [1, 1, 1]])
    cost = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    s = tradeoff(perf, cost, 0.5)
    np.testing.assert_allclose(s[0], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(s[1], [1.0, 1.0, 1.0])  # all tie: nothing to prefer
    np.testing.assert_allclose(tradeoff(perf, cost, 1.0), minmax(perf))


def test_top_k_and_soft_routing(embedder) -> None:
    r = Router(n_clusters=3, top_k=2, n_nearest=3, softmax_temperature=0.05, embedder=embedder)
    r.fit(toy_rows())
    d = r.route("What is 12 times 12?")
    assert len(d.models) == 2 and d.models[0] == "math-model"
    assert len(d.cluster_weights) == 3
    assert sum(d.cluster_weights.values()) == pytest.approx(1.0)
    assert max(d.cluster_weights.values()) == d.cluster_weights[d.cluster]
    assert d.method == "soft-cluster"


def test_thin_clusters_fall_back_to_global(embedder) -> None:
    r = Router.paper(3, min_cluster_size=31, embedder=embedder).fit(toy_rows())
    d = r.route("What is 9 times 9?")
    assert d.fallback is not None and "global ranking" in d.fallback
    assert d.method == "global"
    assert d.ranking[0].performance == pytest.approx(r.global_scores_.max())


def test_far_queries_fall_back_to_global(embedder) -> None:
    # the threshold is the training queries' 99th distance percentile: an arithmetic question
    # is within it, a physics one beyond (at the median, 0.5, even some training-like
    # arithmetic questions are beyond it)
    r = Router.paper(3, far_quantile=0.99, embedder=embedder).fit(toy_rows())
    far, near = r.route_batch(["Quantum chromodynamics of gluon plasma", "What is 2 plus 2?"])
    said = re.fullmatch(
        r"query is far from every cluster \(distance (\d\.\d{3}) > (\d\.\d{3})\): "
        r"global ranking used",
        far.fallback or "",
    )
    assert said, far.fallback
    threshold = float(said[2])
    assert said[1] == f"{far.distance:.3f}" and far.distance > threshold
    assert np.quantile(r.train_distances_, 0) <= threshold <= r.train_distances_.max()
    assert far.method == "global"
    assert far.ranking[0].performance == pytest.approx(r.global_scores_.max())
    # the near query is routed by its cluster as usual
    assert near.fallback is None and near.method == "cluster"
    assert near.distance < threshold and near.model == "math-model"
    # its estimate is its cluster's (n_nearest 1, plain means), not the global one
    cluster_mean = r.cluster_scores()[near.cluster, r.models_.index("math-model")]
    assert near.ranking[0].performance == pytest.approx(cluster_mean)
    assert cluster_mean > r.global_scores_.max() + 0.3


def test_missing_outcomes_are_not_zeros(embedder) -> None:
    rows = toy_rows(with_cost=False)
    for row in rows:  # the code model never ran on code questions
        if row["task"] == "code":
            del row["scores"]["code-model"]  # type: ignore[attr-defined]
    r = Router.paper(3, embedder=embedder).fit(rows)
    d = r.route("Write a Python function that sums a list.")
    code = next(m for m in d.ranking if m.model == "code-model")
    # no evidence in that cluster: the estimate is the model's global mean, not 0
    assert code.evidence == 0
    assert code.performance == pytest.approx(r.global_scores_[2])
    assert code.performance > 0


def test_knn_and_hybrid_scoring(embedder) -> None:
    for scoring in ("knn", "hybrid"):
        r = Router(n_clusters=3, scoring=scoring, n_neighbors=5, embedder=embedder).fit(toy_rows())
        assert r.route("How do I fry an egg?").model == "chef-model"
        assert r.train_embeddings_.shape == (30, 384)


def test_async_route_matches_sync(toy_router: Router) -> None:
    q = "Write a Python function that counts vowels."
    a = asyncio.run(toy_router.aroute(q))
    assert a == toy_router.route(q)


def test_route_rejects_non_strings(toy_router: Router) -> None:
    with pytest.raises(ConfigError, match="query 1 must be a string"):
        toy_router.route_batch(["ok", 3])  # type: ignore[list-item]


def test_reproducible_with_seed(embedder) -> None:
    X = embedder.embed([r["query"] for r in toy_rows()])  # type: ignore[misc]
    a = Router(n_clusters=4, random_state=7).fit(toy_rows(), embeddings=X)
    b = Router(n_clusters=4, random_state=7).fit(toy_rows(), embeddings=X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_evaluate_reports_baselines(toy_router: Router) -> None:
    test = outcomes_from_rows(
        [
            {
                "query": "What is 8 times 7?",
                "scores": {"math-model": 1, "chef-model": 0, "code-model": 0},
            },
            {
                "query": "How do I poach salmon?",
                "scores": {"math-model": 0, "chef-model": 1, "code-model": 0},
            },
            {
                "query": "Write a Python function for factorial.",
                "scores": {"math-model": 0, "chef-model": 0, "code-model": 1},
            },
        ]
    )
    e = evaluate(toy_router, test)
    assert e.accuracy == 1.0 and e.oracle == 1.0
    assert e.best_single == pytest.approx(1 / 3)
    assert e.gap_closed == pytest.approx(1.0)
    assert e.random == pytest.approx(1 / 3)
    assert e.routed_share == pytest.approx({m: 1 / 3 for m in SKILL})
    assert "gap closed: 100.0%" in e.table()


def test_tune_picks_settings_by_cross_validation(embedder) -> None:
    from avengers import tune
    from avengers.training.data import as_outcomes

    data = as_outcomes(toy_rows())
    X = embedder.embed(data.queries)
    best, results = tune(data, {"n_clusters": [1, 3]}, base=Router.paper(), embeddings=X, folds=3)
    scores = {p["n_clusters"]: acc for p, acc in results}
    # one cluster cannot tell topics apart; three can
    assert scores[3] > scores[1] + 0.3
    assert best["n_clusters"] == 3


def test_cross_validated_best_single_baseline() -> None:
    from avengers import outcomes_from_rows
    from avengers.training.evaluation import cross_validate_best_single

    # "a" is right on 3 of 4 queries and "b" on 1; "b" has no outcome for the last query
    rows = [
        {"query": "q1", "scores": {"a": 1, "b": 0}},
        {"query": "q2", "scores": {"a": 1, "b": 0}},
        {"query": "q3", "scores": {"a": 1, "b": 1}},
        {"query": "q4", "scores": {"a": 0}},
    ]
    data = outcomes_from_rows(rows)
    # with 4 folds the training folds always prefer "a", so the baseline is a's mean score
    assert cross_validate_best_single(data, folds=4) == pytest.approx(0.75)
    rows[3] = {"query": "q4", "scores": {"b": 1}}
    data = outcomes_from_rows(rows)
    # now "a" has no outcome on q4 and counts 0 there when q4 is held out
    assert cross_validate_best_single(data, folds=4) == pytest.approx(0.75)


def test_clone_gives_an_unfitted_router_with_equal_settings(toy_router: Router, embedder) -> None:
    from sklearn.base import clone

    params = toy_router.get_params()
    assert params["embedder"] is embedder
    copy = clone(toy_router)
    assert type(copy) is Router and not copy.is_fitted()
    assert copy.get_params() == params
    assert copy.get_params()["embedder"] is embedder  # shared, not deep-copied
    copy.set_params(n_clusters=2)  # the original keeps its settings and fitted state
    assert toy_router.n_clusters == 3 and toy_router.is_fitted()
    # scikit-learn's repr: changed settings only, by name (wrapped when long)
    assert " ".join(repr(copy).split()) == (
        f"Router(classifier_weight=0.0, embedder={embedder!r}, n_clusters=2, n_nearest=1, "
        "shrinkage=0.0)"
    )
    assert repr(Router(n_clusters=8)) == "Router(n_clusters=8)"


def test_set_params_embedder_replaces_the_embedder_in_use(embedder) -> None:
    r = Router(n_clusters=3, embedder="no/such-model").set_params(embedder=embedder)
    assert r.get_embedder() is embedder
    with pytest.raises(ConfigError, match="top_k must be a positive integer, got 0"):
        r.set_params(alpha=0.5, top_k=0)
    assert r.alpha == 1.0 and r.top_k == 1  # a refused change changes nothing


def test_estimate_is_the_batch_form_of_route(toy_router: Router) -> None:
    from avengers.decision import RouteEstimate

    queries = ["What is 56 times 3?", "How do I bake a lemon cake?"]
    X = toy_router.embed(queries)
    est = toy_router.estimate(X)
    assert isinstance(est, RouteEstimate)
    n, m = 2, len(toy_router.models_)
    for field in ("performance", "cost", "evidence", "score", "order"):
        assert getattr(est, field).shape == (n, m)
    assert est.nearest.shape == est.distance.shape == est.best.shape == (n,)
    assert est.clusters.shape == est.weights.shape == (n, 1)
    assert est.fallback == (None, None)
    decisions = toy_router.route_batch(queries)
    assert [toy_router.models_[i] for i in est.best] == [d.model for d in decisions]
    np.testing.assert_array_equal(toy_router.predict(X), est.best)
    cheap = toy_router.estimate(X, alpha=0.0)  # per-call override: cost only
    assert {toy_router.models_[i] for i in cheap.best} == {"chef-model"}
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\], got -0.1"):
        toy_router.estimate(X, alpha=-0.1)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("n_clusters", 0, "n_clusters must be a positive integer, got 0"),
        ("n_clusters", 2.5, "n_clusters must be a positive integer"),
        ("top_k", True, "top_k must be a positive integer, got True"),
        ("alpha", 1.5, r"alpha must be in \[0, 1\], got 1.5"),
        ("alpha", float("nan"), r"alpha must be in \[0, 1\]"),
        ("n_nearest", 0, "n_nearest must be a positive integer"),
        ("softmax_temperature", -1.0, "softmax_temperature must be a number >= 0"),
        ("scoring", "magic", "scoring must be one of 'cluster', 'knn', 'hybrid'"),
        ("n_neighbors", 0, "n_neighbors must be a positive integer"),
        ("knn_weight", 2, r"knn_weight must be in \[0, 1\]"),
        ("shrinkage", -0.5, "shrinkage must be a number >= 0"),
        ("min_cluster_size", -1, "min_cluster_size must be an integer >= 0"),
        ("far_quantile", 0.0, r"far_quantile must be in \(0, 1\] or None"),
        ("sharpen_quantile", 0.3, r"sharpen_quantile must be in \[0.5, 1\] or None"),
        ("sharpen_width", -0.1, "sharpen_width must be a number >= 0"),
        ("clustering", "dbscan", "clustering must be one of 'kmeans', 'minibatch'"),
        ("random_state", "seed", "random_state must be an integer or None"),
        ("embedder", 42, "embedder must be None, a model name or an embedder object"),
    ],
)
def test_every_setting_is_checked(name: str, value: object, message: str) -> None:
    from avengers.params import ROUTER_PARAMS, check_param

    assert set(ROUTER_PARAMS) == set(Router().get_params())
    with pytest.raises(ConfigError, match=message):
        check_param(name, value)
    with pytest.raises(ConfigError, match=message):
        Router().set_params(**{name: value})
    with pytest.raises(ConfigError, match=message):
        Router(**{name: value}).fit(toy_rows())  # type: ignore[arg-type]


def test_state_round_trip_routes_the_same(embedder) -> None:
    import json

    r = Router(n_clusters=3, scoring="hybrid", n_neighbors=4, embedder=embedder).fit(toy_rows())
    config, arrays = r.state()
    json.dumps(config, allow_nan=False)  # the config is plain JSON
    assert config["embedder"] == {"name": embedder.name, "dimension": 384}
    assert "embedder" not in config["params"] and config["params"]["scoring"] == "hybrid"
    assert arrays["train_embeddings"].dtype == np.float16  # stored at half precision
    back = Router.from_state(config, arrays, embedder=embedder)
    queries = ["What is 13 times 7?", "How do I make risotto creamy?", "Sort a list in Python"]
    assert [d.models for d in back.route_batch(queries)] == [
        d.models for d in r.route_batch(queries)
    ]
    np.testing.assert_array_equal(back.cluster_centers_, r.cluster_centers_)
    assert back.get_params() == r.get_params()
    del arrays["score_sums"]
    with pytest.raises(ArtifactError, match=r"missing arrays \['score_sums'\]"):
        Router.from_state(config, arrays)


def test_summary_is_plain_data(toy_router: Router) -> None:
    import json

    s = toy_router.summary()
    json.dumps(s, allow_nan=False)
    assert s["models"] == list(SKILL) and len(s["clusters"]) == 3
    assert sum(row["size"] for row in s["clusters"]) == 30
    assert set(s["clusters"][0]["scores"]) == set(SKILL)


def test_relative_temperature_reads_distance_ratios() -> None:
    from avengers.routing.scoring import softmax_weights

    sq = np.array([[0.25, 0.36, 0.64], [0.0, 0.01, 0.04]])
    idx, w = softmax_weights(sq, 3, 0.1, relative=True)
    idx2, w2 = softmax_weights(sq * 9.0, 3, 0.1, relative=True)  # distances tripled
    assert np.array_equal(idx, idx2)
    np.testing.assert_allclose(w[0], w2[0])  # the same ratios give the same weights
    assert np.isfinite(w).all() and w[1, 0] == w.max(axis=1)[1]  # a query on a centroid
    _, wa = softmax_weights(sq * 9.0, 3, 0.1)
    assert wa[0, 0] > w2[0, 0]  # absolute mode: farther apart means sharper


def test_hybrid_classifier_estimate_names_its_signal(embedder) -> None:
    from avengers.routing.scoring import evidence_share

    r = Router(n_clusters=3, classifier_weight=0.3, embedder=embedder).fit(toy_rows())
    assert r.classifier_coef_.shape == (3, 384)
    d = r.route("How do I fry an egg?")
    assert d.model == "chef-model"
    assert d.signal in ("both", "cluster", "classifier", "blend")
    assert d.classifier_share == pytest.approx(0.3)
    assert "signal:" in d.explain() and "success classifier weight 0.30" in d.explain()
    # more local evidence, less weight on the classifier
    share = evidence_share(np.array([[0.0, 0.0], [30.0, 30.0], [300.0, 300.0]]), 0.5, 30.0)
    np.testing.assert_allclose(share, [0.5, 0.25, 0.5 * 30 / 330])
    # the classifiers are part of the saved state
    config, arrays = r.state()
    again = Router.from_state(config, arrays, embedder=embedder)
    assert again.route("How do I fry an egg?").ranking == d.ranking
    # off: no signal, no classifier arrays
    plain = Router(n_clusters=3, classifier_weight=0.0, embedder=embedder).fit(toy_rows())
    assert plain.classifier_coef_ is None and plain.route("How do I fry an egg?").signal is None
    with pytest.raises(ConfigError, match="fit again"):
        plain.set_params(classifier_weight=0.2).route("How do I fry an egg?")


def test_task_hints_restrict_evidence_to_that_task(embedder) -> None:
    r = Router(n_clusters=3, embedder=embedder).fit(toy_rows(with_cost=False))
    assert r.tasks_ == ["arithmetic", "code", "cooking"]
    q = "What is 12 times 12?"
    plain = r.route(q)
    assert plain.model == "math-model" and plain.task is None
    # with a hint the cluster's arithmetic rows do not count: cooking evidence only
    hinted = r.route(q, task="cooking")
    assert hinted.model == "chef-model" and hinted.task == "cooking"
    assert "task hint: cooking" in hinted.explain()
    # an unknown or missing hint changes nothing
    assert r.route(q, task="astronomy").ranking == plain.ranking
    batch = r.route_batch([q, q], tasks=[None, "code"])[0]
    assert [m.model for m in batch.ranking] == [m.model for m in plain.ranking]
    assert batch.ranking[0].performance == pytest.approx(plain.ranking[0].performance)
    X = r.embed([q])
    np.testing.assert_allclose(r.estimate(X, tasks=[None]).performance, r.estimate(X).performance)
    with pytest.raises(ConfigError, match="task hints"):
        r.estimate(X, tasks=["code", "code"])
    config, arrays = r.state()
    again = Router.from_state(config, arrays, embedder=embedder)
    assert again.route(q, task="cooking").ranking == hinted.ranking


def _three_cluster_router(**kw: object) -> tuple[Router, np.ndarray]:
    """A router on 2-d points around three centroids: model "a" is right only near (0, 0),
    model "b" right near the other two; soft weights with a wide temperature."""
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    X = np.repeat(centers, 10, axis=0) + rng.normal(0, 0.05, (30, 2)).astype(np.float32)
    rows = [
        {"query": f"q{i}", "scores": {"a": float(i < 10), "b": float(i >= 10)}} for i in range(30)
    ]
    settings = dict(n_nearest=3, softmax_temperature=5.0, shrinkage=0.0, classifier_weight=0.0)
    r = Router(3, **{**settings, **kw}).fit(  # type: ignore[arg-type]
        outcomes_from_rows(rows), embeddings=X, centroids=centers
    )
    return r, np.array([[0.02, 0.01], [-3.0, 0.0]], dtype=np.float32)  # near, far


def test_sharpening_narrows_soft_weights_for_far_queries_only() -> None:
    soft, Q = _three_cluster_router()
    assert soft.estimate(Q).best.tolist() == [1, 1]  # wide weights: "b" wins two clusters of three
    step, _ = _three_cluster_router(sharpen_quantile=0.9, sharpen_width=0.0)
    near, far = step.route_embeddings(Q)
    assert far.cluster_weights[far.cluster] == pytest.approx(1.0) and far.model == "a"
    assert near.cluster_weights == soft.route_embeddings(Q)[0].cluster_weights  # unchanged
    # a width: far beyond it, the nearest cluster only; within it, between soft and step
    ramp, _ = _three_cluster_router(sharpen_quantile=0.9, sharpen_width=1000.0)
    w_soft, w_ramp = soft.estimate(Q).weights[1, 0], ramp.estimate(Q).weights[1, 0]
    assert w_soft < w_ramp < 1.0
    assert _three_cluster_router(sharpen_quantile=0.9, sharpen_width=0.5)[0].estimate(Q).weights[
        1, 0
    ] == pytest.approx(1.0)


def test_sharpening_is_saved_and_old_states_route_as_before() -> None:
    r, Q = _three_cluster_router(sharpen_quantile=0.9, sharpen_width=0.0)
    config, arrays = r.state()
    assert config["params"]["sharpen_quantile"] == 0.9
    again = Router.from_state(config, arrays)
    assert again.sharpen_quantile == 0.9 and again.estimate(Q).best.tolist() == [1, 0]
    # a state saved before the setting existed: sharpening off, the soft weights of then
    plain_config, _ = _three_cluster_router()[0].state()
    assert "sharpen_quantile" not in plain_config["params"]  # off: not recorded, old readers work
    old = {**config, "params": dict(config["params"])}
    del old["params"]["sharpen_quantile"], old["params"]["sharpen_width"]
    before = Router.from_state(old, arrays)
    assert before.sharpen_quantile is None
    np.testing.assert_array_equal(
        before.estimate(Q).weights, _three_cluster_router()[0].estimate(Q).weights
    )
