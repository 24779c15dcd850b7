"""Turning feedback into a new router version on disk: :func:`apply_ratings` counts a store's
new ratings into a router, :func:`save_atomically` writes it so that a crash or a kill at any
moment leaves a loadable router at the path (the old version or the new one, never a mix).

The router remembers the sequence number of the last rating it has absorbed in its training
summary (``feedback_seq``), so applying the same store again only adds what is new.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..router import Router
from .feedback import FeedbackStore, Rating

__all__ = ["SEQ_KEY", "apply_ratings", "apply_store", "save_atomically"]

SEQ_KEY = "feedback_seq"
"""Key of the training summary holding the last rating sequence number a router absorbed."""


def apply_ratings(router: Router, ratings: list[Rating]) -> int:
    """Count ``ratings`` (in order) into ``router`` with :meth:`Router.update`, skipping those at
    or below its ``feedback_seq``; returns how many were applied."""
    last = int(router.training_summary_.get(SEQ_KEY, 0))
    new = [r for r in sorted(ratings, key=lambda r: r.seq) if r.seq > last]
    if not new:
        return 0
    k = len(router.cluster_centers_)
    ok = [r for r in new if 0 <= r.cluster < k]
    keeps_costs = router.cost_sums_ is not None
    # runs of ratings with and without a cost, each applied in order: the result does not depend
    # on how the log was cut into calls (replicas reading it in different batches agree)
    start = 0
    while start < len(ok):
        with_cost = keeps_costs and ok[start].cost is not None
        end = start + 1
        while end < len(ok) and (keeps_costs and ok[end].cost is not None) == with_cost:
            end += 1
        run = ok[start:end]
        router.update(
            models=[r.model for r in run],
            scores=np.array([r.score for r in run]),
            costs=np.array([r.cost for r in run], dtype=np.float64) if with_cost else None,
            clusters=np.array([r.cluster for r in run]),
        )
        start = end
    router.training_summary_ = {**router.training_summary_, SEQ_KEY: new[-1].seq}
    return len(ok)


def apply_store(router: Router, store: FeedbackStore) -> int:
    """:func:`apply_ratings` with every rating in ``store`` newer than the router's."""
    return apply_ratings(router, store.ratings(int(router.training_summary_.get(SEQ_KEY, 0))))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    try:
        libc: Any = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
            return False
        raise OSError(err, os.strerror(err), str(a))
    return True


def save_atomically(router: Router, path: str | Path) -> Path:
    """Save ``router`` to the folder ``path`` as one step: the artifact is written to a hidden
    sibling folder, then swapped in (an atomic exchange on Linux; elsewhere two renames, with a
    moment where ``path`` is missing). The previous version is removed after the swap."""
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{path.name}.old-*"):  # left by an interrupted earlier save
        shutil.rmtree(stale, ignore_errors=True)
    stamp = f"{os.getpid()}-{time.time_ns()}"
    tmp = parent / f".{path.name}.tmp-{stamp}"
    try:
        router.save_pretrained(tmp)
        _fsync_tree(tmp)
        if not path.exists():
            os.rename(tmp, path)
        elif _exchange(tmp, path):
            tmp.rename(parent / f".{path.name}.old-{stamp}")
        else:
            old = parent / f".{path.name}.old-{stamp}"
            os.rename(path, old)
            os.rename(tmp, path)
        _fsync_dir(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in parent.glob(f".{path.name}.old-{stamp}"):
        shutil.rmtree(old, ignore_errors=True)
    return path


def _fsync_tree(folder: Path) -> None:
    for f in folder.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
