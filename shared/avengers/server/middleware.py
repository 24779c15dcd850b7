"""What wraps every request: API-key and body-size checks before routing, request metrics, a
generic 500 instead of a traceback, and OpenAI-style bodies for framework-level errors."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from .auth import bearer_accepted
from .replies import error_response
from .state import ServerState

log = logging.getLogger(__name__)


REQUEST_ID_HEADER = "x-request-id"


class Guard:
    """Checks, times and counts every request; never dies on one and never leaks internals.

    Plain ASGI middleware (a ``BaseHTTPMiddleware`` would wrap every reply in a stream and
    every request in extra tasks): the API-key and body-size checks (:func:`precheck`) before
    the app, the request's status and duration into the metrics once its reply is sent (labelled
    by route, never by the client's path: see :func:`route_label`), and a generic 500 for
    anything the app raises before its reply started. An error after the reply started (a stream
    cut short) can only close the connection.

    Every request gets an id (``x-request-id`` on every response; the client's own is ignored):
    a 500 is logged as one line with that id and the exception's type and place, never its
    message (which may hold user text), and the error body carries the id too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: ServerState = scope["app"].state.server
        t0 = time.perf_counter()
        status = 500
        started = False
        rid = request_id(scope)
        id_header = (REQUEST_ID_HEADER.encode(), rid.encode())

        async def sending(message: Any) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        state.metrics.in_flight += 1
        try:
            early = precheck(state, Request(scope))
            if early is not None:
                await early(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except Exception as e:
            log_failure(rid, e, "before" if not started else "after")
            if not started:
                body = {"error": {"message": f"internal server error (request id {rid})",
                                  "type": "server_error", "param": None, "code": None,
                                  "request_id": rid}}  # fmt: skip
                await JSONResponse(body, status_code=500)(scope, receive, sending)
        finally:
            state.metrics.in_flight -= 1
            state.metrics.observe(route_label(scope), status, time.perf_counter() - t0)


def request_id(scope: Any) -> str:
    """The id of the request (made on first use, kept in the scope for the app to read)."""
    st = scope.setdefault("state", {})
    rid = st.get("request_id")
    if rid is None:
        rid = st["request_id"] = uuid.uuid4().hex
    return str(rid)


def log_failure(rid: str, exc: BaseException, when: str = "before") -> None:
    """One log line for a request the server failed: its id, the exception's type and where it
    was raised (module and line), never the exception's message."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_globals.get('__name__', '?')}:{tb.tb_lineno}" if tb else "?"
    log.error("request %s failed %s its reply started: %s at %s", rid, when,
              type(exc).__name__, where)  # fmt: skip


OTHER_ROUTE = "other"
"""The one metrics label of every request to a path the server has no route for."""


def route_label(scope: Any) -> str:
    """The metrics label of a request: the path of the route it matched (a template, the same
    for every request to it), or :data:`OTHER_ROUTE` for any path the app does not serve, so
    clients can neither add series nor write their own text into label values."""
    path = scope.get("path", "")
    known = _known_paths(scope["app"])
    return path if path in known else OTHER_ROUTE


def _known_paths(app: Any) -> frozenset[str]:
    routes = getattr(app, "routes", ())
    cached = getattr(app.state, "route_paths", None)
    if cached is None or cached[0] != len(routes):  # routes mounted after the first request
        cached = (len(routes), frozenset(getattr(r, "path", "") for r in routes))
        app.state.route_paths = cached
    return cached[1]


def precheck(state: ServerState, request: Request) -> Response | None:
    """A 401 (``/v1/`` without a valid key, when keys are set) or 413 (declared body too large)
    response, or None to let the request through."""
    needs_key = bool(state.api_keys) and request.url.path.startswith("/v1/")
    if needs_key and not bearer_accepted(request.headers, state.api_keys):
        return error_response(401, "invalid or missing API key", "authentication_error",
                              "invalid_api_key")  # fmt: skip
    if request.method == "POST":
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > state.max_body_bytes):
            return error_response(413, f"request body larger than {state.max_body_bytes} bytes",
                                  "invalid_request_error", "request_too_large")  # fmt: skip
    return None


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Unknown paths, wrong methods and the like, as OpenAI-style errors."""
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error_response(exc.status_code, str(exc.detail), kind)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A request the framework itself rejected."""
    return error_response(400, "invalid request", "invalid_request_error")


def add_middleware(app: FastAPI, cors_origins: list[str] | None) -> None:
    """CORS (only if origins are given) inside the guard, and the error handlers."""
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"],
                           allow_headers=["*"])  # fmt: skip
    app.add_middleware(Guard)
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
