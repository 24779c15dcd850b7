"""Conversation stickiness: which model a conversation was routed to, so that its later turns
stay on that model instead of bouncing between candidates that share neither style nor context.

A caller names a conversation with any string key (``Answerer.answer(..., conversation="c1")``,
the server's ``conversation`` body field or ``X-Conversation-Id`` header). The first routed turn
of a conversation records the model that answered; later turns put that model first, unless it
cannot serve the turn. When it fails the turn falls back down the ranking as usual, and the
conversation sticks to the model that answered instead (see :mod:`avengers.answering.answer`).

Three stores share one interface (:class:`ConversationStore`), all bounded (``max_entries``,
least recently used first out) and expiring (a conversation idle for ``ttl`` seconds starts
afresh):

* :class:`MemoryConversations`: one process's memory, the default; nothing is written anywhere.
* :class:`SQLiteConversations`: a table in an SQLite file, shared by every process that opens it
  (the server's workers). :func:`conversations_for` puts it in the feedback store's file.
* :class:`RedisConversations`: two keys in Redis, updated by Lua scripts (atomic), for replicas on
  several hosts; :func:`conversations_for` reuses the feedback store's connection.

Keys are stored as SHA-256 digests, never as given; with the model name and the time of the last
turn that is all a store holds.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..exceptions import ConfigError
from .feedback import (
    FeedbackStore,
    RedisFeedbackStore,
    SQLiteFeedbackStore,
    SQLiteFile,
    redis_client,
)

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_TTL",
    "ConversationStore",
    "MemoryConversations",
    "RedisConversations",
    "SQLiteConversations",
    "check_key",
    "conversations_for",
]

DEFAULT_TTL = 3600.0
"""Seconds a conversation may stay idle before its next turn is routed afresh."""
DEFAULT_MAX_ENTRIES = 10_000
"""Conversations remembered at most (the least recently used one is forgotten first)."""
MAX_KEY_LENGTH = 256

Clock = Callable[[], float]


def check_key(key: Any) -> str:
    """``key`` if it is a usable conversation key (a non-empty string of at most 256
    characters), else :class:`ConfigError` saying what is wrong."""
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(f"a conversation key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ConfigError(f"a conversation key may be at most {MAX_KEY_LENGTH} characters long")
    return key


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _check_bounds(ttl: float, max_entries: int) -> None:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ConfigError(f"conversation ttl must be a number of seconds > 0, got {ttl!r}")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise ConfigError(
            f"conversation max_entries must be a whole number >= 1, got {max_entries!r}"
        )


class ConversationStore(Protocol):
    """Where conversations' models are kept. ``get`` and ``set`` both count as a turn: they make
    the conversation the most recently used and restart its ``ttl``."""

    ttl: float
    max_entries: int

    def get(self, key: str) -> str | None:
        """The model the conversation sticks to, or None (new, expired or forgotten)."""
        ...

    def set(self, key: str, model: str) -> None:
        """Stick the conversation to ``model`` (evicting the least recently used beyond the
        bound)."""
        ...

    def __len__(self) -> int:
        """How many live conversations are kept."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- memory


class MemoryConversations:
    """Conversations in this process's memory (an LRU with expiry). Thread-safe."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock = time.monotonic,
    ) -> None:
        _check_bounds(ttl, max_entries)
        self.ttl, self.max_entries, self.clock = float(ttl), max_entries, clock
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryConversations(ttl={self.ttl:g}, max_entries={self.max_entries})"

    def get(self, key: str) -> str | None:
        h, now = _digest(key), self.clock()
        with self._lock:
            item = self._items.get(h)
            if item is None:
                return None
            if now - item[1] > self.ttl:
                del self._items[h]
                return None
            self._items[h] = (item[0], now)
            self._items.move_to_end(h)
            return item[0]

    def set(self, key: str, model: str) -> None:
        h, now = _digest(key), self.clock()
        with self._lock:
            self._items[h] = (model, now)
            self._items.move_to_end(h)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        now = self.clock()
        with self._lock:
            return sum(1 for _, t in self._items.values() if now - t <= self.ttl)

    def close(self) -> None:
        with self._lock:
            self._items.clear()


# --------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    touched REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_touched ON conversations (touched);
"""


