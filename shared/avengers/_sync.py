"""Running async code from sync callers, including callers already inside an event loop
(Jupyter, async web frameworks): then the coroutine runs on a fresh loop in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=worker, name="avengers-sync", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


_DONE = object()


def iterate_sync(
    make: Callable[[], AsyncIterator[T]], cleanup: Callable[[], Awaitable[None]] | None = None
) -> Iterator[T]:
    """Iterate an async generator from sync code, item by item, on a worker thread's loop."""
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    async def pump() -> None:
        try:
            async for item in make():
                if stop.is_set():
                    break
                q.put(("item", item))
        except BaseException as e:
            q.put(("error", e))
        finally:
            if cleanup is not None:
                with contextlib.suppress(Exception):  # closing must not mask the answer
                    await cleanup()
            q.put(("done", _DONE))

    t = threading.Thread(target=lambda: asyncio.run(pump()), name="avengers-stream", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                break
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        # drain so the pump can finish
        while t.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)
