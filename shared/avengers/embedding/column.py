"""The ``embedding`` column of a wide Parquet outcome file, computed on one machine or a cluster.

Embedding is the bulk of training on millions of queries; ``avengers train --stream`` reads
vectors from the file's ``embedding`` column when it has one and then only clusters and counts
(see :mod:`avengers.stream` and docs/scale.md). This module writes that column:

* :func:`embed_parquet` on this machine, a batch at a time;
* :func:`embed_parquet_ray` on a Ray cluster (``pip install 'avengers-router[ray]'``): a pool of
  Ray actors (each loading the embedder once) embeds the file's batches, and this process writes
  the rows back, in their original order, to one Parquet file.

Both append the same column (fixed-size lists of float32) from the same embedder, so a router
trained on either file is the same. Pass the embedder by its name (what ``--embedder`` takes:
``static``, ``static:<name>``, a sentence-transformers model, or None for the bundled MiniLM);
Ray workers resolve it themselves, offline (``HF_HUB_OFFLINE=1``), so the model must be
installed on every node (the bundled MiniLM comes with the package).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigError, DataError
from ..training.data import QUERY_KEYS

__all__ = ["EMBEDDING_COLUMN", "embed_parquet", "embed_parquet_ray", "embed_table"]

EMBEDDING_COLUMN = "embedding"
"""The column ``avengers train --stream`` reads precomputed vectors from by default."""

_RAY_BATCH_ROWS = 1024


def _query_column(names: list[str], where: str) -> str:
    for key in QUERY_KEYS:
        if key in names:
            return key
    raise DataError(f"{where}: no 'query' column (or 'question'/'prompt') to embed")


def embed_table(table: Any, embedder: Any, *, column: str = EMBEDDING_COLUMN) -> Any:
    """``table`` (a pyarrow Table or RecordBatch) with ``column`` appended: the embedder's vector
    of each row's query, as fixed-size lists of float32. An existing ``column`` is replaced."""
    import pyarrow as pa

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    qkey = _query_column(table.column_names, "table")
    texts = table.column(qkey).to_pylist()
    if any(not isinstance(t, str) for t in texts):
        raise DataError(f"column {qkey!r} holds a value that is not a string")
    dim = int(embedder.dimension)
    vectors = (
        np.asarray(embedder.embed(texts), dtype=np.float32).reshape(len(texts), dim)
        if texts
        else np.zeros((0, dim), np.float32)
    )
    values = pa.array(vectors.reshape(-1), type=pa.float32())
    vecs = pa.FixedSizeListArray.from_arrays(values, dim)
    if column in table.column_names:
        table = table.drop_columns([column])
    return table.append_column(column, vecs)


def _check_paths(source: str | Path, dest: str | Path) -> tuple[Path, Path]:
    src, dst = Path(source), Path(dest)
    if not src.is_file():
        raise DataError(f"{src}: no such Parquet file")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"{dst}: write the embedded rows to another file than the source")
    return src, dst


