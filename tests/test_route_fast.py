"""One query and a batch take the same estimate pipeline (avengers.routing.estimate) and agree,
and the arrays the router derives for routing are worked out again whenever its state or settings
change. (That the pipeline gives the decisions of the router before it was split into parts, bit
for bit, is checked by ``benchmarks/decisions_equal.py`` against the older code.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import avengers
import numpy as np
import pytest
from avengers import Router
from avengers.training.datasets import load_dcrouter_dir

DIM = 24


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    """A router fitted on the bundled dcrouter outcomes (9 models, with costs) with made-up
    embeddings: each row's best model names its task, and each task's queries are scattered
    around their own random direction; queries to route near those tasks and far from all."""
    d = Path(avengers.__file__).parent / "data" / "dcrouter"
    train, test = load_dcrouter_dir(d, "train"), load_dcrouter_dir(d, "test")
    # a task label per training row (its best model), so that embeddings and task hints carry
    # the outcomes' structure
    best = np.nan_to_num(train.scores, nan=-1.0).argmax(axis=1)
    train = dataclasses.replace(train, tasks=[f"task-{b}" for b in best])
    rng = np.random.default_rng(7)
    centres: dict[str, np.ndarray] = {}

    def embed(tasks: tuple[str, ...] | list[str] | None, n: int) -> np.ndarray:
        labels = list(tasks) if tasks is not None else ["?"] * n
        X = np.stack(
            [
                centres.setdefault(t, 2 * rng.normal(size=DIM)) + rng.normal(size=DIM)
                if t != "?"
                else rng.normal(size=DIM)
                for t in labels
            ]
        )
        return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)

    Xtr = embed(train.tasks, len(train))
    # fitted once (keeps what every setting below needs); each test routes with a copy
    base = Router(n_clusters=16, scoring="hybrid").fit(train, embeddings=Xtr)
    # queries near the training tasks, and a few far from all of them
    near = list(rng.choice(sorted(centres), size=250))
    Y = np.vstack([embed(near, len(near)), embed(None, 30)])
    return base, test, Y


def copy_of(base: Router, **settings: object) -> Router:
    """A fitted copy of ``base`` (nothing cached) with these routing settings."""
    config, arrays = base.state()
    return Router.from_state(config, arrays).set_params(**{"scoring": "cluster", **settings})


SETTINGS = [
    {},
    {"alpha": 0.4},
    {"n_nearest": 1, "classifier_weight": 0.0, "shrinkage": 0.0},
    {"temperature_mode": "relative", "softmax_temperature": 0.3},
    {"scoring": "hybrid", "n_neighbors": 8},
    {"classifier_evidence": 5.0, "alpha": 0.3, "top_k": 2},
    {"far_quantile": 0.5},
    {"sharpen_quantile": 0.5, "sharpen_width": 0.0},
    {"min_cluster_size": -1},  # set from the fitted cluster sizes
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s) or "default")
def test_one_query_at_a_time_matches_one_batch(data, settings) -> None:  # type: ignore[no-untyped-def]
    base, _, Y = data
    if settings.get("min_cluster_size"):  # a size between the smallest and largest cluster
        settings = {"min_cluster_size": int(np.median(base.cluster_sizes_)) + 1}
    router = copy_of(base, **settings)
    lean = [router.route_embeddings(Y[i : i + 1])[0] for i in range(len(Y))]
    # the same picks as one batch of all rows (floats there differ in the last bits: BLAS
    # multiplies a batch differently from one row)
    batch = router.route_embeddings(Y)
    assert [d.models for d in lean] == [d.models for d in batch]
    assert [d.cluster for d in lean] == [d.cluster for d in batch]
    assert [d.fallback is None for d in lean] == [d.fallback is None for d in batch]
    scores = np.array([[m.score for m in d.ranking] for d in lean])
    np.testing.assert_allclose(scores, [[m.score for m in d.ranking] for d in batch], atol=1e-3)
    if "far_quantile" in settings or "min_cluster_size" in settings:
        assert any(d.fallback for d in lean) and not all(d.fallback for d in lean)


def test_task_hints_and_exploration_agree_with_batch_path(data) -> None:  # type: ignore[no-untyped-def]
    base, _, Y = data
    router = copy_of(base)
    assert router.tasks_
    task = router.tasks_[0]
    # a hinted query is scored on its task's outcomes, alone or in a batch
    hinted = router.route_embeddings(Y[:1], tasks=[task])[0]
    assert hinted.task == task
    in_batch = router.route_embeddings(Y[:5], tasks=[task] * 5)[0]
    assert in_batch.task == task and in_batch.models == hinted.models
    assert hinted.ranking != router.route_embeddings(Y[:1])[0].ranking
    # exploration draws from the router's generator: two routers with the same seed agree
    a = copy_of(base, explore=1.0, random_state=3)
    b = copy_of(base, explore=1.0, random_state=3)
    lean = [a.route_embeddings(Y[i : i + 1])[0] for i in range(len(Y))]
    assert lean == [b.route_embeddings(Y[i : i + 1])[0] for i in range(len(Y))]
    assert any(d.explored for d in lean)


def fresh(router: Router) -> Router:
    """The same fitted router with nothing cached."""
    return copy_of(router, **router.get_params())


def test_derived_arrays_follow_updates_new_models_and_settings(data) -> None:  # type: ignore[no-untyped-def]
    base, _, Y = data
    router = copy_of(base)
    first = router.route_embeddings(Y[:1])[0]
    assert first == fresh(router).route_embeddings(Y[:1])[0]

    # an update that makes another model the best everywhere near this query
    best, other = first.model, first.ranking[-1].model
    n = 400
    router.update(
        models=[best] * n + [other] * n,
        scores=[0.0] * n + [1.0] * n,
        embeddings=np.repeat(Y[:1], 2 * n, axis=0),
    )
    after = router.route_embeddings(Y[:1])[0]
    assert after.model == other != first.model
    assert after == fresh(router).route_embeddings(Y[:1])[0]

    # a model added online appears in the ranking at once
    router.add_model("new-model")
    ranked = [m.model for m in router.route_embeddings(Y[:1])[0].ranking]
    assert "new-model" in ranked and len(ranked) == len(first.ranking) + 1
    assert router.route_embeddings(Y[:1])[0] == fresh(router).route_embeddings(Y[:1])[0]

    # settings take effect without refitting, and a bad one set by hand is still refused
    router.set_params(shrinkage=0.0, n_nearest=1)
    d = router.route_embeddings(Y[:1])[0]
    assert d.method == "cluster" and len(d.cluster_weights) == 1
    assert d == fresh(router).route_embeddings(Y[:1])[0]
    router.n_nearest = 0
    with pytest.raises(avengers.ConfigError):
        router.route_embeddings(Y[:1])


def test_static_embedder_gives_one_text_the_vector_of_a_batch() -> None:
    pytest.importorskip("model2vec")
    from avengers.embedding.static import StaticEmbedder, default_static_path

    if not (default_static_path() / "model.safetensors").is_file():
        pytest.skip(
            "the default static model is not distilled here (python -m avengers.embedding.static)"
        )
    emb = StaticEmbedder()
    d = Path(avengers.__file__).parent / "data" / "dcrouter"
    texts = [*load_dcrouter_dir(d, "test").queries[:100], "", "zzqx", "x" * 5000, "ünïcödé ☃"]
    batch = emb.embed(texts)
    one = np.vstack([emb.embed([t]) for t in texts])
    np.testing.assert_array_equal(one, batch)
    assert np.allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)


def test_decision_to_dict_has_every_field_as_asdict_gives_it(data) -> None:  # type: ignore[no-untyped-def]
    base, _, Y = data
    router = copy_of(base, alpha=0.5)
    for d in router.route_embeddings(Y[:20], ["q"] * 20):
        expect = dataclasses.asdict(d)
        expect["ranking"] = [dataclasses.asdict(m) for m in d.ranking]
        expect["cluster_weights"] = {str(k): v for k, v in d.cluster_weights.items()}
        expect["models"] = d.models
        assert d.to_dict() == expect
        assert list(d.to_dict()) == list(expect)
