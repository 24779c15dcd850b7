"""The server under live-traffic faults, over real HTTP against the fake upstream: truncated
answers, text that cannot be encoded, user data on disk, deadlines, clients that leave,
fallback caps, circuit breakers and Retry-After."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from avengers import Answerer, Endpoint, Router
from avengers.embedding.embedders import CachedEmbedder
from avengers.server import create_app
from avengers.server.embedding import raw_embedder
from avengers.transport.breaker import CircuitBreaker
from fake_openai_server import FakeModel, FakeOpenAIServer
from test_serve import COOK_Q, MATH_Q, Running

SLACK = 1.0
"""Seconds a deadline may be overrun by (scheduling on a loaded machine)."""


@pytest.fixture
def up() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math": FakeModel(answers=["391"]),
            "chef": FakeModel(answers=["Boil it for 6 minutes."]),
            "coder": FakeModel(answers=["391 (computed in Python)"]),
        }
    ).start()
    yield s
    s.stop()


def endpoints(up: FakeOpenAIServer, **over: dict[str, Any]) -> dict[str, Endpoint]:
    out = {}
    for name, mid in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder")):
        kw: dict[str, Any] = {"max_retries": 0, "timeout": 10.0, **over.get(name, {})}
        out[name] = Endpoint(name, up.base_url, model=mid, **kw)
    return out


@contextmanager
def serving(
    router: Router, up: FakeOpenAIServer, eps: dict[str, Any] | None = None, **app: Any
) -> Iterator[str]:
    answerer = Answerer(router, endpoints(up, **(eps or {})), adaptive=False)
    r = Running(create_app(answerer, **app))
    try:
        yield r.url
    finally:
        r.stop()


def chat(url: str, q: str, model: str = "avengers-fast", **kw: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": q}], **kw}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def events(url: str, q: str, model: str = "avengers-fast", **kw: Any) -> tuple[int, list[Any]]:
    """A streamed request's status and its server-sent events (JSON, or the string [DONE])."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": q}], **kw}
    out: list[Any] = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, [r.json()]
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return 200, out


def text_of(evs: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in evs
        if isinstance(e, dict) and e.get("choices")
    )


def finishes(evs: list[Any]) -> list[str]:
    return [
        e["choices"][0]["finish_reason"]
        for e in evs
        if isinstance(e, dict) and e.get("choices") and e["choices"][0]["finish_reason"]
    ]


def wait_for(cond: Callable[[], bool], seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


# ------------------------------------------------------------------------- 1. truncation


def test_upstream_dying_mid_answer_falls_back_when_nothing_was_sent(
    toy_router: Router, up: FakeOpenAIServer
) -> None:
    up.models["math"] = FakeModel(answers=["The answer is 391."], fault="cut", cut_after=0)
    with serving(toy_router, up) as url:
        r = chat(url, MATH_Q)  # non-streamed: the body is cut halfway
        assert r.status_code == 200 and r.json()["model"] == "chef-model"
        assert r.headers["x-avengers-fallback"] == "1"
        failures = r.json()["avengers"]["failures"]
        assert [(f["model"], f["kind"]) for f in failures] == [("math-model", "connection")]
        # streamed, dying before the first token: the next model streams instead
        status, evs = events(url, MATH_Q)
        assert status == 200 and text_of(evs) == "Boil it for 6 minutes."
        final = next(e for e in evs if isinstance(e, dict) and e.get("avengers"))
        assert [(f["model"], f["kind"]) for f in final["avengers"]["failures"]] == [
            ("math-model", "truncated")
        ]


def test_upstream_dying_mid_stream_ends_with_an_error_event(
    toy_router: Router, up: FakeOpenAIServer
) -> None:
    up.models["math"] = FakeModel(answers=["The answer is 391."], fault="cut", cut_after=2)
    with serving(toy_router, up) as url:
        status, evs = events(url, MATH_Q)
    assert status == 200 and text_of(evs) == "The answer "  # what was sent stays sent
    assert finishes(evs) == []  # never a normal finish
    assert evs[-1] == "[DONE]" and "error" in evs[-2]
    err = evs[-2]["error"]
    assert "middle of a streamed answer" in err["message"] and err["code"] == "upstream_failed"
    assert err["failures"] == [{"model": "math-model", "kind": "truncated"}]


# ------------------------------------------------------------------------- 2. bad text


def test_unencodable_text_is_a_400_and_batch_mates_are_served(
    toy_router: Router, up: FakeOpenAIServer
) -> None:
    bad = b'{"model": "avengers-fast", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    with serving(toy_router, up) as url:

        def send_bad() -> httpx.Response:
            return httpx.post(f"{url}/v1/chat/completions", content=bad, timeout=30,
                              headers={"content-type": "application/json"})  # fmt: skip

        with ThreadPoolExecutor(12) as pool:
            bads = [pool.submit(send_bad) for _ in range(4)]
            goods = [pool.submit(chat, url, COOK_Q if i % 2 else MATH_Q) for i in range(8)]
            for f in bads:
                r = f.result()
                assert r.status_code == 400, r.text
                err = r.json()["error"]
                assert err["type"] == "invalid_request_error"
                assert err["param"] == "messages[0].content" and "UTF-8" in err["message"]
            for i, f in enumerate(goods):
                assert f.result().status_code == 200
                assert f.result().json()["model"] == ("chef-model" if i % 2 else "math-model")
        # elsewhere in the body too: a prompt (streamed), the model name
        for path, raw in [
            ("/v1/completions", b'{"model": "avengers-fast", "stream": true, "prompt": "\\udfff"}'),
            ("/v1/chat/completions", b'{"model": "\\ud800", "messages": []}'),
        ]:
            r = httpx.post(f"{url}{path}", content=raw,
                           headers={"content-type": "application/json"})  # fmt: skip
            assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]
        assert chat(url, COOK_Q).status_code == 200


