"""avengers: route each query to the best of your own LLMs (embed, cluster, score, vote)."""

from .answer import AnswerChunk, Answerer, AnswerError, AnswerResult, SamplingConfig
from .backends import Backend, CallError, Completion, OpenAIBackend
from .calibration import CalibrationResult
from .data import OutcomeData, load_outcomes, outcomes_from_rows
from .decision import ModelScore, RouteDecision, RouteEstimate
from .embedders import CachedEmbedder, Embedder, OpenAIEmbedder, SentenceTransformerEmbedder
from .endpoints import Endpoint, load_endpoints
from .evaluation import Evaluation, cross_validate, evaluate, sweep_alpha, sweep_k, tune
from .exceptions import (
    ArtifactError,
    AvengersError,
    BudgetError,
    ConfigError,
    DataError,
    EmbedderMismatchError,
    NotFittedError,
)
from .router import Router
from .version import __version__

__all__ = [
    "AnswerChunk",
    "AnswerError",
    "AnswerResult",
    "Answerer",
    "ArtifactError",
    "AvengersError",
    "Backend",
    "BudgetError",
    "CachedEmbedder",
    "CalibrationResult",
    "CallError",
    "Completion",
    "ConfigError",
    "DataError",
    "Embedder",
    "EmbedderMismatchError",
    "Endpoint",
    "Evaluation",
    "ModelScore",
    "NotFittedError",
    "OpenAIBackend",
    "OpenAIEmbedder",
    "OutcomeData",
    "RouteDecision",
    "RouteEstimate",
    "Router",
    "SamplingConfig",
    "SentenceTransformerEmbedder",
    "__version__",
    "cross_validate",
    "evaluate",
    "load_endpoints",
    "load_outcomes",
    "outcomes_from_rows",
    "sweep_alpha",
    "sweep_k",
    "tune",
]
