"""The HTTP routes. Each is a small function that reads the app's :class:`ServerState` from the
request (no closures over the factory's locals); :func:`add_routes` mounts them.

The endpoint functions carry comments rather than docstrings, and return ``Any``, because FastAPI
would publish both in ``/openapi.json``, which stays as it was before the split."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.requests import Request

from ..answering.results import AnswerChunk
from ..exceptions import AvengersError
from ..stores.guard import StoreUnavailable
from ..transport.capabilities import (
    Capabilities,
    CapabilityError,
    capabilities_of,
    request_needs,
    split_capable,
)
from . import live, replies
from .middleware import log_failure, request_id
from .replies import CompletionReply, error_response
from .state import ServerState, server_state
from .wire import BadRequest, CompletionRequest, conversation_key, parse_request, read_json


# POST /v1/chat/completions
async def chat_completions(request: Request) -> Any:
    return await complete(server_state(request), request, chat=True)


# POST /v1/completions (legacy text completions).
async def completions(request: Request) -> Any:
    return await complete(server_state(request), request, chat=False)


async def complete(state: ServerState, request: Request, *, chat: bool) -> Response:
    """Validate the request, then answer it whole or as a stream of server-sent events."""
    try:
        body = await read_json(request, state.max_body_bytes)
        req = parse_request(body, state.profiles, state.max_tokens_limit, chat=chat)
        req.conversation = conversation_key(body, request.headers)
    except BadRequest as e:
        code = "model_not_found" if e.status == 404 else None
        return error_response(e.status, e.message, "invalid_request_error", code, e.param)
    try:
        check_capable(state, req)
    except CapabilityError as e:
        return error_response(400, str(e), "invalid_request_error", "unsupported_capability")
    except BadRequest as e:
        return error_response(400, e.message, "invalid_request_error", "unsupported_capability",
                              e.param)  # fmt: skip
    comp = CompletionReply(chat, state.fingerprint)
    comp.echo = req.echo
    if req.stream:
        include_usage = req.include_usage
        pump = live.Pump(state, req, comp.id)
        try:  # the first chunk before the response starts: early failures keep their status
            first = await pump.next(request)
        except BaseException as e:
            pump.close()
            failed = live.failure_response(state, e)
            if failed is not None:
                return failed
            if isinstance(e, AvengersError):
                return error_response(400, str(e), "invalid_request_error")
            raise
        return StreamingResponse(
            stream_answer(
                state, req, comp, include_usage, pump.rest(first), request_id(request.scope)
            ),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no", **store_state(state)},
        )
    try:
        res = await live.answer(state, request, req, comp.id)
    except (AvengersError, live.ClientGone) as e:
        failed = live.failure_response(state, e)
        if failed is not None:
            return failed
        return error_response(400, str(e), "invalid_request_error")
    state.metrics.record(res, req.profile.name)
    return comp.response(res)


async def stream_answer(
    state: ServerState,
    req: CompletionRequest,
    comp: CompletionReply,
    include_usage: bool,
    parts: AsyncIterator[AnswerChunk],
    rid: str = "",
) -> AsyncIterator[bytes]:
    """The answer as server-sent events: text pieces, a final chunk carrying the routing account,
    optionally a usage chunk, then ``[DONE]``. Failures (an upstream dying mid-answer, the
    deadline) end the stream with an error event, never with a normal finish."""
    first = True
    try:
        async for part in parts:
            if comp.echo and first:  # legacy echo: the prompt first, from the same candidate
                model = part.model or (part.result.model if part.result else req.profile.name)
                yield comp.chunk(comp.echo, None, model)
            if part.result is None:  # every chunk names the candidate answering, as the
                yield comp.chunk(part.text, None, part.model or req.profile.name, first=first)
                first = False  # whole response's "model" does
                continue
            res = part.result
            state.metrics.record(res, req.profile.name)
            if res.tool_calls:
                yield comp.tool_calls_chunk(res, res.model, first=first)
                first = False
            finish = replies.finish_reason(res)
            yield comp.chunk(None, finish, res.model, {"avengers": res.account()}, first=first)
            if include_usage:
                yield comp.usage_chunk(res)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        event = live.stream_failure(state, e)
        if event is None:
            log_failure(rid, e, "after")
        yield event or replies.stream_internal_error()
    yield replies.STREAM_DONE


def store_state(state: ServerState) -> dict[str, str]:
    """``x-avengers-store: degraded`` while the store's last call failed (a stream's headers go
    out before its answer is remembered; its final chunk's account says for sure)."""
    guard = state.store_guard
    return {"x-avengers-store": "degraded"} if guard is not None and guard.state != "ok" else {}


