"""A fleet that learns as one: every worker and replica applies the store's rating log in order,
and takes up new router versions without a restart.

**Shared learning.** A feedback store keeps every accepted rating in an ordered log (SQLite's
``seq`` column, Redis's sorted set; :meth:`~avengers.stores.feedback.FeedbackStore.ratings`). A
:class:`LogFollower` applies that log to a router in sequence order, starting after the last
rating the router absorbed (``training_summary_["feedback_seq"]``, which a saved router version
records). The per-cluster sums and counts are additive and forgetting (``half_life``) decays a
cell at each observation of it, in order, so every follower that has applied the log up to the
same sequence number holds the same statistics as one router that applied those ratings with
:meth:`~avengers.Router.update` in log order, whatever the batches it read them in. A server
polls the log (``follow_interval``, 0.5 s by default) and catches up at once after each rating
it accepts itself, so its own client reads what it wrote.

**Router versions.** A :class:`VersionWatcher` notices that the router folder changed (a new
version written with ``avengers snapshot``/``update``/``train``, or
:func:`avengers.stores.snapshot.save_atomically`, which swaps the folder in one step), loads it and
checks it off the request path (:func:`check_version`); the server then catches the new version
up from its recorded sequence number and swaps it in between requests. A version that fails its
check is refused and logged, and the old one keeps serving.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import AvengersError, ConfigError
from ..router import Router
from .feedback import FeedbackStore, Rating
from .snapshot import SEQ_KEY, apply_ratings

__all__ = [
    "DEFAULT_FOLLOW_INTERVAL",
    "DEFAULT_RELOAD_INTERVAL",
    "LogFollower",
    "VersionRefused",
    "VersionWatcher",
    "check_version",
    "last_seq",
    "learning_state",
]

log = logging.getLogger("avengers.stores.fleet")

DEFAULT_FOLLOW_INTERVAL = 0.5
"""Seconds between two reads of the rating log (so replicas agree within about a second)."""
DEFAULT_RELOAD_INTERVAL = 2.0
"""Seconds between two checks of the router folder for a new version."""


def last_seq(router: Router) -> int:
    """The sequence number of the last logged rating ``router`` has absorbed (0: none)."""
    return int(router.training_summary_.get(SEQ_KEY, 0))


class LogFollower:
    """Applies a store's rating log to a router, in order, exactly once per rating.

    ``router`` is the router being served; :meth:`catch_up` may also bring another router (a new
    version) up to date before it replaces it (:meth:`swap`). Thread-safe: one catch-up at a time,
    under :attr:`lock` (the lock router updates take)."""

    def __init__(
        self, store: FeedbackStore, router: Router, *, lock: threading.Lock | None = None
    ) -> None:
        self.store = store
        self.router = router
        self.lock = lock if lock is not None else threading.Lock()
        self.applied = 0
        """Ratings counted into the served router(s) by this follower."""
        self.skipped = 0
        """Sequence numbers found missing from the log (pruned before this follower read them)."""

    def catch_up(self, router: Router | None = None) -> int:
        """Apply every logged rating after ``router``'s last one (default: the served router), in
        order; returns how many were applied. Store errors propagate (nothing is applied)."""
        with self.lock:
            target = self.router if router is None else router
            return self._apply(target, *self._unread(target))

    def _unread(self, target: Router) -> tuple[int, list[Rating]]:
        """``target``'s last absorbed sequence number and the logged ratings after it. A position
        beyond this store's last rating was recorded against another (or an emptied) log, so
        following from it would silently skip this log's ratings: then the router follows this
        log from its start, and the log says so. That check costs one more read, made only when
        the log has nothing new (never on the read that follows an accepted rating)."""
        after = last_seq(target)
        new = self.store.ratings(after)
        if new or after == 0 or self.store.ratings(after - 1):
            return after, new
        log.warning(
            "rating log: the router records rating #%d, beyond this store's last rating (a "
            "different or emptied store); following this store's log from its start",
            after,
        )
        target.training_summary_ = {**target.training_summary_, SEQ_KEY: 0}
        return 0, self.store.ratings(0)

    def _apply(self, target: Router, after: int, new: list[Rating]) -> int:
        if not new:
            return 0
        expected = after + 1
        for r in new:
            if r.seq > expected:
                missing = r.seq - expected
                self.skipped += missing
                log.warning(
                    "rating log: %d rating(s) after #%d were pruned before this router read "
                    "them; continuing at #%d",
                    missing,
                    expected - 1,
                    r.seq,
                )
            expected = r.seq + 1
        n = apply_ratings(target, new)
        if target is self.router:
            self.applied += n
        return n

    def swap(self, new: Router) -> Router:
        """Catch ``new`` up to the log and make it the served router, in one step under the lock
        (no rating is applied to the old router in between); returns the old router."""
        with self.lock:
            self._apply(new, *self._unread(new))
            old, self.router = self.router, new
            return old


class VersionRefused(AvengersError):
    """A new router version failed its checks; the served version stays."""


def check_version(new: Router, current: Router, served_models: Iterable[str]) -> None:
    """Raise :class:`VersionRefused` unless ``new`` can replace ``current``: fitted, embedded
    by the same model (name and dimension: the server keeps its loaded embedder), finite
    statistics, and at least one of its models served by an endpoint."""
    if not new.is_fitted():
        raise VersionRefused("the new version is not a fitted router")
    if new.embedder_name_ != current.embedder_name_ or new.n_features_in_ != current.n_features_in_:
        raise VersionRefused(
            f"the new version embeds with {new.embedder_name_!r} ({new.n_features_in_}-d), the "
            f"server with {current.embedder_name_!r} ({current.n_features_in_}-d): restart to "
            "change the embedding model"
        )
    for name, arr in (("score_sums", new.score_sums_), ("score_counts", new.score_counts_)):
        if not np.all(np.isfinite(arr)):
            raise VersionRefused(f"the new version's {name} are not all finite")
    if not set(new.models_) & set(served_models):
        raise VersionRefused(
            f"none of the new version's models ({', '.join(new.models_)}) has an endpoint"
        )


def _signature(path: Path) -> tuple[Any, ...] | None:
    """What changes when a version is written: inode, size and time of both artifact files."""
    out: list[Any] = []
    for name in ("config.json", "router.safetensors"):
        try:
            st = (path / name).stat()
        except OSError:
            return None
        out += [st.st_ino, st.st_size, st.st_mtime_ns]
    return tuple(out)


class VersionWatcher:
    """Watches a router folder for a new version.

    :meth:`poll` returns the new version's folder signature when the folder changed since the
    last poll (None otherwise); :meth:`load` reads the router (call it off the request path). A
    folder caught half-written (a copy in progress) is read again at the next poll."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise ConfigError(f"{self.path}: not a router folder (no config.json) to watch")
        self.seen = _signature(self.path)
        self.swaps = 0
        self.refused = 0
        self.version = 1
        """Counts the versions served since start (1: the one loaded at start)."""

    def poll(self) -> tuple[Any, ...] | None:
        sig = _signature(self.path)
        if sig is None or sig == self.seen:
            return None
        return sig

    def load(self) -> Router:
        try:
            return Router.from_pretrained(self.path)
        except AvengersError as e:
            raise VersionRefused(f"{self.path}: {e}") from None
        except (OSError, ValueError, KeyError) as e:
            raise VersionRefused(f"{self.path}: could not read the version ({e})") from None

    def accepted(self, sig: tuple[Any, ...]) -> None:
        self.seen = sig
        self.swaps += 1
        self.version += 1

    def rejected(self, sig: tuple[Any, ...], error: Exception) -> None:
        self.seen = sig  # not retried until the folder changes again
        self.refused += 1
        log.warning("router version refused, the served one stays: %s", error)


def learning_state(router: Router) -> dict[str, Any]:
    """What a replica has learned, as JSON: the last applied rating and the statistics (for
    comparing replicas; ``None`` for a non-finite value)."""

    def rows(a: np.ndarray | None) -> list[list[float | None]] | None:
        if a is None:
            return None
        return [[float(v) if math.isfinite(v) else None for v in row] for row in a.tolist()]

    return {
        "seq": last_seq(router),
        "models": list(router.models_),
        "score_sums": rows(router.score_sums_),
        "score_counts": rows(router.score_counts_),
    }
