"""Choosing the cost trade-off ``alpha`` for a budget, by cross-validation on training outcomes.

For each fold a copy of the router is fitted on the other folds and, at every ``alpha`` of a
grid, routes the held-out queries; the held-out outcomes say what each choice would have cost and
scored (a missing cost falls back to the router's estimate, a missing score counts as 0, as in
:func:`avengers.training.evaluation.evaluate`). Every query is held out exactly once, so the figures for a
setting are means over all queries, with their standard error over queries (and the spread of the
fold means, for reference).

Two kinds of target:

- ``target_cost``: the expected average cost per query (in the unit of the data's costs) is at
  most the target; among the settings that meet it, the most accurate is chosen.
- ``target_share=(models, share)``: at most ``share`` of the queries go to the named models
  (e.g. keep the expensive model under 20 % of traffic); again the most accurate such setting.

When no setting meets the target a :class:`UserWarning` says so and the setting closest to it
(cheapest, or lowest share) is chosen. This module does not import the router (the router's
``calibrate`` method calls it); it works on any
:class:`avengers.Router`-like object (typed ``Any`` to keep the import graph one-way).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone

from ..exceptions import ConfigError, DataError
from .data import OutcomeData, as_outcomes

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.round(np.linspace(0, 1, 21), 4))


def fold_indices(n: int, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` random (train, held-out) index splits of ``n`` queries (the splits used by the
    cross-validation in :mod:`avengers.training.evaluation` too)."""
    if folds < 2 or folds > n:
        raise DataError(f"folds must be between 2 and the number of queries, got {folds}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    return [
        (np.concatenate([p for j, p in enumerate(parts) if j != i]), parts[i]) for i in range(folds)
    ]


@dataclass
class CalibrationPoint:
    """Cross-validated figures for one ``alpha``."""

    alpha: float
    cost: float
    cost_se: float
    accuracy: float
    accuracy_se: float
    share: float | None = None
    share_se: float | None = None
    fold_costs: list[float] = field(default_factory=list)
    fold_accuracies: list[float] = field(default_factory=list)


