"""``POST /v1/feedback``: clients rate answers, and the router learns from the ratings.

Off unless the operator gives ``create_app(..., feedback_store=...)`` (``avengers serve
--feedback-store``). Then, for every answer, the server remembers the response id, the model
that answered and the query's nearest cluster (never the text) in the store; a rating for that
id is checked, committed to the store, and applied to the in-memory router
(:meth:`avengers.Router.update`) before the reply. With several worker processes each worker's
router learns only from the ratings it receives; ``avengers snapshot`` applies all of them from
the store.

Request bodies::

    {"id": "chatcmpl-...", "score": 1.0, "cost": 0.002}      # rate a response (cost optional)
    {"query": "...", "model": "gpt-4o", "score": 0.0}        # an outcome for a query (if allowed)

Errors: 400 (bad JSON, missing field, score out of [0, 1], unknown model), 401 (no or bad key,
as for every ``/v1/`` route), 404 (unknown or expired response id), 409 (already rated).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

from ..feedback import (
    AlreadyRatedError,
    FeedbackError,
    FeedbackStore,
    Rating,
    UnknownResponseError,
    apply_rating,
    check_rating,
    rating_reply,
)
from ..router import Router
from .replies import error_response
from .state import ServerState, server_state
from .wire import BadRequest, read_json


@dataclass
class FeedbackState:
    """The store, whether query-form feedback is accepted, and the lock router updates take."""

    store: FeedbackStore
    allow_queries: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


def enable_feedback(
    app: FastAPI, state: ServerState, store: FeedbackStore, *, allow_queries: bool = True
) -> None:
    """Remember answered responses in ``store`` (the answerer's feedback store: every answer's
    response id, model and cluster) and mount ``POST /v1/feedback``."""
    state.feedback = FeedbackState(store, allow_queries)
    state.answerer.feedback_store = store
    app.add_api_route("/v1/feedback", post_feedback, methods=["POST"], name="feedback")


def _apply(router: Router, fb: FeedbackState, rating: Rating) -> None:
    """Count an accepted rating into the in-memory router."""
    apply_rating(router, rating, fb.lock)


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        raise BadRequest(f"'{name}' must be a non-empty {kind.__name__}", name)
    return value


def _rate(state: ServerState, fb: FeedbackState, body: dict[str, Any]) -> Rating:
    """Validate, store (committed) and apply one rating; runs in a worker thread."""
    router = state.answerer.router
    try:
        score, cost = check_rating(body.get("score"), body.get("cost"))
    except FeedbackError as e:
        raise BadRequest(str(e), "cost" if str(e).startswith("cost") else "score") from None
    if "id" in body:
        rating = fb.store.rate(_field(body, "id", str), score, cost)
    else:
        if not fb.allow_queries:
            raise BadRequest("'id' is required (feedback by query is turned off)", "id")
        query, model = _field(body, "query", str), _field(body, "model", str)
        if model not in router.models_:
            raise BadRequest(f"unknown model {model!r}", "model")
        cluster = int(router.estimate(router.embed([query])).nearest[0])
        rating = fb.store.add(model, cluster, score, cost)
    _apply(router, fb, rating)
    return rating


# POST /v1/feedback
async def post_feedback(request: Request) -> Any:
    state = server_state(request)
    fb: FeedbackState | None = state.feedback
    if fb is None:  # not mounted without a store; kept for safety
        return error_response(404, "feedback is not enabled", "invalid_request_error")
    try:
        body = await read_json(request, state.max_body_bytes)
        rating = await asyncio.to_thread(_rate, state, fb, body)
    except BadRequest as e:
        return error_response(e.status, e.message, "invalid_request_error", None, e.param)
    except UnknownResponseError as e:
        return error_response(404, str(e), "invalid_request_error", "response_not_found", "id")
    except AlreadyRatedError as e:
        return error_response(409, str(e), "invalid_request_error", "already_rated", "id")
    except FeedbackError as e:
        return error_response(400, str(e), "invalid_request_error", None, "score")
    return rating_reply(rating)
