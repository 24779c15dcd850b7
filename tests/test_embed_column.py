"""The embedding column computed outside `avengers train` (avengers.embedding.column): on this machine
and on a real local Ray cluster started by the test; `avengers train --stream` then trains on
the file, and both paths give the same vectors and the same router."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from avengers import ConfigError, DataError, Router
from avengers.cli import app
from avengers.embedding.column import embed_parquet, embed_table
from avengers.embedding.static import StaticEmbedder
from typer.testing import CliRunner

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _rows(data_dir: Path, n: int) -> list[dict[str, Any]]:
    return json.loads((data_dir / "llmrouter-dcrouter" / "train.json").read_text())[:n]


def _vectors(path: Path) -> np.ndarray:
    col = pq.read_table(path).column("embedding").combine_chunks()
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(
        len(col), -1
    )


def _train(data: Path, out: Path, embedder: str | None = None) -> Router:
    args = ["train", "--stream", "--data", str(data), "--out", str(out), "--k", "8"]
    args += ["--seed", "0"] + (["--embedder", embedder] if embedder else [])
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return Router.from_pretrained(out)


def test_embed_parquet_appends_the_embedders_vectors_in_row_order(tmp_path: Path) -> None:
    emb = StaticEmbedder()
    rows = [
        {"question": f"what is {i} plus {i}?", "scores": {"a": 1.0, "b": 0.0}} for i in range(50)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet", row_group_size=7)
    n = embed_parquet(tmp_path / "in.parquet", tmp_path / "out.parquet", "static", batch_rows=8)
    assert n == 50
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column("question").to_pylist() == [r["question"] for r in rows]
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), emb.dimension)
    np.testing.assert_array_equal(
        _vectors(tmp_path / "out.parquet"), emb.embed([r["question"] for r in rows])
    )
    # a second run replaces the column rather than adding another
    embed_parquet(tmp_path / "out.parquet", tmp_path / "again.parquet", "static")
    assert pq.read_table(tmp_path / "again.parquet").column_names.count("embedding") == 1


def test_embed_mistakes_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such Parquet file"):
        embed_parquet(tmp_path / "nope.parquet", tmp_path / "o.parquet", "static")
    pq.write_table(
        pa.Table.from_pylist([{"text": "x", "scores": {"a": 1.0}}]), tmp_path / "t.parquet"
    )
    with pytest.raises(DataError, match="no 'query' column"):
        embed_parquet(tmp_path / "t.parquet", tmp_path / "o.parquet", "static")
    with pytest.raises(ConfigError, match="another file"):
        embed_parquet(tmp_path / "t.parquet", tmp_path / "t.parquet", "static")
    with pytest.raises(DataError, match="not a string"):
        embed_table(pa.table({"query": [1, 2]}), StaticEmbedder())
    assert not list(tmp_path.glob(".*partial"))


class _FailsOnSecondBatch(StaticEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def embed(self, texts: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("embedder died")
        return super().embed(texts)


def test_a_failed_embedding_run_leaves_the_destination_as_it_was(tmp_path: Path) -> None:
    rows = [{"query": f"q{i}", "scores": {"a": 1.0}} for i in range(20)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    dest = tmp_path / "out.parquet"
    dest.write_bytes(b"the previous file")
    with pytest.raises(RuntimeError, match="embedder died"):
        embed_parquet(tmp_path / "in.parquet", dest, _FailsOnSecondBatch(), batch_rows=8)
    assert dest.read_bytes() == b"the previous file"
    assert not list(tmp_path.glob(".*partial"))
    # a source without rows still gives a file, with the embedding column and no rows
    pq.write_table(pa.Table.from_pylist(rows).slice(0, 0), tmp_path / "none.parquet")
    assert embed_parquet(tmp_path / "none.parquet", dest, "static") == 0
    out = pq.read_table(dest)
    assert out.num_rows == 0 and out.column_names == ["query", "scores", "embedding"]
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), StaticEmbedder().dimension)
    assert not list(tmp_path.glob(".*partial"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayCluster:
    def __init__(self, address: str, env: dict[str, str]) -> None:
        self.address, self.env = address, env

    def run(self, code: str, cwd: Path) -> str:
        """Run ``code`` as a driver process of this cluster (Ray reads its settings at import,
        so a driver gets its own process with the cluster's environment)."""
        r = subprocess.run(
            [sys.executable, "-c", code], env=self.env, cwd=cwd, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A real Ray cluster on this machine: a head node started with `ray start --head --block`
    in its own process group (two CPUs), stopped by that group at the end."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the ray command is not installed beside this Python")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(32))
    # Ray on loopback only (it otherwise swaps 127.0.0.1 for the host's outward address), with
    # token authentication on a token of this test's own (not ~/.ray's), for the head, its
    # workers and the drivers alike
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    log = (temp / "head.log").open("w")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         "--node-ip-address=127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core machine starts it slowly
        while "Ray runtime started" not in (temp / "head.log").read_text():
            if head.poll() is not None:
                pytest.fail(f"ray head exited: {(temp / 'head.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("ray head did not come up in 300 s")
            time.sleep(1)
        yield RayCluster(f"127.0.0.1:{port}", env)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_cluster_vectors_and_router_equal_the_single_machine_ones(
    ray_cluster: RayCluster, data_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(data_dir, 600)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "outcomes.parquet", row_group_size=100)
    # the bundled MiniLM (the default embedder), on two Ray actors, 64 rows per batch
    out = ray_cluster.run(
        "import ray\n"
        "from avengers.embedding.column import embed_parquet_ray\n"
        "n = embed_parquet_ray('outcomes.parquet', 'ray.parquet', "
        f"address='{ray_cluster.address}', workers=2, batch_rows=64)\n"
        "print(n, ray.is_initialized())\n",
        tmp_path,
    )
    assert out.split() == ["600", "False"]  # the call joined the cluster and left it
    embed_parquet(tmp_path / "outcomes.parquet", tmp_path / "local.parquet")
    on_ray, local = _vectors(tmp_path / "ray.parquet"), _vectors(tmp_path / "local.parquet")
    assert on_ray.shape == (600, 384)
    np.testing.assert_allclose(on_ray, local, atol=2e-6)  # batch padding moves the last bits
    ray_table = pq.read_table(tmp_path / "ray.parquet")
    assert ray_table.column("question").to_pylist() == [r["question"] for r in rows]
    assert ray_table.drop_columns(["embedding"]).equals(
        pq.read_table(tmp_path / "outcomes.parquet")
    )

    a = _train(tmp_path / "ray.parquet", tmp_path / "router-ray")
    b = _train(tmp_path / "local.parquet", tmp_path / "router-local")
    assert a.training_summary_["streamed"]["precomputed_rows"] == 600
    assert a.models_ == b.models_
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, atol=1e-5)
    np.testing.assert_array_equal(a.score_counts_, b.score_counts_)
    np.testing.assert_allclose(a.score_sums_, b.score_sums_)
    queries = [r["question"] for r in rows[:50]]
    assert [d.ranking[0].model for d in a.route_batch(queries)] == [
        d.ranking[0].model for d in b.route_batch(queries)
    ]

    # docs/scale.md's Ray example, on this cluster (two actors: it has two CPUs), then its command
    text = (DOCS / "scale.md").read_text()
    (code,) = re.findall(r"```py ray\n(.*?)```", text, flags=re.S)
    code = code.replace('address="auto", workers=8', f'address="{ray_cluster.address}", workers=2')
    assert "600 rows embedded" in ray_cluster.run(code, tmp_path)
    np.testing.assert_allclose(
        _vectors(tmp_path / "outcomes-embedded.parquet"),
        StaticEmbedder().embed([r["question"] for r in rows]),
        atol=1e-6,
    )
    # more workers than the cluster has CPUs: one clear error, not a wait for ever
    out = ray_cluster.run(
        "from avengers import ConfigError\n"
        "from avengers.embedding.column import embed_parquet_ray\n"
        "try:\n"
        "    embed_parquet_ray('outcomes.parquet', 'x.parquet', 'static', "
        f"address='{ray_cluster.address}', workers=3)\n"
        "except ConfigError as e:\n"
        "    print(e)\n",
        tmp_path,
    )
    assert "the Ray cluster has 2 CPUs, fewer than 3 workers" in out
    assert not (tmp_path / "x.parquet").exists()
