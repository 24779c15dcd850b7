"""Per-model success classifiers on query embeddings: the second signal of the hybrid estimate.

One logistic regression per candidate model predicts the chance that the model answers a query
well from its embedding. Fractional scores (a share of sampled answers that were right, an option
probability) are soft labels: a row with score ``s`` counts as a success with weight ``s`` and a
failure with weight ``1 - s``. Unknown outcomes (NaN) are left out. The fitted state is two small
arrays (coefficients (m, d) and intercepts (m,)), saved with the router.

**Online updates (Laplace approximation).** Each classifier also keeps a covariance matrix
(d + 1, d + 1), the inverse of the curvature ``H`` of its penalised log-loss at the fitted weights
(``H = X1^T diag(p (1 - p)) X1 + I / C``, ``X1`` the embeddings plus a constant column): a
Gaussian approximation of the posterior over its weights. :func:`update_success_classifiers`
treats that Gaussian as the prior for a new batch of outcomes, takes a few (damped) Newton steps
on ``0.5 (w - w_old)^T H (w - w_old)`` plus the batch's weighted log-loss, and adds the batch's
curvature to ``H`` (kept as its inverse, so a batch of ``r`` outcomes costs ``O(d^2 r)``). This
is online Bayesian logistic regression: on a batch drawn like the training data it lands close to
a refit on both, but unlike the per-cluster counts it is not exact (the curvature of old rows is
frozen at the weights they were counted at). ``decay`` < 1 shrinks ``H`` once per new outcome of
the model (the router does not use it: see :mod:`avengers.online`). A model with no classifier yet (NaN row: added after ``fit``) starts
from the mean of the known models' weights with only the penalty ``I / C`` as its precision, so
its first outcomes move it quickly.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "PRIOR_PRECISION",
    "classifier_covariance",
    "fit_success_classifiers",
    "success_probabilities",
    "update_success_classifiers",
]

PRIOR_PRECISION = 1.0
"""``1 / C`` of the fitted logistic regressions (``C = 1``): the Gaussian prior's precision on
each weight, the floor of the online precision (forgetting never decays it)."""


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


def _with_constant(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((len(X), 1))])


def _loss_weights(scores: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of one model's column: the soft label (NaN rows as 0) and the row weight (0 for
    NaN rows, else ``weights`` or 1)."""
    known = ~np.isnan(scores)
    w = np.where(known, 1.0 if weights is None else np.asarray(weights, dtype=np.float64), 0.0)
    return np.where(known, np.clip(scores, 0.0, 1.0), 0.0), w


def classifier_covariance(
    X: np.ndarray, scores: np.ndarray, coef: np.ndarray, intercept: np.ndarray
) -> np.ndarray:
    """(m, d + 1, d + 1): each fitted classifier's posterior covariance, the inverse of the
    curvature of its penalised log-loss on ``X`` and its known ``scores`` at ``coef``,
    ``intercept`` (the last row and column belong to the intercept). The start of
    :func:`update_success_classifiers`."""
    X1 = _with_constant(X)
    probs = success_probabilities(X, coef, intercept)
    d1 = X1.shape[1]
    out = np.empty((scores.shape[1], d1, d1), dtype=np.float32)
    for j in range(scores.shape[1]):
        _, w = _loss_weights(scores[:, j], None)
        curv = w * probs[:, j] * (1.0 - probs[:, j])
        out[j] = np.linalg.inv((X1.T * curv) @ X1 + PRIOR_PRECISION * np.eye(d1))
    return out


def _objective(
    v: np.ndarray, S0v: np.ndarray, z: np.ndarray, y: np.ndarray, rw: np.ndarray
) -> float:
    """``0.5 (w - w0)^T H0 (w - w0)`` (with ``w - w0 = S0 v``: ``0.5 v^T S0 v``) plus the
    weighted soft-label log-loss of logits ``z``, computed without overflow."""
    return 0.5 * float(v @ S0v) + float((rw * (np.logaddexp(0.0, z) - y * z)).sum())


