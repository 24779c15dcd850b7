"""What a running server knows: the answerer, the model names it answers to (profiles), client
keys, limits and metrics. One :class:`ServerState` lives on ``app.state.server``; the routes and
the middleware read it from there."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.requests import Request

from ..answering.answer import Answerer
from ..transport.breaker import CircuitBreaker
from .metrics import Metrics

DEFAULT_MAX_BODY = 1_000_000
DEFAULT_MAX_TOKENS = 4096
DEFAULT_REQUEST_TIMEOUT = 60.0
DEFAULT_MAX_FALLBACKS = 2


@dataclass
class Profile:
    """A model name the server answers to, and the sampling settings it implies."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    prefer: str | None = None
    description: str = ""


def default_profiles(answerer: Answerer) -> dict[str, Profile]:
    """``avengers``, ``avengers-fast``, and one profile pinned to each candidate the router knows
    and the backend can call."""
    out = {
        "avengers": Profile("avengers", {}, None, "route, sample and vote (configured strategy)"),
        "avengers-fast": Profile(
            "avengers-fast", {"strategy": "direct", "alpha": 0.5}, None,
            "one sample, cost-aware routing (alpha 0.5)",
        ),
    }  # fmt: skip
    for m in answerer.router.models_:
        if m in answerer.backend.models():
            out[m] = Profile(m, {}, m, f"pinned to {m}")
    return out


@dataclass
class ServerState:
    """Everything the routes need, passed explicitly instead of captured in closures."""

    answerer: Answerer
    profiles: dict[str, Profile]
    api_keys: set[str]
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_tokens_limit: int = DEFAULT_MAX_TOKENS
    metrics: Metrics = field(default_factory=Metrics)
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT
    """Seconds a request may take end to end (None: no deadline)."""
    max_fallbacks: int | None = DEFAULT_MAX_FALLBACKS
    """At most this many lower-ranked models are tried after the strategy's own (None: all)."""
    breaker: CircuitBreaker | None = None
    fingerprint: str = ""
    """``system_fingerprint`` of every completion: this server's version, router and candidates
    (see :func:`fingerprint`); it changes when any of them does."""
    feedback: Any = None
    """The feedback settings (:class:`~avengers.server.feedback.FeedbackState`), None if off."""
    store_guard: Any = None
    """The :class:`~avengers.stores.guard.StoreGuard` of the feedback / conversation store (None
    without a store outside memory)."""
    require_store: bool = False
    """``/ready`` answers 503 while the store is degraded (default: ready, store degraded)."""
    learning: Any = None
    """Log following and router version watching (:class:`~avengers.server.learning.Learning`),
    None when neither is on."""
    profiles_follow_router: bool = False
    """The profiles are :func:`default_profiles` (not the operator's own): a new router version
    swapped in live brings the pinned profiles of its own candidates."""


def fingerprint(answerer: Answerer, backend: Any) -> str:
    """A ``system_fingerprint`` (``fp_`` and 12 hex digits) of what shapes this server's
    answers: the package version, the router's settings and fitted arrays, the sampling
    settings, and each candidate's endpoint and model id."""
    import hashlib

    from ..version import __version__

    h = hashlib.sha256(__version__.encode())
    config, arrays = answerer.router.state()
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    h.update(repr(answerer.config).encode())
    for name, ep in sorted(getattr(backend, "endpoints", {}).items()):
        h.update(f"{name}|{ep.base_url}|{ep.model_id}".encode())
    return f"fp_{h.hexdigest()[:12]}"


def server_state(request: Request) -> ServerState:
    """The state of the app that received ``request``."""
    state: ServerState = request.app.state.server
    return state
