"""Training on outcome files larger than memory: what ``avengers train --stream`` runs.

:func:`fit_stream` reads a Parquet file of wide outcome rows (see
:func:`avengers.training.data.iter_parquet_outcomes`) chunk by chunk, in three steps:

1. **Vectors.** Each chunk's queries are embedded, or its precomputed vectors are read from the
   embedding column (computed elsewhere, for example by Ray Data or Spark on a cluster), and
   appended to a temporary file. A uniform sample of rows is kept for the success classifiers of
   the hybrid estimate.
2. **Centroids.** Mini-batch k-means on uniform random batches of the spilled vectors
   (:func:`avengers.routing.clustering.minibatch_centroids`), so the order of the rows does not matter.
3. **Counting.** The file is read again; each chunk's outcomes are added to their nearest
   cluster with the arithmetic of :meth:`Router.update <avengers.Router.update>`
   (:func:`avengers.routing.statistics.accumulate`, without forgetting), so the statistics equal those of
   :meth:`Router.fit <avengers.Router.fit>` on the same vectors and centroids.

Memory stays bounded by one chunk, one k-means batch, the classifier sample and the (clusters,
models) statistics; the vectors live on disk (rows x dimension x 4 bytes, in ``tmp_dir``) and
are read back a slice at a time. Each row counts as one observation: a query repeated in the file
is counted again, not averaged. Only cluster scoring streams (kNN and hybrid scoring keep every
training vector in the router).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigError, DataError
from ..router import Router
from ..routing.clustering import minibatch_centroids, pairwise_sq_dist
from ..routing.logistic import fit_success_classifiers
from ..routing.statistics import DISTANCE_QUANTILES, accumulate, global_means, observed_cells
from .data import DEFAULT_CHUNK_ROWS, OutcomeData, iter_parquet_outcomes, parquet_row_count

__all__ = ["DEFAULT_CLASSIFIER_ROWS", "VectorSpill", "fit_stream"]

DEFAULT_CLASSIFIER_ROWS = 20_000
"""Rows (a uniform sample) the success classifiers are fitted on when training streams."""


class VectorSpill:
    """Float32 vectors of a fixed dimension in a file, written in order and read back by slice or
    by row positions without keeping the file mapped (so they never count as resident memory)."""

    def __init__(self, path: Path, dimension: int) -> None:
        self.path = path
        self.dimension = dimension
        self.rows = 0
        self._file = path.open("wb")

    def append(self, X: np.ndarray) -> None:
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.dimension:
            raise DataError(f"expected vectors of dimension {self.dimension}, got {X.shape}")
        self._file.write(X.tobytes())
        self.rows += len(X)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def read(self, start: int, n: int) -> np.ndarray:
        """Rows ``start`` to ``start + n``."""
        with self.path.open("rb") as f:
            f.seek(start * self.dimension * 4)
            X = np.fromfile(f, dtype=np.float32, count=n * self.dimension)
        return X.reshape(n, self.dimension)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The rows at sorted positions ``index`` (a copy; the mapping is closed afterwards)."""
        mm = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.dimension))
        try:
            return np.array(mm[index])
        finally:
            del mm


