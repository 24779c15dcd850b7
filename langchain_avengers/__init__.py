"""LangChain adapters for the avengers router: a chat model that routes, samples and votes
(:class:`ChatAvengers`), a router chain over your own runnables (:class:`AvengersRouterChain`),
a route-only runnable (:class:`AvengersRouteOnly`), and :func:`send_feedback` to rate answers.
All routing and voting happen in the ``avengers`` core."""

from ._core import RunnableBackend, routing_text
from .chat_models import LOAD_MAPPINGS, ChatAvengers
from .embeddings import AvengersEmbeddings
from .feedback import asend_feedback, send_feedback
from .runnables import AvengersRouteOnly, AvengersRouterChain, query_text

__all__ = [
    "LOAD_MAPPINGS",
    "AvengersEmbeddings",
    "AvengersRouteOnly",
    "AvengersRouterChain",
    "ChatAvengers",
    "RunnableBackend",
    "asend_feedback",
    "query_text",
    "routing_text",
    "send_feedback",
]
