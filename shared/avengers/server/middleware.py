"""What wraps every request: API-key and body-size checks before routing, request metrics, a
generic 500 instead of a traceback, and OpenAI-style bodies for framework-level errors."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from .auth import bearer_accepted
from .replies import error_response
from .state import ServerState

log = logging.getLogger(__name__)


class Guard:
    """Checks, times and counts every request; never dies on one and never leaks internals.

    Plain ASGI middleware (a ``BaseHTTPMiddleware`` would wrap every reply in a stream and
    every request in extra tasks): the API-key and body-size checks (:func:`precheck`) before
    the app, the request's status and duration into the metrics once its reply is sent, and a
    generic 500 for anything the app raises before its reply started. An error after the reply
    started (a stream cut short) can only close the connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: ServerState = scope["app"].state.server
        t0 = time.perf_counter()
        path: str = scope["path"]
        status = 500
        started = False

        async def sending(message: Any) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        state.metrics.in_flight += 1
        try:
            early = precheck(state, Request(scope))
            if early is not None:
                await early(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except Exception:
            if not started:
                await error_response(500, "internal server error", "server_error")(
                    scope, receive, sending
                )
            else:
                log.warning("request to %s failed after its reply started", path, exc_info=True)
        finally:
            state.metrics.in_flight -= 1
            label = path if path.startswith("/v1/") else "other"
            state.metrics.observe(label, status, time.perf_counter() - t0)


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