# ------------------------------------------------------------------------- 3. no user data on disk


def test_serving_writes_no_user_queries_to_disk_unless_asked(
    toy_router: Router, up: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("AVENGERS_CACHE", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = toy_router.get_embedder()
    raw, _ = raw_embedder(before)
    toy_router.set_embedder(CachedEmbedder(raw))  # as a router loaded for training embeds
    try:
        with serving(toy_router, up) as url:
            for q in (MATH_Q, COOK_Q, "a private question about my health"):
                assert chat(url, q).status_code == 200
            assert chat(url, MATH_Q).status_code == 200  # repeated: from the memory LRU
            assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
        with serving(toy_router, up, embed_cache="disk") as url:  # the operator opts in
            assert chat(url, "a question the operator agreed to keep").status_code == 200
            assert any(p.suffix == ".sqlite" for p in cache.rglob("*"))
    finally:
        toy_router.set_embedder(before)


# ------------------------------------------------------------------------- 4. deadline


def test_deadline_gives_a_504_in_time_and_abandons_the_upstream_calls(
    toy_router: Router, up: FakeOpenAIServer
) -> None:
    for m in up.models.values():
        m.delay = 5.0
    with serving(toy_router, up, request_timeout=1.0) as url:
        t0 = time.monotonic()
        r = chat(url, MATH_Q, model="avengers")
        elapsed = time.monotonic() - t0
        assert r.status_code == 504 and elapsed < 1.0 + SLACK
        err = r.json()["error"]
        assert err["code"] == "deadline_exceeded" and "deadline of 1 s" in err["message"]
        assert wait_for(lambda: up.in_flight.get("math", 0) == 0, 3.0)  # cancelled upstream
        assert up.aborted.get("math", 0) >= 1
        # streamed, before the first token: still a plain 504
        t0 = time.monotonic()
        status, body = events(url, MATH_Q)
        assert status == 504 and body[0]["error"]["code"] == "deadline_exceeded"
        assert time.monotonic() - t0 < 1.0 + SLACK
        assert "avengers_deadline_exceeded_total 2" in httpx.get(f"{url}/metrics").text


def test_deadline_mid_stream_ends_with_an_error_event(
    toy_router: Router, up: FakeOpenAIServer
) -> None:
    up.models["chef"] = FakeModel(answers=["one two three four five six"], chunk_delay=0.4)
    with serving(toy_router, up, request_timeout=1.0) as url:
        t0 = time.monotonic()
        status, evs = events(url, COOK_Q)
        assert time.monotonic() - t0 < 1.0 + SLACK
    assert status == 200 and text_of(evs).startswith("one ") and finishes(evs) == []
    assert evs[-1] == "[DONE]" and evs[-2]["error"]["code"] == "deadline_exceeded"


# ------------------------------------------------------------------------- 5. clients that leave


def hang_up_once_upstream_is_busy(url: str, body: dict[str, Any], busy: Callable[[], bool]) -> None:
    """Send ``body`` over a raw socket, wait until the upstream is working on it, hang up."""
    port = int(url.rsplit(":", 1)[1])
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(data)}\r\n\r\n".encode()
            + data
        )
        assert wait_for(busy, 20.0)


