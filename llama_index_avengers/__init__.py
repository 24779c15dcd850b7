"""LlamaIndex adapter for the avengers router: :class:`Avengers`, an ``LLM`` that routes, samples
and votes (all of it in the ``avengers`` core), and :class:`AvengersEmbedding`, the router's
embedding model for indexes."""

from .base import Avengers, LLMBackend, routing_text
from .embeddings import AvengersEmbedding

__all__ = ["Avengers", "AvengersEmbedding", "LLMBackend", "routing_text"]
