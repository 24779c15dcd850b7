"""Shared learning and live router versions in the server (see :mod:`avengers.stores.fleet`).

With a feedback store, every worker of every replica follows the store's rating log: it polls
the log every ``follow_interval`` seconds and catches up at once after each rating it accepts
itself, so all of them hold the statistics of one router that applied every rating in log order.
With a router folder, the server checks it every ``reload_interval`` seconds for a new version
(``avengers snapshot``/``update``/``train`` writing to that folder), loads and checks it off the
request path, catches it up from its recorded sequence number and swaps it in between requests;
``POST /v1/admin/reload`` checks at once. A refused version is logged and counted
(``avengers_router_versions_refused_total``) and the served one stays.

``GET /v1/admin/learning`` shows what this worker has learned (the last applied rating, the
version, the statistics): replicas that agree show the same numbers. Both admin routes need a
client key when keys are set, like every ``/v1/`` route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request

from ..router import Router
from ..stores.fleet import (
    LogFollower,
    VersionRefused,
    VersionWatcher,
    check_version,
    last_seq,
    learning_state,
)
from .state import ServerState, default_profiles, fingerprint, server_state

log = logging.getLogger("avengers.stores.fleet")


@dataclass
class Learning:
    """The server's follower of the rating log and watcher of the router folder (either may be
    None), with the router settings the operator overrode (applied to each new version)."""

    follower: LogFollower | None
    watcher: VersionWatcher | None
    follow_interval: float
    reload_interval: float
    overrides: dict[str, Any] = field(default_factory=dict)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    follow_errors: int = 0
    last_catch_up: float = 0.0
    inflight: asyncio.Future[int] | None = None


def enable_learning(
    app: FastAPI,
    state: ServerState,
    *,
    router_path: str | Path | None,
    follow_interval: float,
    reload_interval: float,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Set up log following (when the server has a feedback store) and version watching (when
    ``router_path`` is a router folder), and mount the admin routes."""
    store = state.feedback.store if state.feedback is not None else None
    router = state.answerer.router
    follower = None
    if store is not None and follow_interval > 0:
        follower = LogFollower(store, router, lock=state.feedback.lock)
    watcher = None
    if router_path is not None and reload_interval > 0 and Path(router_path).is_dir():
        watcher = VersionWatcher(router_path)
    state.learning = Learning(
        follower, watcher, follow_interval, reload_interval, dict(overrides or {})
    )
    app.add_api_route("/v1/admin/learning", get_learning, methods=["GET"], name="admin_learning")
    app.add_api_route("/v1/admin/reload", post_reload, methods=["POST"], name="admin_reload")


async def catch_up(state: ServerState, seq: int = 0) -> int:
    """Apply the log's new ratings to the served router, on the store's pool (bounded by the
    store timeout), until it has absorbed rating ``seq`` (0: one read of the log). Concurrent
    callers share one read at a time (single flight), so a burst of ratings never fills the
    store's pool; raises :class:`~avengers.stores.guard.StoreUnavailable` when the store fails."""
    learning: Learning | None = state.learning
    if learning is None or learning.follower is None:
        return 0
    applied = 0
    for _ in range(3):  # a read that began before rating ``seq`` was logged misses it: read again
        if learning.inflight is None or learning.inflight.done():
            learning.inflight = asyncio.ensure_future(_read_log(state, learning))
        applied += await asyncio.shield(learning.inflight)
        if last_seq(state.answerer.router) >= seq:
            break
    return applied


