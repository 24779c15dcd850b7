"""The per-model success classifiers as a part of the router: the third source of the hybrid
estimate (``classifier_weight`` > 0), blended in where the local evidence is thin.

:class:`SuccessClassifiers` holds the fitted arrays (``classifier_coef_``,
``classifier_intercept_`` and, with ``online_classifiers``, ``classifier_covariance_`` of
:class:`avengers.Router`); the arithmetic is :mod:`avengers.routing.logistic`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import scoring
from .logistic import (
    PRIOR_PRECISION,
    classifier_covariance,
    fit_success_classifiers,
    success_probabilities,
    update_success_classifiers,
)

__all__ = ["SuccessClassifiers"]


@dataclass
class SuccessClassifiers:
    """Coefficients (m, d), intercepts (m,) and, for online updates, covariances
    (m, d + 1, d + 1); all None when the router does not blend classifiers."""

    classifier_coef: np.ndarray | None = None
    classifier_intercept: np.ndarray | None = None
    classifier_covariance: np.ndarray | None = None

    ARRAYS = ("classifier_coef", "classifier_intercept", "classifier_covariance")

    @classmethod
    def fit(
        cls, X: np.ndarray, scores: np.ndarray, *, weight: float, online: bool
    ) -> SuccessClassifiers:
        """One logistic regression per model (``weight`` > 0), with the covariances online
        updates start from (``online``)."""
        if weight <= 0:
            return cls()
        coef, intercept = fit_success_classifiers(X, scores)
        covariance = classifier_covariance(X, scores, coef, intercept) if online else None
        return cls(coef, intercept, covariance)

    @property
    def fitted(self) -> bool:
        return self.classifier_coef is not None and self.classifier_intercept is not None

    def update(self, X: np.ndarray | None, full: np.ndarray, weights: np.ndarray | None) -> None:
        """Move the classifiers toward a batch (``full``: (n, m) outcomes of rows ``X``; Laplace
        update, without forgetting: ``half_life`` counts observations of a model in one cluster,
        and applied per outcome of a model anywhere it left each classifier only its last few
        dozen outcomes). Needs the rows' embeddings and the covariances (a router saved before
        they existed, or trained in chunks, keeps its classifiers as fitted)."""
        cov, coef = self.classifier_covariance, self.classifier_coef
        if X is None or cov is None or coef is None or len(full) == 0:
            return
        assert self.classifier_intercept is not None
        self.classifier_coef, self.classifier_intercept, self.classifier_covariance = (
            update_success_classifiers(
                X, full, coef, self.classifier_intercept, cov, weights=weights
            )
        )

    def add_model(self) -> None:
        """One more model: a NaN row (no classifier: the estimate uses the cluster's) until its
        first update, which starts it from the known models' mean weights."""
        coef, intercept = self.classifier_coef, self.classifier_intercept
        if coef is not None and intercept is not None:
            self.classifier_coef = np.vstack(
                [coef, np.full((1, coef.shape[1]), np.nan, coef.dtype)]
            )
            self.classifier_intercept = np.append(intercept, np.nan)
        cov = self.classifier_covariance
        if cov is not None:
            fresh = np.eye(cov.shape[1], dtype=cov.dtype) / PRIOR_PRECISION
            self.classifier_covariance = np.concatenate([cov, fresh[None]])

    def blend(
        self,
        X: np.ndarray,
        perf: np.ndarray,
        evidence: np.ndarray,
        coef: np.ndarray,
        weight: float,
        pseudo_count: float | None,
    ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """``perf`` blended with the classifiers' success probabilities, which weigh more where
        the ``evidence`` is thin (:func:`avengers.routing.scoring.evidence_share`). Returns the blend,
        each row's classifier share and which signal carried each choice. ``coef``: the
        coefficients already in float64."""
        assert self.classifier_intercept is not None
        probs = success_probabilities(X, coef, self.classifier_intercept)
        probs = np.where(np.isnan(probs), perf, probs)  # a model added online has no classifier
        share = scoring.evidence_share(evidence, weight, pseudo_count)
        blended = (1 - share[:, None]) * perf + share[:, None] * probs
        signal: list[str | None] = list(scoring.carried_by(perf, probs, blended))
        return blended, share, signal
