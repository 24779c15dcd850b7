"""The scikit-learn side of :class:`avengers.Router`, apart from what it estimates.

:class:`CheckedSettings` is a :class:`~sklearn.base.BaseEstimator` whose settings are checked
against :data:`avengers.params.ROUTER_PARAMS` (``set_params`` leaves the router unchanged on a bad
value; ``clone`` shares the embedder), with the ``embedder`` setting resolved on first use.
:class:`FittedViews` declares the fitted attributes (``score_sums_``, ...) as views of the arrays
the router's parts keep (:class:`~avengers.routing.parts.RouterParts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import numpy as np
from sklearn.base import BaseEstimator

from ..embedding.embedders import Embedder, resolve_embedder
from ..exceptions import ConfigError, NotFittedError
from ..params import ROUTER_PARAMS, check_params
from .parts import RouterParts

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["CheckedSettings", "Fitted", "FittedViews", "param_names", "require_fitted"]

T = TypeVar("T")

_PARAM_NAMES: dict[type, tuple[str, ...]] = {}


def param_names(cls: type) -> tuple[str, ...]:
    """The settings' names of an estimator class (its ``__init__`` keywords), read once."""
    names = _PARAM_NAMES.get(cls)
    if names is None:
        names = _PARAM_NAMES[cls] = tuple(BaseEstimator._get_param_names.__func__(cls))
    return names


