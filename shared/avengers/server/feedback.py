"""``POST /v1/feedback``: clients rate answers, and the router learns from the ratings.

Off unless the operator gives ``create_app(..., feedback_store=...)`` (``avengers serve
--feedback-store``). Then, for every answer, the server remembers the response id, the model
that answered and the query's nearest cluster (never the text) in the store; a rating for that
id is checked, committed to the store's ordered log, and the in-memory router catches up with
the log (:mod:`avengers.server.learning`: this rating and every earlier one, in order) before
the reply. Every worker of every replica follows the same log, so all of them learn from every
rating; ``avengers snapshot`` writes what they learned as a new router version.

Request bodies::

    {"id": "chatcmpl-...", "score": 1.0, "cost": 0.002}      # rate a response (cost optional)
    {"query": "...", "model": "gpt-4o", "score": 0.0}        # an outcome for a query (if allowed)

Errors: 400 (bad JSON, missing field, score out of [0, 1], unknown model), 401 (no or bad key,
as for every ``/v1/`` route), 404 (unknown or expired response id), 409 (already rated), 503
with ``Retry-After`` (the store is unavailable: down, stalled, full, read-only or locked; the
rating was not recorded, send it again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request

from ..router import Router
from ..stores.feedback import (
    AlreadyRatedError,
    FeedbackError,
    FeedbackStore,
    Rating,
    UnknownResponseError,
    apply_rating,
    check_rating,
    rating_reply,
)
from ..stores.guard import StoreUnavailable
from ..transport.deadline import Deadline, within
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


async def _follow(state: ServerState, seq: int) -> None:
    """Catch up with the log up to the rating just recorded; a store that fails now leaves it
    to the next poll (the rating is in the log: it is acknowledged)."""
    from .learning import catch_up

    with contextlib.suppress(StoreUnavailable):
        await catch_up(state, seq)


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        raise BadRequest(f"'{name}' must be a non-empty {kind.__name__}", name)
    return value


def _check(state: ServerState, fb: FeedbackState, body: dict[str, Any]) -> Callable[[], Rating]:
    """Validate one rating (embedding the query of the query form) and return the store call
    that records it; runs in a worker thread."""
    router = state.answerer.router
    try:
        score, cost = check_rating(body.get("score"), body.get("cost"))
    except FeedbackError as e:
        raise BadRequest(str(e), "cost" if str(e).startswith("cost") else "score") from None
    if "id" in body:
        rid = _field(body, "id", str)
        return lambda: fb.store.rate(rid, score, cost)
    if not fb.allow_queries:
        raise BadRequest("'id' is required (feedback by query is turned off)", "id")
    query, model = _field(body, "query", str), _field(body, "model", str)
    if model not in router.models_:
        raise BadRequest(f"unknown model {model!r}", "model")
    cluster = int(router.estimate(router.embed([query])).nearest[0])
    return lambda: fb.store.add(model, cluster, score, cost)


async def _record(state: ServerState, record: Callable[[], Rating]) -> Rating:
    """Commit the rating to the store: on the store's own pool, bounded by the store timeout and
    the request's deadline, when the server has a guard (:class:`StoreUnavailable` if the store
    fails)."""
    guard = state.store_guard
    if guard is None:
        return await asyncio.to_thread(record)
    with within(Deadline(state.request_timeout)):
        rating: Rating = await guard.call(record)
    return rating


def unavailable_response(e: StoreUnavailable) -> JSONResponse:
    """503 in the OpenAI error shape, with ``Retry-After``: the rating was not recorded."""
    resp = error_response(503, str(e), "server_error", "store_unavailable")
    resp.headers["retry-after"] = str(e.retry_after)
    return resp


# POST /v1/feedback
async def post_feedback(request: Request) -> Any:
    state = server_state(request)
    fb: FeedbackState | None = state.feedback
    if fb is None:  # not mounted without a store; kept for safety
        return error_response(404, "feedback is not enabled", "invalid_request_error")
    try:
        body = await read_json(request, state.max_body_bytes)
        record = await asyncio.to_thread(_check, state, fb, body)
        rating = await _record(state, record)
        if state.learning is not None and state.learning.follower is not None:
            # every rating up to this one, in log order (others' too): this worker's router then
            # equals every other's that has read the log as far
            await _follow(state, rating.seq)
        else:
            await asyncio.to_thread(_apply, state.answerer.router, fb, rating)
    except BadRequest as e:
        return error_response(e.status, e.message, "invalid_request_error", None, e.param)
    except UnknownResponseError as e:
        return error_response(404, str(e), "invalid_request_error", "response_not_found", "id")
    except AlreadyRatedError as e:
        return error_response(409, str(e), "invalid_request_error", "already_rated", "id")
    except FeedbackError as e:
        return error_response(400, str(e), "invalid_request_error", None, "score")
    except StoreUnavailable as e:
        return unavailable_response(e)
    return rating_reply(rating)
