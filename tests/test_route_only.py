"""``POST /v1/route``: the routing decision alone over real HTTP (no upstream call), and clear
400s for malformed bodies."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from avengers import Answerer, Endpoint, Router
from avengers.embedding.static import StaticEmbedder
from avengers.server import create_app
from avengers.server.decide import RouteBatcher
from fake_openai_server import FakeModel, FakeOpenAIServer
from fastapi.testclient import TestClient
from toy import toy_rows


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[TestClient, FakeOpenAIServer, Router]]:
    router = Router.paper(3, embedder="static").fit(toy_rows())
    up = FakeOpenAIServer({m: FakeModel(answers=["ok"]) for m in ("m", "c", "k")}).start()
    eps = {
        name: Endpoint(name, up.base_url, model=m, max_retries=0, timeout=3.0)
        for name, m in (("math-model", "m"), ("chef-model", "c"), ("code-model", "k"))
    }
    with TestClient(create_app(Answerer(router, eps))) as client:
        yield client, up, router
    up.stop()


def test_route_only_returns_the_routers_decision_without_calling_a_model(
    setup: tuple[TestClient, FakeOpenAIServer, Router],
) -> None:
    client, up, router = setup
    q = "What is 17 times 23?"
    r = client.post("/v1/route", json={"messages": [{"role": "user", "content": q}]})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = router.route(q)
    assert body["model"] == expected.model
    assert [m["model"] for m in body["ranking"]] == [m.model for m in expected.ranking]
    assert body["cluster"] == expected.cluster and "query" not in body
    assert sum(up.calls(m) for m in ("m", "c", "k")) == 0
    # a plain query and a per-request alpha (cost-aware) give the router's own answers
    r = client.post("/v1/route", json={"query": q, "alpha": 0.0})
    assert r.status_code == 200
    assert r.json()["model"] == router.route(q, alpha=0.0).model


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"query": "  "}, "query"),
        ({"query": "hi", "alpha": 2}, "alpha"),
        ({"query": "hi", "alpha": True}, "alpha"),
        ({"query": "hi", "task": 3}, "task"),
    ],
)
def test_route_only_rejects_malformed_bodies(
    setup: tuple[TestClient, FakeOpenAIServer, Router], body: dict[str, object], param: str
) -> None:
    client, _, _ = setup
    r = client.post("/v1/route", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_route_only_bad_messages_and_bad_json_are_400s(
    setup: tuple[TestClient, FakeOpenAIServer, Router],
) -> None:
    client, _, _ = setup
    r = client.post("/v1/route", json={"messages": ["not a message"]})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = client.post("/v1/route", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_concurrent_route_requests_are_batched_and_each_gets_its_own_decision(
    setup: tuple[TestClient, FakeOpenAIServer, Router],
) -> None:
    _, _, router = setup
    app = create_app(
        Answerer(router, {"math-model": Endpoint("math-model", "http://127.0.0.1:9/v1")})
    )
    queries = [f"{q} ({i})" for i, q in enumerate(["What is 6 times 7?", "How do I fry an egg?",
               "Write a Python function that sorts a list."] * 8)]  # fmt: skip

    async def run() -> list[dict[str, object]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                rs = await asyncio.gather(
                    *(c.post("/v1/route", json={"query": q}) for q in queries)
                )
        assert all(r.status_code == 200 for r in rs)
        return [r.json() for r in rs]

    embedder = app.state.answerer.router.get_embedder()
    assert isinstance(embedder, StaticEmbedder)  # served bare: no batching layer of its own
    calls: list[int] = []
    embed = embedder.embed

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return embed(texts)

    embedder.embed = counting  # type: ignore[method-assign]
    try:
        got = asyncio.run(run())
    finally:
        del embedder.embed  # type: ignore[method-assign]
    expected = router.route_batch(queries)
    assert [g["model"] for g in got] == [d.model for d in expected]
    assert [g["cluster"] for g in got] == [d.cluster for d in expected]
    assert isinstance(app.state.route_batcher, RouteBatcher)
    assert len(calls) < len(queries) and max(calls) > 1  # batched embedding calls


def test_route_only_checks_the_api_key_and_counts_metrics(
    setup: tuple[TestClient, FakeOpenAIServer, Router],
) -> None:
    _, _, router = setup
    eps = {"math-model": Endpoint("math-model", "http://127.0.0.1:9/v1")}
    with TestClient(create_app(Answerer(router, eps), api_keys={"k1"})) as client:
        r = client.post("/v1/route", json={"query": "What is 6 times 7?"})
        assert r.status_code == 401
        auth = {"authorization": "Bearer k1"}
        r = client.post("/v1/route", json={"query": "What is 6 times 7?"}, headers=auth)
        assert (
            r.status_code == 200 and r.json()["model"] == router.route("What is 6 times 7?").model
        )
        text = client.get("/metrics").text
        assert "/v1/route" in text
    # with CORS on, the route is served through the ordinary stack and still answers
    with TestClient(create_app(Answerer(router, eps), cors_origins=["http://a.example"])) as client:
        r = client.post("/v1/route", json={"query": "hi"}, headers={"origin": "http://a.example"})
        assert (
            r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://a.example"
        )


def test_freeze_gc_freezes_start_up_objects_only_when_asked(
    setup: tuple[TestClient, FakeOpenAIServer, Router],
) -> None:
    _, _, router = setup
    eps = {"math-model": Endpoint("math-model", "http://127.0.0.1:9/v1")}
    gc.unfreeze()
    try:
        with TestClient(create_app(Answerer(router, eps))) as client:
            assert client.get("/health").status_code == 200
            assert gc.get_freeze_count() == 0  # an app embedded in a program: left alone
        with TestClient(create_app(Answerer(router, eps), freeze_gc=True)) as client:
            assert gc.get_freeze_count() > 10_000  # the libraries, the router, the model
            r = client.post("/v1/route", json={"query": "What is 6 times 7?"})
            assert (
                r.status_code == 200
                and r.json()["model"] == router.route("What is 6 times 7?").model
            )
    finally:
        gc.unfreeze()
