"""The router's settings and their allowed values, declared in one table.

:data:`ROUTER_PARAMS` maps each :class:`~avengers.Router` setting to a constraint;
:func:`check_params` checks a settings mapping against it and :func:`check_alpha` checks one
cost/quality trade-off value (the router's own ``alpha`` and any per-call ``alpha=`` override
share that rule). Every failure is a :class:`~avengers.ConfigError` naming the setting.

>>> check_alpha(0.25)
0.25
>>> check_alpha(2)
Traceback (most recent call last):
...
avengers.exceptions.ConfigError: alpha must be in [0, 1], got 2
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from .exceptions import ConfigError
from .routing.clustering import ClusterAlgorithm

Scoring = Literal["cluster", "knn", "hybrid"]
"""How per-model scores are estimated: cluster means, nearest training queries, or a blend."""

TemperatureMode = Literal["absolute", "relative"]
"""How ``softmax_temperature`` is read: as a distance, or as a share of the nearest distance."""

ExploreRule = Literal["thompson", "top-two"]
"""How an exploration candidate picks its model: the Thompson winner (learns while it serves),
or top-two Thompson sampling (the leader or, half the time, its challenger: learns which model is
best faster, at a higher cost per explored query)."""
ImputeBy = Literal["query", "task"]
"""What fills an unknown outcome in :meth:`avengers.Router.impute`: the router's expected score
for that query, or the model's mean score on the query's task."""


@dataclass(frozen=True)
class Interval:
    """A number between ``low`` and ``high`` (None: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """Whether ``low`` itself is excluded."""
    integer: bool = False
    """Whether only whole numbers are allowed."""
    none_ok: bool = False
    """Whether None is allowed as well."""

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.none_ok
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        if self.integer and self.low == 1 and self.high is None and not self.low_open:
            text = "a positive integer"
        elif self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            what = "an integer" if self.integer else "a number"
            text = f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = "an integer" if self.integer else "a number"
        return text + (" or None" if self.none_ok else "")


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of strings (the arguments of a ``Literal`` type)."""

    choices: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


@dataclass(frozen=True)
class EmbedderSpec:
    """None (the bundled MiniLM), a sentence-transformers model name or path, or an object with
    an ``embed`` method (see :class:`~avengers.embedding.embedders.Embedder`)."""

    def accepts(self, value: Any) -> bool:
        return value is None or isinstance(value, str) or callable(getattr(value, "embed", None))

    def describe(self) -> str:
        return "None, a model name or an embedder object"


@dataclass(frozen=True)
class Flag:
    """True or False."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "True or False"


Constraint = Interval | OneOf | EmbedderSpec | Flag

UNIT = Interval(0.0, 1.0)
"""A number in [0, 1]."""

ROUTER_PARAMS: dict[str, Constraint] = {
    "n_clusters": Interval(1, integer=True),
    "top_k": Interval(1, integer=True),
    "alpha": UNIT,
    "n_nearest": Interval(1, integer=True),
    "softmax_temperature": Interval(0.0),
    "temperature_mode": OneOf(get_args(TemperatureMode)),
    "scoring": OneOf(get_args(Scoring)),
    "n_neighbors": Interval(1, integer=True),
    "knn_weight": UNIT,
    "shrinkage": Interval(0.0),
    "min_cluster_size": Interval(0, integer=True),
    "far_quantile": Interval(0.0, 1.0, low_open=True, none_ok=True),
    "sharpen_quantile": Interval(0.5, 1.0, none_ok=True),
    "sharpen_width": Interval(0.0),
    "classifier_weight": UNIT,
    "classifier_evidence": Interval(0.0, low_open=True, none_ok=True),
    "clustering": OneOf(get_args(ClusterAlgorithm)),
    "random_state": Interval(integer=True, none_ok=True),
    "explore": UNIT,
    "explore_rule": OneOf(get_args(ExploreRule)),
    "half_life": Interval(0.0, low_open=True, none_ok=True),
    "new_model_prior": Interval(0.0, 1.0, none_ok=True),
    "online_classifiers": Flag(),
    "embedder": EmbedderSpec(),
}
"""Every :class:`~avengers.Router` setting and the values it allows."""


def check_param(name: str, value: Any) -> None:
    """Raise :class:`~avengers.ConfigError` unless ``value`` is allowed for setting ``name``."""
    constraint = ROUTER_PARAMS.get(name)
    if constraint is None:
        raise ConfigError(f"unknown router setting {name!r}; valid: {', '.join(ROUTER_PARAMS)}")
    if not constraint.accepts(value):
        raise ConfigError(f"{name} must be {constraint.describe()}, got {value!r}")


def check_params(params: Mapping[str, Any]) -> None:
    """Check every setting in ``params`` (names must be router settings)."""
    for name, value in params.items():
        check_param(name, value)


def check_alpha(value: Any) -> float:
    """``value`` as a float if it is a valid cost/quality trade-off (a number in [0, 1]: 1 ranks
    by expected performance only, 0 by cost only); else :class:`~avengers.ConfigError`."""
    check_param("alpha", value)
    return float(value)


def check_queries(queries: Sequence[Any]) -> None:
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise ConfigError(f"query {i} must be a string, got {type(q).__name__}")
