"""Turning text into vectors: the embedder contract (``embedding.base``), the static
(model-free) embedder (``embedding.static``), sentence-transformers and OpenAI embedders with
their caches (``embedding.embedders``), and the embedding column of a wide Parquet file on one
machine or a Ray cluster (``embedding.column``)."""
