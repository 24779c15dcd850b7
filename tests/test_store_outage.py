"""Issue 26 part A: an answer never depends on the store.

A real ``redis-server`` stopped, stalled (SIGSTOP) and restarted; a real SQLite file locked by
another process, on a full disk and on a read-only file system (a tmpfs, when the tests may
mount one); retention and size bounds of the feedback stores."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from avengers import Answerer, Endpoint, Router
from avengers.stores.feedback import (
    RedisFeedbackStore,
    SQLiteFeedbackStore,
    UnknownResponseError,
)
from fake_openai_server import FakeModel, FakeOpenAIServer
from test_serve import free_port
from waiting import wait_until

MATH_Q = "What is 17 times 23?"
COOK_Q = "How long should I boil an egg for a runny yolk?"


class RedisProcess:
    """A real redis-server on a free port that a test can stop, kill, stall and restart (same
    port, same data folder, append-only file: what was acknowledged survives a restart)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server binary not found")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        client = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.RedisError:
                time.sleep(0.05)
        client.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
            self.proc.wait(10)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    r = RedisProcess(tmp_path / "redis-data")
    r.folder.mkdir()
    r.start()
    try:
        yield r
    finally:
        r.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    up = FakeOpenAIServer(
        {"math": FakeModel(answers=["391"]), "chef": FakeModel(answers=["6 minutes"]),
         "coder": FakeModel(answers=["def f(): pass"])}
    ).start()  # fmt: skip
    yield up
    up.stop()


def _endpoints(up: FakeOpenAIServer) -> dict[str, Endpoint]:
    return {
        n: Endpoint(n, up.base_url, model=m, max_retries=0)
        for n, m in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))
    }


@contextlib.contextmanager
def served(toy_router: Router, up: FakeOpenAIServer, store: Any, **kw: Any) -> Iterator[Any]:
    from avengers.server import create_app
    from fastapi.testclient import TestClient

    router = Router.from_state(*toy_router.state(), embedder=toy_router.get_embedder())
    kw.setdefault("store_timeout", 0.5)
    app = create_app(
        Answerer(router, _endpoints(up), strategy="direct"), feedback_store=store,
        conversations="store", **kw,
    )  # fmt: skip
    with TestClient(app) as c:
        yield c


def chat(c: Any, q: str = MATH_Q, **extra: Any) -> Any:
    return c.post(
        "/v1/chat/completions",
        json={"model": "avengers", "messages": [{"role": "user", "content": q}], **extra},
    )


def stream_chat(c: Any, q: str = MATH_Q) -> tuple[Any, list[dict[str, Any]]]:
    body = {"model": "avengers", "stream": True, "messages": [{"role": "user", "content": q}]}
    with c.stream("POST", "/v1/chat/completions", json=body) as s:
        lines = [line for line in s.iter_lines() if line.startswith("data: ")]
        headers = s.headers
        status = s.status_code
    assert status == 200 and lines[-1] == "data: [DONE]"
    return headers, [json.loads(x[6:]) for x in lines[:-1]]


def metric(c: Any, name: str) -> float:
    total = 0.0
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def assert_served_degraded(c: Any, what: str = "feedback") -> Any:
    r = chat(c)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "391"
    assert what in r.json()["avengers"]["unavailable"]
    assert r.headers[f"x-avengers-{what}"] == "unavailable"
    return r


def assert_feedback_503(c: Any, rid: str) -> None:
    r = c.post("/v1/feedback", json={"id": rid, "score": 1.0})
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1
    err = r.json()["error"]
    assert err["code"] == "store_unavailable" and err["type"] == "server_error"
    assert set(err) >= {"message", "type", "param", "code"}


# --------------------------------------------------------------------------- 1: Redis down


