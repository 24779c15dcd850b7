"""The app factory: :func:`create_app` for an :class:`Answerer` in hand, :func:`app_from_env` for
``uvicorn --factory`` with several workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ..answering.answer import Answerer
from ..answering.results import SamplingConfig
from ..exceptions import ConfigError
from ..stores.conversations import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL,
    ConversationStore,
    MemoryConversations,
    conversations_for,
)
from ..stores.feedback import FeedbackStore
from ..stores.fleet import DEFAULT_FOLLOW_INTERVAL, DEFAULT_RELOAD_INTERVAL
from ..stores.guard import DEFAULT_STORE_TIMEOUT, StoreGuard
from ..transport.breaker import (
    DEFAULT_COOLDOWN,
    DEFAULT_THRESHOLD,
    BreakerBackend,
    CircuitBreaker,
    unwrap,
)
from .auth import load_api_keys
from .decide import RouteFastPath, add_route_only
from .embedding import DEFAULT_EMBED_CACHE_SIZE, as_embed_cache, serving_embedder
from .feedback import enable_feedback
from .learning import enable_learning, follow_forever, watch_forever
from .middleware import add_middleware
from .openapi import describe_bodies
from .routes import add_routes
from .state import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_FALLBACKS,
    DEFAULT_MAX_TOKENS,
    DEFAULT_REQUEST_TIMEOUT,
    Profile,
    ServerState,
    default_profiles,
    fingerprint,
)

DEFAULT_PRUNE_INTERVAL = 60.0
"""Seconds between two rounds of enforcing the feedback store's retention and size bounds."""


