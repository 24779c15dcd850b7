"""Online updates of the per-model success classifiers (Laplace approximation, see
``avengers.routing.logistic``) and how ``Router.update``/``add_model``/persistence use them."""

from __future__ import annotations

import numpy as np
import pytest
from avengers import ConfigError, OutcomeData, Router
from avengers.routing.logistic import (
    _newton_dense,
    _newton_low_rank,
    classifier_covariance,
    fit_success_classifiers,
    success_probabilities,
    update_success_classifiers,
)


def _logistic_data(n: int, seed: int, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and two models' 0/1 outcomes drawn from two fixed logistic models."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    truth = np.random.default_rng(99).normal(scale=3.0, size=(2, d))
    p = 1.0 / (1.0 + np.exp(-(X @ truth.T + np.array([0.3, -0.2]))))
    return X.astype(np.float32), (rng.random(p.shape) < p).astype(float)


def _fit(X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coef, intercept = fit_success_classifiers(X, S)
    return coef, intercept, classifier_covariance(X, S, coef, intercept)


def test_an_update_moves_a_classifier_toward_the_batch_labels() -> None:
    X, S = _logistic_data(600, seed=0)
    coef, intercept, cov = _fit(X, S)
    batch = X[:40]
    before = success_probabilities(batch, coef, intercept)
    labels = np.column_stack([np.zeros(40), np.full(40, np.nan)])  # model 0 fails, 1 unseen
    c2, i2, cov2 = update_success_classifiers(batch, labels, coef, intercept, cov)
    after = success_probabilities(batch, c2, i2)
    assert after[:, 0].mean() < before[:, 0].mean() - 0.05
    assert (after[:, 0] < before[:, 0]).mean() > 0.75
    # an unobserved model is left exactly as it was, and the inputs are not changed
    np.testing.assert_array_equal(c2[1], coef[1])
    np.testing.assert_array_equal(cov2[1], cov[1])
    assert np.isfinite(cov2).all() and not np.array_equal(cov2[0], cov[0])
    # the new evidence narrows the posterior: less variance along the batch's directions
    X1 = np.hstack([batch, np.ones((40, 1))]).astype(np.float64)
    assert (
        np.einsum("nd,de,ne->n", X1, cov2[0], X1) < np.einsum("nd,de,ne->n", X1, cov[0], X1)
    ).all()


def test_updates_on_the_fit_distribution_stay_close_to_a_refit() -> None:
    X, S = _logistic_data(3000, seed=1)
    first, rest = slice(0, 1000), slice(1000, None)
    coef, intercept, cov = _fit(X[first], S[first])
    for start in range(1000, 3000, 50):  # bandit-like: each row reveals one model
        rows = slice(start, start + 50)
        seen = S[rows].copy()
        seen[np.arange(50) % 2 == 0, 0] = np.nan
        seen[np.arange(50) % 2 == 1, 1] = np.nan
        coef, intercept, cov = update_success_classifiers(X[rows], seen, coef, intercept, cov)
    half = S.copy()
    half[1000:][np.arange(2000) % 2 == 0, 0] = np.nan
    half[1000:][np.arange(2000) % 2 == 1, 1] = np.nan
    ref_c, ref_i = fit_success_classifiers(X, half)
    grid = _logistic_data(500, seed=2)[0]
    ref = success_probabilities(grid, ref_c, ref_i)
    online = success_probabilities(grid, coef, intercept)
    start = success_probabilities(grid, *fit_success_classifiers(X[first], S[first]))
    assert np.abs(online - ref).mean() < 0.5 * np.abs(start - ref).mean()
    assert np.abs(online - ref).max() < 0.08
    assert rest.start == 1000


def test_the_two_newton_forms_agree() -> None:
    """Few rows (Woodbury on the covariance) and many rows (dense solves) give the same
    posterior for the same batch."""
    rng = np.random.default_rng(3)
    d1 = 5
    L = rng.normal(size=(d1, d1))
    S0 = np.linalg.inv(L @ L.T + np.eye(d1))
    w0 = rng.normal(size=d1)
    A = np.hstack([rng.normal(size=(4, d1 - 1)), np.ones((4, 1))])
    y = np.array([1.0, 0.0, 0.3, 1.0])
    rw = np.array([1.0, 2.0, 1.0, 0.5])
    v1, S1 = _newton_low_rank(S0, w0, A, y, rw, 20)
    v2, S2 = _newton_dense(S0, w0, A, y, rw, 20)
    np.testing.assert_allclose(S0 @ v1, S0 @ v2, atol=1e-8)
    np.testing.assert_allclose(S1, S2, atol=1e-8)


def _router_data(n: int = 300, seed: int = 4) -> tuple[OutcomeData, np.ndarray]:
    X, S = _logistic_data(n, seed, d=8)
    return OutcomeData([f"q{i}" for i in range(n)], ["a", "b"], S), X


def test_router_update_changes_the_classifiers_and_persists_them(tmp_path) -> None:
    data, X = _router_data()
    r = Router(4, online_classifiers=True).fit(data.subset(np.arange(200)), embeddings=X[:200])
    assert r.classifier_covariance_ is not None and r.classifier_covariance_.shape == (2, 9, 9)
    before = r.classifier_coef_.copy()  # type: ignore[union-attr]
    r.update(data.subset(np.arange(200, 300)), embeddings=X[200:])
    assert not np.allclose(r.classifier_coef_, before)  # type: ignore[arg-type]
    back = Router.from_pretrained(r.save_pretrained(tmp_path / "r"))
    np.testing.assert_allclose(back.classifier_covariance_, r.classifier_covariance_)  # type: ignore[arg-type]
    # the loaded router keeps learning exactly as the one in memory
    more = dict(models=["a", "b"], scores=[0.0, 1.0], embeddings=X[:2])
    r.update(**more)  # type: ignore[arg-type]
    back.update(**more)  # type: ignore[arg-type]
    np.testing.assert_allclose(back.classifier_coef_, r.classifier_coef_, atol=1e-5)  # type: ignore[arg-type]
    np.testing.assert_allclose(back.estimate(X).performance, r.estimate(X).performance, atol=1e-5)


def test_an_artifact_without_covariances_loads_and_keeps_its_classifiers() -> None:
    data, X = _router_data(seed=5)
    r = Router(4, online_classifiers=True).fit(data.subset(np.arange(200)), embeddings=X[:200])
    config, arrays = r.state()
    del arrays["classifier_covariance"]  # as saved before online classifier updates
    old = Router.from_state(config, arrays)
    assert old.classifier_covariance_ is None
    np.testing.assert_allclose(old.estimate(X).performance, r.estimate(X).performance, atol=1e-6)
    coef = old.classifier_coef_.copy()  # type: ignore[union-attr]
    counts = old.score_counts_.sum()
    old.update(data.subset(np.arange(200, 300)), embeddings=X[200:])
    np.testing.assert_array_equal(old.classifier_coef_, coef)  # type: ignore[arg-type]
    assert old.score_counts_.sum() > counts  # the cluster statistics still learn


def test_a_model_added_online_gets_a_classifier_at_its_first_update() -> None:
    data, X = _router_data(seed=6)
    r = Router(4, online_classifiers=True).fit(data, embeddings=X)
    r.add_model("z")
    assert np.isnan(r.classifier_coef_[2]).all()  # type: ignore[index]
    assert r.classifier_covariance_.shape == (3, 9, 9)  # type: ignore[union-attr]
    # "z" succeeds where x[0] > 0 and fails elsewhere
    good = X[:, 0] > 0
    r.update(models=["z"] * len(X), scores=good.astype(float), embeddings=X)
    assert np.isfinite(r.classifier_coef_[2]).all() and np.isfinite(r.classifier_intercept_[2])  # type: ignore[index]
    p = success_probabilities(X, r.classifier_coef_, r.classifier_intercept_)[:, 2]  # type: ignore[arg-type]
    assert p[good].mean() > 0.6 > 0.4 > p[~good].mean()
    assert np.isfinite(r.estimate(X).score).all()


def test_by_default_update_keeps_the_classifiers_as_fitted() -> None:
    data, X = _router_data(seed=7)
    r = Router(4).fit(data.subset(np.arange(200)), embeddings=X[:200])
    assert r.classifier_covariance_ is None  # nothing extra in the artifact either
    assert "online_classifiers" not in r.state()[0]["params"]
    coef = r.classifier_coef_.copy()  # type: ignore[union-attr]
    r.update(data.subset(np.arange(200, 300)), embeddings=X[200:])
    np.testing.assert_array_equal(r.classifier_coef_, coef)  # type: ignore[arg-type]
    r.add_model("z")
    r.update(models=["z"] * 20, scores=np.ones(20), embeddings=X[:20])
    assert np.isnan(r.classifier_coef_[2]).all()  # type: ignore[index]  # cluster estimate only


def test_online_classifiers_must_be_a_bool() -> None:
    data, X = _router_data()
    with pytest.raises(ConfigError, match="online_classifiers"):
        Router(4, online_classifiers="yes").fit(data, embeddings=X)  # type: ignore[arg-type]