def test_redis_down_answers_are_served_and_everything_resumes(
    toy_router: Router, upstream: FakeOpenAIServer, redis_proc: RedisProcess, caplog: Any
) -> None:
    store = RedisFeedbackStore(redis_proc.url, prefix="outage:", timeout=0.5)
    with served(toy_router, upstream, store) as c:
        ok = chat(c)
        assert ok.status_code == 200 and ok.json()["avengers"]["unavailable"] == []
        assert "x-avengers-feedback" not in ok.headers
        assert c.get("/ready").json()["store"]["state"] == "ok"

        redis_proc.stop()
        caplog.set_level(logging.WARNING, logger="avengers.store")
        caplog.clear()
        r = assert_served_degraded(c)  # plain
        headers, chunks = stream_chat(c)  # streamed
        assert "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks) == "391"
        assert "feedback" in chunks[-1]["avengers"]["unavailable"]
        assert headers["x-avengers-store"] == "degraded"
        conv = chat(c, COOK_Q, conversation="c-down")  # a conversation turn: routed afresh
        assert conv.status_code == 200 and conv.json()["model"] == "chef-model"
        assert {"conversation", "feedback"} <= set(conv.json()["avengers"]["unavailable"])
        assert any("routed afresh" in n for n in conv.json()["avengers"]["notes"])
        assert conv.headers["x-avengers-conversation"] == "unavailable"
        route = c.post("/v1/route", json={"query": COOK_Q, "conversation": "c-down"})
        assert route.status_code == 200 and route.json()["model"] == "chef-model"
        assert route.json()["conversation_store"] == "unavailable"
        plain_route = c.post("/v1/route", json={"query": COOK_Q})
        assert plain_route.status_code == 200 and "conversation_store" not in plain_route.json()
        assert_feedback_503(c, r.json()["id"])
        assert_feedback_503(c, ok.json()["id"])  # remembered before the outage: still 503
        ready = c.get("/ready")
        assert ready.status_code == 200 and ready.json()["store"]["state"] == "degraded"
        assert metric(c, "avengers_store_failures_total") >= 5
        assert metric(c, "avengers_store_up") == 0
        lines = [rec.getMessage() for rec in caplog.records if rec.name == "avengers.store"]
        assert lines and all("feedback store unavailable" in m for m in lines)
        # no user data in the log: whole phrases, as the store's address (a random port) may
        # hold any digits
        private = ("17 times", "times 23", "egg", "runny", "c-down", "chatcmpl")
        assert not any(w in m for m in lines for w in private), lines

        c.app.state.server.require_store = True  # the operator's --require-store
        assert c.get("/ready").status_code == 503
        c.app.state.server.require_store = False

        redis_proc.start()  # back: nothing to restart on the server's side
        back = chat(c)
        assert back.status_code == 200 and back.json()["avengers"]["unavailable"] == []
        assert c.post("/v1/feedback", json={"id": back.json()["id"], "score": 1}).status_code == 200
        assert c.post("/v1/feedback", json={"id": ok.json()["id"], "score": 0}).status_code == 200
        assert c.get("/ready").json()["store"]["state"] == "ok"
        assert metric(c, "avengers_store_up") == 1
        assert any("available again" in rec.getMessage() for rec in caplog.records)
        assert len(store.ratings()) == 2


# --------------------------------------------------------------------------- 2: Redis stalled