def test_client_disconnect_cancels_upstream_work(toy_router: Router, up: FakeOpenAIServer) -> None:
    up.models["math"] = FakeModel(answers=["391"], delay=5.0)
    up.models["chef"] = FakeModel(answers=["one two three four"], chunk_delay=3.0)
    with serving(toy_router, up, request_timeout=30) as url:
        body = {"model": "avengers", "messages": [{"role": "user", "content": MATH_Q}]}
        hang_up_once_upstream_is_busy(url, body, lambda: up.in_flight.get("math", 0) > 0)
        assert wait_for(lambda: up.in_flight.get("math", 1) == 0, 3.0)  # well before 5 s
        assert up.aborted.get("math", 0) >= 1 and up.calls("math") >= 1
        # streamed: the client hangs up while the upstream is between two pieces
        body = {"model": "avengers-fast", "stream": True,
                "messages": [{"role": "user", "content": COOK_Q}]}  # fmt: skip
        hang_up_once_upstream_is_busy(url, body, lambda: up.in_flight.get("chef", 0) > 0)
        assert wait_for(lambda: up.aborted.get("chef", 0) >= 1, 2.5)
        assert up.in_flight.get("chef", 0) == 0
        metrics = httpx.get(f"{url}/metrics").text
        assert "avengers_client_disconnects_total 0" not in metrics


# ------------------------------------------------------------------------- 6. fallback cap


def test_fallbacks_are_capped(toy_router: Router, up: FakeOpenAIServer) -> None:
    for m in up.models.values():
        m.fault = "500"
    with serving(toy_router, up, max_fallbacks=1) as url:
        r = chat(url, MATH_Q)
    assert r.status_code == 502
    assert [f["model"] for f in r.json()["error"]["failures"]] == ["math-model", "chef-model"]
    assert up.calls("coder") == 0


# ------------------------------------------------------------------------- 7. circuit breaker


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_circuit_breaker_opens_skips_and_half_open_probe_closes_it(
    toy_router: Router, up: FakeOpenAIServer
) -> None:
    clock = Clock()
    up.models["math"] = FakeModel(answers=["391"], fault="500")
    breaker = CircuitBreaker(2, 10.0, clock=clock)
    with serving(toy_router, up, breaker=breaker) as url:
        for _ in range(2):
            assert chat(url, MATH_Q).json()["model"] == "chef-model"
        assert up.calls("math") == 2
        ready = httpx.get(f"{url}/ready").json()
        assert ready["circuits"]["math-model"]["state"] == "open"
        assert ready["circuits"]["chef-model"]["state"] == "closed"
        assert 'avengers_circuit_state{model="math-model"} 2' in httpx.get(f"{url}/metrics").text
        # open: math-model is skipped, not called, and the account says so
        r = chat(url, MATH_Q).json()
        assert up.calls("math") == 2 and r["model"] == "chef-model"
        acc = r["avengers"]
        assert "math-model skipped (circuit open)" in acc["fallback"]
        assert [f["kind"] for f in acc["failures"]] == ["circuit_open"]
        assert "next probe in" in acc["failures"][0]["message"]
        status, evs = events(url, MATH_Q)  # streaming skips it too
        assert status == 200 and up.calls("math") == 2 and text_of(evs).startswith("Boil")
        # after the cool-down one probe goes through; it succeeds and the circuit closes
        up.models["math"].fault = None
        clock.t += 11
        assert chat(url, MATH_Q).json()["model"] == "math-model"
        assert up.calls("math") == 3
        ready = httpx.get(f"{url}/ready").json()
        assert ready["circuits"]["math-model"] == {"state": "closed", "failures": 0, "opened": 1}
        metrics = httpx.get(f"{url}/metrics").text
        assert 'avengers_circuit_state{model="math-model"} 0' in metrics
        assert 'avengers_circuit_opened_total{model="math-model"} 1' in metrics


