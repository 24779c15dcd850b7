"""Online learning: updates, new models, forgetting, exploration, feedback stores, the feedback
route, snapshots."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from avengers import ConfigError, DataError, OutcomeData, Router
from avengers.stores.feedback import (
    AlreadyRatedError,
    FeedbackError,
    FeedbackStore,
    RedisFeedbackStore,
    SQLiteFeedbackStore,
    UnknownResponseError,
)

MODELS = ["a", "b", "c"]


def _data(n: int = 240, seed: int = 0, d: int = 16) -> tuple[OutcomeData, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    scores = rng.random((n, len(MODELS))).round(2)
    scores[rng.random(scores.shape) < 0.2] = np.nan  # some outcomes unknown
    scores[np.isnan(scores).all(axis=1), 0] = 0.5  # (a row with none known breaks the summary)
    costs = np.where(np.isnan(scores), np.nan, rng.random(scores.shape))
    data = OutcomeData([f"q{i}" for i in range(n)], list(MODELS), scores, costs)
    return data, X


STATS = ("score_sums_", "score_counts_", "global_scores_", "cost_sums_", "cost_counts_",
         "global_costs_", "cluster_sizes_")  # fmt: skip


def _assert_same_stats(r1: Router, r2: Router, *, skip_prior: tuple[int, ...] = ()) -> None:
    """Same statistics; same estimates except in the columns ``skip_prior`` (models added after
    fit, whose shrinkage prior is the cold-start one by design)."""
    assert r1.models_ == r2.models_
    for name in STATS:
        np.testing.assert_allclose(getattr(r1, name), getattr(r2, name), rtol=1e-12, atol=1e-12)
    keep = [j for j in range(len(r1.models_)) if j not in skip_prior]
    np.testing.assert_allclose(
        r1.cluster_scores()[:, keep], r2.cluster_scores()[:, keep], atol=1e-12
    )


def test_update_equals_fit_on_the_union_for_fixed_centroids() -> None:
    data, X = _data()
    full = Router(8).fit(data, embeddings=X)
    centers = full.cluster_centers_
    a, b = np.arange(150), np.arange(150, len(data))
    r = Router(8).fit(data.subset(a), embeddings=X[a], centroids=centers)
    assert r.update(data.subset(b), embeddings=X[b]) is r
    _assert_same_stats(r, full)
    # the same outcomes one observation at a time, by nearest cluster, in the long form
    r2 = Router(8).fit(data.subset(a), embeddings=X[a], centroids=centers)
    rows, cols = np.nonzero(~np.isnan(data.scores[b]))
    labels = full.labels_[b]
    r2.update(
        models=[MODELS[j] for j in cols],
        scores=data.scores[b][rows, cols],
        costs=data.costs[b][rows, cols],  # type: ignore[index]
        clusters=labels[rows],
    )
    for name in ("score_sums_", "score_counts_", "global_scores_", "cost_sums_", "global_costs_"):
        np.testing.assert_allclose(getattr(r2, name), getattr(full, name), atol=1e-12)


def test_update_adds_models_it_has_not_seen_exactly_as_fit_would() -> None:
    data, X = _data(seed=1)
    a, b = np.arange(120), np.arange(120, len(data))
    full = Router(6).fit(data, embeddings=X)
    # model "c" is absent from the first part: fit that part on a and b only
    first = data.subset(a).select_models(["a", "b"])
    r = Router(6).fit(first, embeddings=X[a], centroids=full.cluster_centers_)
    r.update(data.subset(b), embeddings=X[b])
    # the full router saw c's outcomes on a as well: compare with a fit where they are unknown
    masked = data.subset(np.arange(len(data)))
    masked.scores[a, 2] = np.nan
    masked.costs[a, 2] = np.nan  # type: ignore[index]
    ref = Router(6).fit(masked, embeddings=X, centroids=full.cluster_centers_)
    # c was added by the update: same counts, but its prior is the cold-start one
    _assert_same_stats(r, ref, skip_prior=(2,))
    assert r.training_summary_["added_models"] == ["c"]


def _known_cluster_mean(r: Router, known: int) -> np.ndarray:
    from avengers.routing import scoring

    return scoring.shrunk_means(
        r.score_sums_[:, :known], r.score_counts_[:, :known], r.global_scores_[:known], r.shrinkage
    ).mean(axis=1)


def test_add_model_starts_at_the_prior() -> None:
    data, X = _data(seed=2)
    r = Router(4).fit(data, embeddings=X)
    before = r.cluster_scores()
    r.add_model("new")
    assert r.models_ == [*MODELS, "new"]
    prior = r.global_scores_[:3].mean()
    assert r.global_scores_[3] == pytest.approx(prior)
    # in each cluster: the known models' mean estimate there (cold-start prior), and the known
    # models' estimates do not change
    np.testing.assert_allclose(r.cluster_scores()[:, 3], _known_cluster_mean(r, 3), atol=1e-9)
    np.testing.assert_allclose(r.cluster_scores()[:, :3], before, atol=1e-12)
    assert r.score_counts_[:, 3].sum() == 0
    assert r.global_costs_ is not None and r.global_costs_[3] == pytest.approx(
        r.global_costs_[:3].mean()
    )
    with pytest.raises(ConfigError, match="already"):
        r.add_model("new")
    fixed = Router(4, new_model_prior=0.9).fit(data, embeddings=X).add_model("new")
    # new_model_prior shifts the known cluster means (on the logit scale) to an average of ~0.9
    new = fixed.cluster_scores()[:, 3]
    assert (new > _known_cluster_mean(fixed, 3)).all()
    assert new.mean() == pytest.approx(0.9, abs=0.03)
    # a routed estimate for the newcomer carries no evidence
    est = fixed.estimate(X[:5])
    assert (est.evidence[:, 3] == 0).all()
    # evidence moves it: bad outcomes in cluster 0 lower its estimate there
    fixed.update(models=["new"] * 40, scores=[0.0] * 40, clusters=[0] * 40)
    assert fixed.cluster_scores()[0, 3] < 0.3
    assert fixed.global_scores_[3] == pytest.approx(0.0)


def _two_level_data(seed: int = 0) -> tuple[OutcomeData, np.ndarray]:
    """Two well separated groups of queries: an easy one (known models score ~0.8) and a hard
    one (~0.1)."""
    rng = np.random.default_rng(seed)
    n = 400
    centers = np.zeros((2, 8), dtype=np.float32)
    centers[0, 0] = centers[1, 1] = 1.0
    group = np.arange(n) % 2
    X = centers[group] + 0.01 * rng.normal(size=(n, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    p = np.where(group == 0, 0.8, 0.1)[:, None] * np.ones((1, 2))
    scores = (rng.random((n, 2)) < p).astype(np.float64)
    return OutcomeData([f"q{i}" for i in range(n)], ["a", "b"], scores), X


def test_cold_start_prior_is_not_dragged_down_by_hard_queries() -> None:
    """A new model observed only on hard queries, where it does as well as the known models,
    must not look weak on the easy ones (the selection bias of exploration)."""
    data, X = _two_level_data()
    r = Router(2, n_nearest=1).fit(data, embeddings=X)
    easy = int(r.cluster_scores().mean(axis=1).argmax())
    hard = 1 - easy
    r.add_model("new")
    # 60 outcomes, all in the hard cluster, as good as the known models there (10 %)
    r.update(models=["new"] * 60, scores=[1.0] * 6 + [0.0] * 54, clusters=[hard] * 60)
    cs = r.cluster_scores()
    assert r.global_scores_[2] == pytest.approx(0.1)  # its plain mean: from hard queries only
    # its estimate on the easy cluster stays close to the known models there (~0.8), not 0.1
    assert cs[easy, 2] == pytest.approx(cs[easy, :2].mean(), abs=0.1)
    assert cs[easy, 2] > 0.6
    assert cs[hard, 2] == pytest.approx(0.1, abs=0.03)


def test_cold_start_prior_learns_a_better_model_everywhere() -> None:
    """Outcomes of a new model that beats the known models where it was tried raise its
    estimate in the clusters where it was not tried as well."""
    data, X = _two_level_data(seed=1)
    r = Router(2, n_nearest=1).fit(data, embeddings=X)
    easy = int(r.cluster_scores().mean(axis=1).argmax())
    hard = 1 - easy
    before = r.cluster_scores()
    r.add_model("new")
    r.update(models=["new"] * 60, scores=[1.0] * 24 + [0.0] * 36, clusters=[hard] * 60)  # 40 %
    cs = r.cluster_scores()
    assert cs[easy, 2] > before[easy].max() + 0.05  # better than the known models on easy too
    assert cs[hard, 2] > before[hard].max()
    np.testing.assert_allclose(cs[:, :2], before, atol=1e-12)  # the known models are unchanged


def test_cold_start_prior_survives_a_save(tmp_path) -> None:
    data, X = _two_level_data()
    r = Router(2, n_nearest=1).fit(data, embeddings=X)
    r.add_model("new")
    r.update(models=["new"] * 10, scores=[1.0] * 10, clusters=[0] * 10)
    r.save_pretrained(tmp_path / "r", model_card=False)
    back = Router.from_pretrained(tmp_path / "r")
    np.testing.assert_allclose(back.cluster_scores(), r.cluster_scores(), atol=1e-6)
    # a refit knows every model from its data: the plain global-mean prior again
    again = Router(2, n_nearest=1).fit(data, embeddings=X)
    assert "added_models" not in again.training_summary_


def test_forgetting_lets_a_model_that_got_worse_lose_its_cluster() -> None:
    data, X = _data(seed=3)
    data.scores[:, 0] = 1.0  # model a was perfect everywhere
    results = {}
    for half_life in (None, 10.0):
        r = Router(4, half_life=half_life, shrinkage=0.0).fit(data, embeddings=X)
        n_old = r.score_counts_[0, 0]
        r.update(models=["a"] * 40, scores=[0.0] * 40, clusters=[0] * 40)
        results[half_life] = r.cluster_scores()[0, 0]
    assert results[None] == pytest.approx(n_old / (n_old + 40))  # old evidence still dominates
    # 40 observations are 4 half-lives: the old outcomes weigh 1/16 of what they did
    gamma = 2 ** (-1 / 10)
    expected = n_old / 16 / (n_old / 16 + sum(gamma**i for i in range(40)))
    assert results[10.0] == pytest.approx(expected)
    assert results[10.0] < 0.3 < 0.5 < results[None]
    with pytest.raises(ConfigError, match="half_life"):
        Router().set_params(half_life=0)


def test_update_rejects_bad_input() -> None:
    data, X = _data(seed=4)
    r = Router(4).fit(data, embeddings=X)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        r.update(models=["a"], scores=[1.5], clusters=[0])
    with pytest.raises(DataError, match="cluster ids"):
        r.update(models=["a"], scores=[0.5], clusters=[9])
    with pytest.raises(DataError, match="queries, embeddings or clusters"):
        r.update(models=["a"], scores=[0.5])
    with pytest.raises(DataError, match="2 scores for 1 models"):
        r.update(models=["a"], scores=[0.5, 0.5], clusters=[0])


def test_updated_router_round_trips(tmp_path) -> None:
    data, X = _data(seed=5)
    r = Router(4, half_life=50.0, explore=0.1).fit(data, embeddings=X)
    r.add_model("z")
    r.update(models=["z", "a"], scores=[1.0, 0.0], clusters=[1, 2])
    back = Router.from_pretrained(r.save_pretrained(tmp_path / "r"))
    assert back.models_ == r.models_ and back.half_life == 50.0 and back.explore == 0.1
    _assert_same_stats(back, r)
    np.testing.assert_allclose(back.estimate(X).score, r.estimate(X).score, atol=1e-5)


def test_a_model_added_online_is_scored_by_the_cluster_estimate_in_the_hybrid() -> None:
    data, X = _data(seed=7)
    data.tasks = ["t1" if i % 2 else "t2" for i in range(len(data))]
    r = Router(4, classifier_weight=0.5).fit(data, embeddings=X)
    r.add_model("z")
    est = r.estimate(X)
    assert np.isfinite(est.score).all()
    # no success classifier for "z": its estimate is the cluster one, whatever the blend weight
    cluster_only = Router(4, classifier_weight=0.0).fit(data, embeddings=X).add_model("z")
    np.testing.assert_allclose(est.performance[:, 3], cluster_only.estimate(X).performance[:, 3])
    hinted = r.estimate(X, tasks=["t1"] * len(X))
    assert np.isfinite(hinted.score).all()


def test_exploration_share_is_bounded_and_flagged() -> None:
    data, X = _data(n=400, seed=6)
    rng = np.random.default_rng(7)
    Q = rng.normal(size=(4000, X.shape[1])).astype(np.float32)
    greedy = Router(4).fit(data, embeddings=X).route_embeddings(Q)
    assert not any(d.explored for d in greedy)
    for share in (0.05, 0.2):
        r = Router(4, explore=share, shrinkage=0.0, random_state=0).fit(data, embeddings=X)
        r.add_model("new")  # an unknown model: exploration has something to find out
        ds = r.route_embeddings(Q)
        explored = np.array([d.explored for d in ds])
        n = len(ds)
        # never more than the configured share (3 standard deviations of slack for the coin)
        assert explored.mean() <= share + 3 * np.sqrt(share * (1 - share) / n)
        assert explored.mean() > share / 4  # and it does explore
        # an explored pick is first in its ranking; the rest is the greedy order
        est = r.estimate(Q)
        for i in np.flatnonzero(explored)[:20]:
            assert ds[i].model != r.models_[est.best[i]]
            assert ds[i].ranking[1].model == r.models_[est.best[i]]
            assert "exploration" in ds[i].explain()
        assert "new" in {d.model for d, e in zip(ds, explored, strict=True) if e}


@pytest.mark.parametrize("rule", ["thompson", "top-two"])
def test_exploration_respects_cost_weighting(rule: str) -> None:
    data, X = _data(n=400, seed=8)
    Q = np.random.default_rng(9).normal(size=(2000, X.shape[1])).astype(np.float32)
    # alpha 0 ranks by cost only: drawing performance changes nothing, so nothing is explored
    r = Router(4, explore=0.5, alpha=0.0, explore_rule=rule).fit(data, embeddings=X)
    assert not any(d.explored for d in r.route_embeddings(Q))
    assert any(d.explored for d in r.route_embeddings(Q, alpha=1.0))


def test_top_two_rule_splits_between_leader_and_challenger() -> None:
    from avengers.online import explore_picks, thompson_pick, top_two_pick

    # model 1 is clearly best on much evidence, model 2 a close runner-up, model 0 far behind
    perf = np.tile([0.2, 0.8, 0.7], (4000, 1))
    evidence = np.full_like(perf, 200.0)
    rng = np.random.default_rng(0)
    ts = thompson_pick(perf, evidence, None, 1.0, pseudo_count=1.0, rng=rng)
    tt = top_two_pick(perf, evidence, None, 1.0, pseudo_count=1.0, rng=rng)
    # Thompson sampling nearly always confirms the leader; top-two sends about half the queries
    # to the challenger, and (almost) never to the model that is far behind
    assert (ts == 1).mean() > 0.95
    assert 0.4 < (tt == 2).mean() < 0.6
    assert (tt == 0).mean() < 0.01
    # one model: nothing to compare, the leader
    one = top_two_pick(perf[:5, :1], evidence[:5, :1], None, 1.0, pseudo_count=1.0, rng=rng)
    assert (one == 0).all()
    # the share stays bounded: a candidate whose pick is the greedy model is not exploration
    greedy = np.ones(len(perf), dtype=np.int64)
    out = explore_picks(
        perf, evidence, None, 1.0, greedy, share=0.3, pseudo_count=1.0, rng=rng, rule="top-two"
    )
    assert 0.1 < (out >= 0).mean() <= 0.3 + 3 * np.sqrt(0.3 * 0.7 / len(perf))
    assert set(np.unique(out[out >= 0])) <= {0, 2}


def test_router_top_two_rule_routes_saves_and_rejects_unknown_rules(tmp_path: Path) -> None:
    data, X = _data(n=400, seed=6)
    Q = np.random.default_rng(7).normal(size=(3000, X.shape[1])).astype(np.float32)
    r = Router(4, explore=0.2, explore_rule="top-two", random_state=0).fit(data, embeddings=X)
    ds = r.route_embeddings(Q)
    explored = np.array([d.explored for d in ds])
    assert 0.02 < explored.mean() <= 0.2 + 3 * np.sqrt(0.2 * 0.8 / len(ds))
    # it explores more than Thompson sampling on the same router (it always names a challenger)
    ts = Router(4, explore=0.2, random_state=0).fit(data, embeddings=X)
    assert explored.mean() > np.mean([d.explored for d in ts.route_embeddings(Q)])
    p = r.pick_probabilities(Q[:50], draws=200)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p[np.arange(50), r.predict(Q[:50])] >= 0.8 - 1e-12).all()
    r.save_pretrained(tmp_path / "r")
    assert Router.from_pretrained(tmp_path / "r").explore_rule == "top-two"
    with pytest.raises(ConfigError, match="explore_rule"):
        Router(4, explore_rule="ucb").fit(data, embeddings=X)
    with pytest.raises(ConfigError, match="explore_rule"):
        r.set_params(explore_rule="greedy")
    assert r.explore_rule == "top-two"


# --------------------------------------------------------------------------- feedback stores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path) -> Callable[..., FeedbackStore]:
    """A factory of stores sharing one database (new prefix / file per test)."""
    if request.param == "sqlite":
        path = tmp_path / "feedback.db"
        return lambda **kw: SQLiteFeedbackStore(path, **kw)
    url = request.getfixturevalue("redis_url")
    prefix = f"t{next(_counter)}:{time.time_ns()}:"
    return lambda **kw: RedisFeedbackStore(url, prefix=prefix, **kw)


def test_store_accepts_one_rating_per_response(make_store) -> None:
    store = make_store()
    store.remember("r1", "a", 3)
    r = store.rate("r1", 0.75, cost=0.01)
    assert (r.response_id, r.model, r.cluster, r.score, r.cost) == ("r1", "a", 3, 0.75, 0.01)
    with pytest.raises(AlreadyRatedError):
        store.rate("r1", 1.0)
    with pytest.raises(UnknownResponseError):
        store.rate("nope", 1.0)
    for bad in (1.5, -0.1, float("nan"), "1", True):
        with pytest.raises(FeedbackError, match="score"):
            store.rate("r1", bad)  # type: ignore[arg-type]
    direct = store.add("b", 1, 0.0)
    assert direct.response_id is None and direct.seq > r.seq
    assert [x.seq for x in store.ratings()] == [r.seq, direct.seq]
    assert store.ratings(after=r.seq) == [direct]
    lenient = make_store(allow_updates=True)
    again = lenient.rate("r1", 0.5)
    assert again.seq > direct.seq and len(lenient.ratings()) == 3
    store.close()
    lenient.close()


def _worker(factory: Callable[..., FeedbackStore], w: int, n: int, shared: int) -> None:
    store = factory()
    for i in range(n):
        store.remember(f"w{w}-{i}", f"m{w}", i % 4)
        store.rate(f"w{w}-{i}", (i % 11) / 10)
    for i in range(shared):  # every worker races to rate the same responses: one wins each
        with contextlib.suppress(AlreadyRatedError):
            store.rate(f"shared-{i}", 1.0)
    store.close()


def test_concurrent_feedback_from_several_processes_loses_nothing(make_store) -> None:
    store = make_store()
    shared = 30
    for i in range(shared):
        store.remember(f"shared-{i}", "s", 0)
    ctx = multiprocessing.get_context("fork")
    n_workers, n = 4, 60
    procs = [ctx.Process(target=_worker, args=(make_store, w, n, shared)) for w in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ratings = store.ratings()
    assert len(ratings) == n_workers * n + shared
    assert len({r.seq for r in ratings}) == len(ratings)
    assert sorted(r.response_id for r in ratings if r.model == "s") == sorted(
        f"shared-{i}" for i in range(shared)
    )
    for w in range(n_workers):
        mine = [r for r in ratings if r.model == f"m{w}"]
        assert sorted(r.score for r in mine) == sorted((i % 11) / 10 for i in range(n))
    store.close()


# --------------------------------------------------------------------------- the feedback route


@pytest.fixture
def feedback_app(toy_router: Router, tmp_path):
    from avengers import Answerer, Endpoint
    from avengers.server import create_app
    from fake_openai_server import FakeModel, FakeOpenAIServer
    from fastapi.testclient import TestClient

    up = FakeOpenAIServer(
        {"math": FakeModel(answers=["391"]), "chef": FakeModel(answers=["6 minutes"])}
    ).start()
    eps = {
        "math-model": Endpoint("math-model", up.base_url, model="math", max_retries=0),
        "chef-model": Endpoint("chef-model", up.base_url, model="chef", max_retries=0),
        "code-model": Endpoint("code-model", up.base_url, model="math", max_retries=0),
    }
    router = Router.from_state(*toy_router.state(), embedder=toy_router.get_embedder())
    store = SQLiteFeedbackStore(tmp_path / "fb.db")
    app = create_app(
        Answerer(router, eps, adaptive=False), api_keys={"sk-test"}, feedback_store=store
    )
    with TestClient(app) as c:
        c.headers["authorization"] = "Bearer sk-test"
        yield c, router, store
    up.stop()


def test_feedback_route_rates_responses_and_updates_the_router(feedback_app) -> None:
    c, router, store = feedback_app
    r = c.post("/v1/chat/completions", json={"model": "avengers", "messages": [
        {"role": "user", "content": "What is 17 times 23?"}]})  # fmt: skip
    assert r.status_code == 200, r.text
    rid, model = r.json()["id"], r.json()["model"]
    cluster = r.json()["avengers"]["decision"]["cluster"]
    j = router.models_.index(model)
    before = router.score_counts_[cluster, j]
    before_sum = float(router.score_sums_[cluster, j])
    ok = c.post("/v1/feedback", json={"id": rid, "score": 0.3})
    assert ok.status_code == 200, ok.text
    assert ok.json()["model"] == model and ok.json()["cluster"] == cluster
    assert ok.json()["score"] == 0.3
    # the rating counts once, with its own score (not as a success)
    assert router.score_counts_[cluster, j] == before + 1
    assert router.score_sums_[cluster, j] == pytest.approx(before_sum + 0.3, abs=1e-12)
    assert [x.response_id for x in store.ratings()] == [rid]

    def error(resp: Any) -> tuple[int, str | None, str | None]:
        e = resp.json()["error"]
        return resp.status_code, e["code"], e["param"]

    assert error(c.post("/v1/feedback", json={"id": rid, "score": 0.0})) == (
        409, "already_rated", "id")  # fmt: skip
    assert error(c.post("/v1/feedback", json={"id": "chatcmpl-nope", "score": 1})) == (
        404, "response_not_found", "id")  # fmt: skip
    assert error(c.post("/v1/feedback", json={"id": rid, "score": 1.5})) == (400, None, "score")
    assert error(c.post("/v1/feedback", json={"id": rid})) == (400, None, "score")
    assert error(c.post("/v1/feedback", json={"id": rid, "score": 1, "cost": -1}))[0] == 400
    assert error(c.post("/v1/feedback", json={"id": 3, "score": 1})) == (400, None, "id")
    assert c.post("/v1/feedback", content=b"{oops").status_code == 400
    unauth = c.post("/v1/feedback", json={"id": rid, "score": 1.0}, headers={"authorization": ""})
    assert unauth.status_code == 401
    # the query form
    q = {"query": "How do I bake a lemon cake?", "model": "chef-model", "score": 0.0}
    assert c.post("/v1/feedback", json=q).status_code == 200
    assert error(c.post("/v1/feedback", json={**q, "model": "nope"})) == (400, None, "model")
    assert len(store.ratings()) == 2
    # streamed answers are remembered too
    with c.stream("POST", "/v1/chat/completions", json={"model": "avengers", "stream": True,
                  "messages": [{"role": "user", "content": "What is 2 + 2?"}]}) as s:  # fmt: skip
        first = next(line for line in s.iter_lines() if line.startswith("data: {"))
    sid = json.loads(first[6:])["id"]
    assert c.post("/v1/feedback", json={"id": sid, "score": 0.5}).status_code == 200


def test_feedback_is_off_by_default(toy_router: Router) -> None:
    from avengers import Answerer, Endpoint
    from avengers.server import create_app
    from fastapi.testclient import TestClient

    router = Router.from_state(*toy_router.state(), embedder=toy_router.get_embedder())
    eps = {"math-model": Endpoint("math-model", "http://127.0.0.1:9/v1", model="math")}
    with TestClient(create_app(Answerer(router, eps, adaptive=False))) as c:
        assert c.post("/v1/feedback", json={"id": "x", "score": 1}).status_code == 404


# --------------------------------------------------------------------------- CLI and snapshots


def _static_router(tmp_path) -> Path:
    from toy import toy_rows

    return Router(3, embedder="static").fit(toy_rows()).save_pretrained(tmp_path / "r1")


def test_cli_update_and_snapshot(tmp_path) -> None:
    from avengers.cli import app
    from avengers.stores.snapshot import SEQ_KEY
    from typer.testing import CliRunner

    r1 = _static_router(tmp_path)
    base = Router.from_pretrained(r1)
    rows = [
        {"query": "What is 12 times 12?", "scores": {"math-model": 1.0, "new-model": 1.0}},
        {"query": "How do I roast garlic?", "scores": {"chef-model": 1.0, "new-model": 0.0}},
    ]
    (tmp_path / "new.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runner = CliRunner()
    res = runner.invoke(app, ["update", "-r", str(r1), "-d", str(tmp_path / "new.jsonl"),
                              "-o", str(tmp_path / "r2")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "added 4 outcomes on 2 queries" in res.output
    r2 = Router.from_pretrained(tmp_path / "r2")
    assert r2.models_ == [*base.models_, "new-model"]
    assert r2.score_counts_.sum() == base.score_counts_.sum() + 4
    assert Router.from_pretrained(r1).models_ == base.models_  # the old version is untouched

    store = SQLiteFeedbackStore(tmp_path / "fb.db")
    store.remember("id1", "math-model", 0)
    store.rate("id1", 0.0)
    store.add("chef-model", 1, 1.0)
    store.close()
    args = ["snapshot", "-r", str(tmp_path / "r2"), "-s", str(tmp_path / "fb.db")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "applied 2 ratings" in res.output
    r3 = Router.from_pretrained(tmp_path / "r2")
    assert r3.score_counts_.sum() == r2.score_counts_.sum() + 2
    assert r3.training_summary_[SEQ_KEY] == 2
    again = runner.invoke(app, args)  # nothing new: nothing applied twice
    assert "applied 0 ratings" in again.output
    assert Router.from_pretrained(tmp_path / "r2").score_counts_.sum() == r3.score_counts_.sum()
    bad = runner.invoke(app, ["snapshot", "-r", "pretrained", "-s", str(tmp_path / "fb.db")])
    assert bad.exit_code == 2 and "--out is required" in bad.output
    missing = runner.invoke(app, [*args[:3], "-s", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "no such feedback store" in missing.output


_SAVER = """
import sys
from avengers import Router
from avengers.stores.snapshot import save_atomically
path = sys.argv[1]
r = Router.from_pretrained(path)
print("ready", flush=True)
while True:
    r.update(models=["math-model"], scores=[1.0], clusters=[0])
    save_atomically(r, path)