async def _read_log(state: ServerState, learning: Learning) -> int:
    follower = learning.follower
    assert follower is not None
    guard = state.store_guard
    if guard is not None and guard.pending >= max(1, guard.max_pending // 2):
        # a stalled store holds the pool's threads: leave it to answers and ratings, and read
        # the log at the next poll (reads never pile up behind a stall)
        return 0
    n = await (guard.call(follower.catch_up) if guard else asyncio.to_thread(follower.catch_up))
    learning.last_catch_up = time.time()
    return int(n)


async def follow_forever(state: ServerState) -> None:
    """Read the rating log every ``follow_interval`` seconds; a failing store waits for the next
    round (the ratings stay in the log)."""
    learning: Learning | None = state.learning
    if learning is None or learning.follower is None:
        return
    while True:
        try:
            await catch_up(state)
        except Exception as e:  # a store outage: StoreUnavailable, already logged by the guard
            learning.follow_errors += 1
            log.debug("rating log not read: %s", type(e).__name__)
        await asyncio.sleep(learning.follow_interval)


async def reload_version(state: ServerState) -> dict[str, Any]:
    """Check the router folder once; load, check, catch up and swap in a new version. Returns
    what happened: ``unchanged``, ``swapped`` or ``refused`` (with the reason)."""
    learning: Learning | None = state.learning
    if learning is None or learning.watcher is None:
        return {"status": "off", "reason": "the server does not serve a router folder"}
    watcher = learning.watcher
    async with learning.reload_lock:
        sig = watcher.poll()
        if sig is None:
            return {"status": "unchanged", "version": watcher.version}
        current = state.answerer.router
        try:
            new: Router = await asyncio.to_thread(watcher.load)
            served = set(state.answerer.backend.models())
            await asyncio.to_thread(check_version, new, current, served)
            if learning.overrides:
                new.set_params(**learning.overrides)
            new.set_embedder(current.get_embedder())  # the loaded model and its cache
            if learning.follower is not None:
                # the bulk of the catch-up off the request path, then the rest and the swap
                # under the follower's lock, so no rating lands on the old version in between
                follower = learning.follower
                await asyncio.to_thread(follower.catch_up, new)
                await asyncio.to_thread(follower.swap, new)
        except Exception as e:  # refused: unreadable, failed its check, or the store failed
            watcher.rejected(sig, e)
            reason = str(e) if isinstance(e, VersionRefused) else f"{type(e).__name__}: {e}"
            return {"status": "refused", "reason": reason, "version": watcher.version}
        state.answerer.router = new  # one reference: requests started before keep the old one
        if state.profiles_follow_router:  # a model the new version adds can be pinned at once
            state.profiles = default_profiles(state.answerer)
        state.fingerprint = fingerprint(state.answerer, state.answerer.backend)
        watcher.accepted(sig)
        log.warning(
            "router version %d swapped in (ratings up to #%d)", watcher.version, last_seq(new)
        )
        return {"status": "swapped", "version": watcher.version, "seq": last_seq(new)}


async def watch_forever(state: ServerState) -> None:
    """Check the router folder every ``reload_interval`` seconds."""
    learning: Learning | None = state.learning
    if learning is None or learning.watcher is None:
        return
    while True:
        with contextlib.suppress(Exception):
            await reload_version(state)
        await asyncio.sleep(learning.reload_interval)


def prometheus(state: ServerState) -> str:
    """The learning series for ``/metrics``."""
    learning: Learning | None = state.learning
    if learning is None:
        return ""
    out = [
        "# HELP avengers_feedback_applied_seq The last logged rating the served router absorbed.",
        "# TYPE avengers_feedback_applied_seq gauge",
        f"avengers_feedback_applied_seq {last_seq(state.answerer.router)}",
    ]
    if learning.follower is not None:
        out += [
            "# HELP avengers_feedback_log_gaps_total Logged ratings pruned before this worker read them.",
            "# TYPE avengers_feedback_log_gaps_total counter",
            f"avengers_feedback_log_gaps_total {learning.follower.skipped}",
        ]
    if learning.watcher is not None:
        w = learning.watcher
        out += [
            "# HELP avengers_router_version The router version served (1: the one loaded at start).",
            "# TYPE avengers_router_version gauge",
            f"avengers_router_version {w.version}",
            "# HELP avengers_router_versions_swapped_total New router versions swapped in.",
            "# TYPE avengers_router_versions_swapped_total counter",
            f"avengers_router_versions_swapped_total {w.swaps}",
            "# HELP avengers_router_versions_refused_total New router versions refused.",
            "# TYPE avengers_router_versions_refused_total counter",
            f"avengers_router_versions_refused_total {w.refused}",
        ]
    return "\n".join(out) + "\n"


# GET /v1/admin/learning
async def get_learning(request: Request) -> Any:
    state = server_state(request)
    learning: Learning | None = state.learning
    body = learning_state(state.answerer.router)
    if learning is not None:
        body["version"] = learning.watcher.version if learning.watcher else 1
        body["following"] = learning.follower is not None
        body["follow_interval"] = learning.follow_interval
    return JSONResponse(body)


# POST /v1/admin/reload
async def post_reload(request: Request) -> Any:
    state = server_state(request)
    out = await reload_version(state)
    return JSONResponse(out, status_code=422 if out["status"] == "refused" else 200)