class SQLiteConversations:
    """Conversations in a table of an SQLite file (created if missing), shared by every process
    that opens the file. Times are wall-clock seconds (``clock``), as all processes share them."""

    def __init__(
        self,
        path: str | Path,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock = time.time,
        timeout: float = 30.0,
    ) -> None:
        _check_bounds(ttl, max_entries)
        self.path = Path(path)
        self.ttl, self.max_entries, self.clock = float(ttl), max_entries, clock
        self.file = SQLiteFile(self.path, _SCHEMA, timeout=timeout)

    def __repr__(self) -> str:
        return (
            f"SQLiteConversations({str(self.path)!r}, ttl={self.ttl:g}, "
            f"max_entries={self.max_entries})"
        )

    def _write(self, sql: str, *params: Any) -> list[Any]:
        """Run statements in one write transaction; returns the first statement's rows."""
        with self.file.transaction() as db:
            rows = db.execute(sql, params).fetchall()
            self._prune(db)
        return rows

    def _prune(self, db: sqlite3.Connection) -> None:
        """Drop expired conversations and the least recently used beyond the bound."""
        db.execute("DELETE FROM conversations WHERE touched < ?", (self.clock() - self.ttl,))
        db.execute(
            "DELETE FROM conversations WHERE key IN (SELECT key FROM conversations "
            "ORDER BY touched DESC LIMIT -1 OFFSET ?)",
            (self.max_entries,),
        )

    def get(self, key: str) -> str | None:
        now = self.clock()
        rows = self._write(
            "UPDATE conversations SET touched = ? WHERE key = ? AND touched >= ? RETURNING model",
            now,
            _digest(key),
            now - self.ttl,
        )
        return str(rows[0][0]) if rows else None

    def set(self, key: str, model: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO conversations (key, model, touched) VALUES (?, ?, ?)",
            _digest(key),
            model,
            self.clock(),
        )

    def __len__(self) -> int:
        ((n,),) = self.file.read(
            "SELECT COUNT(*) FROM conversations WHERE touched >= ?", (self.clock() - self.ttl,)
        )
        return int(n)

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------- Redis

_GET_SCRIPT = """
local lru, models = KEYS[1], KEYS[2]
local h, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local touched = redis.call('ZSCORE', lru, h)
if not touched then return false end
if tonumber(touched) < now - ttl then
    redis.call('ZREM', lru, h)
    redis.call('HDEL', models, h)
    return false
end
redis.call('ZADD', lru, now, h)
return redis.call('HGET', models, h)
"""

_SET_SCRIPT = """
local lru, models = KEYS[1], KEYS[2]
local h, model, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZADD', lru, now, h)
redis.call('HSET', models, h, model)
local old = redis.call('ZRANGEBYSCORE', lru, '-inf', '(' .. (now - ttl))
local n = redis.call('ZCARD', lru) - #old
if n > cap then
    local extra = redis.call('ZRANGEBYSCORE', lru, now - ttl, '+inf', 'LIMIT', 0, n - cap)
    for _, k in ipairs(extra) do table.insert(old, k) end
end
for _, k in ipairs(old) do
    redis.call('ZREM', lru, k)
    redis.call('HDEL', models, k)
end
return #old
"""


class RedisConversations:
    """Conversations in Redis (``url`` like ``redis://host:6379/0``, or a ready ``client``),
    under two keys starting with ``prefix``: a sorted set of last-turn times and a hash of models.
    Times are wall-clock seconds (``clock``)."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "avengers:conversations:",
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock = time.time,
        client: Any = None,
        timeout: float = 5.0,
    ) -> None:
        _check_bounds(ttl, max_entries)
        self.url, self.prefix = url, prefix
        self.ttl, self.max_entries, self.clock = float(ttl), max_entries, clock
        self._redis = client if client is not None else redis_client(url, timeout)
        self._keys = [prefix + "lru", prefix + "models"]
        self._get = self._redis.register_script(_GET_SCRIPT)
        self._set = self._redis.register_script(_SET_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisConversations({self.url!r}, prefix={self.prefix!r}, ttl={self.ttl:g})"

    def get(self, key: str) -> str | None:
        out = self._get(keys=self._keys, args=[_digest(key), repr(self.clock()), repr(self.ttl)])
        if out is None:
            return None
        return out.decode() if isinstance(out, bytes) else str(out)

    def set(self, key: str, model: str) -> None:
        args: list[str | int] = [
            _digest(key),
            model,
            repr(self.clock()),
            repr(self.ttl),
            self.max_entries,
        ]
        self._set(keys=self._keys, args=args)

    def __len__(self) -> int:
        lo = self.clock() - self.ttl
        return int(self._redis.zcount(self._keys[0], lo, "+inf"))

    def close(self) -> None:
        pass  # the connection may be shared (see conversations_for); its owner closes it


def conversations_for(
    store: FeedbackStore | None,
    *,
    ttl: float = DEFAULT_TTL,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> ConversationStore:
    """The conversation store that goes with a feedback store: a table in the same SQLite file,
    keys under the same Redis prefix on the same connection, or (``store`` None, or a store of
    another kind) this process's memory."""
    if isinstance(store, SQLiteFeedbackStore):
        return SQLiteConversations(
            store.path, ttl=ttl, max_entries=max_entries, timeout=store.file.timeout
        )
    if isinstance(store, RedisFeedbackStore):
        return RedisConversations(
            store.url,
            prefix=store.prefix + "conversations:",
            ttl=ttl,
            max_entries=max_entries,
            client=store.client,
        )
    return MemoryConversations(ttl=ttl, max_entries=max_entries)
