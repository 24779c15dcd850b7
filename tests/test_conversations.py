"""Conversation stickiness: the stores (memory, SQLite shared by processes, Redis), the
Answerer keeping a conversation on one model (and moving it when that model fails), and the
server's conversation field, header and route-only endpoint."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from avengers import Answerer, ConfigError, Endpoint, Router
from avengers.stores.conversations import (
    ConversationStore,
    MemoryConversations,
    RedisConversations,
    SQLiteConversations,
    conversations_for,
)
from avengers.stores.feedback import MemoryFeedbackStore, RedisFeedbackStore, SQLiteFeedbackStore
from fake_openai_server import FakeModel, FakeOpenAIServer
from test_online import redis_url  # noqa: F401  (the real redis-server fixture)
from waiting import answers, wait_until

MATH_Q = "What is 17 times 23?"
COOK_Q = "How long should I boil an egg for a runny yolk?"
CODE_Q = "Write a Python function that reverses a string."


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


_counter = iter(range(1_000_000))


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make(request, tmp_path) -> Callable[..., ConversationStore]:
    """A factory of conversation stores of one kind (sharing one database when not in memory)."""
    if request.param == "memory":
        return lambda **kw: MemoryConversations(**kw)
    if request.param == "sqlite":
        return lambda **kw: SQLiteConversations(tmp_path / "conv.db", **kw)
    url = request.getfixturevalue("redis_url")
    prefix = f"c{next(_counter)}:{time.time_ns()}:"
    return lambda **kw: RedisConversations(url, prefix=prefix, **kw)


def test_store_keeps_refreshes_and_expires(make) -> None:
    clock = Clock()
    store = make(ttl=10, clock=clock)
    assert store.get("c1") is None
    store.set("c1", "math-model")
    clock.now += 9
    assert store.get("c1") == "math-model"  # a turn restarts the ttl...
    clock.now += 9
    assert store.get("c1") == "math-model"
    store.set("c1", "chef-model")  # a failure moved the conversation
    assert store.get("c1") == "chef-model" and len(store) == 1
    clock.now += 10.5  # ...and an idle conversation expires
    assert store.get("c1") is None and len(store) == 0
    store.close()


def test_store_is_bounded_least_recently_used_first(make) -> None:
    clock = Clock()
    store = make(max_entries=3, clock=clock)
    for i in range(3):
        store.set(f"c{i}", f"m{i}")
        clock.now += 1
    assert store.get("c0") == "m0"  # c0 used again: c1 is now the least recently used
    clock.now += 1
    store.set("c3", "m3")
    assert len(store) == 3
    assert [store.get(f"c{i}") for i in range(4)] == ["m0", None, "m2", "m3"]
    store.close()


def test_bad_keys_and_bounds_are_clear_errors() -> None:
    from avengers.stores.conversations import check_key

    for bad in ("", "   ", 3, None, "x" * 257):
        with pytest.raises(ConfigError, match="conversation key"):
            check_key(bad)
    with pytest.raises(ConfigError, match="ttl"):
        MemoryConversations(ttl=0)
    with pytest.raises(ConfigError, match="max_entries"):
        MemoryConversations(max_entries=0)


def test_sqlite_keeps_digests_not_keys(tmp_path: Path) -> None:
    store = SQLiteConversations(tmp_path / "c.db")
    store.set("alice-secret-chat", "math-model")
    rows = sqlite3.connect(tmp_path / "c.db").execute("SELECT key, model FROM conversations")
    ((key, model),) = rows.fetchall()
    assert model == "math-model" and "alice" not in key and len(key) == 64


def _stick_many(path: Path, worker: int, n: int, written: Any) -> None:
    store = SQLiteConversations(path, max_entries=1000)
    for i in range(n):
        store.set(f"w{worker}-{i}", f"m{worker}")
    written.wait(60)  # every worker has written all of its conversations
    for i in range(n):  # every worker sees every other worker's conversations
        for other in range(3):
            assert store.get(f"w{other}-{i}") == f"m{other}", (worker, other, i)
    store.close()


def test_sqlite_store_is_shared_by_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SQLiteFeedbackStore(path).close()  # the feedback store's file holds the conversations too
    ctx = multiprocessing.get_context("fork")
    written = ctx.Barrier(3)
    procs = [ctx.Process(target=_stick_many, args=(path, w, 40, written)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    mine = conversations_for(SQLiteFeedbackStore(path))
    assert isinstance(mine, SQLiteConversations) and len(mine) == 120
    assert mine.get("w2-39") == "m2" and mine.get("w0-0") == "m0"


def test_conversations_follow_the_feedback_store(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    assert isinstance(conversations_for(None), MemoryConversations)
    assert isinstance(conversations_for(MemoryFeedbackStore()), MemoryConversations)
    fb = RedisFeedbackStore(redis_url, prefix="fb-test:")
    conv = conversations_for(fb, ttl=5, max_entries=7)
    assert isinstance(conv, RedisConversations) and conv.prefix.startswith("fb-test:")
    assert (conv.ttl, conv.max_entries) == (5, 7)
    conv.set("k", "m")
    assert RedisConversations(redis_url, prefix=conv.prefix).get("k") == "m"  # another client


# --------------------------------------------------------------------------- answering


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math": FakeModel(answers=["391"]),
            "chef": FakeModel(answers=["Six minutes."]),
            "coder": FakeModel(answers=["def rev(s): return s[::-1]"]),
        }
    ).start()
    yield s
    s.stop()


def endpoints(up: FakeOpenAIServer, **kw: Any) -> dict[str, Endpoint]:
    return {
        n: Endpoint(n, up.base_url, model=mid, max_retries=0, timeout=5, **kw)
        for n, mid in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))
    }


def test_a_conversation_stays_on_its_first_model(
    toy_router: Router, upstream: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(upstream), strategy="direct")
    first = a.answer(MATH_Q, conversation="c1")
    assert first.model == "math-model" and not first.decision.sticky
    second = a.answer(COOK_Q, conversation="c1")
    assert second.model == "math-model" and second.decision.sticky
    assert second.decision.model == "math-model"
    assert "sticky: kept math-model" in second.decision.explain()
    assert "this query alone would pick chef-model" in second.decision.explain()
    assert second.account()["decision"]["sticky"] is True
    assert a.answer(COOK_Q).model == "chef-model"  # no key: routed on its own
    assert a.answer(COOK_Q, conversation="c2").model == "chef-model"  # another conversation
    # route-only sees the same: sticky for c1, and a new conversation sticks to its decision
    d = a.route(CODE_Q, conversation="c1")
    assert d.sticky and d.model == "math-model"
    kept = a.answer(CODE_Q, decision=d, conversation="c1")  # answering a sticky decision
    assert kept.model == "math-model" and kept.decision.sticky and not kept.notes
    assert a.route(CODE_Q, conversation="c3").model == "code-model"
    assert a.answer(MATH_Q, conversation="c3").model == "code-model"
    with pytest.raises(ConfigError, match="conversation key"):
        a.answer(MATH_Q, conversation="")


def test_failure_moves_the_conversation_to_the_fallback(
    toy_router: Router, upstream: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(upstream), strategy="direct")
    assert a.answer(MATH_Q, conversation="c1").model == "math-model"
    upstream.models["math"].fault = "500"
    moved = a.answer(MATH_Q, conversation="c1")
    assert moved.model != "math-model" and moved.fallback is not None
    assert any("conversation moved from math-model" in n for n in moved.notes)
    upstream.models["math"].fault = None  # back, but the conversation stays where it went
    later = a.answer(MATH_Q, conversation="c1")
    assert later.model == moved.model and later.decision.sticky


def test_streamed_turns_stick_too(toy_router: Router, upstream: FakeOpenAIServer) -> None:
    a = Answerer(toy_router, endpoints(upstream), strategy="direct")
    parts = list(a.stream(MATH_Q, conversation="s1"))
    assert parts[-1].result is not None and parts[-1].result.model == "math-model"
    last = list(a.stream(COOK_Q, conversation="s1"))[-1].result
    assert last is not None and last.model == "math-model" and last.decision.sticky


def test_an_expired_conversation_is_routed_afresh(
    toy_router: Router, upstream: FakeOpenAIServer
) -> None:
    clock = Clock()
    conv = MemoryConversations(ttl=60, clock=clock)
    a = Answerer(toy_router, endpoints(upstream), strategy="direct", conversations=conv)
    a.answer(MATH_Q, conversation="c1")
    clock.now += 30
    assert a.answer(COOK_Q, conversation="c1").model == "math-model"
    clock.now += 61
    fresh = a.answer(COOK_Q, conversation="c1")
    assert fresh.model == "chef-model" and not fresh.decision.sticky


def test_a_turn_its_model_cannot_serve_is_routed_afresh_and_the_conversation_stays(
    toy_router: Router, upstream: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(upstream), strategy="direct", adaptive=False)
    a.answer(MATH_Q, conversation="c1")
    # the toy router expects math-model to cost 1.0 and chef-model 0.5 per call
    capped = a.answer(COOK_Q, conversation="c1", max_cost=0.6)
    assert capped.model == "chef-model" and not capped.decision.sticky
    assert any("cannot serve this request" in n for n in capped.notes)
    assert a.answer(COOK_Q, conversation="c1").model == "math-model"


# --------------------------------------------------------------------------- the server


def _chat(c: Any, content: str, **kw: Any) -> Any:
    body = {"model": "avengers", "messages": [{"role": "user", "content": content}]}
    return c.post("/v1/chat/completions", json={**body, **kw.pop("json", {})}, **kw)


def test_server_conversations_by_field_header_and_route_only(
    toy_router: Router, upstream: FakeOpenAIServer
) -> None:
    from avengers.server import create_app
    from fastapi.testclient import TestClient

    app = create_app(Answerer(toy_router, endpoints(upstream), strategy="direct"))
    with TestClient(app) as c:
        r = _chat(c, MATH_Q, json={"conversation": "c1"})
        assert r.status_code == 200 and r.json()["model"] == "math-model"
        r = _chat(c, COOK_Q, headers={"X-Conversation-Id": "c1"})
        assert r.json()["model"] == "math-model" and r.headers["x-avengers-sticky"] == "1"
        assert r.json()["avengers"]["decision"]["sticky"] is True
        assert _chat(c, COOK_Q).json()["model"] == "chef-model"
        route = c.post("/v1/route", json={"messages": [{"role": "user", "content": CODE_Q}],
                                          "conversation": "c1"})  # fmt: skip
        assert route.status_code == 200, route.text
        body = route.json()
        assert body["sticky"] and body["model"] == "math-model"
        assert "sticky: kept math-model" in body["explanation"]
        fresh = c.post("/v1/route", json={"prompt": CODE_Q}).json()
        assert fresh["model"] == "code-model" and not fresh["sticky"]
        bad = _chat(c, MATH_Q, json={"conversation": 7})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "conversation"
        assert c.post("/v1/route", json={}).status_code == 400
        assert "avengers_sticky_total 1" in c.get("/metrics").text


def test_server_workers_share_conversations_through_the_store(
    toy_router: Router, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Two apps (as two workers) on one SQLite file: a conversation begun on one continues on
    the other. (The store itself is shared across processes: see the multiprocess test.)"""
    from avengers.server import create_app
    from fastapi.testclient import TestClient

    def worker() -> Any:
        router = Router.from_state(*toy_router.state(), embedder=toy_router.get_embedder())
        return create_app(
            Answerer(router, endpoints(upstream), strategy="direct"),
            feedback_store=SQLiteFeedbackStore(tmp_path / "fb.db"),
            conversations="store",
            conversation_ttl=600,
            conversation_max_entries=100,
        )

    with TestClient(worker()) as one, TestClient(worker()) as two:
        assert _chat(one, MATH_Q, json={"conversation": "c1"}).json()["model"] == "math-model"
        r = _chat(two, COOK_Q, json={"conversation": "c1"})
        assert r.json()["model"] == "math-model" and r.json()["avengers"]["decision"]["sticky"]
        mem = create_app(Answerer(toy_router, endpoints(upstream), strategy="direct"))
        with TestClient(mem) as three:  # a worker with its own memory knows nothing of c1
            assert _chat(three, COOK_Q, json={"conversation": "c1"}).json()["model"] == "chef-model"
    with pytest.raises(ConfigError, match="feedback store"):
        create_app(Answerer(toy_router, endpoints(upstream)), conversations="store")


