"""Measuring a router on held-out outcome data against the obvious baselines.

Accuracy is the mean test score of the model the router picks first (scores may be fractions, so
"accuracy" is a mean score). Unknown test outcomes (NaN) count as 0, as wrong answers would.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone

from ..decision import RouteEstimate
from ..exceptions import ClusterCountWarning, DataError
from ..router import Router
from ..routing.estimator import require_fitted
from .calibration import fold_indices
from .data import OutcomeData, as_outcomes


@dataclass
class Evaluation:
    """One router measured on one test set. ``gap_closed`` is the share of the distance from the
    best single model to the oracle that routing covers (can be negative)."""

    n_queries: int
    accuracy: float
    best_single_model: str
    best_single: float
    oracle: float
    random: float
    gain: float
    gap_closed: float
    cost: float | None
    best_single_cost: float | None
    per_model: dict[str, float]
    routed_share: dict[str, float]
    n_fallback: int
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    gain_ci95: tuple[float, float] | None = None
    """95% interval of :attr:`gain`, paired over the test queries (each query's routed score
    minus the best single model's, normal approximation); None with fewer than two queries."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gain_ci95"] = list(self.gain_ci95) if self.gain_ci95 is not None else None
        return d

    def table(self) -> str:
        """A small plain-text table."""
        rows = [
            ("routed (avengers)", self.accuracy, self.cost),
            (f"best single ({self.best_single_model})", self.best_single, self.best_single_cost),
            ("oracle", self.oracle, None),
            ("random", self.random, None),
        ]
        out = [f"{'':44} {'accuracy':>9} {'avg cost':>10}"]
        for name, acc, cost in rows:
            c = "" if cost is None else f"{cost:10.4g}"
            out.append(f"{name:44} {acc:9.4f} {c:>10}")
        ci = ""
        if self.gain_ci95 is not None:
            low, high = self.gain_ci95
            ci = f" (95% interval {low:+.4f} to {high:+.4f}, paired over the {self.n_queries} queries)"
        out.append(
            f"gain over best single: {self.gain:+.4f}{ci}   gap closed: {self.gap_closed:.1%}"
        )
        return "\n".join(out)


def paired_interval(diff: np.ndarray, z: float = 1.96) -> tuple[float, float] | None:
    """The 95% interval of the mean of per-query differences (normal approximation)."""
    d = np.asarray(diff, dtype=np.float64)
    if len(d) < 2:
        return None
    half = z * float(d.std(ddof=1)) / np.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


_FRACTIONS = (
    (0.1, "a tenth"), (0.2, "a fifth"), (0.25, "a quarter"), (1 / 3, "a third"),
    (0.4, "two fifths"), (0.5, "half"), (0.6, "three fifths"), (2 / 3, "two thirds"),
    (0.75, "three quarters"), (0.8, "four fifths"), (0.9, "nine tenths"),
)  # fmt: skip


def in_words(ratio: float) -> str:
    """A cost ratio as words: 0.48 gives "about half", 0.27 "about a quarter"."""
    value, words = min(_FRACTIONS, key=lambda f: abs(f[0] - ratio))
    return f"about {words}" if abs(value - ratio) <= 0.05 else f"{ratio:.0%}"


def cost_headline(results: Sequence[Evaluation]) -> str | None:
    """The accuracy-cost trade-off in words, from an alpha sweep (:func:`sweep_alpha`): the
    cheapest alpha at which routing is at least as accurate as the best single model, and what
    it costs next to that model. None when the costs are unknown."""
    known = [r for r in results if r.cost is not None and r.best_single_cost]
    if not known:
        return None
    best = known[0]
    base = best.best_single_cost or 0.0
    good = [r for r in known if r.accuracy >= r.best_single - 1e-12]
    if not good:
        top = max(known, key=lambda r: r.accuracy)
        return (
            f"at no alpha is routing as accurate as the best single model "
            f"({best.best_single_model}, {best.best_single:.3f}); its best, alpha "
            f"{top.settings.get('alpha', float('nan')):g}, reaches {top.accuracy:.3f} at "
            f"{(top.cost or 0.0) / base:.0%} of that model's cost"
        )
    cheap = min(good, key=lambda r: (r.cost or 0.0, -r.accuracy))
    ratio = (cheap.cost or 0.0) / base
    return (
        f"at alpha {cheap.settings.get('alpha', float('nan')):g} routing is as accurate as the "
        f"best single model ({cheap.accuracy:.3f} vs {cheap.best_single:.3f}, "
        f"{cheap.best_single_model}) at {in_words(ratio)} of its average cost "
        f"({cheap.cost:.4g} vs {base:.4g} per query)"
    )


def _settings(router: Router) -> dict[str, Any]:
    """The router's settings without the embedder (an object, recorded by name elsewhere)."""
    params = router.get_params(deep=False)
    del params["embedder"]
    return params


def _refit_copy(router: Router, **params: Any) -> Router:
    """An unfitted copy of ``router`` with some settings changed, using the same embedder
    instance (so the model is not loaded again)."""
    return clone(router).set_params(**params).set_embedder(router.get_embedder())


def _scores0(data: OutcomeData) -> np.ndarray:
    return np.nan_to_num(data.scores, nan=0.0)


def evaluate(
    router: Router,
    test_data: OutcomeData | Any,
    *,
    embeddings: np.ndarray | None = None,
    train_best: str | None = None,
) -> Evaluation:
    """Evaluate a fitted router on test outcomes. The best single model is the one with the best
    mean score in the router's *training* data (``train_best`` overrides), measured on test."""
    test = _test_outcomes(router, test_data)
    X = router.embed(test.queries) if embeddings is None else np.asarray(embeddings, np.float32)
    est = router.estimate(X)
    choice = est.best
    S = _scores0(test)
    acc_rows = S[np.arange(len(test)), choice]
    per_model = S.mean(axis=0)
    if train_best is None:
        train_best = router.models_[int(np.argmax(router.global_scores_))]
    b = router.models_.index(train_best)
    cost, best_cost = _routed_costs(test, est, choice, b)
    oracle = float(S.max(axis=1).mean())
    acc = float(acc_rows.mean())
    best = float(per_model[b])
    gap = oracle - best
    share = np.bincount(choice, minlength=len(router.models_)) / len(test)
    return Evaluation(
        n_queries=len(test),
        accuracy=acc,
        best_single_model=train_best,
        best_single=best,
        oracle=oracle,
        random=float(S.mean()),
        gain=acc - best,
        gap_closed=float((acc - best) / gap) if gap > 1e-12 else 0.0,
        cost=cost,
        best_single_cost=best_cost,
        per_model={m: float(v) for m, v in zip(router.models_, per_model, strict=True)},
        routed_share={m: float(v) for m, v in zip(router.models_, share, strict=True)},
        n_fallback=sum(f is not None for f in est.fallback),
        per_task=_per_task(test, S, acc_rows, b),
        settings=_settings(router),
        gain_ci95=paired_interval(acc_rows - S[:, b]),
    )


def _test_outcomes(router: Router, test_data: OutcomeData | Any) -> OutcomeData:
    """The test outcomes of the fitted ``router``'s models (every one must be there)."""
    require_fitted(router)
    test = as_outcomes(test_data)
    if len(test) == 0:
        raise DataError("empty test data")
    missing = [m for m in router.models_ if m not in test.models]
    if missing:
        raise DataError(f"test data has no outcomes for router models: {missing}")
    return test.select_models(router.models_)


def _routed_costs(
    test: OutcomeData, est: RouteEstimate, choice: np.ndarray, b: int
) -> tuple[float | None, float | None]:
    """The mean cost of the routed models and of model ``b`` on the test queries: from the
    data's costs (unknown ones left out), else the router's estimates (None: neither has any)."""
    rows = np.arange(len(test))
    if test.costs is not None:
        C = test.costs
        return float(np.nanmean(C[rows, choice])), float(np.nanmean(C[:, b]))
    if est.cost is not None:
        return float(est.cost[rows, choice].mean()), float(est.cost[:, b].mean())
    return None, None


def _per_task(
    test: OutcomeData, S: np.ndarray, acc_rows: np.ndarray, b: int
) -> dict[str, dict[str, float]]:
    """Per task label of the test data (none without labels): its size, the routed accuracy,
    model ``b``'s and the oracle's."""
    per_task: dict[str, dict[str, float]] = {}
    if test.tasks is None:
        return per_task
    tasks = np.array(test.tasks)
    for t in sorted(set(test.tasks)):
        m = tasks == t
        per_task[t] = {
            "n": float(m.sum()),
            "accuracy": float(acc_rows[m].mean()),
            "best_single": float(S[m, b].mean()),
            "oracle": float(S[m].max(axis=1).mean()),
        }
    return per_task


def sweep_k(
    train: OutcomeData,
    test: OutcomeData,
    ks: Iterable[int],
    *,
    base: Router | None = None,
    train_embeddings: np.ndarray | None = None,
    test_embeddings: np.ndarray | None = None,
) -> list[Evaluation]:
    """Refit the router (same settings as ``base``) for each K; embeddings are computed once."""
    base = base or Router()
    if train_embeddings is None:
        train_embeddings = base.embed(train.queries)
    if test_embeddings is None:
        test_embeddings = base.embed(test.queries)
    out = []
    for k in ks:
        r = _refit_copy(base, n_clusters=int(k))
        with warnings.catch_warnings():  # a K above the data is the sweep's own business
            warnings.simplefilter("ignore", ClusterCountWarning)
            r.fit(train, embeddings=train_embeddings)
        out.append(evaluate(r, test, embeddings=test_embeddings))
    return out


def sweep_alpha(
    router: Router,
    test: OutcomeData,
    alphas: Sequence[float] = tuple(np.linspace(0, 1, 11)),
    *,
    test_embeddings: np.ndarray | None = None,
) -> list[Evaluation]:
    """Evaluate a fitted router at each alpha (no refit: alpha acts at routing time)."""
    if test_embeddings is None:
        test_embeddings = router.embed(test.queries)
    old = router.alpha
    out = []
    try:
        for a in alphas:
            router.alpha = float(a)
            out.append(evaluate(router, test, embeddings=test_embeddings))
    finally:
        router.alpha = old
    return out


def _folds(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` random (train, held-out) index splits of ``n`` queries."""
    return fold_indices(n, folds, seed)


def cross_validate_best_single(data: OutcomeData, *, folds: int = 5, seed: int = 0) -> float:
    """The baseline for :func:`cross_validate` on the same splits: the model with the best mean
    training-fold score (missing outcomes left out), measured on the held-out fold (missing
    outcomes count as 0 there, as in :func:`evaluate`)."""
    S = _scores0(data)
    accs = []
    for train_idx, test_idx in _folds(len(data), folds, seed):
        means = np.array(list(data.subset(train_idx).mean_scores().values()))
        best = int(np.argmax(np.where(np.isnan(means), -np.inf, means)))
        accs.append(float(S[test_idx, best].mean()))
    return float(np.mean(accs))


def cross_validate(
    router: Router,
    data: OutcomeData,
    *,
    embeddings: np.ndarray,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Mean held-out accuracy of ``router``'s settings over ``folds`` random splits of ``data``
    (embeddings given, aligned with ``data.queries``)."""
    accs = []
    for train_idx, test_idx in _folds(len(data), folds, seed):
        r = _refit_copy(router)
        with warnings.catch_warnings():  # folds are smaller than the data K was chosen for
            warnings.simplefilter("ignore", ClusterCountWarning)
            r.fit(data.subset(train_idx), embeddings=embeddings[train_idx])
        accs.append(evaluate(r, data.subset(test_idx), embeddings=embeddings[test_idx]).accuracy)
    return float(np.mean(accs))


def tune(
    data: OutcomeData,
    grid: Mapping[str, Sequence[Any]],
    *,
    base: Router | None = None,
    embeddings: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], float]]]:
    """Choose settings (e.g. ``{"n_clusters": [16, 32, 64], "shrinkage": [0, 10]}``) by k-fold
    cross-validation on training data only. Returns the best settings and every result."""
    import itertools

    base = base or Router()
    X = base.embed(data.queries) if embeddings is None else embeddings
    keys = list(grid)
    results = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = {**_settings(base), **dict(zip(keys, values, strict=True))}
        r = _refit_copy(base, **params)
        results.append((params, cross_validate(r, data, embeddings=X, folds=folds, seed=seed)))
    best = max(results, key=lambda pr: pr[1])[0]
    return best, results
