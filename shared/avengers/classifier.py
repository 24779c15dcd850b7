"""Per-model success classifiers on query embeddings: the second signal of the hybrid estimate.

One logistic regression per candidate model predicts the chance that the model answers a query
well from its embedding. Fractional scores (a share of sampled answers that were right, an option
probability) are soft labels: a row with score ``s`` counts as a success with weight ``s`` and a
failure with weight ``1 - s``. Unknown outcomes (NaN) are left out. The fitted state is two small
arrays (coefficients (m, d) and intercepts (m,)), saved with the router.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["fit_success_classifiers", "success_probabilities"]


def fit_success_classifiers(
    X: np.ndarray, scores: np.ndarray, *, C: float = 1.0, max_iter: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one logistic regression per column of ``scores`` (n, m) on ``X`` (n, d). A model whose
    known outcomes are all equal gets a constant (zero coefficients, the logit of its mean)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    m = scores.shape[1]
    coef = np.zeros((m, d))
    intercept = np.zeros(m)
    for j in range(m):
        s = scores[:, j]
        known = ~np.isnan(s)
        sj = np.clip(s[known], 0.0, 1.0)
        if sj.size == 0:
            continue
        mean = float(sj.mean())
        if sj.min() == sj.max() or mean <= 0.0 or mean >= 1.0:
            p = min(max(mean, 1e-4), 1 - 1e-4)
            intercept[j] = np.log(p / (1 - p))
            continue
        Xk = X[known]
        pos, neg = sj > 0, sj < 1
        Xs = np.concatenate([Xk[pos], Xk[neg]])
        y = np.concatenate([np.ones(pos.sum()), np.zeros(neg.sum())])
        w = np.concatenate([sj[pos], 1.0 - sj[neg]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=C, max_iter=max_iter).fit(Xs, y, sample_weight=w)
        coef[j] = clf.coef_[0]
        intercept[j] = clf.intercept_[0]
    return coef.astype(np.float32), intercept.astype(np.float64)


def success_probabilities(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """(n, m) predicted chance of success of each model on each embedded query."""
    z = np.asarray(X, dtype=np.float64) @ np.asarray(coef, dtype=np.float64).T + intercept
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow
    return out