def create_app(
    answerer: Answerer,
    *,
    profiles: dict[str, Profile] | None = None,
    api_keys: set[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS,
    cors_origins: list[str] | None = None,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    max_fallbacks: int | None = DEFAULT_MAX_FALLBACKS,
    embed_cache: str = "memory",
    embed_cache_size: int = DEFAULT_EMBED_CACHE_SIZE,
    breaker_threshold: int = DEFAULT_THRESHOLD,
    breaker_cooldown: float = DEFAULT_COOLDOWN,
    breaker: CircuitBreaker | None = None,
    feedback_store: FeedbackStore | None = None,
    conversations: str | ConversationStore = "memory",
    conversation_ttl: float = DEFAULT_TTL,
    conversation_max_entries: int = DEFAULT_MAX_ENTRIES,
    freeze_gc: bool = False,
    store_timeout: float = DEFAULT_STORE_TIMEOUT,
    require_store: bool = False,
    prune_interval: float = DEFAULT_PRUNE_INTERVAL,
    router_path: str | Path | None = None,
    follow_interval: float = DEFAULT_FOLLOW_INTERVAL,
    reload_interval: float = DEFAULT_RELOAD_INTERVAL,
    router_overrides: dict[str, Any] | None = None,
) -> FastAPI:
    """The FastAPI app. Run it with uvicorn (``avengers serve`` does).

    ``request_timeout``: seconds a request may take end to end (504 beyond; 0 or None: no
    deadline). ``max_fallbacks``: lower-ranked models tried at most after the strategy's own
    (None: all). ``embed_cache``: ``memory`` (a bounded LRU of ``embed_cache_size`` queries;
    nothing written to disk), ``disk`` (the operator opts in to the on-disk cache) or ``none``.
    ``breaker_threshold`` consecutive failures open a model's circuit for ``breaker_cooldown``
    seconds (threshold 0: no breaker); or pass a ready ``breaker`` (e.g. with a test clock).
    ``feedback_store`` turns on ``POST /v1/feedback`` (see :mod:`avengers.server.feedback`);
    without it nothing is kept. ``conversations``: where conversation keys' models are kept
    (see :mod:`avengers.stores.conversations`): ``memory`` (each worker's own memory, the default),
    ``store`` (the feedback store's SQLite file or Redis, shared by every worker; needs
    ``feedback_store``), or a ready store; each bounded to ``conversation_max_entries``
    conversations idle at most ``conversation_ttl`` seconds. ``freeze_gc``: at start-up, after the
    warm-up, move every object alive into the garbage collector's permanent generation
    (``gc.freeze``), so full collections skip the libraries and the router: shorter pauses in a
    server process (``avengers serve`` sets it); it affects the whole process, so an app embedded
    in another program leaves it off. ``store_timeout``: seconds any one call to the feedback or
    conversation store may take (also bounded by the request's deadline); a store that fails or
    stalls never fails an answer (see docs/serve.md, "Degraded operation"); ``require_store``
    makes ``/ready`` answer 503 while the store is degraded; the store's retention and size
    bounds are enforced every ``prune_interval`` seconds in the background. With a feedback store
    the router follows the store's rating log every ``follow_interval`` seconds (0: only the
    ratings this worker accepts; see :mod:`avengers.server.learning`); ``router_path``, the
    router's folder, is checked every ``reload_interval`` seconds for a new version, swapped in
    live (0: never), with ``router_overrides`` (router settings) applied to each version."""
    if not follow_interval >= 0 or not reload_interval >= 0:
        raise ConfigError("follow_interval and reload_interval must be >= 0 seconds")
    if request_timeout is not None and not request_timeout >= 0:
        raise ConfigError(f"request_timeout must be >= 0 seconds, got {request_timeout!r}")
    if max_fallbacks is not None and max_fallbacks < 0:
        raise ConfigError(f"max_fallbacks must be >= 0 (or None), got {max_fallbacks!r}")
    router = answerer.router
    cache = as_embed_cache(embed_cache)
    router.set_embedder(serving_embedder(router.get_embedder(), cache, embed_cache_size))
    if breaker is None and breaker_threshold:
        breaker = CircuitBreaker(breaker_threshold, breaker_cooldown)
    backend = unwrap(answerer.backend)
    answerer.backend = BreakerBackend(backend, breaker) if breaker is not None else backend
    state = ServerState(
        answerer=answerer,
        profiles=profiles if profiles is not None else default_profiles(answerer),
        profiles_follow_router=profiles is None,
        api_keys=set(api_keys or ()),
        max_body_bytes=max_body_bytes,
        max_tokens_limit=max_tokens_limit,
        request_timeout=request_timeout or None,
        max_fallbacks=max_fallbacks,
        breaker=breaker,
    )
    state.fingerprint = fingerprint(answerer, backend)
    answerer.conversations = conversation_store(
        conversations, feedback_store, conversation_ttl, conversation_max_entries
    )
    answerer.feedback_store = None  # nothing kept unless feedback is on (below)
    if feedback_store is not None or not isinstance(answerer.conversations, MemoryConversations):
        state.store_guard = StoreGuard("feedback", timeout=store_timeout)
        state.require_store = require_store
        answerer.store_guard = state.store_guard
    app = FastAPI(title="avengers router", lifespan=_lifespan, docs_url=None, redoc_url=None)
    app.state.prune_interval = prune_interval
    app.state.server = state
    app.state.metrics = state.metrics
    app.state.answerer = answerer
    app.state.freeze_gc = freeze_gc
    add_middleware(app, cors_origins)
    add_routes(app)
    add_route_only(app)
    if not cors_origins:
        app.add_middleware(RouteFastPath)
    if feedback_store is not None:
        enable_feedback(app, state, feedback_store)
    if feedback_store is not None or router_path is not None:
        enable_learning(
            app, state, router_path=router_path, follow_interval=follow_interval,
            reload_interval=reload_interval, overrides=router_overrides,
        )  # fmt: skip
    describe_bodies(app)
    return app


CONVERSATION_MODES = ("memory", "store")


def conversation_store(
    mode: str | ConversationStore,
    feedback_store: FeedbackStore | None,
    ttl: float = DEFAULT_TTL,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> ConversationStore:
    """The conversation store for ``mode`` (``memory`` or ``store``; see :func:`create_app`)."""
    if not isinstance(mode, str):
        return mode
    if mode == "memory":
        return MemoryConversations(ttl=ttl, max_entries=max_entries)
    if mode == "store":
        if feedback_store is None:
            raise ConfigError(
                "conversations 'store' keeps them in the feedback store: give one "
                "(--feedback-store FILE or redis://...)"
            )
        return conversations_for(feedback_store, ttl=ttl, max_entries=max_entries)
    raise ConfigError(f"conversations must be one of {', '.join(CONVERSATION_MODES)}, got {mode!r}")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the embedding model at start-up, not on the first user request; close the upstream
    connections at shutdown."""
    answerer: Answerer = app.state.server.answerer
    await asyncio.to_thread(answerer.router.get_embedder().embed, ["warm-up"])
    if app.state.freeze_gc:
        # Everything loaded so far (the libraries, the router, the model) lives as long as the
        # server process: moved out of the garbage collector's view, a full collection no
        # longer walks millions of start-up objects (pauses of tens of ms in the p99).
        gc.collect()
        gc.freeze()
    pruner = asyncio.ensure_future(_prune_forever(app))
    state: ServerState = app.state.server
    tasks = [
        asyncio.ensure_future(follow_forever(state)),
        asyncio.ensure_future(watch_forever(state)),
    ]
    yield
    pruner.cancel()
    for task in tasks:
        task.cancel()
    await answerer.aclose()
    guard: StoreGuard | None = app.state.server.store_guard
    if guard is not None:
        guard.close()


async def _prune_forever(app: FastAPI) -> None:
    """Enforce the feedback store's retention and size bounds now and then (on the store's own
    pool, never the one embedding uses); a failure waits for the next round."""
    state: ServerState = app.state.server
    store = state.answerer.feedback_store
    guard: StoreGuard | None = state.store_guard
    prune = getattr(store, "prune", None)
    if guard is None or prune is None or not app.state.prune_interval:
        return
    while True:
        with contextlib.suppress(Exception):
            await guard.background(prune)
        await asyncio.sleep(app.state.prune_interval)


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (used with several workers): settings come from
    ``AVENGERS_ROUTER``, ``AVENGERS_ENDPOINTS``, ``AVENGERS_CONFIG`` (JSON sampling settings),
    ``AVENGERS_SERVER_KEYS`` / ``AVENGERS_SERVER_KEY_FILE``, ``AVENGERS_MAX_BODY``,
    ``AVENGERS_MAX_TOKENS``, ``AVENGERS_CORS``, ``AVENGERS_REQUEST_TIMEOUT``,
    ``AVENGERS_MAX_FALLBACKS`` (``all`` or -1: no cap), ``AVENGERS_EMBED_CACHE``,
    ``AVENGERS_EMBED_CACHE_SIZE``, ``AVENGERS_BREAKER_THRESHOLD``, ``AVENGERS_BREAKER_COOLDOWN``,
    ``AVENGERS_FEEDBACK_STORE`` (feedback on), ``AVENGERS_CONVERSATIONS`` (``memory`` or
    ``store``), ``AVENGERS_CONVERSATION_TTL``, ``AVENGERS_CONVERSATION_MAX``,
    ``AVENGERS_ROUTER_SETTINGS`` (JSON: router settings to change, e.g. ``explore``),
    ``AVENGERS_STORE_TIMEOUT``, ``AVENGERS_REQUIRE_STORE``, ``AVENGERS_FOLLOW_INTERVAL``,
    ``AVENGERS_RELOAD_INTERVAL`` and the store bounds of
    :func:`store_settings_from_env`."""
    from ..router import Router
    from ..stores.feedback import open_store
    from ..training.bundled import load_pretrained

    rpath = os.environ.get("AVENGERS_ROUTER", "pretrained")
    router = load_pretrained() if rpath == "pretrained" else Router.from_pretrained(rpath)
    if settings := os.environ.get("AVENGERS_ROUTER_SETTINGS"):
        router.set_params(**json.loads(settings))
    eps = os.environ.get("AVENGERS_ENDPOINTS")
    if not eps:
        raise ConfigError("AVENGERS_ENDPOINTS is not set")
    cfg = SamplingConfig(**json.loads(os.environ.get("AVENGERS_CONFIG", "{}")))
    cors = [o for o in os.environ.get("AVENGERS_CORS", "").split(",") if o]
    store = os.environ.get("AVENGERS_FEEDBACK_STORE")
    live = live_settings_from_env()
    return create_app(
        Answerer(router, eps, cfg),
        api_keys=load_api_keys(file=os.environ.get("AVENGERS_SERVER_KEY_FILE") or None),
        max_body_bytes=int(os.environ.get("AVENGERS_MAX_BODY", DEFAULT_MAX_BODY)),
        max_tokens_limit=int(os.environ.get("AVENGERS_MAX_TOKENS", DEFAULT_MAX_TOKENS)),
        cors_origins=cors or None,
        **live,
        feedback_store=open_store(store, **store_settings_from_env(live)) if store else None,
        freeze_gc=True,  # a worker process of `avengers serve`
        router_path=rpath if Path(rpath).is_dir() else None,
        router_overrides=json.loads(os.environ.get("AVENGERS_ROUTER_SETTINGS") or "{}"),
    )


def live_settings_from_env() -> dict[str, Any]:
    """The deadline, fallback, embedding-cache, breaker and conversation settings set in the
    environment."""
    env = os.environ
    out: dict[str, Any] = {}
    if v := env.get("AVENGERS_REQUEST_TIMEOUT"):
        out["request_timeout"] = float(v)
    if v := env.get("AVENGERS_MAX_FALLBACKS"):
        out["max_fallbacks"] = None if v.lower() in ("all", "none") or int(v) < 0 else int(v)
    if v := env.get("AVENGERS_EMBED_CACHE"):
        out["embed_cache"] = v
    if v := env.get("AVENGERS_EMBED_CACHE_SIZE"):
        out["embed_cache_size"] = int(v)
    if v := env.get("AVENGERS_BREAKER_THRESHOLD"):
        out["breaker_threshold"] = int(v)
    if v := env.get("AVENGERS_BREAKER_COOLDOWN"):
        out["breaker_cooldown"] = float(v)
    if v := env.get("AVENGERS_CONVERSATIONS"):
        out["conversations"] = v
    if v := env.get("AVENGERS_CONVERSATION_TTL"):
        out["conversation_ttl"] = float(v)
    if v := env.get("AVENGERS_CONVERSATION_MAX"):
        out["conversation_max_entries"] = int(v)
    if v := env.get("AVENGERS_STORE_TIMEOUT"):
        out["store_timeout"] = float(v)
    if v := env.get("AVENGERS_REQUIRE_STORE"):
        out["require_store"] = v.lower() in ("1", "true", "yes")
    if v := env.get("AVENGERS_FOLLOW_INTERVAL"):
        out["follow_interval"] = float(v)
    if v := env.get("AVENGERS_RELOAD_INTERVAL"):
        out["reload_interval"] = float(v)
    return out


def store_settings_from_env(live: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`~avengers.stores.feedback.open_store`'s bounds set in the environment:
    ``AVENGERS_FEEDBACK_RETENTION`` (seconds; 0: keep), ``AVENGERS_FEEDBACK_MAX_RESPONSES``,
    ``AVENGERS_FEEDBACK_MAX_RATINGS``, and the store timeout."""
    env = os.environ
    out: dict[str, Any] = {"timeout": (live or {}).get("store_timeout", DEFAULT_STORE_TIMEOUT)}
    if v := env.get("AVENGERS_FEEDBACK_RETENTION"):
        out["retention"] = float(v) or None
    if v := env.get("AVENGERS_FEEDBACK_MAX_RESPONSES"):
        out["max_responses"] = int(v)
    if v := env.get("AVENGERS_FEEDBACK_MAX_RATINGS"):
        out["max_ratings"] = int(v)
    return out
