"""avengers: route each query to the best of your own LLMs (embed, cluster, score, vote)."""

from . import _moved
from .answering.answer import AnswerChunk, Answerer, AnswerError, AnswerResult, SamplingConfig
from .decision import ModelScore, RouteDecision, RouteEstimate
from .embedding.embedders import (
    CachedEmbedder,
    Embedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
)
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
from .training.calibration import CalibrationResult
from .training.data import OutcomeData, load_outcomes, outcomes_from_rows
from .training.evaluation import Evaluation, cross_validate, evaluate, sweep_alpha, sweep_k, tune
from .transport.backends import Backend, CallError, Completion, OpenAIBackend
from .transport.endpoints import Endpoint, load_endpoints
from .version import __version__

_moved.install()  # the flat import paths of modules now in subpackages keep working

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
