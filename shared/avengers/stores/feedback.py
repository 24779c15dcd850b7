"""Feedback stores: where a server remembers which model answered which response, and the
ratings clients send back for them, so that a router can learn from them
(:meth:`avengers.Router.update`, ``avengers snapshot``).

Two stores share one interface (:class:`FeedbackStore`):

* :class:`SQLiteFeedbackStore`: one file, embedded, the default. WAL mode, ``synchronous=FULL``
  and a busy timeout, so several worker processes can write at once; a rating is committed before
  the call returns, so an acknowledged rating survives a crash or a kill of the process.
* :class:`RedisFeedbackStore`: for several hosts. A rating is checked and recorded by one Lua
  script (atomic). Durability is the Redis server's (run it with ``appendonly yes`` and
  ``appendfsync always`` to keep every acknowledged rating across a Redis crash).

Every store is bounded: a remembered response can be rated for ``retention`` seconds (default
7 days; an older id is unknown, 404 on the server), at most ``max_responses`` responses and
``max_ratings`` ratings are kept (oldest out first); :meth:`FeedbackStore.prune` enforces the
bounds and a server runs it in the background. A store that cannot be reached raises whatever
its client raises (``sqlite3.Error``, ``redis.RedisError``); the server keeps such failures off
the answer path with a :class:`~avengers.stores.guard.StoreGuard`.

What is stored, and only when the operator turns feedback on: per response id, the model that
answered and the query's nearest cluster (never the query text, nor its embedding); per rating,
the score in [0, 1] and optional cost. Every accepted rating is one observation: it is appended to
a log with an increasing sequence number, which is how a snapshot knows what it has applied. A
response can be rated once unless the store allows updates (then each new rating is one more
observation).

:func:`send_feedback` is the client side: one HTTP call to a server's ``/v1/feedback``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..exceptions import AvengersError, ConfigError

_log = logging.getLogger("avengers.store")

__all__ = [
    "AlreadyRatedError",
    "FeedbackError",
    "FeedbackStore",
    "MemoryFeedbackStore",
    "Rating",
    "RedisFeedbackStore",
    "SQLiteFeedbackStore",
    "UnknownResponseError",
    "apply_rating",
    "arate_on_server",
    "asend_feedback",
    "check_rating",
    "open_store",
    "rate_on_server",
    "rating_reply",
    "refused",
    "send_feedback",
]


class FeedbackError(AvengersError, ValueError):
    """A rating the store refuses: out of range, unknown response, or already rated."""


class UnknownResponseError(FeedbackError):
    """No response with this id was recorded (or it expired)."""


class AlreadyRatedError(FeedbackError):
    """This response was rated already and the store does not allow updates."""


@dataclass(frozen=True)
class Rating:
    """One accepted rating, as the log holds it: the ``seq``-th observation."""

    seq: int
    response_id: str | None
    """None for feedback given as query, model and score rather than for a response."""
    model: str
    cluster: int
    score: float
    cost: float | None = None


MAX_RATING_COST = 1e12
"""The largest cost a rating may carry (per call, in the router's cost units). Larger finite
numbers (``1e308``) would overflow the router's cost sums to infinity and poison every estimate
of that model."""


def check_rating(score: Any, cost: Any = None) -> tuple[float, float | None]:
    """``score`` (a number in [0, 1]) and ``cost`` (None or a finite number in [0,
    :data:`MAX_RATING_COST`]) as floats, or :class:`FeedbackError` saying what is wrong."""
    if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score):
        raise FeedbackError(f"score must be a number in [0, 1], got {score!r}")
    if not 0.0 <= score <= 1.0:
        raise FeedbackError(f"score must be in [0, 1], got {score}")
    if cost is not None and (
        isinstance(cost, bool)
        or not isinstance(cost, (int, float))
        or not math.isfinite(cost)
        or cost < 0
    ):
        raise FeedbackError(f"cost must be a finite number >= 0, got {cost!r}")
    if cost is not None and cost > MAX_RATING_COST:
        raise FeedbackError(f"cost must be at most {MAX_RATING_COST:g} per call, got {cost!r}")
    return float(score), None if cost is None else float(cost)


class FeedbackStore(Protocol):
    """What the server and ``avengers snapshot`` need from a store."""

    allow_updates: bool

    def remember(self, response_id: str, model: str, cluster: int) -> None:
        """Record that ``model`` answered response ``response_id`` for a query in ``cluster``."""
        ...

    def rate(self, response_id: str, score: float, cost: float | None = None) -> Rating:
        """Accept a rating for a remembered response (committed before returning), or raise
        :class:`UnknownResponseError` / :class:`AlreadyRatedError` / :class:`FeedbackError`."""
        ...

    def add(self, model: str, cluster: int, score: float, cost: float | None = None) -> Rating:
        """Accept a rating that refers to no response (query, model and score given directly)."""
        ...

    def ratings(self, after: int = 0) -> list[Rating]:
        """Every accepted rating with a sequence number above ``after``, in order (the log is
        bounded: the oldest ratings beyond the store's ``max_ratings`` are gone)."""
        ...

    def ping(self) -> None:
        """Return if the store can be written now, else raise (what ``/ready`` checks)."""
        ...

    def prune(self, older_than: float | None = None) -> int:
        """Enforce the retention and the size bounds now; how many entries were removed."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- memory


class MemoryFeedbackStore:
    """Feedback in this process's memory: the last ``max_responses`` answered responses and the
    last ``max_ratings`` ratings (the :class:`~avengers.Answerer`'s default, so that in-process
    answers can be rated; nothing is written anywhere). Thread-safe."""

    def __init__(
        self, *, allow_updates: bool = False, max_responses: int = 10_000, max_ratings: int = 10_000
    ) -> None:
        self.allow_updates = allow_updates
        self.max_responses, self.max_ratings = max_responses, max_ratings
        self._responses: dict[str, tuple[str, int, int]] = {}
        self._log: list[Rating] = []
        self._seq = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryFeedbackStore(max_responses={self.max_responses})"

    def remember(self, response_id: str, model: str, cluster: int) -> None:
        with self._lock:
            self._responses.pop(response_id, None)
            self._responses[response_id] = (model, int(cluster), 0)
            while len(self._responses) > self.max_responses:
                del self._responses[next(iter(self._responses))]

    def _append(self, rid: str | None, model: str, cluster: int, score: float, c: Any) -> Rating:
        self._seq += 1
        rating = Rating(self._seq, rid, model, int(cluster), score, c)
        self._log.append(rating)
        del self._log[: max(0, len(self._log) - self.max_ratings)]
        return rating

    def rate(self, response_id: str, score: float, cost: float | None = None) -> Rating:
        score, cost = check_rating(score, cost)
        with self._lock:
            row = self._responses.get(response_id)
            if row is None:
                raise UnknownResponseError(f"no response with id {response_id!r}")
            model, cluster, n = row
            if n > 0 and not self.allow_updates:
                raise AlreadyRatedError(f"response {response_id!r} was rated already")
            self._responses[response_id] = (model, cluster, n + 1)
            return self._append(response_id, model, cluster, score, cost)

    def add(self, model: str, cluster: int, score: float, cost: float | None = None) -> Rating:
        score, cost = check_rating(score, cost)
        with self._lock:
            return self._append(None, model, cluster, score, cost)

    def ratings(self, after: int = 0) -> list[Rating]:
        with self._lock:
            return [r for r in self._log if r.seq > after]

    def ping(self) -> None:
        pass

    def prune(self, older_than: float | None = None) -> int:
        return 0  # bounded at every call already

    def close(self) -> None:
        pass


def apply_rating(router: Any, rating: Rating, lock: threading.Lock | None = None) -> bool:
    """Count an accepted rating into an in-memory :class:`~avengers.Router` (its cost too when
    the router keeps costs). Returns False, changing nothing, for a model the router does not
    know (any more): the store keeps the rating for a later snapshot."""
    with lock if lock is not None else contextlib.nullcontext():
        if rating.model not in router.models_:
            return False
        cost = rating.cost if router.cost_sums_ is not None else None
        router.update(
            models=[rating.model],
            scores=[rating.score],
            costs=None if cost is None else [cost],
            clusters=[rating.cluster],
        )
    return True


# --------------------------------------------------------------------------- retention

DEFAULT_RETENTION = 7 * 24 * 3600.0
"""Seconds a remembered response can be rated (7 days); older ids answer 404."""
DEFAULT_MAX_RESPONSES = 1_000_000
"""Remembered responses kept at most (the oldest are forgotten first)."""
DEFAULT_MAX_RATINGS = 1_000_000
"""Ratings kept at most in the log (the oldest are dropped first; apply them with
``avengers snapshot`` well before)."""


def _check_retention(retention: float | None, *bounds: int | None) -> None:
    if retention is not None and (
        isinstance(retention, bool) or not isinstance(retention, (int, float)) or not retention > 0
    ):
        raise ConfigError(f"retention must be a number of seconds > 0 (or None), got {retention!r}")
    for b in bounds:
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ConfigError(f"a store's size bound must be a whole number >= 1, got {b!r}")


# --------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    cluster INTEGER NOT NULL,
    created REAL NOT NULL,
    n_ratings INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created);
CREATE TABLE IF NOT EXISTS ratings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    response_id TEXT,
    model TEXT NOT NULL,
    cluster INTEGER NOT NULL,
    score REAL NOT NULL,
    cost REAL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY,
    checked REAL NOT NULL
);
"""


class SQLiteFile:
    """One connection to an SQLite file (WAL, ``synchronous=FULL``, a busy timeout of
    ``timeout`` seconds) shared by a store's threads. A connection that fails (disk full,
    read-only file, I/O error) is closed and opened again by the next call, so the store
    resumes by itself once the file is usable again."""

    def __init__(self, path: str | Path, schema: str, *, timeout: float) -> None:
        self.path, self.schema, self.timeout = Path(path), schema, float(timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            with self.transaction():
                pass  # opens the file and creates the tables now
        except sqlite3.OperationalError as e:  # read-only, full, locked: retried at each call
            _log.warning("SQLite store %s cannot be written now (%s)", self.path.name, e)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(
                str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
                db.execute("BEGIN IMMEDIATE")
                for statement in self.schema.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _drop(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken before reading, so check-then-write is atomic across
        processes), committed before the block's result is returned."""
        with self.lock:
            try:
                db = self._connect()
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                self._drop()
                raise
            try:
                yield db
                db.execute("COMMIT")
            except BaseException as e:
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    self._drop()
                if isinstance(e, sqlite3.Error) and not _busy(e):
                    self._drop()  # an I/O error, a full disk, a read-only file: start afresh
                raise

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self.lock:
            try:
                return self._connect().execute(sql, params).fetchall()
            except sqlite3.Error as e:
                if not _busy(e):
                    self._drop()
                raise

    def close(self) -> None:
        with self.lock:
            self._drop()


def _busy(e: sqlite3.Error) -> bool:
    return "locked" in str(e) or "busy" in str(e)


class SQLiteFeedbackStore:
    """A feedback store in one SQLite file (created if missing). Safe to share between threads
    and between processes (each opens its own). Remembered responses can be rated for
    ``retention`` seconds (None: no limit), at most ``max_responses`` are kept and the log holds
    at most ``max_ratings`` ratings; :meth:`prune` enforces the bounds (the server runs it in the
    background), and an expired id is unknown at once. ``timeout``: seconds a call waits for a
    lock held by another process before it fails."""

    def __init__(
        self,
        path: str | Path,
        *,
        allow_updates: bool = False,
        timeout: float = 30.0,
        retention: float | None = DEFAULT_RETENTION,
        max_responses: int | None = DEFAULT_MAX_RESPONSES,
        max_ratings: int | None = DEFAULT_MAX_RATINGS,
    ) -> None:
        _check_retention(retention, max_responses, max_ratings)
        self.path = Path(path)
        self.allow_updates = allow_updates
        self.retention, self.max_responses, self.max_ratings = retention, max_responses, max_ratings
        self.file = SQLiteFile(self.path, _SCHEMA, timeout=timeout)

    def __repr__(self) -> str:
        return f"SQLiteFeedbackStore({str(self.path)!r}, allow_updates={self.allow_updates})"

    def _transaction(self) -> Any:
        return self.file.transaction()

    def _oldest(self) -> float:
        return -math.inf if self.retention is None else time.time() - self.retention

    def remember(self, response_id: str, model: str, cluster: int) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses (id, model, cluster, created) VALUES (?, ?, ?, ?)",
                (response_id, model, int(cluster), time.time()),
            )

    def rate(self, response_id: str, score: float, cost: float | None = None) -> Rating:
        score, cost = check_rating(score, cost)
        with self._transaction() as db:
            row = db.execute(
                "SELECT model, cluster, n_ratings FROM responses WHERE id = ? AND created >= ?",
                (response_id, self._oldest()),
            ).fetchone()
            if row is None:
                raise UnknownResponseError(f"no response with id {response_id!r} (or it expired)")
            model, cluster, n = row
            if n > 0 and not self.allow_updates:
                raise AlreadyRatedError(f"response {response_id!r} was rated already")
            db.execute(
                "UPDATE responses SET n_ratings = n_ratings + 1 WHERE id = ?", (response_id,)
            )
            seq = self._log(db, response_id, model, cluster, score, cost)
        return Rating(seq, response_id, model, int(cluster), score, cost)

    def add(self, model: str, cluster: int, score: float, cost: float | None = None) -> Rating:
        score, cost = check_rating(score, cost)
        with self._transaction() as db:
            seq = self._log(db, None, model, cluster, score, cost)
        return Rating(seq, None, model, int(cluster), score, cost)

    @staticmethod
    def _log(
        db: sqlite3.Connection,
        response_id: str | None,
        model: str,
        cluster: int,
        score: float,
        cost: float | None,
    ) -> int:
        cur = db.execute(
            "INSERT INTO ratings (response_id, model, cluster, score, cost, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (response_id, model, int(cluster), score, cost, time.time()),
        )
        return int(cur.lastrowid or 0)

    def ratings(self, after: int = 0) -> list[Rating]:
        rows = self.file.read(
            "SELECT seq, response_id, model, cluster, score, cost FROM ratings "
            "WHERE seq > ? ORDER BY seq",
            (int(after),),
        )
        return [Rating(int(s), r, m, int(c), float(x), y) for s, r, m, c, x, y in rows]

    def ping(self) -> None:
        """One small committed write: raises if the file cannot be written now (full disk,
        read-only file, a lock held by another process beyond the timeout)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO health (id, checked) VALUES (1, ?)", (time.time(),))

    def prune(self, older_than: float | None = None) -> int:
        """Forget responses remembered more than ``older_than`` seconds ago (default: the
        retention) and the oldest beyond ``max_responses``; drop the oldest ratings beyond
        ``max_ratings``. Returns how many rows were removed."""
        horizon = self.retention if older_than is None else older_than
        removed = 0
        with self._transaction() as db:
            if horizon is not None:
                cur = db.execute(
                    "DELETE FROM responses WHERE created < ?", (time.time() - horizon,)
                )
                removed += cur.rowcount
            if self.max_responses is not None:
                cur = db.execute(
                    "DELETE FROM responses WHERE id IN (SELECT id FROM responses "
                    "ORDER BY created DESC LIMIT -1 OFFSET ?)",
                    (self.max_responses,),
                )
                removed += cur.rowcount
            if self.max_ratings is not None:
                cur = db.execute(
                    "DELETE FROM ratings WHERE seq <= (SELECT MAX(seq) FROM ratings) - ?",
                    (self.max_ratings,),
                )
                removed += cur.rowcount
        return int(removed)

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------- Redis

_RATE_SCRIPT = """
local key, seqkey, logkey = KEYS[1], KEYS[2], KEYS[3]
local rid, score, cost, allow = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local model = redis.call('HGET', key, 'model')
local ts = ARGV[5]
if not model then
    if rid ~= '' then return {-1} end
    model = ARGV[6]
end
local cluster
if rid ~= '' then
    local n = tonumber(redis.call('HGET', key, 'n_ratings') or '0')
    if n > 0 and allow == '0' then return {-2} end
    redis.call('HINCRBY', key, 'n_ratings', 1)
    cluster = redis.call('HGET', key, 'cluster')
else
    cluster = ARGV[7]
end
local seq = redis.call('INCR', seqkey)
local entry = cjson.encode({seq = seq, id = rid, model = model, cluster = tonumber(cluster),
                            score = tonumber(score), cost = cost, t = ts})
redis.call('ZADD', logkey, seq, entry)
return {seq, model, cluster}
"""


def redis_client(url: str, timeout: float) -> Any:
    """A Redis client whose every call is bounded by ``timeout`` seconds (connecting and each
    reply) and never retried by the client itself (the caller decides what a failure means)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class RedisFeedbackStore:
    """A feedback store in Redis (``url`` like ``redis://host:6379/0``), under keys starting with
    ``prefix``. Remembered responses expire after ``retention`` seconds (Redis TTL; None: never),
    at most ``max_responses`` are kept (an index by time, trimmed by :meth:`prune`), and the log
    keeps at most ``max_ratings`` ratings. Every call is bounded by ``timeout`` seconds."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "avengers:feedback:",
        allow_updates: bool = False,
        ttl: float | None = None,
        retention: float | None = DEFAULT_RETENTION,
        max_responses: int | None = DEFAULT_MAX_RESPONSES,
        max_ratings: int | None = DEFAULT_MAX_RATINGS,
        timeout: float = 5.0,
        client: Any = None,
    ) -> None:
        if ttl is not None:  # the older name of the retention
            retention = ttl
        _check_retention(retention, max_responses, max_ratings)
        self.url = url
        self.prefix = prefix
        self.allow_updates = allow_updates
        self.retention, self.max_responses, self.max_ratings = retention, max_responses, max_ratings
        self._redis = client if client is not None else redis_client(url, timeout)
        self._rate = self._redis.register_script(_RATE_SCRIPT)

    @property
    def ttl(self) -> float | None:
        """The retention (its older name)."""
        return self.retention

    def __repr__(self) -> str:
        return f"RedisFeedbackStore({self.url!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Any:
        """The Redis connection (shared with the conversation store, see
        :func:`avengers.stores.conversations.conversations_for`)."""
        return self._redis

    def _key(self, response_id: str) -> str:
        return f"{self.prefix}response:{response_id}"

    def remember(self, response_id: str, model: str, cluster: int) -> None:
        key = self._key(response_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping={"model": model, "cluster": int(cluster), "n_ratings": 0})
        if self.retention:
            pipe.expire(key, max(1, math.ceil(self.retention)))
        pipe.zadd(self.prefix + "responses", {response_id: time.time()})
        pipe.execute()

    def _run(
        self, response_id: str, score: float, cost: float | None, model: str, cluster: int
    ) -> Rating:
        key = self._key(response_id) if response_id else self.prefix + "none"
        out = self._rate(
            keys=[key, self.prefix + "seq", self.prefix + "log"],
            args=[response_id, repr(score), "" if cost is None else repr(cost),
                  "1" if self.allow_updates else "0", repr(time.time()), model, int(cluster)],
        )  # fmt: skip
        seq = int(out[0])
        if seq == -1:
            raise UnknownResponseError(f"no response with id {response_id!r} (or it expired)")
        if seq == -2:
            raise AlreadyRatedError(f"response {response_id!r} was rated already")
        m = out[1].decode() if isinstance(out[1], bytes) else str(out[1])
        return Rating(seq, response_id or None, m, int(out[2]), score, cost)

    def rate(self, response_id: str, score: float, cost: float | None = None) -> Rating:
        score, cost = check_rating(score, cost)
        if not response_id:
            raise UnknownResponseError("empty response id")
        return self._run(response_id, score, cost, "", 0)

    def add(self, model: str, cluster: int, score: float, cost: float | None = None) -> Rating:
        score, cost = check_rating(score, cost)
        return self._run("", score, cost, model, cluster)

    def ratings(self, after: int = 0) -> list[Rating]:
        out = []
        entries: list[Any] = self._redis.zrangebyscore(
            self.prefix + "log", f"({int(after)}", "+inf"
        )
        for raw in entries:
            e = json.loads(raw)
            cost = float(e["cost"]) if e.get("cost") not in (None, "") else None
            rid = e.get("id") or None
            out.append(
                Rating(int(e["seq"]), rid, e["model"], int(e["cluster"]), float(e["score"]), cost)
            )
        return out

    def ping(self) -> None:
        """Raises if Redis does not answer now."""
        self._redis.ping()

    def prune(self, older_than: float | None = None) -> int:
        """Drop the index entries of expired responses (their keys expire by TTL), forget the
        oldest responses beyond ``max_responses`` and the oldest ratings beyond
        ``max_ratings``. Returns how many entries were removed."""
        horizon = self.retention if older_than is None else older_than
        index = self.prefix + "responses"
        removed = 0
        if horizon is not None:
            old = self._redis.zrangebyscore(index, "-inf", f"({time.time() - horizon!r}")
            if old:
                self._drop_responses(old)
                removed += len(old)
        if self.max_responses is not None:
            extra = int(self._redis.zcard(index)) - self.max_responses
            if extra > 0:
                ids = self._redis.zrange(index, 0, extra - 1)
                self._drop_responses(ids)
                removed += len(ids)
        if self.max_ratings is not None:
            removed += int(
                self._redis.zremrangebyrank(self.prefix + "log", 0, -self.max_ratings - 1)
            )
        return removed

    def _drop_responses(self, ids: list[Any]) -> None:
        names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(*(self._key(n) for n in names))
        pipe.zrem(self.prefix + "responses", *names)
        pipe.execute()

    def close(self) -> None:
        self._redis.close()


def open_store(
    spec: str,
    *,
    allow_updates: bool = False,
    timeout: float | None = None,
    retention: float | None = DEFAULT_RETENTION,
    max_responses: int | None = DEFAULT_MAX_RESPONSES,
    max_ratings: int | None = DEFAULT_MAX_RATINGS,
) -> FeedbackStore:
    """A store from a string: ``redis://...`` (or ``rediss://``) for Redis, anything else is the
    path of a SQLite file (``sqlite:///path`` also works). ``timeout``: seconds a store call may
    wait (Redis socket, SQLite lock; default 5 and 30); ``retention``, ``max_responses`` and
    ``max_ratings`` bound what is kept (see :class:`SQLiteFeedbackStore`)."""
    bounds: dict[str, Any] = {
        "allow_updates": allow_updates, "retention": retention,
        "max_responses": max_responses, "max_ratings": max_ratings,
    }  # fmt: skip
    if timeout is not None:
        bounds["timeout"] = timeout
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisFeedbackStore(spec, **bounds)
    if spec.startswith("sqlite:///"):
        spec = spec[len("sqlite:///") - 1 :]
    return SQLiteFeedbackStore(spec, **bounds)


def _feedback_request(
    base_url: str, response_id: str, score: float, cost: float | None, api_key: str | None
) -> tuple[str, dict[str, Any], dict[str, str]]:
    url = base_url.rstrip("/")
    url = url + ("/feedback" if url.endswith("/v1") else "/v1/feedback")
    body: dict[str, Any] = {"id": response_id, "score": score}
    if cost is not None:
        body["cost"] = cost
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    return url, body, headers


def send_feedback(
    base_url: str,
    response_id: str,
    score: float,
    *,
    cost: float | None = None,
    api_key: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Rate a response of an avengers server (``base_url`` like ``http://host:8000/v1``, as given
    to an OpenAI client): POST its id and a score in [0, 1] to ``/v1/feedback``. Returns the
    server's JSON reply. Raises :class:`FeedbackError` when the server refuses the rating (any
    4xx or 5xx, with its status and message), cannot be reached or does not answer in time."""
    import httpx

    url, body, headers = _feedback_request(base_url, response_id, score, cost, api_key)
    try:
        r = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise _unsent(url, e) from None
    return _feedback_reply(r)


async def asend_feedback(
    base_url: str,
    response_id: str,
    score: float,
    *,
    cost: float | None = None,
    api_key: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Async twin of :func:`send_feedback`."""
    import httpx

    url, body, headers = _feedback_request(base_url, response_id, score, cost, api_key)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            r = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as e:
        raise _unsent(url, e) from None
    return _feedback_reply(r)


def _unsent(url: str, error: Exception) -> FeedbackError:
    """The error for a rating that never reached the server (refused connection, timeout)."""
    return FeedbackError(f"could not send the rating to {url}: {type(error).__name__}: {error}")


def _feedback_reply(r: Any) -> dict[str, Any]:
    """The server's reply to a rating (an ``httpx.Response``), a refusal raised as
    :class:`FeedbackError`."""
    import httpx

    try:
        r.raise_for_status()
    except httpx.HTTPStatusError as e:
        raise refused(e) from None
    try:
        out = r.json()
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise FeedbackError(
            f"the server's reply to the rating is not a JSON object: {r.text[:200]}"
        )
    return out


def rating_reply(rating: Rating) -> dict[str, Any]:
    """An accepted rating in the form of the server's ``/v1/feedback`` reply."""
    return {
        "object": "feedback",
        "id": rating.response_id,
        "seq": rating.seq,
        "model": rating.model,
        "cluster": rating.cluster,
        "score": rating.score,
        "applied": True,
    }


def client_server(
    client: Any, api_key: str | None, *, base_attr: str, key_attr: str, expected: str
) -> tuple[str, str | None]:
    """The base URL and API key to send feedback with, for the adapters' helpers: ``client`` is
    the server's base URL (used as is, with ``api_key``) or an OpenAI-compatible client object
    whose ``base_attr`` is the server's URL and ``key_attr`` its key (a plain or secret string),
    which ``api_key`` overrides. Anything else raises :class:`~avengers.ConfigError` naming
    ``expected`` (what the caller should have passed)."""
    if isinstance(client, str):
        return client, api_key
    base = getattr(client, base_attr, None)
    if not base:
        raise ConfigError(
            f"cannot send feedback through a {type(client).__name__}: give {expected}, "
            "or the server's base URL"
        )
    if api_key is None:
        key: Any = getattr(client, key_attr, None)
        if hasattr(key, "get_secret_value"):
            key = key.get_secret_value()
        api_key = str(key) if key else None
    return str(base), api_key


def rate_on_server(
    base_url: str,
    response_id: str,
    score: float,
    *,
    cost: float | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """:func:`send_feedback`, with a refusal raised as a :class:`FeedbackError` carrying the
    server's status and message (what the adapters' feedback helpers want)."""
    import httpx

    try:
        return send_feedback(base_url, response_id, score, cost=cost, api_key=api_key)
    except httpx.HTTPStatusError as e:
        raise refused(e) from None


async def arate_on_server(
    base_url: str,
    response_id: str,
    score: float,
    *,
    cost: float | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Async twin of :func:`rate_on_server`."""
    import httpx

    try:
        return await asend_feedback(base_url, response_id, score, cost=cost, api_key=api_key)
    except httpx.HTTPStatusError as e:
        raise refused(e) from None


def refused(error: Exception) -> FeedbackError:
    """A :class:`FeedbackError` for a server's refusal (an ``httpx.HTTPStatusError``), carrying
    the server's own message and status."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    try:
        message = response.json()["error"]["message"] if response is not None else str(error)
    except Exception:
        message = str(error)
    return FeedbackError(f"the server refused the rating ({status}): {message}")
