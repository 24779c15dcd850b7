"""LangChain ``Embeddings`` over the core's embedders (default: the bundled MiniLM, offline)."""

from __future__ import annotations

from typing import Any

from avengers.embedding.embedders import Embedder, aembed, resolve_embedder
from langchain_core.embeddings import Embeddings


class AvengersEmbeddings(Embeddings):
    """The same text embeddings the router uses, for vector stores and retrievers. ``embedder``
    is an :class:`avengers.Embedder`, a sentence-transformers model path or name, or None for the
    bundled all-MiniLM-L6-v2."""

    def __init__(self, embedder: Embedder | str | None = None, **kwargs: Any) -> None:
        self._embedder = resolve_embedder(embedder)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self._embedder.embed(texts)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in await aembed(self._embedder, texts)]

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