class CheckedSettings(BaseEstimator):
    """Settings checked against :data:`~avengers.params.ROUTER_PARAMS`, and the embedder.

    ``embedder`` (a setting: an :class:`~avengers.embedding.embedders.Embedder`, a name or None) is
    resolved to an embedder on first use and kept until the setting changes."""

    embedder: Embedder | str | None
    _embedder: Embedder | None

    if TYPE_CHECKING:
        n_features_in_: int
        embedder_name_: str

    def set_params(self, **params: Any) -> Self:
        """Change settings. Routing-time settings (alpha, top_k, n_nearest, temperature,
        shrinkage, knn options, fallbacks) take effect without refitting. An unknown name or a
        bad value raises :class:`~avengers.ConfigError` and leaves the router unchanged."""
        current = self.get_params(deep=False)
        for name in params:
            if name not in current:
                raise ConfigError(
                    f"unknown router setting {name!r}; valid: {', '.join(ROUTER_PARAMS)}"
                )
        super().set_params(**params)
        try:
            self._validate_params()
        except ConfigError:
            super().set_params(**{name: current[name] for name in params})
            raise
        if "embedder" in params and params["embedder"] is not current["embedder"]:
            self._embedder = None
        return self

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The settings' names (scikit-learn's hook, which reads the signature on every call;
        cached here because routing checks the settings on every call)."""
        return list(param_names(cls))

    def _validate_params(self) -> None:
        """Check every setting against :data:`avengers.params.ROUTER_PARAMS` (this overrides
        scikit-learn's hook of the same name)."""
        check_params(self.get_params(deep=False))

    def __sklearn_clone__(self) -> Self:
        """An unfitted estimator with the same settings (what ``sklearn.base.clone`` returns).

        The embedder object is shared rather than deep-copied as scikit-learn would: an
        embedder is a stateless service (a loaded model, an HTTP client, a disk cache), and
        copying one costs time and memory or fails on its locks. Every other setting is an
        immutable number or string."""
        return type(self)(**self.get_params(deep=False))

    # ------------------------------------------------------------------ embedding

    def get_embedder(self) -> Embedder:
        """The embedder used for queries (created on first use)."""
        if self._embedder is None:
            self._embedder = resolve_embedder(self.embedder)
        return self._embedder

    def set_embedder(self, embedder: Embedder) -> Self:
        """Use this embedder instance for queries from now on (for example the same model wrapped
        in a :class:`~avengers.embedding.embedders.BatchingEmbedder`). Vectors are still checked
        against the trained dimension."""
        self._embedder = embedder
        return self

    def embed(self, queries: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """The queries' vectors from :meth:`get_embedder`, checked against the trained
        dimension (``show_progress``: a progress bar, if the embedder has one)."""
        emb = self.get_embedder()
        if show_progress and hasattr(emb, "show_progress"):
            emb.show_progress = True
        X = emb.embed(list(queries))
        self._check_dim(X)
        return X

    def _check_dim(self, X: np.ndarray) -> None:
        """Raise :class:`~avengers.ConfigError` unless the rows of ``X`` have the dimension
        the router was trained on (any, before it is fitted)."""
        d = getattr(self, "n_features_in_", None)
        if d is not None and X.shape[1] != d:
            raise ConfigError(
                f"embedder {self.get_embedder().name!r} gives {X.shape[1]}-d vectors, but this "
                f"router was trained on {d}-d vectors from {self.embedder_name_!r}"
            )


class Fitted(Generic[T]):
    """A fitted attribute of the router (``score_sums_``) that one of its parts keeps (as
    ``score_sums``): reading it before ``fit`` raises AttributeError, as for any attribute."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = name.removesuffix("_")

    def _part(self, obj: object) -> Any:
        parts = vars(obj).get("_parts")
        if parts is None:
            raise AttributeError(f"{type(obj).__name__} is not fitted: no {self.field}_")
        return parts.part_of(self.field)

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Fitted[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(self._part(obj), self.field)

    def __set__(self, obj: object, value: T) -> None:
        setattr(self._part(obj), self.field, value)


class FittedViews:
    """The fitted arrays of a router's parts (``_parts``, set by ``fit`` or ``from_state``)
    under their usual names, and whether there are any."""

    # per-cluster statistics (avengers.routing.statistics)
    cluster_centers_: Fitted[np.ndarray] = Fitted()
    cluster_sizes_: Fitted[np.ndarray] = Fitted()
    score_sums_: Fitted[np.ndarray] = Fitted()
    score_counts_: Fitted[np.ndarray] = Fitted()
    global_scores_: Fitted[np.ndarray] = Fitted()
    train_distances_: Fitted[np.ndarray] = Fitted()
    cost_sums_: Fitted[np.ndarray | None] = Fitted()
    cost_counts_: Fitted[np.ndarray | None] = Fitted()
    global_costs_: Fitted[np.ndarray | None] = Fitted()
    tasks_: Fitted[list[str] | None] = Fitted()
    task_score_sums_: Fitted[np.ndarray | None] = Fitted()
    task_score_counts_: Fitted[np.ndarray | None] = Fitted()
    # nearest-neighbour scores (avengers.routing.knn) and classifiers (routing.classifiers)
    train_embeddings_: Fitted[np.ndarray | None] = Fitted()
    train_scores_: Fitted[np.ndarray | None] = Fitted()
    classifier_coef_: Fitted[np.ndarray | None] = Fitted()
    classifier_intercept_: Fitted[np.ndarray | None] = Fitted()
    classifier_covariance_: Fitted[np.ndarray | None] = Fitted()

    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_pretrained`) has given this router its state."""
        return vars(self).get("_parts") is not None

    def __sklearn_is_fitted__(self) -> bool:
        """Lets ``sklearn.utils.validation.check_is_fitted`` ask :meth:`is_fitted`."""
        return self.is_fitted()

    def _fitted_parts(self) -> RouterParts:
        """The parts, or :class:`~avengers.NotFittedError`."""
        require_fitted(self)
        parts: RouterParts = vars(self)["_parts"]
        return parts


def require_fitted(router: FittedViews) -> None:
    """Raise :class:`~avengers.NotFittedError` unless ``router`` is fitted (what every use of an
    unfitted router says)."""
    if not router.is_fitted():
        raise NotFittedError(
            "this Router is not fitted yet: call fit(...) or Router.from_pretrained(...)"
        )
