"""Retrying calls to an OpenAI-compatible endpoint, within the request's deadline.

The official client retries on its own, but it may sleep for a server's ``Retry-After`` (up to a
minute) however little time the request has left. Here the client is created with
``max_retries=0`` and :func:`retrying` does the same job (connection errors, timeouts, 408, 409,
429 and 5xx; exponential backoff with jitter; ``Retry-After`` / ``retry-after-ms`` honoured) but
gives up at once, so the caller can fall back to another model, when the wait would outlast the
request's deadline (:func:`avengers.transport.deadline.current`) or exceed :data:`MAX_RETRY_AFTER`.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import deadline

T = TypeVar("T")

MAX_RETRY_AFTER = 60.0
"""Without a deadline, a ``Retry-After`` longer than this is not waited for."""


class GaveUp(Exception):
    """A retryable failure that was not retried: ``reason`` says why; ``cause`` is the error."""

    def __init__(self, cause: BaseException, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def retryable(exc: BaseException) -> bool:
    """Whether the openai client would retry this error (connection, timeout, 408/409/429/5xx)."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    code = _status(exc)
    return code is not None and (code in (408, 409, 429) or code >= 500)


def retry_after(exc: BaseException, *, now: Callable[[], float] = time.time) -> float | None:
    """The wait a response asked for (``retry-after-ms``, or ``Retry-After`` in seconds or as an
    HTTP date), or None."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def backoff(attempt: int) -> float:
    """The openai client's schedule: 0.5 s doubling per attempt, at most 8 s, minus jitter."""
    return min(0.5 * 2.0**attempt, 8.0) * (1 - 0.25 * random.random())


async def retrying(
    call: Callable[[], Awaitable[T]],
    max_retries: int,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """``await call()``, retried up to ``max_retries`` times on retryable errors. Raises the last
    error, or :class:`GaveUp` when a wait would pass the deadline or the ``Retry-After`` cap."""
    attempt = 0
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if attempt >= max_retries or not retryable(e):
                raise
            asked = retry_after(e)
            wait = asked if asked is not None else backoff(attempt)
            dl = deadline.current()
            if dl is not None and dl.bounded and wait >= dl.remaining():
                what = f"Retry-After {asked:g} s" if asked is not None else f"retry in {wait:.2f} s"
                raise GaveUp(e, f"{what} is past the request deadline") from None
            if asked is not None and asked > MAX_RETRY_AFTER and (dl is None or not dl.bounded):
                raise GaveUp(e, f"Retry-After {asked:g} s is over {MAX_RETRY_AFTER:g} s") from None
            await sleep(wait)
            attempt += 1
