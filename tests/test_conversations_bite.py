"""The conversation stores' rules with a clock the test moves: expiry exactly at ``ttl``, the
least recently used conversation out first, ``get`` counting as a turn, bounds checked, keys
stored as digests (``benchmarks/mutation.py conversations``)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from avengers.exceptions import ConfigError
from avengers.stores.conversations import (
    MAX_KEY_LENGTH,
    MemoryConversations,
    SQLiteConversations,
    check_key,
    conversations_for,
)
from avengers.stores.feedback import MemoryFeedbackStore, SQLiteFeedbackStore


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Factory = Callable[..., Any]


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    def factory(**kw: Any) -> Any:
        if request.param == "memory":
            return MemoryConversations(**kw)
        return SQLiteConversations(tmp_path / "c.db", **kw)

    return factory


def test_expiry_is_exactly_at_the_ttl(make: Factory) -> None:
    clock = Clock()
    s = make(ttl=10, max_entries=5, clock=clock)
    s.set("a", "m1")
    clock.now += 10  # exactly ttl later: still alive
    assert len(s) == 1 and s.get("a") == "m1"
    clock.now += 10  # the get above restarted the ttl: again exactly ttl
    assert s.get("a") == "m1"
    clock.now += 10.5
    assert len(s) == 0 and s.get("a") is None
    assert s.get("a") is None  # forgotten for good
    s.set("a", "m2")
    assert s.get("a") == "m2" and len(s) == 1
    s.close()


def test_least_recently_used_goes_first(make: Factory) -> None:
    clock = Clock()
    s = make(ttl=100, max_entries=2, clock=clock)
    s.set("a", "m1")
    clock.now += 1
    s.set("b", "m2")
    clock.now += 1
    assert s.get("a") == "m1"  # a turn: "a" is now the most recent
    clock.now += 1
    s.set("c", "m3")  # over the bound: "b" goes
    assert (s.get("a"), s.get("b"), s.get("c")) == ("m1", None, "m3")
    assert len(s) == 2
    clock.now += 1
    s.set("c", "m4")  # a new model for a known conversation: no eviction
    assert (s.get("a"), s.get("c"), len(s)) == ("m1", "m4", 2)
    s.close()


def test_bounds_and_keys(make: Factory) -> None:
    for ttl in (0, -1, True, "10", float("nan")):
        with pytest.raises(ConfigError, match="conversation ttl must be a number of seconds > 0"):
            make(ttl=ttl)
    for n in (0, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="conversation max_entries must be a whole number"):
            make(max_entries=n)
    s = make(ttl=0.5, max_entries=1)
    assert (s.ttl, s.max_entries) == (0.5, 1)
    s.close()


def test_check_key() -> None:
    assert check_key("c1") == "c1"
    assert check_key("x" * MAX_KEY_LENGTH) == "x" * MAX_KEY_LENGTH
    with pytest.raises(ConfigError, match="may be at most 256 characters long"):
        check_key("x" * (MAX_KEY_LENGTH + 1))
    for bad in ("", "   ", None, 5):
        with pytest.raises(ConfigError, match="a conversation key must be a non-empty string"):
            check_key(bad)


def test_sqlite_holds_digests_and_wall_clock_times(tmp_path: Path) -> None:
    clock = Clock(5000.0)
    s = SQLiteConversations(tmp_path / "c.db", ttl=60, clock=clock)
    s.set("alice's chat", "m1")
    rows = sqlite3.connect(tmp_path / "c.db").execute(
        "SELECT key, model, touched FROM conversations"
    )
    assert rows.fetchall() == [(hashlib.sha256(b"alice's chat").hexdigest(), "m1", 5000.0)]
    # a second store on the same file sees it (another worker)
    other = SQLiteConversations(tmp_path / "c.db", ttl=60, clock=clock)
    assert other.get("alice's chat") == "m1"
    assert (
        repr(other) == f"SQLiteConversations({str(tmp_path / 'c.db')!r}, ttl=60, max_entries=10000)"
    )
    other.close()
    s.close()
    m = MemoryConversations(ttl=90, max_entries=3)
    assert repr(m) == "MemoryConversations(ttl=90, max_entries=3)"
    m.set("k", "x")
    m.close()
    assert len(m) == 0


def test_conversations_follow_the_feedback_store(tmp_path: Path) -> None:
    mem = conversations_for(MemoryFeedbackStore(), ttl=7, max_entries=9)
    assert isinstance(mem, MemoryConversations) and (mem.ttl, mem.max_entries) == (7.0, 9)
    fb = SQLiteFeedbackStore(tmp_path / "fb.db")
    sq = conversations_for(fb, ttl=8, max_entries=4)
    assert isinstance(sq, SQLiteConversations) and sq.path == fb.path
    assert (sq.ttl, sq.max_entries) == (8.0, 4)
    sq.close()
    fb.close()


def test_sqlite_waits_for_another_writer(tmp_path: Path) -> None:
    import threading
    import time

    s = SQLiteConversations(tmp_path / "c.db", ttl=60)
    assert s.file.timeout == 30.0  # the default wait for another writer
    other = sqlite3.connect(tmp_path / "c.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another worker holds the write lock for a moment
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    t0 = time.monotonic()
    s.set("k", "m1")  # waits for the lock (busy timeout 30 s), then writes
    assert time.monotonic() - t0 >= 0.4
    assert s.get("k") == "m1"
    release.join()
    other.close()
    s.close()


def test_the_sqlite_connection_is_in_autocommit_mode(tmp_path: Path) -> None:
    """The stores' shared SQLite connection (``feedback.SQLiteFile``) leaves transactions to
    ``transaction()`` alone: a statement run outside it is committed at once (another process
    sees it) and never leaves an implicit transaction open that the next ``BEGIN IMMEDIATE``
    would trip over. (No store writes through ``read`` today; this pins the mode they rely on.)"""
    s = SQLiteConversations(tmp_path / "c.db", ttl=60, clock=Clock(5000.0))
    s.file.read("INSERT INTO conversations (key, model, touched) VALUES ('h', 'm9', 5000.0)")
    other = sqlite3.connect(tmp_path / "c.db")
    assert other.execute("SELECT model FROM conversations").fetchall() == [("m9",)]
    other.close()
    s.set("k", "m1")  # a write transaction still starts
    assert len(s) == 2
    s.close()


def test_the_sqlite_connection_settings_and_threads(tmp_path: Path) -> None:
    """WAL, a full sync and the busy timeout in milliseconds, on the one connection that the
    store's threads share (a server's request threads call it)."""
    import threading

    s = SQLiteConversations(tmp_path / "c.db", ttl=60, timeout=2.5)
    assert s.file.read("PRAGMA journal_mode") == [("wal",)]
    assert s.file.read("PRAGMA synchronous") == [(2,)]  # FULL
    assert s.file.read("PRAGMA busy_timeout") == [(2500,)]
    s.set("k", "m1")
    seen: list[str | None] = []
    t = threading.Thread(target=lambda: (s.set("k2", "m2"), seen.append(s.get("k"))))
    t.start()
    t.join()
    assert seen == ["m1"] and s.get("k2") == "m2"
    s.close()
