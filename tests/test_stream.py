"""Streaming training (avengers.training.chunked, ``avengers train --stream``): Parquet read in chunks,
mini-batch k-means over spilled vectors, outcomes counted exactly as ``Router.fit`` counts them,
precomputed vectors from an embedding column, clear errors, and the docs/scale.md example."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from avengers import ConfigError, DataError, Router
from avengers.cli import app
from avengers.embedding.base import normalize_rows
from avengers.embedding.static import StaticEmbedder
from avengers.training.chunked import fit_stream
from avengers.training.data import iter_parquet_outcomes, load_outcomes
from typer.testing import CliRunner

DOCS = Path(__file__).resolve().parents[1] / "docs"


class CountingEmbedder:
    """A 4-d embedder that hashes words into buckets and counts the texts it embedded."""

    name = "test-counting-4d"
    dimension = 4

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += len(texts)
        X = np.zeros((len(texts), 4), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                X[i, sum(map(ord, w)) % 4] += 1.0
        return normalize_rows(X + 1e-3)


def _blobs(n: int, seed: int = 0) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Rows in four well separated groups; in group g model 'm{g % 2}' wins."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, size=n)
    X = np.eye(4, dtype=np.float32)[group] * 5 + rng.normal(0, 0.05, (n, 4)).astype(np.float32)
    rows = [
        {
            "query": f"query {i} of group {g}",
            "scores": {"m0": float(g % 2 == 0), "m1": float(g % 2 == 1)},
            "task": f"t{g}",
        }
        for i, g in enumerate(group)
    ]
    return rows, X, group


def _write(path: Path, rows: list[dict[str, Any]], X: np.ndarray | None = None) -> Path:
    table = pa.Table.from_pylist(rows)
    if X is not None:
        vecs = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1), pa.float32()), X.shape[1])
        table = table.append_column("embedding", vecs)
    pq.write_table(table, path, row_group_size=100)
    return path


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    emb = StaticEmbedder()
    emb.embed(["load"])
    return emb


def test_streamed_statistics_equal_fit_on_the_same_centroids(
    data_dir: Path, static: StaticEmbedder, tmp_path: Path
) -> None:
    rows = json.loads((data_dir / "llmrouter-dcrouter" / "train.json").read_text())[:700]
    path = _write(tmp_path / "train.parquet", rows)
    data = load_outcomes(path)
    X = static.embed(data.queries)
    full = Router(8, embedder=static, classifier_weight=0).fit(data, embeddings=X)
    streamed = fit_stream(
        Router(8, embedder=static, classifier_weight=0),
        path,
        chunk_rows=97,
        centroids=full.cluster_centers_,
        embedding_column=None,
    )
    order = [streamed.models_.index(m) for m in full.models_]
    np.testing.assert_allclose(streamed.score_sums_[:, order], full.score_sums_)
    np.testing.assert_array_equal(streamed.score_counts_[:, order], full.score_counts_)
    np.testing.assert_allclose(streamed.global_scores_[order], full.global_scores_)
    np.testing.assert_array_equal(streamed.cluster_sizes_, full.cluster_sizes_)
    np.testing.assert_allclose(streamed.train_distances_, full.train_distances_, rtol=1e-5)
    assert streamed.training_summary_["n_queries"] == 700
    assert streamed.embedder_name_ == static.name
    q = ["Write a Python function that reverses a list.", "There are 3 houses in a row."]
    a = [d.ranking[0].model for d in full.route_batch(q)]
    assert [d.ranking[0].model for d in streamed.route_batch(q)] == a


def test_minibatch_kmeans_finds_the_groups_from_precomputed_vectors(tmp_path: Path) -> None:
    rows, X, group = _blobs(3000)
    path = _write(tmp_path / "big.parquet", rows, X)
    emb = CountingEmbedder()
    router = fit_stream(
        Router(4, embedder=emb, n_nearest=1), path, chunk_rows=256, classifier_rows=500
    )
    assert emb.calls == 0  # every vector came from the file
    labels = ((X[:, None, :] - router.cluster_centers_[None]) ** 2).sum(-1).argmin(1)
    for g in range(4):  # each group falls in one cluster of its own
        assert len(set(labels[group == g])) == 1
    assert len(set(labels)) == 4
    summary = router.training_summary_
    assert summary["streamed"]["precomputed_rows"] == 3000
    assert summary["tasks"] == {f"t{g}": int((group == g).sum()) for g in range(4)}
    assert router.classifier_coef_ is not None and router.classifier_coef_.shape == (2, 4)
    assert router.get_params()["clustering"] == "minibatch"
    # routes each group to its winner, and survives a save and load
    router.save_pretrained(tmp_path / "router")
    again = Router.from_pretrained(tmp_path / "router", embedder=emb)
    best = again.predict(np.eye(4, dtype=np.float32) * 5)
    assert [again.models_[b] for b in best] == ["m0", "m1", "m0", "m1"]


def test_map_scores_with_costs_and_missing_cells(tmp_path: Path) -> None:
    schema = pa.schema(
        [
            ("query", pa.string()),
            ("scores", pa.map_(pa.string(), pa.float64())),
            ("costs", pa.map_(pa.string(), pa.float64())),
        ]
    )
    rows = [
        {"query": "a b", "scores": [("x", 1.0), ("y", 0.0)], "costs": [("x", 2.0), ("y", 1.0)]},
        {"query": "c d", "scores": [("y", 1.0)], "costs": [("y", 1.0)]},
        {"query": "e f", "scores": [("x", 0.5), ("z", 1.0)], "costs": [("x", 2.0)]},
    ]
    path = tmp_path / "map.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    chunks = list(iter_parquet_outcomes(path, chunk_rows=2))
    assert [c.start for c in chunks] == [0, 2]
    router = fit_stream(
        Router(1, embedder=CountingEmbedder(), classifier_weight=0), path, chunk_rows=2
    )
    assert router.models_ == ["x", "y", "z"]
    np.testing.assert_allclose(router.score_counts_[0], [2, 2, 1])
    np.testing.assert_allclose(router.global_scores_, [0.75, 0.5, 1.0])
    assert router.global_costs_ is not None
    np.testing.assert_allclose(router.global_costs_, [2.0, 1.0, 0.0])
    assert router.training_summary_["missing"] == {"x": 1, "y": 1, "z": 2}


def test_mistakes_are_clear_errors(tmp_path: Path) -> None:
    rows, _, _ = _blobs(50)
    emb = CountingEmbedder()
    long = tmp_path / "long.parquet"
    pq.write_table(pa.Table.from_pylist([{"query": "q", "model": "a", "score": 1.0}]), long)
    with pytest.raises(DataError, match="long rows"):
        fit_stream(Router(2, embedder=emb), long)
    bad = [dict(r) for r in rows]
    bad[7] = {**bad[7], "scores": {"m0": 1.5, "m1": 0.0}}
    with pytest.raises(DataError, match=r"row 8: field 'scores.m0': score 1.5"):
        fit_stream(Router(2, embedder=emb), _write(tmp_path / "bad.parquet", bad))
    wrong_dim = _write(tmp_path / "dim.parquet", rows, np.ones((50, 3), np.float32))
    with pytest.raises(DataError, match="3-d vectors"):
        fit_stream(Router(2, embedder=emb), wrong_dim)
    with pytest.raises(ConfigError, match="scoring 'cluster'"):
        fit_stream(Router(2, embedder=emb, scoring="knn"), wrong_dim)
    with pytest.raises(DataError, match="no such file"):
        fit_stream(Router(2, embedder=emb), tmp_path / "nope.parquet")
    r = CliRunner().invoke(
        app, ["train", "--stream", "--data", str(long), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code != 0 and "long rows" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(
        app, ["train", "--stream", "--data", str(tmp_path / "x.json"), "--out", str(tmp_path)]
    )
    assert r.exit_code != 0 and "one Parquet file" in r.output


def test_scale_doc_example_runs(
    data_dir: Path, static: StaticEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (DOCS / "scale.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    commands = [
        line
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.startswith("avengers train")
    ]
    assert commands, "docs/scale.md shows no avengers train command"
    rows = json.loads((data_dir / "llmrouter-dcrouter" / "train.json").read_text())[:400]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "outcomes.parquet")
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(code, "docs/scale.md", "exec"), ns)
    embedded = pq.read_table(tmp_path / "outcomes-embedded.parquet")
    assert embedded.num_rows == 400 and "embedding" in embedded.column_names
    for command in commands:
        r = CliRunner().invoke(app, shlex.split(command)[1:])
        assert r.exit_code == 0, r.output
        assert "400 rows" in r.output
    router = Router.from_pretrained(tmp_path / "big-router")
    assert router.embedder_name_ == static.name
    assert router.route("Write a Python function to sort a list.").ranking
