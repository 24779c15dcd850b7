"""A LlamaIndex embedding model over the core's embedders (default: bundled MiniLM, offline)."""

from __future__ import annotations

from typing import Any

from avengers.embedding.embedders import Embedder, aembed, resolve_embedder
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr


class AvengersEmbedding(BaseEmbedding):
    """The router's text embeddings for ``VectorStoreIndex`` and friends. ``embedder`` is an
    :class:`avengers.Embedder`, a sentence-transformers path or name, or None for the bundled
    all-MiniLM-L6-v2."""

    _embedder: Any = PrivateAttr(default=None)

    def __init__(self, embedder: Embedder | str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault(
            "model_name", embedder if isinstance(embedder, str) else "all-MiniLM-L6-v2"
        )
        super().__init__(**kwargs)
        self._embedder = resolve_embedder(embedder)

    @classmethod
    def class_name(cls) -> str:
        return "AvengersEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self._embedder.embed(texts)]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in (await aembed(self._embedder, [query]))[0]]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await self._aget_query_embedding(text)
