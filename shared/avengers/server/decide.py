"""``POST /v1/route``: the routing decision alone, no model called.

The body is ``{"messages": [...]}`` (OpenAI chat messages; the router reads the text the
answerer would route on) or ``{"query": "..."}``, optionally with ``"alpha"`` (the
performance/cost trade-off for this request) and ``"task"`` (a task hint). The reply is the
decision (:meth:`avengers.RouteDecision.to_dict` without the echoed query): the chosen
``model``, the ranked ``ranking`` with each model's score, performance, cost and evidence, the
cluster and distance. Concurrent requests share embedding batches (the server's
:class:`~avengers.embedders.BatchingEmbedder`), and the reply is serialised once with the
standard library, without FastAPI's per-field encoding.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.requests import Request

from ..exceptions import AvengersError
from ..messages import as_messages, routing_text
from .checks import check_body_text
from .replies import error_response
from .state import server_state
from .wire import BadRequest, read_json


# POST /v1/route
async def route_only(request: Request) -> Any:
    state = server_state(request)
    try:
        body = await read_json(request, state.max_body_bytes)
        check_body_text(body)
        query, alpha, task = _parse(body)
    except BadRequest as e:
        return error_response(e.status, e.message, "invalid_request_error", None, e.param)
    answerer = state.answerer
    try:
        text = routing_text(as_messages(query))
        alpha = answerer.config.alpha if alpha is None else alpha
        decision = await answerer.router.aroute(text, alpha=alpha, task=task)
    except AvengersError as e:
        return error_response(400, str(e), "invalid_request_error")
    out = decision.to_dict()
    out.pop("query", None)
    out["model"] = decision.model
    return Response(
        json.dumps(out, allow_nan=False, default=_finite), media_type="application/json"
    )


def _parse(body: dict[str, Any]) -> tuple[Any, float | None, str | None]:
    if "messages" in body:
        query = body["messages"]
        if not isinstance(query, list) or not query:
            raise BadRequest("'messages' must be a non-empty list of messages", "messages")
    elif "query" in body:
        query = body["query"]
        if not isinstance(query, str) or not query.strip():
            raise BadRequest("'query' must be a non-empty string", "query")
    else:
        raise BadRequest("give 'messages' (chat messages) or 'query' (a string)", "messages")
    alpha = body.get("alpha")
    if alpha is not None and (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not 0.0 <= float(alpha) <= 1.0
    ):
        raise BadRequest("'alpha' must be a number in [0, 1]", "alpha")
    task = body.get("task")
    if task is not None and not isinstance(task, str):
        raise BadRequest("'task' must be a string", "task")
    return query, None if alpha is None else float(alpha), task


def _finite(x: Any) -> Any:
    """JSON for what ``json`` cannot write itself (NumPy scalars)."""
    v = float(x)
    return v if math.isfinite(v) else None


def add_route_only(app: FastAPI) -> None:
    """Mount ``POST /v1/route``."""
    app.add_api_route("/v1/route", route_only, methods=["POST"], name="route")