def test_half_open_probe_failing_reopens(toy_router: Router, up: FakeOpenAIServer) -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    up.models["math"] = FakeModel(answers=["391"], fault="500")
    with serving(toy_router, up, breaker=breaker) as url:
        chat(url, MATH_Q)
        assert breaker.state("math-model") == "open"
        clock.t += 11
        assert chat(url, MATH_Q).json()["model"] == "chef-model"  # the probe failed
        assert up.calls("math") == 2 and breaker.state("math-model") == "open"
        assert chat(url, MATH_Q).status_code == 200 and up.calls("math") == 2


# ------------------------------------------------------------------------- 8. Retry-After


def test_retry_after_is_honoured_within_the_deadline_and_not_beyond(
    toy_router: Router, up: FakeOpenAIServer
) -> None:
    up.models["math"] = FakeModel(answers=["391"], fault="429", fault_every=2, retry_after="0.5")
    eps = {"math-model": {"max_retries": 2}}
    with serving(toy_router, up, eps, request_timeout=3.0) as url:
        t0 = time.monotonic()
        r = chat(url, MATH_Q)
        assert r.status_code == 200 and r.json()["model"] == "math-model"
        assert time.monotonic() - t0 >= 0.5 and up.calls("math") == 2  # waited, then retried
    up.reset()
    up.models["math"].retry_after = "30"
    with serving(toy_router, up, eps, request_timeout=1.5) as url:
        t0 = time.monotonic()
        r = chat(url, MATH_Q)
        elapsed = time.monotonic() - t0
        assert r.status_code == 200 and r.json()["model"] == "chef-model"  # fell back at once
        assert elapsed < 1.0 and up.calls("math") == 1
        (f,) = r.json()["avengers"]["failures"]
        assert f["kind"] == "rate_limit" and "past the request deadline" in f["message"]


# ------------------------------------------------------------------------- units (no HTTP)


def test_breaker_state_machine() -> None:
    clock = Clock()
    b = CircuitBreaker(2, 10.0, clock=clock)
    b.failure("m", "client_error")  # the request's fault, not the endpoint's
    b.failure("m", "server_error")
    assert b.admit("m") is None and b.state("m") == "closed"
    b.failure("m", "timeout")
    assert b.state("m") == "open" and "next probe in 10.0 s" in (b.admit("m") or "")
    clock.t += 10
    assert b.admit("m") is None and b.state("m") == "half_open"  # this caller probes
    assert "probe request is in flight" in (b.admit("m") or "")  # others still skip
    clock.t += 10  # the probe never reported (cancelled): another one may go
    assert b.admit("m") is None
    b.success("m")
    assert b.state("m") == "closed" and b.snapshot()["m"]["opened"] == 1


class _Fault(Exception):
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code = status
        self.response = httpx.Response(status, headers=headers)


def test_retry_after_forms_and_the_deadline() -> None:
    import asyncio
    from email.utils import formatdate

    from avengers.transport.deadline import Deadline, within
    from avengers.transport.retry import GaveUp, retry_after, retrying

    assert retry_after(_Fault(429, {"retry-after": "2"})) == 2.0
    assert retry_after(_Fault(429, {"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    when = retry_after(_Fault(429, {"retry-after": formatdate(time.time() + 30, usegmt=True)}))
    assert when is not None and 25 < when <= 30
    assert retry_after(_Fault(429, {})) is None

    calls: list[float] = []

    async def flaky(wait: str) -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise _Fault(429, {"retry-after": wait})
        return "ok"

    async def run(wait: str, seconds: float) -> str:
        with within(Deadline(seconds)):
            return await retrying(lambda: flaky(wait), 2)

    assert asyncio.run(run("0.2", 2.0)) == "ok" and calls[1] - calls[0] >= 0.2
    calls.clear()
    with pytest.raises(GaveUp, match="past the request deadline"):
        asyncio.run(run("5", 1.0))
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(_Fault):  # not retryable: raised as is
        asyncio.run(retrying(lambda: _raise(_Fault(400, {})), 3))


async def _raise(e: Exception) -> str:
    raise e
