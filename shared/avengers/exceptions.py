"""Errors raised by avengers. Every user mistake maps to one of these, with a message that names
the file, row, field or setting at fault."""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class AvengersError(Exception):
    """Base class for all errors raised on purpose by this package."""


class DataError(AvengersError, ValueError):
    """Outcome data that cannot be used as given (missing field, score out of range, ...)."""


class ArtifactError(AvengersError, ValueError):
    """A saved router that is missing, corrupted, truncated or from a newer format version."""


class EmbedderMismatchError(ArtifactError):
    """The embedder given at load time does not match the one the router was trained with."""


class ConfigError(AvengersError, ValueError):
    """A bad setting: an endpoint file, an argument out of range, an unknown option."""


class ClusterCountWarning(UserWarning):
    """``Router.fit`` fitted fewer clusters than ``n_clusters`` asked for (fewer distinct
    training queries than K)."""


class BudgetError(ConfigError):
    """No candidate model fits a request's cost cap (``max_cost``), even with one sample."""


class NotFittedError(_SklearnNotFittedError, AvengersError):
    """The router was used before ``fit`` (or ``from_pretrained``)."""
