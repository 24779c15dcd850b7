"""Routing quality on the real outcome data beside the project (slow: embeds ~24k queries the
first time; the embedding cache makes reruns fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from avengers import Router, evaluate
from avengers.embedding.embedders import resolve_embedder
from avengers.training.bundled import load_bundled
from avengers.training.datasets import load_dcrouter, load_routerdc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emb():
    return resolve_embedder(None)


def _fit(emb, train, X, **kw) -> Router:
    return Router(**kw).set_embedder(emb).fit(train, embeddings=X)


def test_dcrouter_routing_beats_best_single_and_paper(emb) -> None:
    # the package ships the same dcrouter table (MIT), so this runs even without ../shared/data
    from conftest import DATA_DIR

    if (DATA_DIR / "llmrouter-dcrouter").is_dir():
        train, test = load_dcrouter("train", DATA_DIR), load_dcrouter("test", DATA_DIR)
    else:
        train, test = load_bundled("train"), load_bundled("test")
    X, Y = emb.embed(train.queries), emb.embed(test.queries)
    ours = evaluate(_fit(emb, train, X), test, embeddings=Y)
    paper = evaluate(_fit(emb, train, X, **Router.paper().get_params()), test, embeddings=Y)
    assert ours.best_single_model == "llama-3.1-nemotron-51b-instruct"
    assert ours.accuracy > ours.best_single + 0.02
    assert ours.gap_closed >= 0.20
    assert ours.accuracy >= paper.accuracy
    assert paper.accuracy > paper.best_single  # the paper's plain setting helps too


def test_routerdc_in_distribution_and_out_of_distribution(emb, data_dir: Path) -> None:
    train = load_routerdc("train", data_dir)
    X = emb.embed(train.queries)
    ours = _fit(emb, train, X)
    paper = _fit(emb, train, X, **Router.paper().get_params())
    test = load_routerdc("test", data_dir)
    Y = emb.embed(test.queries)
    e_id, p_id = evaluate(ours, test, embeddings=Y), evaluate(paper, test, embeddings=Y)
    assert e_id.accuracy > e_id.best_single + 0.02
    assert e_id.accuracy >= p_id.accuracy
    ood = load_routerdc("ood", data_dir)
    Z = emb.embed(ood.queries)
    e_ood, p_ood = evaluate(ours, ood, embeddings=Z), evaluate(paper, ood, embeddings=Z)
    # the paper's plain router falls below the best single model out of distribution; ours must not
    assert e_ood.accuracy > e_ood.best_single
    assert e_ood.accuracy > p_ood.accuracy


def test_alpha_sweep_trades_accuracy_for_cost(emb, data_dir: Path) -> None:
    from avengers import sweep_alpha

    train, test = load_dcrouter("train", data_dir), load_dcrouter("test", data_dir)
    r = _fit(emb, train, emb.embed(train.queries))
    res = sweep_alpha(r, test, alphas=[0.0, 0.5, 1.0], test_embeddings=emb.embed(test.queries))
    costs = [e.cost for e in res]
    assert costs[0] is not None and costs[0] < costs[2]
    assert res[0].accuracy < res[2].accuracy
    # alpha = 0 always picks the cheapest model (gemma-2-9b-it at 0.10 per M tokens)
    assert res[0].routed_share["gemma-2-9b-it"] == 1.0
    assert np.isclose(res[0].cost, 0.1)


def test_shipped_pretrained_router_matches_a_fresh_fit(emb) -> None:
    from avengers.training.bundled import load_bundled, load_pretrained

    shipped = load_pretrained()
    train = load_bundled("train")
    fresh = _fit(emb, train, emb.embed(train.queries), **{**shipped.get_params()})
    np.testing.assert_allclose(shipped.cluster_centers_, fresh.cluster_centers_, atol=1e-5)
    test = load_bundled("test")
    Y = emb.embed(test.queries)
    e = evaluate(shipped, test, embeddings=Y)
    assert e.accuracy > e.best_single