def update_success_classifiers(
    X: np.ndarray,
    scores: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    covariance: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    decay: float = 1.0,
    newton_steps: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classifiers after a batch of outcomes: ``scores`` (n, m; NaN: not observed, soft
    labels in [0, 1]) on embeddings ``X`` (n, d), each row counted ``weights[i]`` times. Returns
    new ``coef`` (m, d), ``intercept`` (m,) and ``covariance`` (m, d + 1, d + 1); the inputs are
    not changed. A model with no outcome in the batch is left as it is; one with a NaN row (no
    classifier yet) starts from the mean of the finite rows. ``decay`` (< 1: forgetting)
    multiplies a model's precision once per new outcome of it.

    Each Newton step solves with the batch's rows only (Woodbury identity on the covariance):
    ``O(d^2 r)`` for ``r`` outcomes of a model, no ``(d + 1)``-square solve."""
    X1 = _with_constant(X)
    coef = np.array(coef, dtype=np.float64)
    intercept = np.array(intercept, dtype=np.float64)
    cov = np.array(covariance, dtype=np.float32)
    d1 = X1.shape[1]
    finite = np.isfinite(intercept) & np.isfinite(coef).all(axis=1)
    for j in range(scores.shape[1]):
        y, rw = _loss_weights(scores[:, j], weights)
        rows = rw > 0
        if not rows.any():
            continue
        A, y, rw = X1[rows], y[rows], rw[rows]
        if finite[j]:
            w0 = np.append(coef[j], intercept[j])
            S0 = cov[j].astype(np.float64) / decay ** int(rows.sum())
        else:  # no classifier yet: the known models' mean weights, only the penalty as evidence
            known = finite.copy()
            known[j] = False
            w0 = (
                np.append(coef[known].mean(axis=0), intercept[known].mean())
                if known.any()
                else np.zeros(d1)
            )
            S0 = np.eye(d1) / PRIOR_PRECISION
        if len(A) <= d1:
            v, S1 = _newton_low_rank(S0, w0, A, y, rw, newton_steps)
        else:
            v, S1 = _newton_dense(S0, w0, A, y, rw, newton_steps)
        cov[j] = S1
        w = w0 + S0 @ v
        coef[j], intercept[j] = w[:-1], w[-1]
    return coef.astype(np.float32), intercept, cov


def _newton_low_rank(
    S0: np.ndarray, w0: np.ndarray, A: np.ndarray, y: np.ndarray, rw: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Newton on ``v`` (``w = w0 + S0 v``) for a batch of fewer rows than dimensions: each step
    ``S0 q`` comes from the Woodbury identity (an (r, r) solve). Returns ``v`` and the new
    covariance."""
    d1 = len(w0)
    S0A = S0 @ A.T  # (d1, r)
    AS0A = A @ S0A  # (r, r)
    v = np.zeros(d1)
    z = A @ w0
    f = _objective(v, np.zeros(d1), z, y, rw)
    for _ in range(steps):
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        sq = np.sqrt(rw * p * (1.0 - p))
        u = v + A.T @ (rw * (p - y))  # S0 u is H0^-1 times the gradient
        M = np.eye(len(sq)) + sq[:, None] * AS0A * sq[None, :]
        q = u - A.T @ (sq * np.linalg.solve(M, sq * (S0A.T @ u)))
        dz = S0A.T @ q  # change of the logits per unit step
        t = 1.0
        while t > 1e-4:  # damped: halve the step until the objective goes down
            v_new = v - t * q
            f_new = _objective(v_new, S0 @ v_new, z - t * dz, y, rw)
            if f_new <= f:
                break
            t *= 0.5
        else:
            break
        v, z, f = v_new, z - t * dz, f_new
    p = 0.5 * (1.0 + np.tanh(0.5 * z))
    sq = np.sqrt(rw * p * (1.0 - p))
    M = np.eye(len(sq)) + sq[:, None] * AS0A * sq[None, :]
    B = S0A * sq[None, :]  # S0 A^T D^(1/2)
    return v, S0 - B @ np.linalg.solve(M, B.T)


def _newton_dense(
    S0: np.ndarray, w0: np.ndarray, A: np.ndarray, y: np.ndarray, rw: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """The same for a batch of more rows than dimensions, with (d + 1)-square solves."""
    H0 = np.linalg.inv(S0)
    H0 = 0.5 * (H0 + H0.T)
    w = w0.copy()
    z = A @ w

    def obj(w: np.ndarray, z: np.ndarray) -> float:
        dw = w - w0
        return 0.5 * float(dw @ H0 @ dw) + float((rw * (np.logaddexp(0.0, z) - y * z)).sum())

    f = obj(w, z)
    for _ in range(steps):
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        grad = H0 @ (w - w0) + A.T @ (rw * (p - y))
        step = np.linalg.solve(H0 + (A.T * (rw * p * (1.0 - p))) @ A, grad)
        dz = A @ step
        t = 1.0
        while t > 1e-4:
            f_new = obj(w - t * step, z - t * dz)
            if f_new <= f:
                break
            t *= 0.5
        else:
            break
        w, z, f = w - t * step, z - t * dz, f_new
    p = 0.5 * (1.0 + np.tanh(0.5 * z))
    H = H0 + (A.T * (rw * p * (1.0 - p))) @ A
    return H0 @ (w - w0), np.linalg.inv(H)