class _PartialParquet:
    """Tables written to ``dest`` through a hidden ``.<name>.partial`` file beside it, renamed into
    place by :meth:`commit`: until then ``dest`` is as it was, and leaving the ``with`` block
    without a commit (an error) removes the partial file."""

    def __init__(self, dest: Path) -> None:
        self.dest, self.tmp = dest, dest.with_name(f".{dest.name}.partial")
        self.writer: Any = None
        self.rows = 0

    @property
    def started(self) -> bool:
        return self.writer is not None

    def start(self, schema: Any) -> None:
        import pyarrow.parquet as pq

        self.writer = pq.ParquetWriter(self.tmp, schema)

    def write(self, table: Any) -> None:
        if self.writer is None:
            self.start(table.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> int:
        """Close the file and move it to ``dest``; the number of rows written."""
        self.writer.close()
        self.writer = None
        os.replace(self.tmp, self.dest)
        return self.rows

    def __enter__(self) -> _PartialParquet:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def embed_parquet(
    source: str | Path,
    dest: str | Path,
    embedder: Any = None,
    *,
    batch_rows: int = 65_536,
    column: str = EMBEDDING_COLUMN,
) -> int:
    """Write ``source``'s rows with an ``embedding`` column to ``dest`` on this machine, a batch
    at a time (memory: one batch). ``embedder``: a name (see the module docstring) or an
    embedder. Returns the number of rows written."""
    import pyarrow.parquet as pq

    from .embedders import resolve_embedder

    src, dst = _check_paths(source, dest)
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be >= 1, got {batch_rows}")
    emb = resolve_embedder(embedder, cache=False)
    parquet = pq.ParquetFile(src)
    _query_column(parquet.schema_arrow.names, str(src))
    with _PartialParquet(dst) as out:
        for batch in parquet.iter_batches(batch_size=batch_rows):
            out.write(embed_table(batch, emb, column=column))
        if not out.started:  # no rows: still a file with the column
            out.start(embed_table(parquet.schema_arrow.empty_table(), emb, column=column).schema)
        return out.commit()


class _EmbedBatches:
    """A Ray actor: resolves the embedder once, then appends the column to each batch it gets."""

    def __init__(self, embedder: str | None, column: str) -> None:
        from .embedders import resolve_embedder

        self.embedder = resolve_embedder(embedder, cache=False)
        self.column = column

    def embed(self, batch: Any) -> Any:
        return embed_table(batch, self.embedder, column=self.column)


def embed_parquet_ray(
    source: str | Path,
    dest: str | Path,
    embedder: str | None = None,
    *,
    address: str | None = None,
    workers: int = 2,
    batch_rows: int = _RAY_BATCH_ROWS,
    cpus_per_worker: float = 1.0,
    column: str = EMBEDDING_COLUMN,
) -> int:
    """Write ``source``'s rows with an ``embedding`` column to ``dest``, embedding on Ray.

    ``address``: the cluster to join (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None
    joins the cluster this process is already connected to, or starts a local one for the call.
    ``workers`` actors (``cpus_per_worker`` each) load the embedder once and embed ``batch_rows``
    rows at a time; this process reads the file a batch at a time, keeps two batches per actor
    in flight, and writes the results back in the source's row order into one file (what
    ``avengers train --stream`` reads), so its memory stays bounded by a few batches. Returns the
    rows written."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "embed_parquet_ray needs Ray: pip install 'avengers-router[ray]'"
        ) from None
    from collections import deque

    import pyarrow.parquet as pq

    src, dst = _check_paths(source, dest)
    if workers < 1 or batch_rows < 1 or not cpus_per_worker > 0:
        raise ConfigError(
            f"workers and batch_rows must be >= 1 and cpus_per_worker > 0, got {workers}, "
            f"{batch_rows}, {cpus_per_worker}"
        )
    if embedder is not None and not isinstance(embedder, str):
        raise ConfigError(
            "embed_parquet_ray takes the embedder's name (workers load it themselves)"
        )
    parquet = pq.ParquetFile(src)
    _query_column(parquet.schema_arrow.names, str(src))
    started = False
    if not ray.is_initialized():
        env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
        started = True
    actors: list[Any] = []
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if workers * cpus_per_worker > cpus:
            raise ConfigError(
                f"the Ray cluster has {cpus:g} CPUs, fewer than {workers} workers x "
                f"{cpus_per_worker:g} CPUs: lower workers or cpus_per_worker"
            )
        actor_class: Any = ray.remote(num_cpus=cpus_per_worker)(_EmbedBatches)
        actors = [actor_class.remote(embedder, column) for _ in range(workers)]
        pending: deque[Any] = deque()
        with _PartialParquet(dst) as out:
            for i, batch in enumerate(parquet.iter_batches(batch_size=batch_rows)):
                pending.append(actors[i % workers].embed.remote(batch))
                if len(pending) >= 2 * workers:
                    out.write(ray.get(pending.popleft()))
            while pending:
                out.write(ray.get(pending.popleft()))
            if not out.started:
                raise DataError(f"{src}: no rows to embed")
            return out.commit()
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