def fit_stream(
    router: Router,
    path: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    embedding_column: str | None = "embedding",
    centroids: np.ndarray | None = None,
    epochs: float = 2.0,
    batch_size: int = 4096,
    classifier_rows: int = DEFAULT_CLASSIFIER_ROWS,
    tmp_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Router:
    """A router with ``router``'s settings, fitted on the Parquet file at ``path`` in chunks of
    ``chunk_rows`` rows (see the module docstring). Vectors come from the file's
    ``embedding_column`` when it has one (they must come from ``router``'s embedder, whose name is
    recorded; its dimension is checked), else from the embedder. ``centroids`` (k, d) skip the
    clustering; ``epochs`` and ``batch_size`` set the mini-batch k-means; ``classifier_rows`` is
    the sample the success classifiers are fitted on; ``tmp_dir`` holds the spilled vectors;
    ``progress`` receives one line per step. The clustering is recorded as ``minibatch``."""
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    if router.scoring != "cluster":
        raise ConfigError(
            f"streaming training needs scoring 'cluster' (scoring {router.scoring!r} keeps every "
            "training vector in the router)"
        )
    if router.clustering in ("gmm", "agglomerative"):
        raise ConfigError(
            f"streaming training clusters with mini-batch k-means; clustering "
            f"{router.clustering!r} needs all vectors in memory (use kmeans or minibatch)"
        )
    src = Path(path)
    n_total = parquet_row_count(src)
    if n_total == 0:
        raise DataError(f"{src}: no training queries")
    emb = router.get_embedder()
    rng = np.random.default_rng(router.random_state)
    sample_at = np.zeros(0, dtype=np.int64)
    if router.classifier_weight > 0:
        size = min(int(classifier_rows), n_total)
        sample_at = np.sort(rng.choice(n_total, size=size, replace=False))

    with tempfile.TemporaryDirectory(prefix="avengers-stream-", dir=tmp_dir) as tmp:
        spill: VectorSpill | None = None
        models: list[str] = []
        sample_data: list[OutcomeData] = []
        sample_X: list[np.ndarray] = []
        embedded = 0
        # pass 1: vectors to disk, the model list, the classifier sample
        for chunk in iter_parquet_outcomes(
            src, chunk_rows=chunk_rows, embedding_column=embedding_column
        ):
            data = chunk.data
            if chunk.embeddings is not None:
                X = chunk.embeddings
            else:
                X = np.asarray(emb.embed(data.queries), dtype=np.float32)
                embedded += len(X)
            if spill is None:
                if X.shape[1] != emb.dimension:
                    raise DataError(
                        f"{src}: column {embedding_column!r} holds {X.shape[1]}-d vectors but "
                        f"embedder {emb.name!r} gives {emb.dimension}-d vectors: name the "
                        "embedder that computed them"
                    )
                spill = VectorSpill(Path(tmp) / "vectors.f32", X.shape[1])
            spill.append(X)
            models += [m for m in data.models if m not in models]
            lo, hi = np.searchsorted(sample_at, [chunk.start, chunk.start + len(data)])
            if hi > lo:
                rows = sample_at[lo:hi] - chunk.start
                sample_data.append(data.subset(rows))
                sample_X.append(X[rows])
            say(f"read {chunk.start + len(data):,} of {n_total:,} rows")
        assert spill is not None
        spill.close()
        if spill.rows != n_total:
            raise DataError(f"{src}: read {spill.rows} rows, the footer says {n_total}")

        # the centroids
        if centroids is None:
            say(f"mini-batch k-means, k={router.n_clusters}, {epochs:g} epochs")
            centers = minibatch_centroids(
                spill.take,
                n_total,
                router.n_clusters,
                batch_size=batch_size,
                epochs=epochs,
                random_state=router.random_state,
            )
        else:
            centers = np.asarray(centroids, dtype=np.float32)
            if centers.ndim != 2 or centers.shape[1] != spill.dimension:
                raise ConfigError(f"centroids must have shape (k, {spill.dimension})")

        # pass 2: count outcomes in their nearest cluster
        stats = _Counts(len(centers), models)
        for chunk in iter_parquet_outcomes(src, chunk_rows=chunk_rows, embedding_column=None):
            data = chunk.data
            if data.models != models:
                data = data.select_models(models)
            X = spill.read(chunk.start, len(data))
            stats.add(data, X, centers)
            say(f"counted {chunk.start + len(data):,} of {n_total:,} rows")

    coef = intercept = None
    if router.classifier_weight > 0:
        sample = OutcomeData.concat(sample_data).select_models(models)
        say(f"success classifiers on {len(sample):,} sampled rows")
        coef, intercept = fit_success_classifiers(np.vstack(sample_X), sample.scores)
    config, arrays = stats.state(router, centers, emb.name, spill.dimension, str(src))
    if coef is not None and intercept is not None:
        arrays["classifier_coef"] = coef
        arrays["classifier_intercept"] = intercept
    config["training_summary"]["streamed"] = {
        "chunk_rows": int(chunk_rows),
        "embedded_rows": int(embedded),
        "precomputed_rows": int(n_total - embedded),
        "classifier_rows": len(sample_at),
    }
    fitted = Router.from_state(
        config, arrays, embedder=router.embedder if router.embedder is not None else None
    )
    if router.embedder is None:
        fitted.set_embedder(emb)
    fitted.fit_seconds_ = time.perf_counter() - t0
    return fitted


class _Counts:
    """The running per-cluster statistics of pass 2 and the training summary's totals."""

    def __init__(self, k: int, models: list[str]) -> None:
        m = len(models)
        self.k = k
        self.models = models
        self.sums = np.zeros((k, m))
        self.counts = np.zeros((k, m))
        self.cost_sums: np.ndarray | None = None
        self.cost_counts: np.ndarray | None = None
        self.sizes = np.zeros(k, dtype=np.int64)
        self.tasks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.task_rows: Counter[str] = Counter()
        self.distances: list[np.ndarray] = []
        self.oracle = 0.0
        self.rows = 0

    def add(self, data: OutcomeData, X: np.ndarray, centers: np.ndarray) -> None:
        sq = pairwise_sq_dist(X, centers)
        labels = sq.argmin(axis=1)
        self.distances.append(np.sqrt(sq[np.arange(len(X)), labels]).astype(np.float32))
        self.sizes += np.bincount(labels, minlength=self.k)
        rows, cols, vals = observed_cells(data.scores)
        accumulate(self.sums, self.counts, labels[rows], cols, vals)
        if data.costs is not None:
            if self.cost_sums is None or self.cost_counts is None:
                self.cost_sums, self.cost_counts = (
                    np.zeros_like(self.sums),
                    np.zeros_like(self.sums),
                )
            rows, cols, vals = observed_cells(data.costs)
            accumulate(self.cost_sums, self.cost_counts, labels[rows], cols, vals)
        if data.tasks is not None:
            tasks = np.asarray(data.tasks, dtype=object)
            for name in sorted(set(data.tasks) - {""}):
                sel = np.flatnonzero(tasks == name)
                ts, tc = self.tasks.setdefault(
                    name, (np.zeros_like(self.sums), np.zeros_like(self.sums))
                )
                rows, cols, vals = observed_cells(data.scores[sel])
                accumulate(ts, tc, labels[sel][rows], cols, vals)
                self.task_rows[name] += len(sel)
        self.oracle += float(np.nanmax(np.nan_to_num(data.scores, nan=-np.inf), axis=1).sum())
        self.rows += len(data)

    def state(
        self, router: Router, centers: np.ndarray, embedder: str, dim: int, source: str
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The config and arrays of :meth:`Router.state` for these statistics."""
        zeros = np.zeros(len(self.models))
        global_scores = global_means(self.sums, self.counts, zeros)
        d_own = np.concatenate(self.distances)
        arrays: dict[str, np.ndarray] = {
            "cluster_centers": centers,
            "cluster_sizes": self.sizes,
            "score_sums": self.sums,
            "score_counts": self.counts,
            "global_scores": global_scores,
            "train_distances": np.quantile(d_own, DISTANCE_QUANTILES).astype(np.float64),
        }
        totals = self.counts.sum(axis=0)
        summary: dict[str, Any] = {
            "source": source,
            "n_queries": self.rows,
            "n_models": len(self.models),
            "mean_score": {m: _num(v) for m, v in zip(self.models, global_scores, strict=True)},
            "oracle": self.oracle / self.rows,
            "missing": {
                m: int(self.rows - t)
                for m, t in zip(self.models, totals, strict=True)
                if self.rows - t
            },
            "has_costs": self.cost_sums is not None,
            "notes": [],
        }
        if self.cost_sums is not None and self.cost_counts is not None:
            global_costs = global_means(self.cost_sums, self.cost_counts, zeros)
            arrays |= {
                "cost_sums": self.cost_sums,
                "cost_counts": self.cost_counts,
                "global_costs": global_costs,
            }
            summary["mean_cost"] = {
                m: _num(v) for m, v in zip(self.models, global_costs, strict=True)
            }
        names = sorted(self.tasks)
        if names:
            arrays["task_score_sums"] = np.stack([self.tasks[t][0] for t in names])
            arrays["task_score_counts"] = np.stack([self.tasks[t][1] for t in names])
            summary["tasks"] = {t: int(self.task_rows[t]) for t in names}
        params = {k: v for k, v in router.get_params(deep=False).items() if k != "embedder"}
        if params.get("clustering") == "kmeans":
            params["clustering"] = "minibatch"
        config: dict[str, Any] = {
            "models": list(self.models),
            "n_clusters_fitted": len(centers),
            "embedder": {"name": embedder, "dimension": int(dim)},
            "params": params,
            "training_summary": summary,
            **({"tasks": names} if names else {}),
        }
        return config, arrays


def _num(v: float) -> float | None:
    return None if math.isnan(float(v)) else float(v)
