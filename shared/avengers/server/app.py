"""The app factory: :func:`create_app` for an :class:`Answerer` in hand, :func:`app_from_env` for
``uvicorn --factory`` with several workers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..answer import Answerer
from ..embedders import BatchingEmbedder
from ..exceptions import ConfigError
from ..feedback import FeedbackStore
from ..results import SamplingConfig
from .auth import load_api_keys
from .feedback import enable_feedback
from .middleware import add_middleware
from .routes import add_routes
from .state import DEFAULT_MAX_BODY, DEFAULT_MAX_TOKENS, Profile, ServerState, default_profiles


def create_app(
    answerer: Answerer,
    *,
    profiles: dict[str, Profile] | None = None,
    api_keys: set[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS,
    cors_origins: list[str] | None = None,
    feedback_store: FeedbackStore | None = None,
) -> FastAPI:
    """The FastAPI app. Run it with uvicorn (``avengers serve`` does). ``feedback_store`` turns
    on ``POST /v1/feedback`` (see :mod:`avengers.server.feedback`); without it nothing is kept."""
    emb = answerer.router.get_embedder()
    if not isinstance(emb, BatchingEmbedder):  # one request = one query: batch them together
        answerer.router.set_embedder(BatchingEmbedder(emb))
    state = ServerState(
        answerer=answerer,
        profiles=profiles if profiles is not None else default_profiles(answerer),
        api_keys=set(api_keys or ()),
        max_body_bytes=max_body_bytes,
        max_tokens_limit=max_tokens_limit,
    )
    app = FastAPI(title="avengers router", lifespan=_lifespan, docs_url=None, redoc_url=None)
    app.state.server = state
    app.state.metrics = state.metrics
    app.state.answerer = answerer
    add_middleware(app, cors_origins)
    add_routes(app)
    if feedback_store is not None:
        enable_feedback(app, state, feedback_store)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the embedding model at start-up, not on the first user request; close the upstream
    connections at shutdown."""
    answerer: Answerer = app.state.server.answerer
    await asyncio.to_thread(answerer.router.get_embedder().embed, ["warm-up"])
    yield
    await answerer.aclose()


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (used with several workers): settings come from
    ``AVENGERS_ROUTER``, ``AVENGERS_ENDPOINTS``, ``AVENGERS_CONFIG`` (JSON sampling settings),
    ``AVENGERS_SERVER_KEYS`` / ``AVENGERS_SERVER_KEY_FILE``, ``AVENGERS_MAX_BODY``,
    ``AVENGERS_MAX_TOKENS``, ``AVENGERS_CORS``, ``AVENGERS_FEEDBACK_STORE`` (feedback on)."""
    from ..bundled import load_pretrained
    from ..feedback import open_store
    from ..router import Router

    rpath = os.environ.get("AVENGERS_ROUTER", "pretrained")
    router = load_pretrained() if rpath == "pretrained" else Router.from_pretrained(rpath)
    eps = os.environ.get("AVENGERS_ENDPOINTS")
    if not eps:
        raise ConfigError("AVENGERS_ENDPOINTS is not set")
    cfg = SamplingConfig(**json.loads(os.environ.get("AVENGERS_CONFIG", "{}")))
    cors = [o for o in os.environ.get("AVENGERS_CORS", "").split(",") if o]
    store = os.environ.get("AVENGERS_FEEDBACK_STORE")
    return create_app(
        Answerer(router, eps, cfg),
        api_keys=load_api_keys(file=os.environ.get("AVENGERS_SERVER_KEY_FILE") or None),
        max_body_bytes=int(os.environ.get("AVENGERS_MAX_BODY", DEFAULT_MAX_BODY)),
        max_tokens_limit=int(os.environ.get("AVENGERS_MAX_TOKENS", DEFAULT_MAX_TOKENS)),
        cors_origins=cors or None,
        feedback_store=open_store(store) if store else None,
    )
