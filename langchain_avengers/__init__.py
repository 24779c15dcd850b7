"""LangChain adapters for the avengers router: a chat model that routes, samples and votes
(:class:`ChatAvengers`), a router chain over your own runnables (:class:`AvengersRouterChain`),
and a route-only runnable (:class:`AvengersRouteOnly`). All routing and voting happen in the
``avengers`` core."""

from ._core import RunnableBackend, routing_text
from .chat_models import ChatAvengers
from .embeddings import AvengersEmbeddings
from .runnables import AvengersRouteOnly, AvengersRouterChain, query_text

__all__ = [
    "AvengersEmbeddings",
    "AvengersRouteOnly",
    "AvengersRouterChain",
    "ChatAvengers",
    "RunnableBackend",
    "query_text",
    "routing_text",
]
