"""``POST /v1/route``: the routing decision alone, no model called.

The body is ``{"messages": [...]}`` (OpenAI chat messages; the router reads the text the
answerer would route on) or ``{"query": "..."}``, optionally with ``"alpha"`` (the
performance/cost trade-off for this request) and ``"task"`` (a task hint). The reply is the
decision (the fields of :meth:`avengers.RouteDecision.to_dict` without the echoed query): the chosen
``model``, the ranked ``ranking`` with each model's score, performance, cost and evidence, the
cluster and distance. Concurrent requests are embedded and routed together
(:class:`RouteBatcher`), and the reply is serialised once (:func:`~.replies.dumps`: orjson when
installed), without FastAPI's per-field encoding.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.requests import Request

from ..answering.messages import as_messages, routing_text
from ..decision import RouteDecision
from ..embedding.embedders import aembed
from ..exceptions import AvengersError
from ..stores.guard import StoreUnavailable
from .middleware import Guard
from .replies import dumps, error_response
from .state import server_state
from .wire import BadRequest, check_messages, conversation_key, prompt_messages, read_json

if TYPE_CHECKING:
    from ..router import Router


# POST /v1/route
async def route_only(request: Request) -> Any:
    state = server_state(request)
    try:
        body = await read_json(request, state.max_body_bytes)
        query, alpha, task = _parse(body)
        if alpha is None and isinstance(body.get("model"), str) and body["model"] in state.profiles:
            alpha = state.profiles[body["model"]].overrides.get("alpha")
        key = conversation_key(body, request.headers)
    except BadRequest as e:
        return error_response(e.status, e.message, "invalid_request_error", None, e.param)
    answerer = state.answerer
    store_down = False
    try:
        text = routing_text(as_messages(query))
        if not text.strip():
            raise BadRequest("nothing to route on: the message text is empty", "messages")
        decision = None
        if key is not None:  # a conversation: its model comes first (one store lookup)
            try:
                decision = await answerer.aroute(
                    query, alpha=alpha, text=text, conversation=key, task=task
                )
            except StoreUnavailable:  # routed afresh, and the reply says so
                store_down = True
        if decision is None:  # the batched fast path
            alpha = answerer.config.alpha if alpha is None else alpha
            batcher: RouteBatcher = request.app.state.route_batcher
            decision = await batcher.route(answerer.router, text, alpha, task)
    except BadRequest as e:
        return error_response(e.status, e.message, "invalid_request_error", None, e.param)
    except AvengersError as e:
        return error_response(400, str(e), "invalid_request_error")
    payload = {
        "object": "route",
        **decision_json(decision),
        "conversation": key,
        "explanation": decision.explain(),
    }
    if store_down:
        payload["conversation_store"] = "unavailable"
        payload["notes"] = ["conversation store unavailable: this turn was routed afresh"]
        headers = {"x-avengers-conversation": "unavailable"}
        return Response(dumps(payload), media_type=_JSON, headers=headers)
    return Response(dumps(payload), media_type=_JSON)


_JSON = "application/json"


def decision_json(d: RouteDecision) -> dict[str, Any]:
    """:meth:`RouteDecision.to_dict` without the echoed query, the chosen model first."""
    out = d.to_dict()
    del out["query"]
    return {"model": d.model, "models": out.pop("models"), **out}


_Item = tuple["Router", str, "float | None", "str | None", "asyncio.Future[RouteDecision]"]


class RouteBatcher:
    """Routes concurrent requests together: texts that arrive within ``max_wait`` seconds of each
    other (up to ``max_batch``) are embedded in one call and routed in one
    :meth:`Router.route_embeddings <avengers.Router.route_embeddings>` call per alpha, so a
    burst of requests costs about one batch instead of one routing pass each. A failing batch
    is retried one request at a time, so only the request at fault gets the error."""

    def __init__(self, max_batch: int = 64, max_wait: float = 0.001) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: asyncio.Queue[_Item] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def route(
        self, router: Router, text: str, alpha: float | None, task: str | None
    ) -> RouteDecision:
        """The decision for ``text`` (routed with whatever arrives meanwhile)."""
        loop = asyncio.get_running_loop()
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue))
        fut: asyncio.Future[RouteDecision] = loop.create_future()
        self._queue.put_nowait((router, text, alpha, task, fut))
        return await fut

    async def _run(self, queue: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while True:  # take what is queued; wait once for the rest of the window; take again
                while len(items) < self.max_batch and not queue.empty():
                    items.append(queue.get_nowait())
                timeout = deadline - loop.time()
                if len(items) >= self.max_batch or timeout <= 0:
                    break
                # one timer, not a task per item as ``asyncio.wait_for(queue.get())`` would be
                await asyncio.sleep(timeout)
            groups: dict[tuple[int, float | None], list[_Item]] = {}
            for item in items:
                groups.setdefault((id(item[0]), item[2]), []).append(item)
            for group in groups.values():
                try:
                    await _settle(group)
                except Exception:
                    for one in group:  # isolate the failure
                        try:
                            await _settle([one])
                        except Exception as e:
                            if not one[4].done():
                                one[4].set_exception(e)


async def _settle(group: list[_Item]) -> None:
    """Embed and route ``group`` (one router, one alpha) and hand each caller its decision."""
    router, alpha = group[0][0], group[0][2]
    texts = [it[1] for it in group]
    tasks = [it[3] for it in group]
    X = await aembed(router.get_embedder(), texts)
    decisions = router.route_embeddings(X, texts, alpha=alpha, tasks=tasks if any(tasks) else None)
    for it, d in zip(group, decisions, strict=True):
        if not it[4].done():
            it[4].set_result(d)


def _parse(body: dict[str, Any]) -> tuple[Any, float | None, str | None]:
    if "messages" in body:
        query = check_messages(body["messages"])
    elif "query" in body:
        query = body["query"]
        if not isinstance(query, str) or not query.strip():
            raise BadRequest("'query' must be a non-empty string", "query")
    elif "prompt" in body:
        query = prompt_messages(body)
    else:
        raise BadRequest(
            "give 'messages' (chat messages), 'prompt' or 'query' (a string)", "messages"
        )
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


class RouteFastPath:
    """ASGI middleware that answers ``POST /v1/route`` before the framework's middleware stack
    (whose per-request tasks cost more than the routing), under the same :class:`.Guard` as every
    other request (API key, body size, metrics, generic 500); every other request passes through
    unchanged. Mounted only when CORS is off (CORS headers come from the stack it skips)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._route = Guard(_route_only_app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/route" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        await self._route(scope, receive, send)


async def _route_only_app(scope: Any, receive: Any, send: Any) -> None:
    """:func:`route_only` as a bare ASGI app."""
    resp = await route_only(Request(scope, receive))
    await resp(scope, receive, send)


def add_route_only(app: FastAPI) -> None:
    """Mount ``POST /v1/route`` (with its :class:`RouteBatcher`)."""
    app.state.route_batcher = RouteBatcher()
    app.add_api_route("/v1/route", route_only, methods=["POST"], name="route")
