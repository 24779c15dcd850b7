"""Circuit breakers: a candidate whose endpoint keeps failing is skipped for a cool-down period.

One circuit per model. ``threshold`` consecutive failed calls (faults of the endpoint: timeouts,
connection errors, 429, 5xx, bad or truncated responses; not 4xx, which are about the request)
open it; while open, the answering layer skips the model (the account says so) instead of
waiting on it. After ``cooldown`` seconds the next request to want the model is let through as
a probe (half-open): a successful call closes the circuit, a failure opens it again. If the
probe never reports (its request was cancelled), another probe is allowed after a further
cool-down. Time comes from an injectable monotonic ``clock``.

:class:`BreakerBackend` wraps any :class:`~avengers.transport.backends.Backend`, feeding each call's outcome
to a :class:`CircuitBreaker`; :func:`skip_reason` is what the sampler asks before it tries a
model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..answering.messages import Message
from ..exceptions import ConfigError
from .backends import Backend, CallError, Completion
from .deadline import Clock

State = Literal["closed", "open", "half_open"]

COUNTED = frozenset(
    {"timeout", "connection", "rate_limit", "server_error", "bad_response", "truncated"}
)
"""Failure kinds that count against an endpoint (``client_error`` and ``config`` do not)."""

OPEN_KIND = "circuit_open"
"""The failure kind recorded for a model skipped because its circuit is open."""

DEFAULT_THRESHOLD = 5
DEFAULT_COOLDOWN = 30.0


@dataclass
class _Circuit:
    state: State = "closed"
    failures: int = 0
    """Consecutive counted failures."""
    opened_at: float = 0.0
    probe_until: float = 0.0
    """While half-open: no further probe before this time."""
    opened_total: int = 0


class CircuitBreaker:
    """Per-model circuits (see the module docstring). Thread-safe."""

    def __init__(
        self,
        threshold: int = DEFAULT_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"breaker threshold must be a whole number >= 1, got {threshold!r}")
        if not cooldown >= 0:
            raise ConfigError(f"breaker cool-down must be >= 0 seconds, got {cooldown!r}")
        self.threshold = threshold
        self.cooldown = float(cooldown)
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CircuitBreaker(threshold={self.threshold}, cooldown={self.cooldown:g})"

    def _get(self, model: str) -> _Circuit:
        c = self._circuits.get(model)
        if c is None:
            c = self._circuits[model] = _Circuit()
        return c

    def admit(self, model: str) -> str | None:
        """None if ``model`` may be called now (possibly as the half-open probe), else why not."""
        with self._lock:
            c = self._get(model)
            now = self.clock()
            if c.state == "closed":
                return None
            if c.state == "open":
                wait = c.opened_at + self.cooldown - now
                if wait > 0:
                    return (
                        f"circuit open after {c.failures} consecutive failures; "
                        f"next probe in {wait:.1f} s"
                    )
                c.state = "half_open"
            elif now < c.probe_until:
                return "circuit half-open: a probe request is in flight"
            c.probe_until = now + max(self.cooldown, 1.0)
            return None

    def success(self, model: str) -> None:
        """A call to ``model`` succeeded: its circuit closes."""
        with self._lock:
            c = self._get(model)
            c.state, c.failures = "closed", 0

    def failure(self, model: str, kind: str) -> None:
        """A call to ``model`` failed with ``kind``; counted kinds may open the circuit."""
        if kind not in COUNTED:
            return
        with self._lock:
            c = self._get(model)
            c.failures += 1
            if c.state == "half_open" or (c.state == "closed" and c.failures >= self.threshold):
                c.state, c.opened_at = "open", self.clock()
                c.opened_total += 1

    def state(self, model: str) -> State:
        with self._lock:
            return self._get(model).state

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every circuit seen so far: state, consecutive failures, times opened, and (when open)
        seconds until the next probe."""
        with self._lock:
            now = self.clock()
            out: dict[str, dict[str, Any]] = {}
            for m, c in sorted(self._circuits.items()):
                d: dict[str, Any] = {
                    "state": c.state,
                    "failures": c.failures,
                    "opened": c.opened_total,
                }
                if c.state == "open":
                    d["probe_in"] = round(max(0.0, c.opened_at + self.cooldown - now), 3)
                out[m] = d
            return out


class BreakerBackend:
    """A :class:`~avengers.transport.backends.Backend` that reports every call's outcome to ``breaker``.
    Everything else (``endpoints``, ``aclose``, ...) is the wrapped backend's."""

    def __init__(self, inner: Backend, breaker: CircuitBreaker | None = None) -> None:
        self.inner = inner
        self.breaker = breaker if breaker is not None else CircuitBreaker()

    def __repr__(self) -> str:
        return f"BreakerBackend({self.inner!r}, {self.breaker!r})"

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not yet set (copy, pickle): avoid recursing
            raise AttributeError(name)
        return getattr(self.inner, name)

    def models(self) -> Collection[str]:
        return self.inner.models()

    def concurrency(self, model: str) -> int:
        return self.inner.concurrency(model)

    async def complete(self, model: str, messages: Sequence[Message], **options: Any) -> Completion:
        try:
            out = await self.inner.complete(model, messages, **options)
        except CallError as e:
            self.breaker.failure(model, e.kind)
            raise
        self.breaker.success(model)
        return out

    async def stream(
        self, model: str, messages: Sequence[Message], **options: Any
    ) -> AsyncIterator[str | Completion]:
        try:
            async for piece in self.inner.stream(model, messages, **options):
                if isinstance(piece, Completion):
                    self.breaker.success(model)
                yield piece
        except CallError as e:
            self.breaker.failure(model, e.kind)
            raise


def skip_reason(backend: Any, model: str) -> str | None:
    """Why ``model`` must be skipped now (its circuit is open), or None to call it. Backends
    without a breaker never skip."""
    breaker = getattr(backend, "breaker", None)
    return breaker.admit(model) if isinstance(breaker, CircuitBreaker) else None


def unwrap(backend: Any) -> Any:
    """The backend under any :class:`BreakerBackend` layers."""
    while isinstance(backend, BreakerBackend):
        backend = backend.inner
    return backend
