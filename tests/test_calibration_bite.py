"""Calibration of ``alpha`` with figures worked out by hand, on hand-made embeddings where every
fold routes each topic to its specialist (alpha 1) or everything to the cheapest model (alpha 0)
(``benchmarks/mutation.py calibration``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from avengers import Router
from avengers.exceptions import ConfigError, DataError
from avengers.training.calibration import calibrate, fold_indices
from test_estimate_bite import CENTERS, _rows_and_vectors, table_fitted

# the toy data (costs: math 1.0, chef 0.5, code 2.0 per call) with rows 0, 11 and 22 at 0.5
# for every model: routed to the specialists, 27 rows score 1 and 3 score 0.5
SPECIALIST_ACC = (27 + 1.5) / 30
SPECIALIST_COST = (10 * 1.0 + 10 * 0.5 + 10 * 2.0) / 30
# everything to the chef model: cooking 9 x 1.0, arithmetic 9 x 0.1, code 9 x 0.0, 3 x 0.5
CHEF_ACC = (9 * 1.0 + 9 * 0.1 + 9 * 0.0 + 3 * 0.5) / 30
MODELS_ALL = ["math-model", "chef-model", "code-model"]


def _router(with_cost: bool = True) -> tuple[Router, list[dict[str, object]], np.ndarray]:
    rows, X = _rows_and_vectors(with_cost)
    r = Router(n_clusters=3, embedder="precomputed", n_nearest=1, shrinkage=0.0,
               classifier_weight=0.0).fit(rows, embeddings=X, centroids=CENTERS)  # fmt: skip
    return r, rows, X


def _se(values: list[float]) -> float:
    x = np.array(values)
    return float(x.std(ddof=1) / math.sqrt(len(x)))


def test_grid_figures_by_hand() -> None:
    r, rows, X = _router()
    res = calibrate(r, rows, target_cost=0.5, embeddings=X, alphas=[1.0, 0.0, 1.0], folds=3)
    assert [p.alpha for p in res.grid] == [0.0, 1.0]  # sorted, repeats dropped
    cheap, best = res.grid
    assert cheap.cost == pytest.approx(0.5) and cheap.cost_se == pytest.approx(0.0)
    assert cheap.accuracy == pytest.approx(CHEF_ACC)
    assert best.cost == pytest.approx(SPECIALIST_COST)
    assert best.accuracy == pytest.approx(SPECIALIST_ACC)
    costs = [1.0] * 10 + [0.5] * 10 + [2.0] * 10
    assert best.cost_se == pytest.approx(_se(costs))
    accs = [1.0] * 27 + [0.5] * 3
    assert best.accuracy_se == pytest.approx(_se(accs))
    assert len(best.fold_costs) == 3 and len(best.fold_accuracies) == 3
    assert cheap.fold_costs == pytest.approx([0.5, 0.5, 0.5])
    assert cheap.share is None and cheap.share_se is None
    # only alpha 0 costs at most 0.5 per query
    assert (res.alpha, res.feasible, r.alpha) == (0.0, True, 0.0)
    assert res.expected_cost == pytest.approx(0.5)
    assert res.expected_accuracy == pytest.approx(CHEF_ACC)
    assert (res.target, res.target_value, res.folds, res.n_queries) == ("cost", 0.5, 3, 30)
    assert res.to_dict()["grid"][1]["alpha"] == 1.0
    lines = res.table().splitlines()
    assert lines[0] == f"  {'alpha':>6} {'cost':>11} {'± se':>10} {'accuracy':>9} {'± se':>7}"
    assert lines[1] == (
        f"*  0.000 {0.5:11.4g} {0.0:10.2g} {CHEF_ACC:9.4f} {cheap.accuracy_se:7.4f}"
    )
    assert lines[2].startswith("   1.000 ")
    assert lines[-1] == (
        f"target cost <= 0.5: met; alpha = 0, expected cost 0.5 ± 0, accuracy {CHEF_ACC:.4f} "
        f"± {cheap.accuracy_se:.4f}"
    )
    # a budget both settings meet: the more accurate
    res = calibrate(r, rows, target_cost=2.0, embeddings=X, alphas=[0.0, 1.0], folds=3)
    assert (res.alpha, res.feasible) == (1.0, True)


def test_a_target_no_setting_meets_warns_and_takes_the_closest() -> None:
    r, rows, X = _router()
    with pytest.warns(UserWarning) as caught:
        res = calibrate(r, rows, target_cost=0.1, embeddings=X, alphas=[0.0, 1.0], folds=3)
    assert str(caught[0].message) == (
        "calibration: no alpha in [0, 1] meets cost <= 0.1 (lowest reachable: 0.5); "
        "choosing the closest setting, alpha = 0"
    )
    assert (res.alpha, res.feasible) == (0.0, False)
    assert "NOT met (closest setting chosen)" in res.table()


def test_share_targets() -> None:
    r, rows, X = _router()
    res = calibrate(r, rows, target_share=("code-model", 0.2), embeddings=X, alphas=[0.0, 1.0],
                    folds=3)  # fmt: skip
    assert res.share_models == ["code-model"] and res.target == "share(code-model)"
    shares = [p.share for p in res.grid]
    assert shares == pytest.approx([0.0, 1 / 3])
    assert res.grid[1].share_se == pytest.approx(_se([1.0] * 10 + [0.0] * 20))
    assert (res.alpha, res.feasible, res.expected_share) == (0.0, True, 0.0)
    assert "  share" in res.table().splitlines()[0]
    res = calibrate(r, rows, target_share=(["code-model", "math-model"], 0.7), embeddings=X,
                    alphas=[0.0, 1.0], folds=3)  # fmt: skip
    assert res.expected_share == pytest.approx(2 / 3) and res.alpha == 1.0
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = calibrate(r, rows, target_share=(["chef-model"], 0.0), embeddings=X,
                        alphas=[0.0, 1.0], folds=3)  # fmt: skip
    assert (res.alpha, res.feasible, res.expected_share) == (1.0, False, pytest.approx(1 / 3))


def test_settings_and_data_are_checked() -> None:
    r, rows, X = _router()
    cases = [
        ({}, ConfigError, r"give exactly one of target_cost or target_share=\(models, share\)"),
        ({"target_cost": 1, "target_share": ("chef-model", 0.5)}, ConfigError, "exactly one"),
        ({"target_cost": 1, "alphas": [1.5]}, ConfigError,
         r"alphas must be a non-empty list of numbers in \[0, 1\], got \[1.5\]"),
        ({"target_cost": 1, "alphas": []}, ConfigError, "alphas must be a non-empty list"),
        ({"target_cost": -1}, ConfigError, "target_cost must be a number >= 0, got -1"),
        ({"target_cost": float("nan")}, ConfigError, "target_cost must be a number >= 0"),
        ({"target_share": ("x-model", 0.5)}, ConfigError,
         r"target_share names unknown models \['x-model'\]; router has"),
        ({"target_share": ([], 0.5)}, ConfigError, "target_share names unknown models"),
        ({"target_share": ("chef-model", 1.5)}, ConfigError,
         r"target share must be in \[0, 1\], got 1.5"),
        ({"target_cost": 1, "folds": 1}, DataError,
         "folds must be between 2 and the number of queries, got 1"),
        ({"target_cost": 1, "folds": 31}, DataError, "got 31"),
    ]  # fmt: skip
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            calibrate(r, rows, embeddings=X, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="29 embeddings for 30 queries"):
        calibrate(r, rows, target_cost=1, embeddings=X[:29])
    few = [{"query": row["query"], "scores": {"math-model": 1.0}} for row in rows]
    with pytest.raises(
        DataError, match=r"no outcomes for router models: \['chef-model', 'code-model'\]"
    ):
        calibrate(r, few, target_cost=1, embeddings=X)
    plain, rows2, X2 = _router(with_cost=False)
    with pytest.raises(DataError, match=r"the data has no costs \(and the router knows none\)"):
        calibrate(plain, rows2, target_cost=1, embeddings=X2, folds=3)


def test_an_unfitted_router_is_fitted_first() -> None:
    _, rows, X = _router()
    r = Router(n_clusters=3, embedder="precomputed", n_nearest=1, shrinkage=0.0,
               classifier_weight=0.0)  # fmt: skip
    res = r.calibrate(rows, target_cost=0.5, embeddings=X, folds=3)
    assert r.is_fitted() and res.alpha == r.alpha and res.feasible
    assert [p.alpha for p in res.grid] == [round(a, 4) for a in np.linspace(0, 1, 21)]


def test_fold_indices() -> None:
    folds = fold_indices(7, 3, seed=2)
    assert len(folds) == 3
    held = [set(t.tolist()) for _, t in folds]
    assert sorted(len(h) for h in held) == [2, 2, 3]
    assert set().union(*held) == set(range(7)) and sum(len(h) for h in held) == 7
    for train, test in folds:
        assert sorted(train.tolist() + test.tolist()) == list(range(7))
    same = fold_indices(7, 3, seed=2)  # the seed fixes the split
    assert [t.tolist() for _, t in same] == [t.tolist() for _, t in folds]
    with pytest.raises(DataError, match="got 8"):
        fold_indices(7, 8)


def test_progress_bar_counts_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    r, rows, X = _router()
    calibrate(r, rows, target_cost=0.5, embeddings=X, alphas=[0.0, 1.0], folds=3,
              show_progress=True)  # fmt: skip
    err = capsys.readouterr().err.replace("\r", "\n").splitlines()
    last = [line for line in err if line.strip()][-1]
    # 3 folds x (a fit + 2 alphas) steps, named, in steps, with the last fold's stage
    assert last.startswith("calibrating alpha (3 folds): 100%")
    assert "9/9" in last and ("step/s" in last or "s/step" in last)
    assert last.rstrip().endswith("fold 3: 2 alphas]")


def test_standard_errors_and_fold_seeds() -> None:
    from avengers.training.calibration import _se

    assert _se(np.array([3.0])) == 0.0 and _se(np.array([1.0, 3.0])) == pytest.approx(1.0)
    r, rows, X = _router()
    res = calibrate(r, rows, target_cost=5.0, embeddings=X, alphas=[1.0], folds=3, seed=5)
    cost_of = {"arithmetic": 1.0, "cooking": 0.5, "code": 2.0}  # each topic's specialist
    costs = np.array([cost_of[str(row["task"])] for row in rows])
    want = [float(costs[test].mean()) for _, test in fold_indices(30, 3, seed=5)]
    assert res.grid[0].fold_costs == pytest.approx(want)
    assert len(fold_indices(7, 2)) == 2  # two folds are enough


def test_messages_in_full_and_the_warning_names_the_grid() -> None:
    r, rows, X = _router()
    plain, rows2, X2 = _router(with_cost=False)
    with pytest.raises(
        DataError,
        match=r"^the data has no costs \(and the router knows none\): cannot meet a cost$",
    ):
        calibrate(plain, rows2, target_cost=1, embeddings=X2, folds=3)
    with pytest.warns(UserWarning) as caught:
        calibrate(r, rows, target_cost=0.1, embeddings=X, alphas=[0.0, 0.5, 1.0], folds=3)
    assert str(caught[0].message).startswith("calibration: no alpha in [0, 1] meets cost <= 0.1")


def test_missing_scores_count_as_failures_and_missing_costs_come_from_the_router() -> None:
    r, rows, X = _router()
    # two cooking rows the chef model solved lose that score: at alpha 0 (all to the chef)
    # they count as failures
    gone = [i for i, row in enumerate(rows)
            if row["task"] == "cooking" and row["scores"]["chef-model"] == 1.0][:2]  # type: ignore[index]  # fmt: skip
    holes = [dict(row, scores={m: s for m, s in row["scores"].items() if m != "chef-model"})  # type: ignore[attr-defined]
             if i in gone else row for i, row in enumerate(rows)]  # fmt: skip
    res = calibrate(r, holes, target_cost=5.0, embeddings=X, alphas=[0.0], folds=3)
    assert res.grid[0].accuracy == pytest.approx(CHEF_ACC - 2 / 30)
    # rows without costs: the fold's router (fitted with the costs the other rows have)
    # supplies the chosen model's estimate; here the code rows' 2.0 at alpha 1
    bare = [{k: v for k, v in row.items() if k != "costs"} if row["task"] == "code" else row
            for row in rows]  # fmt: skip
    res = calibrate(r, bare, target_cost=5.0, embeddings=X, alphas=[1.0], folds=3)
    assert res.grid[0].cost == pytest.approx(SPECIALIST_COST)


def test_the_table_shows_shares() -> None:
    r, rows, X = _router()
    res = calibrate(r, rows, target_share=("code-model", 0.2), embeddings=X, alphas=[0.0, 1.0],
                    folds=3)  # fmt: skip
    rows_out = res.table().splitlines()[1:3]
    assert rows_out[0].endswith(f" {0.0:7.3f}") and rows_out[1].endswith(f" {1 / 3:7.3f}")


def test_edges_of_the_settings_and_the_data() -> None:
    from avengers.training.data import OutcomeData

    r, rows, X = _router()
    empty = OutcomeData([], ["math-model"], np.zeros((0, 1)), None, None)
    with pytest.raises(DataError, match=r"^empty calibration data$"):
        calibrate(r, empty, target_cost=1)
    with pytest.raises(
        DataError, match=r"^folds must be between 2 and the number of queries, got 5$"
    ):
        calibrate(r, rows[:1], target_cost=1, embeddings=X[:1])  # one row is data, too few
    # the bounds themselves are allowed: a share of 1, a cost of 0 (met by nothing: closest)
    res = calibrate(r, rows, target_share=("code-model", 1.0), embeddings=X, alphas=[0.0, 1.0],
                    folds=3)  # fmt: skip
    assert res.feasible and res.alpha == 1.0
    with pytest.warns(UserWarning):
        res = calibrate(r, rows, target_cost=0.0, embeddings=X, alphas=[0.0, 1.0], folds=3)
    assert (res.feasible, res.alpha) == (False, 0.0)
    two = calibrate(r, rows, target_share=(["code-model", "math-model"], 0.7), embeddings=X,
                    alphas=[0.0, 1.0], folds=3)  # fmt: skip
    assert two.target == "share(code-model, math-model)"
    # a share target on data without costs: the cost column is unknown (NaN), not an error
    plain, rows2, X2 = _router(with_cost=False)
    res = calibrate(plain, rows2, target_share=("code-model", 0.5), embeddings=X2,
                    alphas=[1.0], folds=3)  # fmt: skip
    assert math.isnan(res.grid[0].cost)
    # each fold's accuracy is that of its own held-out rows
    res = calibrate(r, rows, target_cost=5.0, embeddings=X, alphas=[1.0], folds=3, seed=5)
    accs = np.array([0.5 if i in (0, 11, 22) else 1.0 for i in range(30)])
    want = [float(accs[test].mean()) for _, test in fold_indices(30, 3, seed=5)]
    assert res.grid[0].fold_accuracies == pytest.approx(want)


def test_without_embeddings_the_router_embeds_the_queries() -> None:
    """No embeddings given: the router's own embedder embeds the data's queries once (with its
    progress bar only when asked), and the figures are those of the same vectors given."""
    r, emb, rows = table_fitted(n_nearest=1, shrinkage=0.0)
    _, rows_, X = _router()
    res = calibrate(r, rows, target_cost=0.5, alphas=[0.0, 1.0], folds=3)
    assert emb.calls == [[str(row["query"]) for row in rows]] and not emb.show_progress
    given = calibrate(r, rows_, target_cost=0.5, embeddings=X, alphas=[0.0, 1.0], folds=3)
    assert res.to_dict() == given.to_dict()
    assert res.grid[1].accuracy == pytest.approx(SPECIALIST_ACC)
    emb.calls.clear()
    calibrate(r, rows, target_cost=5.0, alphas=[1.0], folds=3, show_progress=True)
    assert len(emb.calls) == 1 and emb.show_progress


def test_an_unmeetable_target_tied_on_its_measure_takes_the_more_accurate_setting() -> None:
    r, rows, X = _router()
    # every setting sends all queries to the three named models: share 1 everywhere, over 0.5
    with pytest.warns(
        UserWarning, match=r"lowest reachable: 1\); choosing the closest setting, alpha = 1$"
    ):
        res = calibrate(r, rows, target_share=(MODELS_ALL, 0.5), embeddings=X,
                        alphas=[0.0, 1.0], folds=3)  # fmt: skip
    assert [p.share for p in res.grid] == [1.0, 1.0]
    assert (res.alpha, res.feasible) == (1.0, False)
    assert res.expected_accuracy == pytest.approx(SPECIALIST_ACC)


def test_the_bar_names_each_folds_fit(capsys: pytest.CaptureFixture[str]) -> None:
    r, rows, X = _router()
    calibrate(r, rows, target_cost=5.0, embeddings=X, alphas=[1.0], folds=3, show_progress=True)
    err = capsys.readouterr().err
    stages = [s for s in ("fold 0:", "fold 1: fitting", "fold 2: fitting", "fold 3: fitting",
                          "fold 4:") if s in err]  # fmt: skip
    assert stages == ["fold 1: fitting", "fold 2: fitting", "fold 3: fitting"]


def test_the_warning_points_at_the_callers_line() -> None:
    r, rows, X = _router()
    with pytest.warns(UserWarning) as caught:
        r.calibrate(rows, target_cost=0.1, embeddings=X, folds=3)
    assert caught[0].filename == __file__


def test_costs_are_the_datas_own_where_it_has_them() -> None:
    """Each held-out row's cost is its own cost in the data, not the fold router's estimate
    (which is a cluster mean): here the chef model costs 0.2, 0.5 or 0.8 by row."""
    r, rows, X = _router()
    own = [0.2 + 0.3 * (i % 3) for i in range(len(rows))]
    varied = [dict(row, costs=dict(row["costs"], **{"chef-model": c}))  # type: ignore[arg-type]
              for row, c in zip(rows, own, strict=True)]  # fmt: skip
    res = calibrate(r, varied, target_cost=5.0, embeddings=X, alphas=[0.0], folds=3)
    assert res.grid[0].cost == pytest.approx(float(np.mean(own)))  # all to the chef model
    assert res.grid[0].cost_se == pytest.approx(_se(own))


def test_the_default_seed_is_0_and_leave_one_out_is_allowed() -> None:
    r, rows, X = _router()
    res = calibrate(r, rows, target_cost=5.0, embeddings=X, alphas=[1.0], folds=3)
    cost_of = {"arithmetic": 1.0, "cooking": 0.5, "code": 2.0}
    costs = np.array([cost_of[str(row["task"])] for row in rows])
    for seed, want in ((0, True), (1, False)):
        folds = [float(costs[test].mean()) for _, test in fold_indices(30, 3, seed=seed)]
        assert (res.grid[0].fold_costs == pytest.approx(folds)) is want
    assert [t.tolist() for _, t in fold_indices(7, 3)] == [
        t.tolist() for _, t in fold_indices(7, 3, seed=0)
    ]
    assert [t.tolist() for _, t in fold_indices(7, 3)] != [
        t.tolist() for _, t in fold_indices(7, 3, seed=1)
    ]
    assert sorted(t.tolist() for _, t in fold_indices(3, 3)) == [[0], [1], [2]]


def test_messages_and_the_table_verdict_word_for_word() -> None:
    r, rows, X = _router()
    with pytest.raises(ConfigError) as e:
        calibrate(r, rows, embeddings=X)
    assert str(e.value) == "give exactly one of target_cost or target_share=(models, share)"
    with pytest.warns(UserWarning):
        res = calibrate(r, rows, target_cost=0.1, embeddings=X, alphas=[0.0, 1.0], folds=3)
    assert res.table().splitlines()[-1] == (
        f"target cost <= 0.1: NOT met (closest setting chosen); alpha = 0, expected cost 0.5 "
        f"± 0, accuracy {CHEF_ACC:.4f} ± {res.accuracy_se:.4f}"
    )


def test_equally_accurate_settings_go_to_the_cheaper_then_the_higher_alpha() -> None:
    from avengers.training.calibration import CalibrationPoint, _choose, _Target

    def point(alpha: float, cost: float) -> CalibrationPoint:
        return CalibrationPoint(alpha=alpha, cost=cost, cost_se=0.0, accuracy=0.9, accuracy_se=0.0)

    budget = _Target("cost", 5.0)
    assert _choose([point(0.0, 2.0), point(0.5, 1.0), point(1.0, 3.0)], budget)[0].alpha == 0.5
    assert _choose([point(0.0, 1.0), point(0.5, 1.0)], budget)[0].alpha == 0.5