def test_stalled_redis_is_bounded_and_never_starves_routing(
    toy_router: Router, upstream: FakeOpenAIServer, redis_proc: RedisProcess
) -> None:
    store = RedisFeedbackStore(redis_proc.url, prefix="stall:", timeout=0.5)
    with served(toy_router, upstream, store, store_timeout=0.5) as c:
        rid = chat(c).json()["id"]
        redis_proc.pause()
        try:
            t0 = time.monotonic()
            assert_feedback_503(c, rid)
            assert time.monotonic() - t0 < 3.0  # the store timeout, not the client's 10 s+

            # 45 pending store calls (feedback) while routes without a conversation go on
            results: list[int] = []

            def rate() -> None:
                results.append(c.post("/v1/feedback", json={"id": rid, "score": 1}).status_code)

            threads = [threading.Thread(target=rate) for _ in range(45)]
            for t in threads:
                t.start()
            times = []
            for _ in range(10):
                t1 = time.monotonic()
                r = c.post("/v1/route", json={"query": MATH_Q})
                times.append(time.monotonic() - t1)
                assert r.status_code == 200 and r.json()["model"] == "math-model"
            for t in threads:
                t.join(30)
            guard = c.app.state.server.store_guard
            assert results == [503] * 45
            assert guard.failures["busy"] > 0  # the store's pool was full: failed fast
            assert max(times) < 2.0, times  # main: 4-12 s behind blocked store calls
            served_while_stalled = chat(c)
            assert served_while_stalled.status_code == 200
            assert "feedback" in served_while_stalled.json()["avengers"]["unavailable"]
            store_threads = [t.name for t in threading.enumerate() if "store" in t.name]
            assert len(store_threads) <= 4  # its own small pool, nothing else blocked
        finally:
            redis_proc.resume()
        time.sleep(1.0)  # the stalled calls time out on their sockets
        again = chat(c)
        assert again.json()["avengers"]["unavailable"] == []
        assert (
            c.post("/v1/feedback", json={"id": again.json()["id"], "score": 1}).status_code == 200
        )


# --------------------------------------------------------------------------- 3: SQLite


_LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def test_sqlite_locked_by_another_process(
    toy_router: Router, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "fb.db"
    store = SQLiteFeedbackStore(path, timeout=0.3)
    with served(toy_router, upstream, store, store_timeout=0.5) as c:
        rid = chat(c).json()["id"]
        locker = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            assert_served_degraded(c)
            assert_feedback_503(c, rid)
            assert c.get("/ready").json()["store"]["state"] == "degraded"
        finally:
            assert locker.stdin is not None
            locker.stdin.write("\n")
            locker.stdin.flush()
            locker.wait(10)
        assert c.post("/v1/feedback", json={"id": rid, "score": 1}).status_code == 200
        assert chat(c).json()["avengers"]["unavailable"] == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (needs root and mount rights; CI runs as root)."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    return filler


def test_sqlite_on_a_full_disk(
    toy_router: Router, upstream: FakeOpenAIServer, small_disk: Path
) -> None:
    store = SQLiteFeedbackStore(small_disk / "fb.db", timeout=0.3)
    with served(toy_router, upstream, store) as c:
        rid = chat(c).json()["id"]
        filler = fill(small_disk)
        statuses = [assert_served_degraded(c).status_code for _ in range(3)]
        assert statuses == [200] * 3
        assert_feedback_503(c, rid)
        assert c.get("/ready").json()["store"]["state"] == "degraded"
        filler.unlink()  # space again: the store resumes by itself
        assert c.post("/v1/feedback", json={"id": rid, "score": 1}).status_code == 200
        assert chat(c).json()["avengers"]["unavailable"] == []
        assert c.get("/ready").json()["store"]["state"] == "ok"
        assert [r.response_id for r in store.ratings()] == [rid]


def test_sqlite_on_a_read_only_file_system(
    toy_router: Router, upstream: FakeOpenAIServer, small_disk: Path
) -> None:
    """The file system is read-only when the server opens the store (it cannot be remounted
    read-only under an open writer): answers are served, feedback is refused, and once the file
    system is writable again the store resumes without a restart."""
    path = small_disk / "fb.db"
    SQLiteFeedbackStore(path).close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        store = SQLiteFeedbackStore(path, timeout=0.3)  # opens degraded, does not fail
        with served(toy_router, upstream, store) as c:
            rid = assert_served_degraded(c).json()["id"]
            assert_feedback_503(c, rid)
            assert c.get("/ready").json()["store"]["state"] == "degraded"
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
            back = chat(c).json()
            assert back["avengers"]["unavailable"] == []
            assert c.post("/v1/feedback", json={"id": back["id"], "score": 1}).status_code == 200
            assert c.get("/ready").json()["store"]["state"] == "ok"
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=False)