"""


def test_kill_during_snapshot_leaves_a_loadable_router(tmp_path) -> None:
    import os
    import signal
    import sys

    path = _static_router(tmp_path)
    n0 = Router.from_pretrained(path).score_counts_.sum()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rng = np.random.default_rng(0)
    last = n0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], env=env,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        r = Router.from_pretrained(path)  # loads: the old version or a new one, never a mix
        n = r.score_counts_.sum()
        assert n >= last
        last = n
    assert last > n0


def test_online_doc_example_runs(tmp_path, monkeypatch, capsys) -> None:
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "online.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(code, "docs/online.md", "exec"), ns)
    assert "applied 1 rating(s)" in capsys.readouterr().out
    assert Router.from_pretrained(tmp_path / "online-router").models_[-1] == "new-model"


def test_weighted_update_counts_a_row_that_many_times() -> None:
    data, X = _data(seed=11)
    a, b = np.arange(150), np.arange(150, len(data))
    base = Router(8).fit(data.subset(a), embeddings=X[a])
    rows, cols = np.nonzero(~np.isnan(data.scores[b]))
    kw: dict[str, Any] = {
        "models": [MODELS[j] for j in cols],
        "scores": data.scores[b][rows, cols],
        "costs": data.costs[b][rows, cols],  # type: ignore[index]
        "embeddings": X[b][rows],
    }
    # weight 1 is the unweighted update
    r1 = Router(8).fit(data.subset(a), embeddings=X[a]).update(**kw)
    r2 = Router(8).fit(data.subset(a), embeddings=X[a]).update(**kw, weights=np.ones(len(rows)))
    _assert_same_stats(r1, r2)
    # weight 2 is the same outcome given twice
    twice = {k: (v + v if isinstance(v, list) else np.concatenate([v, v])) for k, v in kw.items()}
    r3 = Router(8).fit(data.subset(a), embeddings=X[a]).update(**twice)
    r4 = (
        Router(8).fit(data.subset(a), embeddings=X[a]).update(**kw, weights=np.full(len(rows), 2.0))
    )
    for name in STATS[:-1]:  # (cluster sizes count queries, not outcomes)
        np.testing.assert_allclose(getattr(r3, name), getattr(r4, name), atol=1e-12)
    np.testing.assert_allclose(r3.cluster_scores(), r4.cluster_scores(), atol=1e-12)
    assert not np.allclose(r4.score_sums_, base.score_sums_)
    with pytest.raises(DataError, match="weights"):
        base.update(**kw, weights=np.zeros(len(rows)))
    with pytest.raises(DataError, match="weights"):
        base.update(**kw, weights=np.ones(3))


def test_pick_probabilities_match_the_routing_frequencies() -> None:
    data, X = _data(n=400, seed=12)
    Q = np.random.default_rng(13).normal(size=(60, X.shape[1])).astype(np.float32)
    greedy = Router(4).fit(data, embeddings=X)
    p0 = greedy.pick_probabilities(Q)
    np.testing.assert_array_equal(p0, np.eye(len(MODELS))[greedy.predict(Q)])
    r = Router(4, explore=0.4, random_state=1).fit(data, embeddings=X)
    p = r.pick_probabilities(Q, draws=400)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (
        p[np.arange(len(Q)), r.predict(Q)] >= 0.6 - 1e-12
    ).all()  # the greedy pick keeps 1 - share
    # route the same queries many times: each model's frequency is its probability
    reps = 150
    picks = np.array([[MODELS.index(d.model) for d in r.route_embeddings(Q)] for _ in range(reps)])
    freq = np.stack([(picks == j).mean(axis=0) for j in range(len(MODELS))], axis=1)
    assert np.abs(freq - p).max() < 0.15
    assert np.abs(freq - p).mean() < 0.03


def test_client_server_reads_url_and_key_from_an_openai_client() -> None:
    from types import SimpleNamespace

    from avengers.stores.feedback import client_server
    from pydantic import SecretStr

    kw = {"base_attr": "base", "key_attr": "key", "expected": "a client"}
    assert client_server("http://h:1/v1", "k", **kw) == ("http://h:1/v1", "k")
    secret = SimpleNamespace(base="http://h:2/v1", key=SecretStr("s3"))
    assert client_server(secret, None, **kw) == ("http://h:2/v1", "s3")
    assert client_server(secret, "given", **kw) == ("http://h:2/v1", "given")
    plain = SimpleNamespace(base="http://h:3/v1", key="")
    assert client_server(plain, None, **kw) == ("http://h:3/v1", None)
    with pytest.raises(ConfigError, match="cannot send feedback through a SimpleNamespace: give a"):
        client_server(SimpleNamespace(key="x"), None, **kw)


def test_update_of_a_copy_leaves_the_original_alone() -> None:
    # a router made from another's state() starts with the same arrays; updating it must not
    # change the original (which once kept routing on stale cached arrays while saving new ones)
    data, X = _data()
    original = Router(8).fit(data, embeddings=X)
    before = original.route_embeddings(X[:20])
    sums = original.score_sums_.copy()
    copy = Router.from_state(*original.state())
    copy.update(data.subset(np.arange(100)), embeddings=X[:100])
    assert not np.array_equal(copy.score_sums_, sums)
    np.testing.assert_array_equal(original.score_sums_, sums)
    assert original.route_embeddings(X[:20]) == before
    fresh = Router.from_state(*original.state())
    assert fresh.route_embeddings(X[:20]) == before
