"""Waiting for something a test started (a server, a request in flight) without falling through
silently: :func:`wait_until` fails the test, saying what it waited for, when the time is up or
when the process it waits on has exited."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest


def wait_until(
    cond: Callable[[], bool],
    seconds: float,
    what: str,
    *,
    interval: float = 0.1,
    proc: subprocess.Popen[Any] | None = None,
) -> None:
    """Return as soon as ``cond()`` holds; fail the test after ``seconds``, or at once if
    ``proc`` (the process that should make it hold) has exited."""
    end = time.monotonic() + seconds
    while True:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process exited ({proc.returncode}) first")
        if time.monotonic() >= end:
            pytest.fail(f"{what}: not within {seconds:g} s")
        time.sleep(interval)


def answers(url: str) -> Callable[[], bool]:
    """A condition: ``GET url`` answers 200."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    return check