# --------------------------------------------------------------------------- 4: retention


def test_an_expired_response_id_answers_404(
    toy_router: Router, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    store = SQLiteFeedbackStore(tmp_path / "fb.db", retention=0.5)
    with served(toy_router, upstream, store) as c:
        old = chat(c).json()["id"]
        time.sleep(0.7)
        r = c.post("/v1/feedback", json={"id": old, "score": 1})
        assert r.status_code == 404 and r.json()["error"]["code"] == "response_not_found"
        fresh = chat(c).json()["id"]
        assert c.post("/v1/feedback", json={"id": fresh, "score": 1}).status_code == 200


def _count(path: Path, table: str) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_sqlite_store_bounds_are_enforced_in_the_background(
    toy_router: Router, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "fb.db"
    store = SQLiteFeedbackStore(path, retention=3600, max_responses=5, max_ratings=3)
    with served(toy_router, upstream, store, prune_interval=0.2) as c:
        ids = [chat(c, f"What is {i} times 3?").json()["id"] for i in range(9)]
        for rid in ids[-4:]:
            assert c.post("/v1/feedback", json={"id": rid, "score": 1}).status_code == 200
        wait_until(
            lambda: _count(path, "responses") <= 5 and _count(path, "ratings") <= 3,
            30,
            "the background pruning",
        )
        assert _count(path, "responses") == 5 and _count(path, "ratings") == 3
        # the oldest went first: the first ids are unknown, the ratings kept are the last ones
        r = c.post("/v1/feedback", json={"id": ids[0], "score": 1})
        assert r.status_code == 404
        assert [x.response_id for x in store.ratings()] == ids[-3:]


def test_sqlite_store_prunes_by_age(tmp_path: Path) -> None:
    store = SQLiteFeedbackStore(tmp_path / "fb.db", retention=0.3)
    store.remember("old", "a", 0)
    time.sleep(0.4)
    store.remember("new", "a", 0)
    with pytest.raises(UnknownResponseError):
        store.rate("old", 1.0)  # expired before any prune
    assert store.prune() == 1
    assert _count(tmp_path / "fb.db", "responses") == 1
    store.rate("new", 1.0)


def test_redis_store_keys_expire_and_are_bounded(redis_proc: RedisProcess) -> None:
    import redis

    store = RedisFeedbackStore(
        redis_proc.url, prefix="ret:", retention=1, max_responses=3, max_ratings=2
    )
    raw = redis.Redis(port=redis_proc.port)
    for i in range(5):
        store.remember(f"r{i}", "a", 0)
    assert 0 < raw.ttl("ret:response:r0") <= 1
    for i in (2, 3, 4):
        store.rate(f"r{i}", 0.5)
    assert store.prune() == 2 + 1  # two responses over the bound, one rating over its bound
    assert raw.exists("ret:response:r0") == 0 and raw.zcard("ret:responses") == 3
    assert [r.response_id for r in store.ratings()] == ["r3", "r4"]
    time.sleep(1.2)
    with pytest.raises(UnknownResponseError):
        store.rate("r4", 1.0)  # expired by its TTL
    assert store.prune() == 3 and raw.zcard("ret:responses") == 0
    raw.close()
    store.close()


def test_online_doc_retention_example_runs(tmp_path: Path, monkeypatch: Any) -> None:
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "online.md").read_text()
    (code,) = re.findall(r"```python retention\n(.*?)```", doc, flags=re.S)
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(code, "docs/online.md", "exec"), ns)
    assert ns["removed"] == 0 and ns["store"].retention == 3 * 24 * 3600
    assert (tmp_path / "feedback.db").exists()
