"""The offline refit on a feedback log: a table where most rows know one model's outcome (NaN for
the others) must be counted exactly as if the unknown entries were not there."""

from __future__ import annotations

import numpy as np
from avengers import OutcomeData, Router

MODELS = ["a", "b", "c"]


def _bandit_log(n: int = 300, seed: int = 0, d: int = 12) -> tuple[OutcomeData, np.ndarray]:
    """A log like a bandit pass writes: the first 30 rows with every outcome, the rest with one
    model's outcome each (the others NaN), the models revealed unevenly."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    truth = (rng.random((n, len(MODELS))) < [0.7, 0.5, 0.3]).astype(np.float64)
    scores = np.full_like(truth, np.nan)
    scores[:30] = truth[:30]
    picked = rng.choice(len(MODELS), size=n - 30, p=[0.8, 0.15, 0.05])
    scores[np.arange(30, n), picked] = truth[np.arange(30, n), picked]
    costs = np.where(np.isnan(scores), np.nan, rng.random(scores.shape))
    return OutcomeData([f"q{i}" for i in range(n)], list(MODELS), scores, costs), X


def test_fit_on_a_log_counts_each_model_on_its_known_rows_only() -> None:
    data, X = _bandit_log()
    r = Router(6).fit(data, embeddings=X)
    assert r.classifier_coef_ is not None and r.classifier_intercept_ is not None
    for j, name in enumerate(MODELS):
        known = ~np.isnan(data.scores[:, j])
        # the same model fitted where its entries are simply absent (its known rows only)
        alone = Router(6).fit(
            data.subset(np.flatnonzero(known)).select_models([name]),
            embeddings=X[known],
            centroids=r.cluster_centers_,
        )
        for attr in ("score_sums_", "score_counts_", "global_scores_", "cost_sums_",
                     "cost_counts_", "global_costs_"):  # fmt: skip
            np.testing.assert_allclose(getattr(r, attr)[..., j], getattr(alone, attr)[..., 0])
        # the shrinkage prior is the model's mean over its known rows
        np.testing.assert_allclose(r.global_scores_[j], np.mean(data.scores[known, j]))
        # the success classifier of the hybrid estimate is trained on its known rows only
        assert alone.classifier_coef_ is not None and alone.classifier_intercept_ is not None
        np.testing.assert_allclose(r.classifier_coef_[j], alone.classifier_coef_[0], atol=1e-6)
        np.testing.assert_allclose(r.classifier_intercept_[j], alone.classifier_intercept_[0])
    # the rarely revealed model has far fewer outcomes than queries, and its cluster estimate
    # shrinks toward its own known mean where it has none
    counts = r.score_counts_
    assert counts[:, 2].sum() < 0.2 * len(data) and counts[:, 0].sum() > 0.7 * len(data)
    empty = counts[:, 2] == 0
    if empty.any():
        np.testing.assert_allclose(r.cluster_scores()[empty, 2], r.global_scores_[2])


def test_fit_on_a_log_clusters_every_query() -> None:
    """The clusters come from every logged query's embedding, whatever was revealed: the same
    centroids as a fit on the full table."""
    data, X = _bandit_log(seed=1)
    full = data.subset(np.arange(len(data)))
    full.scores = np.where(np.isnan(full.scores), 0.5, full.scores)
    a = Router(6, random_state=0).fit(data, embeddings=X)
    b = Router(6, random_state=0).fit(full, embeddings=X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.cluster_sizes_.sum() == len(data)


def test_online_doc_refit_example_runs(tmp_path, monkeypatch, capsys) -> None:
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "online.md").read_text()
    (code,) = re.findall(r"```python refit\n(.*?)```", doc, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/online.md", "exec"), {})
    out = capsys.readouterr().out
    # four queries with both outcomes, four with the routed model's only; filled: all sixteen
    assert "8 queries, 12 outcomes" in out
    assert "filled: 16 outcomes" in out
