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
    assert "no row has a task the router was fitted with" in out


def test_impute_fills_only_the_gaps_with_the_routers_expected_scores() -> None:
    import pytest
    from avengers.exceptions import DataError, NotFittedError

    data, X = _bandit_log(seed=2)
    online = Router(6).fit(data.subset(np.arange(30)), embeddings=X[:30])
    # a model the router never saw keeps its gaps, and the notes say so
    extra = OutcomeData(
        data.queries,
        [*MODELS, "new"],
        np.column_stack([data.scores, np.where(np.arange(len(data)) % 2, np.nan, 1.0)]),
        np.column_stack([data.costs, np.full(len(data), np.nan)]),
    )
    filled = online.impute(extra, embeddings=X)
    est = online.estimate(X)
    known = ~np.isnan(data.scores)
    np.testing.assert_array_equal(filled.scores[:, :3][known], data.scores[known])
    np.testing.assert_allclose(filled.scores[:, :3][~known], est.performance[~known])
    assert est.cost is not None and data.costs is not None
    np.testing.assert_allclose(filled.costs[:, :3][~known], est.cost[~known])  # type: ignore[index]
    np.testing.assert_array_equal(np.isnan(filled.scores[:, 3]), np.isnan(extra.scores[:, 3]))
    assert not np.isnan(filled.scores[:, :3]).any()
    assert any("new" in n and "not filled" in n for n in filled.notes)
    assert any(f"filled {int((~known).sum())} unknown" in n for n in filled.notes)
    part = online.impute(data.select_models(["a", "b"]), embeddings=X)
    assert any("not added" in n and n.endswith(": c") for n in part.notes)
    assert np.isnan(data.scores).any()  # the input is not changed in place
    with pytest.raises(DataError, match="embeddings for"):
        online.impute(data, embeddings=X[:-1])
    with pytest.raises(NotFittedError):
        Router(6).impute(data, embeddings=X)


def test_a_refit_on_the_filled_log_does_not_learn_a_model_from_its_best_part() -> None:
    """The bias that filling removes. Two regions: ``b`` succeeds 90 % of the time in the first and
    10 % in the second, ``a`` 60 % in both. A policy that picks ``b`` where it is good reveals
    ``b``'s outcomes in the first region only and ``a``'s in the second. A refit with one
    cluster over both regions sees ``b`` at 0.9 and ``a`` at 0.6 and prefers ``b`` (truly 0.5 on
    average); filled with the online router's estimates, it prefers ``a``."""
    rng = np.random.default_rng(3)
    n, d = 800, 8
    centre = np.zeros((2, d), dtype=np.float32)
    centre[0, 0], centre[1, 1] = 1.0, 1.0
    region = np.arange(n) % 2
    X = (centre[region] + 0.05 * rng.normal(size=(n, d))).astype(np.float32)
    rate = np.where(region[:, None] == 0, [0.6, 0.9], [0.6, 0.1])
    truth = (rng.random((n, 2)) < rate).astype(np.float64)
    scores = np.full_like(truth, np.nan)
    scores[:100] = truth[:100]  # the initial table: every outcome
    stream = np.arange(100, n)
    picked = np.where(region[stream] == 0, 1, 0)  # b where it is good, a elsewhere
    scores[stream, picked] = truth[stream, picked]
    log = OutcomeData([f"q{i}" for i in range(n)], ["a", "b"], scores)
    online = Router(2, classifier_weight=0).fit(log.subset(np.arange(100)), embeddings=X[:100])
    online.update(log.subset(stream), embeddings=X[stream])
    plain = Router(1, classifier_weight=0).fit(log, embeddings=X)
    filled = Router(1, classifier_weight=0).fit(online.impute(log, embeddings=X), embeddings=X)
    assert set(plain.predict(X)) == {1}
    assert set(filled.predict(X)) == {0}


