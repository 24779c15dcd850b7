"""Serving live traffic: every request's work runs under a deadline and is cancelled when the
deadline passes or the client goes away.

* :func:`answer` (non-streamed) runs the answer as a task, races it against the deadline and a
  watcher of the client's connection, and cancels whatever loses.
* :class:`Pump` (streamed) runs the answer stream in its own task (so cancelling it closes the
  upstream connections cleanly) and hands the chunks over through a queue, each wait bounded by
  the deadline. The route awaits the first chunk before the response starts, so a request that
  fails, times out or is abandoned before any text exists still gets a plain 502/504 (or nothing,
  for a client that left); once text has been sent, a failure ends the stream with an error
  event and never with a normal finish.

The deadline is published (:func:`avengers.transport.deadline.set_current`) inside the task doing the work,
so retries honour ``Retry-After`` only while it fits in the time left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from ..answering.results import AnswerChunk, AnswerError, AnswerResult
from ..transport.deadline import Deadline, DeadlineExceeded, set_current
from .replies import error_response, sse, upstream_error_response
from .state import ServerState
from .wire import CompletionRequest

T = TypeVar("T")

CLIENT_CLOSED = 499
"""Status logged for a request whose client left (nobody reads the response)."""


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def deadline_for(state: ServerState) -> Deadline:
    return Deadline(state.request_timeout)


def overrides(state: ServerState, req: CompletionRequest) -> dict[str, Any]:
    """The request's sampling overrides with the server's cap on fallbacks applied."""
    over = dict(req.overrides)
    cap = state.max_fallbacks
    if cap is not None:
        own = state.answerer.config.max_fallbacks
        over.setdefault("max_fallbacks", cap if own is None else min(own, cap))
    return over


async def _watch_disconnect(request: Request) -> None:
    """Return once the client has gone. (Waits on ``receive`` rather than polling
    ``request.is_disconnected()``, which misses the disconnect behind some middleware.)"""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _race(work: asyncio.Future[T], request: Request | None, dl: Deadline) -> T:
    """``work``'s result, or :class:`ClientGone` / :class:`DeadlineExceeded` if the client leaves
    or the deadline passes first (``work`` is then left for the caller to cancel)."""
    watcher = asyncio.ensure_future(_watch_disconnect(request)) if request is not None else None
    waits: set[asyncio.Future[Any]] = {work} if watcher is None else {work, watcher}
    try:
        done, _ = await asyncio.wait(waits, timeout=dl.timeout(), return_when="FIRST_COMPLETED")
    finally:
        if watcher is not None:
            watcher.cancel()
    if work in done:
        return work.result()
    if watcher is not None and watcher in done:
        raise ClientGone
    raise dl.exceeded()


async def _under(dl: Deadline, work: Awaitable[T]) -> T:
    set_current(dl)  # this task's own context: retries inside see the deadline
    return await work


async def answer(
    state: ServerState, request: Request, req: CompletionRequest, response_id: str | None = None
) -> AnswerResult:
    """The whole answer, within the deadline and only while the client waits for it."""
    dl = deadline_for(state)
    work = state.answerer.aanswer(
        req.messages, prefer=req.profile.prefer, conversation=req.conversation,
        response_id=response_id, **overrides(state, req),
    )  # fmt: skip
    task = asyncio.ensure_future(_under(dl, work))
    try:
        return await _race(task, request, dl)
    finally:
        task.cancel()  # a no-op once done; otherwise the upstream calls are abandoned now


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Pump:
    """The answer stream, produced in its own task under the deadline."""

    def __init__(
        self, state: ServerState, req: CompletionRequest, response_id: str | None = None
    ) -> None:
        self.deadline = deadline_for(state)
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        parts = state.answerer.astream(
            req.messages, prefer=req.profile.prefer, conversation=req.conversation,
            response_id=response_id, **overrides(state, req),
        )  # fmt: skip
        self.task = asyncio.ensure_future(self._produce(parts))

    async def _produce(self, parts: AsyncIterator[AnswerChunk]) -> None:
        set_current(self.deadline)
        try:
            async for part in parts:
                self.queue.put_nowait(part)
            self.queue.put_nowait(_END)
        except Exception as e:
            self.queue.put_nowait(_Failed(e))

    async def next(self, request: Request | None = None) -> AnswerChunk | None:
        """The next chunk (None at the end); with ``request``, also watch for a disconnect."""
        get = asyncio.ensure_future(self.queue.get())
        try:
            item = await _race(get, request, self.deadline)
        finally:
            get.cancel()
        if item is _END:
            return None
        if isinstance(item, _Failed):
            raise item.error
        assert isinstance(item, AnswerChunk)
        return item

    async def rest(self, first: AnswerChunk | None) -> AsyncIterator[AnswerChunk]:
        """``first`` and then every further chunk; the producer is cancelled however this ends
        (the client leaving cancels the response, and with it this generator)."""
        try:
            part = first
            while part is not None:
                yield part
                part = await self.next()
        finally:
            self.close()

    def close(self) -> None:
        self.task.cancel()  # no await: may run inside a cancelled scope


def failure_response(state: ServerState, exc: BaseException) -> Response | None:
    """The response for a request that ended before any output: 502 (every candidate failed),
    504 (deadline), 499 (client gone); None for other errors."""
    if isinstance(exc, AnswerError):
        state.metrics.record_failures(exc.failures)
        return upstream_error_response(exc.failures)
    if isinstance(exc, DeadlineExceeded):
        state.metrics.deadlines += 1
        return deadline_response(exc)
    if isinstance(exc, ClientGone):
        state.metrics.disconnects += 1
        return Response(status_code=CLIENT_CLOSED)
    return None


def deadline_response(exc: DeadlineExceeded) -> JSONResponse:
    return error_response(504, str(exc), "timeout", "deadline_exceeded")


def stream_error(message: str, type_: str, code: str | None, **extra: Any) -> bytes:
    """An error event that ends a stream (after it, only ``[DONE]``)."""
    return sse({"error": {"message": message, "type": type_, "code": code, "param": None, **extra}})


def stream_failure(state: ServerState, exc: BaseException) -> bytes | None:
    """The error event for a failure after the stream started (None: not one of ours)."""
    if isinstance(exc, DeadlineExceeded):
        state.metrics.deadlines += 1
        return stream_error(str(exc), "timeout", "deadline_exceeded")
    if isinstance(exc, AnswerError):
        state.metrics.record_failures(exc.failures)
        failures = [{"model": f.model, "kind": f.kind} for f in exc.failures]
        message = str(exc).splitlines()[0]
        return stream_error(message, "upstream_error", "upstream_failed", failures=failures)
    return None


def circuits(state: ServerState) -> dict[str, dict[str, Any]]:
    """The circuit breaker's view of every candidate (empty without a breaker)."""
    if state.breaker is None:
        return {}
    snap = state.breaker.snapshot()
    for m in state.answerer.backend.models():
        snap.setdefault(m, {"state": "closed", "failures": 0, "opened": 0})
    return dict(sorted(snap.items()))
