"""The fitted parts of a router, composed: what :class:`avengers.Router` keeps after ``fit``.

:class:`RouterParts` holds the three parts with fitted arrays (per-cluster statistics,
nearest-neighbour scores, success classifiers), fits and updates them together, and maps them to
and from the router's saved state: one array per fitted attribute, by name (``score_sums`` is
``Router.score_sums_``), in the artifact format every version reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import ArtifactError
from ..training.data import OutcomeData
from .classifiers import SuccessClassifiers
from .knn import NeighbourScores
from .statistics import DISTANCE_QUANTILES, ClusterStatistics

__all__ = ["OPTIONAL_STATE_ARRAYS", "STATE_ARRAYS", "RouterParts"]

STATE_ARRAYS = ClusterStatistics.ARRAYS
"""The arrays every saved router has."""
OPTIONAL_STATE_ARRAYS = (
    "cost_sums",
    "cost_counts",
    "global_costs",
    *NeighbourScores.ARRAYS,
    *SuccessClassifiers.ARRAYS,
    "task_score_sums",
    "task_score_counts",
)
"""The arrays a saved router has when its data or settings call for them (in the file's order)."""
# Arrays kept in a smaller dtype in the state: halves the file; routing is insensitive to it.
_STATE_DTYPES = {"train_embeddings": np.float16}


@dataclass
class RouterParts:
    """A fitted router's statistics, neighbour scores and classifiers."""

    statistics: ClusterStatistics
    neighbours: NeighbourScores
    classifiers: SuccessClassifiers

    def part_of(self, field: str) -> Any:
        """The part that keeps the fitted attribute ``field`` (its name without the ``_``)."""
        if field in NeighbourScores.ARRAYS:
            return self.neighbours
        if field in SuccessClassifiers.ARRAYS:
            return self.classifiers
        return self.statistics

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        centers: np.ndarray,
        data: OutcomeData,
        *,
        keep_rows: bool,
        classifier_weight: float,
        online_classifiers: bool,
    ) -> tuple[RouterParts, np.ndarray]:
        """Fit every part on ``data`` embedded as ``X``, in the clusters of ``centers``;
        returns the parts and each row's cluster."""
        statistics, labels = ClusterStatistics.fit(X, centers, data)
        neighbours = NeighbourScores.fit(X, data.scores, keep=keep_rows)
        classifiers = SuccessClassifiers.fit(
            X, data.scores, weight=classifier_weight, online=online_classifiers
        )
        return cls(statistics, neighbours, classifiers), labels

    def update(
        self,
        scores: np.ndarray,
        costs: np.ndarray | None,
        cols: np.ndarray,
        labels: np.ndarray,
        X: np.ndarray | None,
        *,
        n_models: int,
        decay: float,
        weights: np.ndarray | None,
    ) -> None:
        """Count a batch of outcomes (rows in clusters ``labels``, embedded as ``X`` when
        known; columns: the models ``cols`` of ``n_models``) into every part."""
        self.statistics.update(scores, costs, cols, labels, decay=decay, weights=weights)
        full = np.full((len(scores), n_models), np.nan)
        full[:, cols] = scores
        self.classifiers.update(X, full, weights)
        self.neighbours.update(X, full)

    def add_model(self, new_model_prior: float | None) -> None:
        """One more candidate model with no evidence, in every part."""
        self.statistics.add_model(new_model_prior)
        self.neighbours.add_model()
        self.classifiers.add_model()

    def watched(self) -> tuple[Any, ...]:
        """The arrays the estimate derives its cached arrays from (compared by identity): the
        parts assign new ones whenever their content changes."""
        s = self.statistics
        return (
            s.cluster_centers, s.score_sums, s.score_counts, s.global_scores, s.cost_sums,
            s.cost_counts, s.global_costs, self.classifiers.classifier_coef, s.train_distances,
            self.neighbours.train_scores,
        )  # fmt: skip

    # ---------------------------------------------------------------- state

    def state(self) -> dict[str, np.ndarray]:
        """The named arrays of the saved state."""
        out = {}
        for name in STATE_ARRAYS + OPTIONAL_STATE_ARRAYS:
            value = getattr(self.part_of(name), name)
            if value is not None:
                out[name] = np.asarray(value, dtype=_STATE_DTYPES.get(name, value.dtype))
        return out

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], tasks: list[str] | None) -> RouterParts:
        """The parts from :meth:`state`'s arrays (shapes unchecked: :meth:`check_shapes`)."""
        missing = [name for name in STATE_ARRAYS if name not in arrays]
        if missing:
            raise ArtifactError(f"missing arrays {missing}")
        read = {
            name: (value.astype(np.float32) if name in _STATE_DTYPES else value)
            for name, value in arrays.items()
            if name in STATE_ARRAYS + OPTIONAL_STATE_ARRAYS
        }
        return cls(
            ClusterStatistics.from_state(read, tasks),
            NeighbourScores(*(read.get(name) for name in NeighbourScores.ARRAYS)),
            SuccessClassifiers(*(read.get(name) for name in SuccessClassifiers.ARRAYS)),
        )

    def check_shapes(
        self, n_models: int, dimension: int, scoring: str, classifier_weight: float
    ) -> None:
        """Raise :class:`~avengers.ArtifactError` unless every array fits the others, the
        recorded dimension and the settings."""
        k, d = self.statistics.cluster_centers.shape
        m = n_models
        scores = self.neighbours.train_scores
        n = None if scores is None else len(scores)
        t = len(self.statistics.tasks or ())
        expect = {
            "cluster_sizes": (k,), "score_sums": (k, m), "score_counts": (k, m),
            "global_scores": (m,), "train_distances": (len(DISTANCE_QUANTILES),),
            "cost_sums": (k, m), "cost_counts": (k, m), "global_costs": (m,),
            "train_embeddings": (n, d), "train_scores": (n, m), "classifier_coef": (m, d),
            "classifier_intercept": (m,), "classifier_covariance": (m, d + 1, d + 1),
            "task_score_sums": (t, k, m), "task_score_counts": (t, k, m),
        }  # fmt: skip
        for name, shape in expect.items():
            value = getattr(self.part_of(name), name)
            if value is not None and value.shape != shape:
                raise ArtifactError(
                    f"array {name} has shape {value.shape}, expected {shape} (corrupted artifact?)"
                )
        if d != dimension:
            raise ArtifactError(f"centroids are {d}-d but config says {dimension}")
        if scoring in ("knn", "hybrid") and self.neighbours.train_embeddings is None:
            raise ArtifactError(f"scoring {scoring!r} needs the arrays train_embeddings")
        if classifier_weight > 0 and self.classifiers.classifier_coef is None:
            raise ArtifactError("classifier_weight > 0 needs the arrays classifier_coef")
