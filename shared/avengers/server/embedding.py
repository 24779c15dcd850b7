"""The server's query embedder: user queries are kept out of the disk cache.

A router loaded for training or evaluation embeds through a :class:`CachedEmbedder`, which writes
every distinct text's vector to ``~/.cache/avengers`` (or ``$AVENGERS_CACHE``). A server would
thus write every user's query to disk. By default it embeds through a bounded in-memory LRU over a
batching layer over the raw model (a static model is used bare), and nothing user-derived is
persisted; an operator may opt in to the disk cache (``embed_cache="disk"``, ``--embed-cache
disk``, ``AVENGERS_EMBED_CACHE=disk``), which is bounded too (:class:`CachedEmbedder` keeps at
most ``max_rows`` vectors).
"""

from __future__ import annotations

from typing import Literal, cast

from ..embedding.embedders import BatchingEmbedder, CachedEmbedder, Embedder, MemoryCachedEmbedder
from ..embedding.static import StaticEmbedder
from ..exceptions import ConfigError

EmbedCache = Literal["memory", "disk", "none"]
EMBED_CACHES: tuple[str, ...] = ("memory", "disk", "none")
DEFAULT_EMBED_CACHE: EmbedCache = "memory"
DEFAULT_EMBED_CACHE_SIZE = 10_000


def as_embed_cache(value: str) -> EmbedCache:
    if value not in EMBED_CACHES:
        raise ConfigError(f"embed cache must be one of {', '.join(EMBED_CACHES)}, got {value!r}")
    return cast(EmbedCache, value)


def raw_embedder(emb: Embedder) -> tuple[Embedder, CachedEmbedder | None]:
    """The model under any caching and batching layers, and the disk cache found on the way."""
    disk = None
    while True:
        if isinstance(emb, CachedEmbedder):
            disk = disk or emb
            emb = emb.inner
        elif isinstance(emb, (MemoryCachedEmbedder, BatchingEmbedder)):
            emb = emb.inner
        else:
            return emb, disk


def serving_embedder(
    emb: Embedder,
    cache: EmbedCache = DEFAULT_EMBED_CACHE,
    max_items: int = DEFAULT_EMBED_CACHE_SIZE,
) -> Embedder:
    """``emb`` rebuilt for serving: ``memory`` (default): LRU of ``max_items`` over batching over
    the model; ``disk``: the same over the disk cache (the router's own, or a new one);
    ``none``: batching over the model. A static embedder (:class:`~avengers.embedding.static.StaticEmbedder`)
    is served bare unless ``disk`` is asked for: it embeds a query faster than any of those
    layers costs."""
    raw, disk = raw_embedder(emb)
    inner: Embedder = raw
    if cache == "disk":
        inner = disk if disk is not None else CachedEmbedder(raw)
    elif isinstance(raw, StaticEmbedder):
        # a static model embeds one query in tens of microseconds, on the event loop: batching
        # windows, a worker thread and an LRU lookup would each cost more than the embedding
        return raw
    out: Embedder = BatchingEmbedder(inner)
    if cache != "none":
        out = MemoryCachedEmbedder(out, max_items=max_items)
    return out
