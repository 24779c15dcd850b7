"""How answering samples and votes: :class:`SamplingConfig`, its checks, and the names of the
strategies, sampling roles and vote methods as ``Literal`` types."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, cast, get_args

from .. import params
from ..exceptions import ConfigError
from .voting import ANSWER_TYPES, Extractor

Strategy = Literal["self_consistency", "model_switch", "direct"]
"""``self_consistency``, ``model_switch`` or ``direct`` (see :mod:`avengers.answering.answer`)."""
STRATEGIES: tuple[str, ...] = get_args(Strategy)

Role = Literal["only", "first", "second"]
"""Which part a model plays: the only model sampled, or the first or second of ``model_switch``."""

VoteMethod = Literal[
    "majority",
    "equivalence",
    "medoid",
    "single",
    "first sample (code is not voted on without an equivalence check)",
    "first sample (no valid tool call or JSON to vote on)",
]
"""How the winning sample was chosen (``AnswerResult.vote_method``)."""
FIRST_SAMPLE: VoteMethod = "first sample (code is not voted on without an equivalence check)"
NO_VALID_SAMPLE: VoteMethod = "first sample (no valid tool call or JSON to vote on)"


def check_alpha(alpha: float | None) -> None:
    """Raise :class:`ConfigError` unless ``alpha`` is None or in [0, 1]."""
    if alpha is not None:
        params.check_alpha(alpha)


def as_strategy(name: str) -> Strategy:
    """``name`` as a :data:`Strategy`, or a :class:`ConfigError` naming the valid ones."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")
    return cast(Strategy, name)


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample and vote. Defaults are the paper's."""

    strategy: Strategy = "self_consistency"
    """``self_consistency``, ``model_switch`` or ``direct``."""
    n_samples: int = 10
    """Samples per model (the paper: 10)."""
    temperature: float | None = 0.7
    """Sampling temperature (the paper: 0.7; None: each model's own setting)."""
    switch_threshold: float = 0.8
    """``model_switch``: majority share of the first model below which the second model joins."""
    answer_type: str | Extractor = "auto"
    """``auto``, ``choice``, ``number``, ``short``, ``text``, ``code``, or a function text -> answer."""
    equivalence: Callable[[str, str], bool] | None = None
    """For code (or any answers): two samples are the same answer if this returns True."""
    adaptive: bool = True
    """Stop drawing samples once the leading answer cannot be overtaken."""
    stop_on_agreement: int | None = None
    """Also stop once the first this-many answers all agree (may change the outcome)."""
    max_tokens: int | None = None
    """Completion length cap (None: the endpoint's default)."""
    stop: Sequence[str] | None = None
    """Stop sequences sent with every sample (added to an endpoint's own); kept as a tuple."""
    max_fallbacks: int | None = None
    """How many further ranked models to try when one fails entirely (None: all)."""
    alpha: float | None = None
    """Cost/quality trade-off for routing (None: the router's own)."""
    max_cost: float | None = None
    """Per-request cost cap in the outcome data's cost unit, counting every sample (a model's
    expected cost per call times the samples drawn from it); None: no cap. See
    :func:`avengers.answering.answer.fit_budget`."""

    def __post_init__(self) -> None:
        as_strategy(self.strategy)
        n = self.n_samples
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n_samples must be a whole number >= 1, got {n!r}")
        if self.temperature is not None and not 0.0 <= float(self.temperature) <= 2.0:
            raise ConfigError(f"temperature must be in [0, 2], got {self.temperature!r}")
        if not 0.0 <= float(self.switch_threshold) <= 1.0:
            raise ConfigError(f"switch_threshold must be in [0, 1], got {self.switch_threshold!r}")
        if not callable(self.answer_type) and self.answer_type not in ANSWER_TYPES:
            raise ConfigError(
                f"unknown answer type {self.answer_type!r}; use one of {', '.join(ANSWER_TYPES)}"
            )
        if self.stop_on_agreement is not None and self.stop_on_agreement < 2:
            raise ConfigError("stop_on_agreement must be >= 2 (or None)")
        check_alpha(self.alpha)
        if self.max_cost is not None and not (
            isinstance(self.max_cost, (int, float))
            and not isinstance(self.max_cost, bool)
            and 0.0 <= float(self.max_cost) < float("inf")
        ):
            raise ConfigError(f"max_cost must be a number >= 0 (or None), got {self.max_cost!r}")
        if self.max_fallbacks is not None and self.max_fallbacks < 0:
            raise ConfigError("max_fallbacks must be >= 0 (or None)")
        if self.stop is not None:
            stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
            if not all(isinstance(s, str) and s for s in stops):
                raise ConfigError(f"stop must be a list of non-empty strings, got {self.stop!r}")
            object.__setattr__(self, "stop", stops or None)

    @classmethod
    def of(
        cls,
        value: SamplingConfig | dict[str, Any] | None,
        *,
        default: SamplingConfig | None = None,
        **settings: Any,
    ) -> SamplingConfig:
        """A config from a config, a dict of settings over ``default`` (None: the paper's
        defaults), or None (``default`` itself), with ``settings`` applied on top (None values
        are ignored there)."""
        base = default if default is not None else cls()
        if isinstance(value, SamplingConfig):
            base = value
        elif isinstance(value, dict):
            base = replace(base, **_known(value))
        elif value is not None:
            raise ConfigError(f"sampling must be a SamplingConfig, a dict or None, got {value!r}")
        return base.updated(**settings) if settings else base

    def updated(self, **overrides: Any) -> SamplingConfig:
        """A copy with some settings changed (None values are ignored)."""
        return replace(self, **_known({k: v for k, v in overrides.items() if v is not None}))

    @property
    def samples_per_model(self) -> int:
        return 1 if self.strategy == "direct" else self.n_samples

    def call_options(self) -> dict[str, Any]:
        """The per-call settings a backend receives: temperature, max_tokens and, when set,
        stop (so backends written before stop sequences existed keep working)."""
        opts: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.stop:
            opts["stop"] = list(self.stop)
        return opts


SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(SamplingConfig))
"""The names of every :class:`SamplingConfig` setting."""


QUIET_SETTINGS: tuple[str, ...] = ("temperature", "max_tokens", "max_cost")
"""Settings an adapter takes as keywords without a deprecation warning."""


def _known(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown sampling settings {unknown}; known: {', '.join(SETTINGS)}")
    return settings


def fold_settings(
    data: Any, owner: str, own_fields: Collection[str], default: SamplingConfig | None = None
) -> Any:
    """For an adapter's ``model_validator(mode="before")``: sampling settings passed as keywords
    (the adapters' former fields, e.g. ``n_samples=5``) fold into ``data["sampling"]``, which
    always ends up a :class:`SamplingConfig`. ``temperature`` and ``max_tokens`` (LangChain and
    LlamaIndex pass them to any model) and ``max_cost`` (a per-instance cost cap) fold quietly;
    the others warn that they are deprecated.
    Names in ``own_fields`` are the adapter's own and stay."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    legacy = {k: data.pop(k) for k in SETTINGS if k in data and k not in own_fields}
    deprecated = sorted(set(legacy) - set(QUIET_SETTINGS))
    if deprecated:
        warnings.warn(
            f"{owner}({', '.join(f'{k}=...' for k in deprecated)}) is deprecated: pass "
            f"sampling={{{', '.join(f'{k!r}: ...' for k in deprecated)}}} instead",
            DeprecationWarning,
            stacklevel=4,
        )
    data["sampling"] = SamplingConfig.of(data.get("sampling"), default=default, **legacy)
    return data


def call_settings(
    owner: str, kwargs: Mapping[str, Any], also: Collection[str] = ()
) -> dict[str, Any]:
    """The sampling settings among an adapter call's keywords. Any other keyword, unless the
    adapter handles it itself (``also``), is reported with a warning rather than dropped."""
    ignored = sorted(set(kwargs) - set(SETTINGS) - set(also))
    if ignored:
        warnings.warn(
            f"{owner} ignores the call keyword(s) {ignored}: it takes sampling settings "
            f"({', '.join(SETTINGS)}) and {', '.join(also)}",
            UserWarning,
            stacklevel=4,
        )
    return {k: v for k, v in kwargs.items() if k in SETTINGS}