def test_online_doc_fill_from_command_runs(tmp_path, monkeypatch, capsys) -> None:
    """The command-line refit of docs/online.md: ``avengers train --fill-from`` fills the log's
    gaps from the saved online router and fits with its (static) embedder."""
    import re
    import shlex
    from pathlib import Path

    from avengers.cli import app
    from typer.testing import CliRunner

    doc = (Path(__file__).resolve().parents[1] / "docs" / "online.md").read_text()
    (code,) = re.findall(r"```python refit\n(.*?)```", doc, flags=re.S)
    (line,) = re.findall(r"^avengers train .*--fill-from .*$", doc, flags=re.M)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/online.md", "exec"), {})
    r = CliRunner().invoke(app, shlex.split(line)[1:])
    assert r.exit_code == 0, r.output
    assert "filled 4 unknown outcome(s)" in r.output
    refit = Router.from_pretrained(tmp_path / "refit-router")
    assert refit.embedder_name_ == Router.from_pretrained(tmp_path / "log-router").embedder_name_
    assert refit.score_counts_.sum() == 16  # every query counted for both models
    bad = CliRunner().invoke(app, ["train", "--data", "outcome-log.jsonl", "--fill-from",
                                   "no-such-router", "--out", "x"])  # fmt: skip
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert not (tmp_path / "x").exists()
    by_task = CliRunner().invoke(app, [*shlex.split(line)[1:-2], "--fill-by", "task",
                                       "--out", "by-task"])  # fmt: skip
    assert by_task.exit_code == 0, by_task.output
    assert "filled 4 unknown outcome(s) with the router's per-task mean scores" in by_task.output
    assert "no row has a task the router was fitted with" in by_task.output  # no task labels
    bad = CliRunner().invoke(app, [*shlex.split(line)[1:], "--fill-by", "cluster"])
    assert bad.exit_code == 2 and "--fill-by must be query or task" in bad.output
    alone = CliRunner().invoke(app, ["train", "-d", "outcome-log.jsonl", "--fill-by", "task",
                                     "--out", "y"])  # fmt: skip
    assert alone.exit_code == 2 and "give --fill-from" in alone.output


def test_impute_by_task_fills_each_gap_with_the_models_mean_on_its_task() -> None:
    import pytest
    from avengers.exceptions import ConfigError

    data, X = _bandit_log(seed=4)
    tasks = ["math" if i % 3 else "chat" for i in range(len(data))]
    labelled = OutcomeData(data.queries, data.models, data.scores, data.costs, tasks)
    first = np.arange(60)
    initial = Router(6).fit(labelled.subset(first), embeddings=X[first])
    # rows of the log: the fitted tasks, plus one the router never saw and one unlabelled
    log_tasks = [*tasks[:-2], "poetry", ""]
    log = OutcomeData(data.queries, data.models, data.scores, data.costs, log_tasks)
    filled = initial.impute(log, by="task")  # no embeddings needed
    fitted = labelled.subset(first)
    gaps = np.isnan(data.scores)
    for i in np.flatnonzero(gaps.any(axis=1)):
        t = log_tasks[i]
        rows = [r for r in range(60) if tasks[r] == t] if t in ("math", "chat") else list(range(60))
        expected = np.nanmean(fitted.scores[rows], axis=0)
        np.testing.assert_allclose(filled.scores[i, gaps[i]], expected[gaps[i]])
        np.testing.assert_allclose(filled.costs[i, gaps[i]], initial.global_costs_[gaps[i]])  # type: ignore[index]
    np.testing.assert_array_equal(filled.scores[~gaps], data.scores[~gaps])
    assert any("per-task mean scores" in n for n in filled.notes)
    assert not any("no row has a task" in n for n in filled.notes)
    # the same from a router updated online: update leaves the per-task statistics alone
    online = Router(6).fit(labelled.subset(first), embeddings=X[first])
    online.update(log.subset(np.arange(60, len(data))), embeddings=X[60:])
    labelled_rows = [i for i, t in enumerate(log_tasks) if t in ("math", "chat")]
    np.testing.assert_allclose(
        online.impute(log, by="task").scores[labelled_rows], filled.scores[labelled_rows]
    )
    with pytest.raises(ConfigError, match="by must be one of query, task"):
        initial.impute(log, by="cluster")  # type: ignore[arg-type]
