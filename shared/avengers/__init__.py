"""avengers: route each query to the best of your own LLMs (embed, cluster, score, vote)."""

from .data import OutcomeData, load_outcomes, outcomes_from_rows
from .decision import ModelScore, RouteDecision
from .embedders import CachedEmbedder, Embedder, OpenAIEmbedder, SentenceTransformerEmbedder
from .evaluation import Evaluation, cross_validate, evaluate, sweep_alpha, sweep_k, tune
from .exceptions import (
    ArtifactError,
    AvengersError,
    ConfigError,
    DataError,
    EmbedderMismatchError,
    NotFittedError,
)
from .router import Router

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "AvengersError",
    "CachedEmbedder",
    "ConfigError",
    "DataError",
    "Embedder",
    "EmbedderMismatchError",
    "Evaluation",
    "ModelScore",
    "NotFittedError",
    "OpenAIEmbedder",
    "OutcomeData",
    "RouteDecision",
    "Router",
    "SentenceTransformerEmbedder",
    "__version__",
    "cross_validate",
    "evaluate",
    "load_outcomes",
    "outcomes_from_rows",
    "sweep_alpha",
    "sweep_k",
    "tune",
]
