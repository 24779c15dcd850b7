"""Request deadlines: how long one request may take, end to end, on a monotonic clock.

The server gives every request a :class:`Deadline` and cancels the request's work when it passes.
The deadline is also published in a context variable (:func:`current`), which the tasks a request
starts inherit, so code deep in the call (the retry loop that honours ``Retry-After``) can tell
whether waiting would outlast the request without every signature carrying it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..exceptions import AvengersError

Clock = Callable[[], float]


class DeadlineExceeded(AvengersError):
    """The request's deadline passed before an answer was complete."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within the request deadline of {seconds:g} s")
        self.seconds = seconds


class Deadline:
    """A point in time ``seconds`` from now on ``clock`` (monotonic by default). ``None``, 0 or
    a negative number of seconds means no deadline (:meth:`remaining` is infinite)."""

    def __init__(self, seconds: float | None, *, clock: Clock = time.monotonic) -> None:
        self.seconds = float(seconds) if seconds and seconds > 0 else math.inf
        self.clock = clock
        self.at = clock() + self.seconds

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g} s, {self.remaining():.3f} s left)"

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.seconds)

    def remaining(self) -> float:
        """Seconds left (0 once passed, infinite without a deadline)."""
        return max(0.0, self.at - self.clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def timeout(self) -> float | None:
        """:meth:`remaining` for ``asyncio.wait(timeout=...)``: None when unbounded."""
        return self.remaining() if self.bounded else None

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(self.seconds)


_current: ContextVar[Deadline | None] = ContextVar("avengers_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the request being served in this context, if any."""
    return _current.get()


def set_current(deadline: Deadline | None) -> None:
    """Publish ``deadline`` for this context (a task's own copy: call it inside the task)."""
    _current.set(deadline)


@contextmanager
def within(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Publish ``deadline`` for the duration of a ``with`` block (same task only)."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