async def probe_store(state: ServerState) -> dict[str, Any] | None:
    """The store's state for ``/ready`` after one bounded write check (None: no store)."""
    guard = state.store_guard
    if guard is None:
        return None
    ping = getattr(state.answerer.feedback_store, "ping", None)
    if ping is not None:
        with contextlib.suppress(StoreUnavailable):
            await guard.call(ping)
    return guard.snapshot()


def check_capable(state: ServerState, req: CompletionRequest) -> None:
    """Raise :class:`CapabilityError` (a 400, before any stream starts) when no endpoint at all
    has what the request needs (tools, JSON output, images), or :class:`BadRequest` when the
    request pins a model (``model="gemma3-270m"``) that lacks it: a pinned request is answered
    by that model or not at all for want of a capability."""
    backend = state.answerer.backend
    needs = request_needs(req.messages, req.overrides)
    pinned = req.profile.prefer
    if needs and pinned is not None:
        caps = capabilities_of(backend)(pinned) or Capabilities()
        missing = [n for n in needs if not caps.has(n)]
        if missing:
            raise BadRequest(
                f"model {pinned!r} lacks the capability this request needs "
                f"({', '.join(missing)}): its endpoint does not declare it; ask for model "
                "'avengers' to be routed to a model that has it",
                "model",
            )
    if needs:
        capable, excluded = split_capable(list(backend.models()), needs, capabilities_of(backend))
        if not capable:
            raise CapabilityError(needs, excluded)


# GET /v1/models: one entry per profile.
async def list_models(request: Request) -> Any:
    data = [model_entry(p) for p in server_state(request).profiles.values()]
    return {"object": "list", "data": data}


# GET /v1/models/{model_id}: one profile (client.models.retrieve), 404 in OpenAI's shape.
async def retrieve_model(request: Request, model_id: str) -> Any:
    profiles = server_state(request).profiles
    prof = profiles.get(model_id)
    if prof is None:
        return error_response(
            404, f"unknown model {model_id!r}; available: {sorted(profiles)}",
            "invalid_request_error", "model_not_found", "model",
        )  # fmt: skip
    return model_entry(prof)


def model_entry(p: Any) -> dict[str, Any]:
    """A profile as an OpenAI model object."""
    return {"id": p.name, "object": "model", "created": 0, "owned_by": "avengers",
            "description": p.description}  # fmt: skip


# GET /health: liveness (no authentication, no upstream calls).
async def health() -> Any:
    return {"status": "ok"}


# GET /ready: 200 if at least one upstream endpoint answers and its circuit is not open (or there
# are no endpoints); the body also shows each candidate's circuit breaker.
async def ready(request: Request) -> Any:
    import httpx

    state = server_state(request)
    eps = getattr(state.answerer.backend, "endpoints", {})

    async def probe(name: str) -> tuple[str, bool]:
        try:
            async with httpx.AsyncClient(timeout=2.0) as c:
                r = await c.get(eps[name].base_url.rstrip("/") + "/models")
            return name, r.status_code < 500
        except httpx.HTTPError:
            return name, False

    results = dict(await asyncio.gather(*(probe(n) for n in eps)))
    circuits = live.circuits(state)
    usable = [n for n, up in results.items() if up and circuits.get(n, {}).get("state") != "open"]
    ok = bool(usable) if eps else True
    body = {"status": "ready" if ok else "unavailable", "router": True, "endpoints": results,
            "circuits": circuits}  # fmt: skip
    store = await probe_store(state)
    if store is not None:  # a store outage degrades feedback, it does not stop answers
        body["store"] = store
        if store["state"] != "ok" and state.require_store:
            ok = False
            body["status"] = "unavailable"
    return JSONResponse(body, status_code=200 if ok else 503)


# GET /metrics: Prometheus text format.
async def metrics(request: Request) -> Any:
    state = server_state(request)
    text = state.metrics.render(live.circuits(state))
    if state.store_guard is not None:
        text += state.store_guard.prometheus()
    if state.learning is not None:
        from .learning import prometheus

        text += prometheus(state)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def add_routes(app: FastAPI) -> None:
    """Mount every route on ``app`` (route names, hence OpenAPI operation ids, as before the split)."""
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_api_route("/v1/completions", completions, methods=["POST"])
    app.add_api_route("/v1/models", list_models, methods=["GET"], name="models")
    app.add_api_route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"])
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/ready", ready, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"], name="prom")