@pytest.mark.slow
def test_avengers_serve_with_two_workers_keeps_conversations_in_the_store(
    toy_router: Router, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """``avengers serve --workers 2 --conversations store``: two worker processes on one SQLite
    file. Every turn comes on a new connection (the kernel picks the worker), and every turn after
    the first stays on the conversation's model."""

    import httpx
    from test_serve import serve_process

    eps = {n: {"base_url": upstream.base_url, "model": m, "max_retries": 0}
           for n, m in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))}  # fmt: skip
    p, port = serve_process(
        toy_router, tmp_path, eps, "--workers", "2", "--strategy", "direct",
        "--feedback-store", str(tmp_path / "fb.db"), "--conversations", "store",
        "--conversation-ttl", "600",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(answers(f"{url}/ready"), 300, "two workers answered /ready", proc=p)

        def turn(q: str) -> Any:
            body = {"model": "avengers", "messages": [{"role": "user", "content": q}],
                    "conversation": "two-workers"}  # fmt: skip
            with httpx.Client(timeout=30) as c:  # a new connection each turn
                return c.post(f"{url}/v1/chat/completions", json=body).json()

        assert turn(MATH_Q)["model"] == "math-model"
        later = [turn(q) for q in (COOK_Q, CODE_Q) * 4]
        assert [r["model"] for r in later] == ["math-model"] * 8
        assert all(r["avengers"]["decision"]["sticky"] for r in later)
        assert len(SQLiteConversations(tmp_path / "fb.db")) == 1
    finally:
        p.terminate()
        p.wait(30)
