"""Keeping the optional stores (feedback, conversations) off the answer path.

A :class:`StoreGuard` runs every call to a store (SQLite or Redis) on its own small thread pool,
never on the pool that embedding and routing use, and bounds each call by the store timeout and
by the request's deadline (:func:`avengers.transport.deadline.current`). A call that fails, times out, or
finds the pool full (more than ``max_pending`` calls still running: a stalled store) raises
:class:`StoreUnavailable` at once instead of queueing; the caller degrades (an answer is served
without being remembered, a conversation turn is routed afresh, a rating is refused with 503).

The guard keeps the store's state as its callers see it: ``ok`` or ``degraded`` (the last call
failed), the failures by kind (``error``, ``timeout``, ``busy``) and the state changes. The
first failure of an outage logs one line at once (the error's type and the store's name, never
user text); later failures log at most one line per ``log_interval`` (30 s), with the count of
failed calls since the last line, and the recovery line gives the outage's total. Nothing has to
be reset when the store comes back: the next call that succeeds marks it ``ok`` again.

Domain answers of a store (:class:`~avengers.exceptions.AvengersError`, e.g. an unknown
response id) pass through unchanged: the store answered.

Example::

    >>> import asyncio
    >>> guard = StoreGuard("demo", timeout=0.5)
    >>> asyncio.run(guard.call(lambda: 41 + 1))
    42
    >>> guard.state
    'ok'
    >>> guard.close()
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..exceptions import AvengersError, ConfigError
from ..transport import deadline as _deadline

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_STORE_TIMEOUT",
    "DEFAULT_STORE_WORKERS",
    "StoreGuard",
    "StoreUnavailable",
]

log = logging.getLogger("avengers.store")

T = TypeVar("T")

DEFAULT_STORE_TIMEOUT = 1.0
"""Seconds one store call may take (also the Redis socket and SQLite busy timeouts)."""
DEFAULT_STORE_WORKERS = 4
"""Threads that run store calls (per process)."""
DEFAULT_MAX_PENDING = 16
"""Store calls that may be running at once; beyond, a call fails fast as unavailable."""
DEFAULT_RETRY_AFTER = 2
DEFAULT_LOG_INTERVAL = 30.0
"""Seconds between two log lines about one outage (the first failure is logged at once; later
lines count the failed calls in between)."""
MAX_CHANGES_KEPT = 100
"""State changes kept with their times (the count of all changes is kept apart)."""
"""Seconds a client is told to wait (``Retry-After``) when the store is unavailable."""


class StoreUnavailable(AvengersError):
    """The store failed, timed out or is saturated; the call was not (known to be) done."""

    def __init__(self, store: str, kind: str, retry_after: int = DEFAULT_RETRY_AFTER) -> None:
        self.store, self.kind, self.retry_after = store, kind, retry_after
        super().__init__(f"the {store} store is unavailable ({kind}); retry later")


def _describe(error: BaseException | None) -> str:
    """``: Type`` (and the message of a store client's own error, which names the condition,
    e.g. "database or disk is full", and carries no request data)."""
    if error is None:
        return ""
    name = type(error).__name__
    if type(error).__module__.split(".")[0] in ("sqlite3", "redis"):
        return f": {name}: {str(error).splitlines()[0][:100] if str(error) else ''}"
    return f": {name}"


class StoreGuard:
    """Bounded, isolated, observed calls to one store (see the module docs). Thread-safe."""

    def __init__(
        self,
        name: str = "feedback",
        *,
        timeout: float = DEFAULT_STORE_TIMEOUT,
        workers: int = DEFAULT_STORE_WORKERS,
        max_pending: int = DEFAULT_MAX_PENDING,
        retry_after: int = DEFAULT_RETRY_AFTER,
        log_interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"store timeout must be a number of seconds > 0, got {timeout!r}")
        if workers < 1 or max_pending < 1:
            raise ConfigError("store workers and max_pending must be >= 1")
        self.name, self.timeout = name, float(timeout)
        self.max_pending, self.retry_after = max_pending, int(retry_after)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"avengers-{name}-store")
        self._lock = threading.Lock()
        self._pending = 0
        self.state = "ok"
        self.failures: dict[str, int] = {"error": 0, "timeout": 0, "busy": 0}
        self.calls = 0
        self.state_changes = 0
        """Changes between ok and degraded since start."""
        self.changes: deque[tuple[float, str]] = deque(maxlen=MAX_CHANGES_KEPT)
        """(wall-clock time, new state) for the last :data:`MAX_CHANGES_KEPT` changes of state."""
        self.last_error: str | None = None
        self.log_interval = float(log_interval)
        self._unlogged = 0  # failed calls not logged yet (only a summary, every log_interval)
        self._outage_failures = 0  # failed calls since the store was last ok
        self._last_log = 0.0

    def __repr__(self) -> str:
        return f"StoreGuard({self.name!r}, timeout={self.timeout:g}, state={self.state!r})"

    @property
    def pending(self) -> int:
        """Store calls running now (including those their caller stopped waiting for)."""
        return self._pending

    def _done(self, _: Any) -> None:
        with self._lock:
            self._pending -= 1

    def _set_state(self, state: str) -> None:
        if self.state != state:
            self.state = state
            self.state_changes += 1
            self.changes.append((time.time(), state))
            if state == "ok":
                log.warning(
                    "%s store available again (%d failed calls while unavailable)",
                    self.name,
                    self._outage_failures,
                )
                self._outage_failures = self._unlogged = 0

    def _failed(self, kind: str, error: BaseException | None = None) -> StoreUnavailable:
        now = time.monotonic()
        with self._lock:
            self.failures[kind] = self.failures.get(kind, 0) + 1
            self.last_error = type(error).__name__ if error is not None else kind
            first = self.state == "ok"
            self._set_state("degraded")
            self._outage_failures += 1
            # the first failure of an outage is logged at once; later ones at most once per
            # log_interval, with the count since the last line (an outage under load would
            # otherwise log a line per request)
            due = first or now - self._last_log >= self.log_interval
            skipped = self._unlogged
            if due:
                self._last_log, self._unlogged = now, 0
            else:
                self._unlogged += 1
        if due:
            more = f"; {skipped} more failed calls not logged" if skipped else ""
            log.warning("%s store unavailable (%s%s%s)", self.name, kind, _describe(error), more)
        return StoreUnavailable(self.name, kind, self.retry_after)

    def _ok(self) -> None:
        with self._lock:
            self._set_state("ok")

    def _budget(self) -> float:
        dl = _deadline.current()
        if dl is not None and dl.bounded:
            return min(self.timeout, dl.remaining())
        return self.timeout

    def _submit(self, fn: Callable[..., T], *args: Any) -> Any:
        with self._lock:
            if self._pending >= self.max_pending:
                busy = True
            else:
                busy = False
                self._pending += 1
                self.calls += 1
        if busy:
            raise self._failed("busy")
        try:
            fut = self._pool.submit(fn, *args)
        except RuntimeError as e:  # the pool was shut down
            self._done(None)
            raise self._failed("error", e) from None
        fut.add_done_callback(self._done)
        return fut

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the store's pool, within the store timeout and the deadline; raises
        :class:`StoreUnavailable` when it fails, takes too long or the pool is full."""
        budget = self._budget()
        if budget <= 0:
            raise self._failed("timeout")
        fut = asyncio.wrap_future(self._submit(fn, *args))
        try:
            out: T = await asyncio.wait_for(asyncio.shield(fut), budget)
        except TimeoutError:
            raise self._failed("timeout") from None
        except AvengersError:
            self._ok()  # the store answered (unknown id, already rated, ...)
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise self._failed("error", e) from None
        self._ok()
        return out

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Sync twin of :meth:`call` (for code outside the event loop)."""
        from concurrent.futures import TimeoutError as FutureTimeout

        budget = self._budget()
        if budget <= 0:
            raise self._failed("timeout")
        fut = self._submit(fn, *args)
        try:
            out: T = fut.result(budget)
        except FutureTimeout:
            raise self._failed("timeout") from None
        except AvengersError:
            self._ok()
            raise
        except Exception as e:
            raise self._failed("error", e) from None
        self._ok()
        return out

    async def background(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the store's pool with no timeout and no effect on the state (upkeep
        such as pruning, which may take longer than a request's call); fails fast, like
        :meth:`call`, when the pool is full."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise StoreUnavailable(self.name, "busy", self.retry_after)
            self._pending += 1
        fut = self._pool.submit(fn, *args)
        fut.add_done_callback(self._done)
        return await asyncio.wrap_future(fut)

    def snapshot(self) -> dict[str, Any]:
        """The state for ``/ready``: ``ok`` or ``degraded``, failures by kind, changes."""
        with self._lock:
            return {
                "state": self.state,
                "failures": dict(self.failures),
                "pending": self._pending,
                "state_changes": self.state_changes,
                "last_error": self.last_error,
            }

    def prometheus(self) -> str:
        """Counters in Prometheus text format (appended to ``/metrics``)."""
        snap = self.snapshot()
        s = f'store="{self.name}"'
        lines = [
            "# HELP avengers_store_failures_total Store calls that failed, timed out or were "
            "refused because the store's pool was full.",
            "# TYPE avengers_store_failures_total counter",
            *(
                f'avengers_store_failures_total{{{s},kind="{k}"}} {v}'
                for k, v in sorted(snap["failures"].items())
            ),
            "# HELP avengers_store_up 1 while the last store call succeeded.",
            "# TYPE avengers_store_up gauge",
            f"avengers_store_up{{{s}}} {1 if snap['state'] == 'ok' else 0}",
            "# HELP avengers_store_state_changes_total Changes between ok and degraded.",
            "# TYPE avengers_store_state_changes_total counter",
            f"avengers_store_state_changes_total{{{s}}} {snap['state_changes']}",
        ]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Stop the pool (calls still running finish on their own)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