@dataclass
class CalibrationResult:
    """The chosen ``alpha`` and what it is expected to cost and score (cross-validated), with
    standard errors over queries; ``feasible`` is False when no setting met the target."""

    alpha: float
    target: str
    target_value: float
    feasible: bool
    expected_cost: float
    cost_se: float
    expected_accuracy: float
    accuracy_se: float
    expected_share: float | None
    share_models: list[str] | None
    folds: int
    n_queries: int
    grid: list[CalibrationPoint]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A small plain-text table of the grid, the chosen row marked with ``*``."""
        share = self.share_models is not None
        head = f"  {'alpha':>6} {'cost':>11} {'± se':>10} {'accuracy':>9} {'± se':>7}"
        out = [head + (f" {'share':>7}" if share else "")]
        for p in self.grid:
            mark = "*" if p.alpha == self.alpha else " "
            row = (
                f"{mark} {p.alpha:6.3f} {p.cost:11.4g} {p.cost_se:10.2g} "
                f"{p.accuracy:9.4f} {p.accuracy_se:7.4f}"
            )
            out.append(row + (f" {p.share:7.3f}" if share and p.share is not None else ""))
        verdict = "met" if self.feasible else "NOT met (closest setting chosen)"
        out.append(
            f"target {self.target} <= {self.target_value:g}: {verdict}; alpha = {self.alpha:g}, "
            f"expected cost {self.expected_cost:.4g} ± {self.cost_se:.2g}, "
            f"accuracy {self.expected_accuracy:.4f} ± {self.accuracy_se:.4f}"
        )
        return "\n".join(out)


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def calibrate(
    router: Any,
    data: OutcomeData | Any,
    *,
    target_cost: float | None = None,
    target_share: tuple[Sequence[str], float] | None = None,
    folds: int = 5,
    embeddings: np.ndarray | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    seed: int = 0,
    show_progress: bool = False,
) -> CalibrationResult:
    """Choose ``alpha`` for ``router`` so the target is met (see the module text); sets
    ``router.alpha`` and returns the figures. ``data`` is the training outcome data (if the
    router is not fitted yet it is fitted on all of it); ``embeddings`` are its rows' embeddings.
    ``show_progress`` shows bars (on stderr) for embedding the queries and for the folds: each
    fold's fit, then each ``alpha`` evaluated on its held-out queries."""
    if (target_cost is None) == (target_share is None):
        raise ConfigError("give exactly one of target_cost or target_share=(models, share)")
    data = as_outcomes(data)
    if len(data) == 0:
        raise DataError("empty calibration data")
    grid_alphas = sorted({float(a) for a in alphas})
    if not grid_alphas or any(not 0.0 <= a <= 1.0 for a in grid_alphas):
        raise ConfigError(f"alphas must be a non-empty list of numbers in [0, 1], got {alphas}")
    X = (
        router.embed(data.queries, show_progress=show_progress)
        if embeddings is None
        else np.asarray(embeddings, np.float32)
    )
    if len(X) != len(data):
        raise DataError(f"{len(X)} embeddings for {len(data)} queries")
    if not router.is_fitted():
        router.fit(data, embeddings=X)
    models = list(router.models_)
    missing = [m for m in models if m not in data.models]
    if missing:
        raise DataError(f"calibration data has no outcomes for router models: {missing}")
    data = data.select_models(models)

    share_cols: np.ndarray | None = None
    share_models: list[str] | None = None
    if target_share is not None:
        named, share_target = target_share
        share_models = [named] if isinstance(named, str) else list(named)
        unknown = [m for m in share_models if m not in models]
        if unknown or not share_models:
            raise ConfigError(f"target_share names unknown models {unknown}; router has {models}")
        if not 0.0 <= float(share_target) <= 1.0:
            raise ConfigError(f"target share must be in [0, 1], got {share_target}")
        share_cols = np.isin(np.arange(len(models)), [models.index(m) for m in share_models])
        target_name, target_value = f"share({', '.join(share_models)})", float(share_target)
    else:
        assert target_cost is not None
        if not np.isfinite(target_cost) or target_cost < 0:
            raise ConfigError(f"target_cost must be a number >= 0, got {target_cost}")
        target_name, target_value = "cost", float(target_cost)

    n, a = len(data), len(grid_alphas)
    scores = np.nan_to_num(data.scores, nan=0.0)
    cost = np.full((a, n), np.nan)
    acc = np.zeros((a, n))
    picked_share = np.zeros((a, n), dtype=bool)
    fold_of = np.zeros(n, dtype=int)
    splits = fold_indices(n, folds, seed)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=folds * (1 + a), desc=f"calibrating alpha ({folds} folds)", unit="step")
    for f, (train_idx, test_idx) in enumerate(splits):
        fold_of[test_idx] = f
        r = clone(router).set_embedder(router.get_embedder())
        if bar is not None:
            bar.set_postfix_str(f"fold {f + 1}: fitting")
        r.fit(data.subset(train_idx), embeddings=X[train_idx])
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"fold {f + 1}: {a} alphas")
        for i, alpha in enumerate(grid_alphas):
            est = r.estimate(X[test_idx], alpha=alpha)
            choice = est.best
            acc[i, test_idx] = scores[test_idx, choice]
            actual = (
                data.costs[test_idx, choice]
                if data.costs is not None
                else np.full(len(test_idx), np.nan)
            )
            if est.cost is not None:
                actual = np.where(
                    np.isnan(actual), est.cost[np.arange(len(test_idx)), choice], actual
                )
            cost[i, test_idx] = actual
            if share_cols is not None:
                picked_share[i, test_idx] = share_cols[choice]
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if target_cost is not None and np.isnan(cost).all():
        raise DataError("the data has no costs (and the router knows none): cannot meet a cost")

    grid: list[CalibrationPoint] = []
    for i, alpha in enumerate(grid_alphas):
        c = cost[i][~np.isnan(cost[i])]
        s = picked_share[i].astype(float)
        grid.append(
            CalibrationPoint(
                alpha=alpha,
                cost=float(c.mean()) if len(c) else float("nan"),
                cost_se=_se(c),
                accuracy=float(acc[i].mean()),
                accuracy_se=_se(acc[i]),
                share=float(s.mean()) if share_cols is not None else None,
                share_se=_se(s) if share_cols is not None else None,
                fold_costs=[float(np.nanmean(cost[i][fold_of == f])) for f in range(folds)],
                fold_accuracies=[float(acc[i][fold_of == f].mean()) for f in range(folds)],
            )
        )

    def measure(p: CalibrationPoint) -> float:
        v = p.share if share_cols is not None else p.cost
        return float("inf") if v is None or np.isnan(v) else v

    feasible = [p for p in grid if measure(p) <= target_value + 1e-12]
    if feasible:
        # most accurate; ties go to the cheaper setting
        best = max(feasible, key=lambda p: (p.accuracy, -p.cost, p.alpha))
    else:
        best = min(grid, key=lambda p: (measure(p), -p.accuracy))
        warnings.warn(
            f"calibration: no alpha in [{grid_alphas[0]:g}, {grid_alphas[-1]:g}] meets "
            f"{target_name} <= {target_value:g} (lowest reachable: {measure(best):.4g}); "
            f"choosing the closest setting, alpha = {best.alpha:g}",
            UserWarning,
            stacklevel=3,
        )
    router.alpha = best.alpha
    return CalibrationResult(
        alpha=best.alpha,
        target=target_name,
        target_value=target_value,
        feasible=bool(feasible),
        expected_cost=best.cost,
        cost_se=best.cost_se,
        expected_accuracy=best.accuracy,
        accuracy_se=best.accuracy_se,
        expected_share=best.share,
        share_models=share_models,
        folds=folds,
        n_queries=n,
        grid=grid,
    )
