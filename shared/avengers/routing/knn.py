"""Nearest-neighbour scores: each model's shrunk mean score over a query's most similar training
queries, the second source of the estimate with ``scoring="knn"`` or ``"hybrid"``.

:class:`NeighbourScores` keeps the training embeddings and their outcomes (``train_embeddings_``,
``train_scores_`` of :class:`avengers.Router`); ``update`` appends new rows when their embeddings
are known, and a model added after ``fit`` gets an unknown (NaN) outcome on every old row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import scoring
from .statistics import add_columns

__all__ = ["NeighbourScores"]


@dataclass
class NeighbourScores:
    """Training embeddings (n, d) and outcomes (n, m), kept for kNN and hybrid scoring (both
    None for cluster scoring)."""

    train_embeddings: np.ndarray | None = None
    train_scores: np.ndarray | None = None

    ARRAYS = ("train_embeddings", "train_scores")

    @classmethod
    def fit(cls, X: np.ndarray, scores: np.ndarray, *, keep: bool) -> NeighbourScores:
        """Keep the training rows (``keep``: the scoring reads them), else nothing."""
        if not keep:
            return cls()
        return cls(X.astype(np.float32), scores.astype(np.float32))

    @property
    def fitted(self) -> bool:
        return self.train_embeddings is not None and self.train_scores is not None

    def update(self, X: np.ndarray | None, full: np.ndarray) -> None:
        """Append rows ``X`` with their outcomes ``full`` (n, m; NaN unknown), when kept."""
        if self.train_embeddings is None or self.train_scores is None or X is None:
            return
        self.train_embeddings = np.vstack([self.train_embeddings, X.astype(np.float32)])
        self.train_scores = np.vstack([self.train_scores, full.astype(np.float32)])

    def add_model(self) -> None:
        """One more model, with no outcome on the kept rows."""
        self.train_scores = add_columns(self.train_scores, 1, np.nan)

    def estimate(
        self,
        X: np.ndarray,
        scores: np.ndarray,
        k: int,
        prior: np.ndarray,
        shrinkage: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``X``, each model's mean score over its ``k`` most similar training rows,
        shrunk toward ``prior``, and the outcome counts behind it. ``scores``: the kept outcomes
        already cast to float64 (the estimate caches the cast)."""
        assert self.train_embeddings is not None
        return scoring.knn_estimate(X @ self.train_embeddings.T, scores, k, prior, shrinkage)
