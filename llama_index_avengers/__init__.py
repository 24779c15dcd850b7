"""LlamaIndex adapter for the avengers router: :class:`Avengers`, an ``LLM`` that routes, samples
and votes (all of it in the ``avengers`` core), and :class:`AvengersEmbedding`, the router's
embedding model for indexes, and :func:`send_feedback` to rate answers."""

from .base import Avengers, LLMBackend, routing_text
from .embeddings import AvengersEmbedding
from .feedback import asend_feedback, send_feedback

__all__ = [
    "Avengers",
    "AvengersEmbedding",
    "LLMBackend",
    "asend_feedback",
    "routing_text",
    "send_feedback",
]
