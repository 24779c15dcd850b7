"""The routing server over real HTTP, driven by the official openai client and LangChain's
ChatOpenAI, against local deterministic upstreams."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from avengers import Answerer, Endpoint, Router
from avengers.server import create_app
from fake_openai_server import FakeModel, FakeOpenAIServer
from waiting import answers, wait_until

MATH_Q = "What is 17 times 23?"
COOK_Q = "How long should I boil an egg for a runny yolk?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_process(
    router: Router,
    folder: Path,
    endpoints: dict[str, Any],
    *args: str,
    stdout: Any = subprocess.DEVNULL,
    stderr: Any = subprocess.DEVNULL,
) -> tuple[subprocess.Popen[bytes], int]:
    """``avengers serve`` as a process on a free port: ``router`` saved in ``folder/r``,
    ``endpoints`` written to ``folder/e.json``, ``args`` more options. Returns the process and
    its port (not waited for: see :func:`waiting.wait_until`)."""
    router.save_pretrained(folder / "r")
    (folder / "e.json").write_text(json.dumps({"endpoints": endpoints}))
    port = free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "avengers", "serve", "-r", str(folder / "r"),
         "-e", str(folder / "e.json"), "--port", str(port), *args],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=stdout, stderr=stderr,
    )  # fmt: skip
    return p, port


class Running:
    """The app under uvicorn on a free local port, in a thread (``settings``: more
    ``uvicorn.Config`` keywords)."""

    def __init__(self, app: Any, log_level: str = "error", **settings: Any) -> None:
        self.port = free_port()
        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level, **settings)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 60, "the in-process server started", interval=0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    a = FakeOpenAIServer({"math": FakeModel(answers=["391", "The answer is 391.", "381"])}).start()
    b = FakeOpenAIServer(
        {
            "chef": FakeModel(answers=["Boil it for 6 minutes."]),
            "coder": FakeModel(answers=["391 (computed in Python)"]),
        }
    ).start()
    yield a, b
    a.stop()
    b.stop()


def make_endpoints(a: FakeOpenAIServer, b: FakeOpenAIServer) -> dict[str, Endpoint]:
    kw: dict[str, Any] = {"max_retries": 0, "timeout": 3.0}
    return {
        "math-model": Endpoint("math-model", a.base_url, model="math", **kw),
        "chef-model": Endpoint("chef-model", b.base_url, model="chef", **kw),
        "code-model": Endpoint("code-model", b.base_url, model="coder", **kw),
    }


@pytest.fixture
def served(
    toy_router: Router, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> Iterator[Running]:
    app = create_app(Answerer(toy_router, make_endpoints(*upstreams), adaptive=False))
    r = Running(app)
    yield r
    r.stop()


def client(r: Running, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{r.url}/v1", api_key=key, max_retries=0)


def test_chat_completion_routes_votes_and_reports(served: Running) -> None:
    raw = client(served).chat.completions.with_raw_response.create(
        model="avengers", messages=[{"role": "user", "content": MATH_Q}]
    )
    resp = raw.parse()
    assert resp.choices[0].message.content in ("391", "The answer is 391.")
    assert resp.model == "math-model" and resp.usage is not None and resp.usage.total_tokens > 0
    account = (resp.model_extra or {})["avengers"]
    assert account["votes"] == {"391": 7, "381": 3} and account["n_drawn"] == 10
    assert account["decision"]["ranking"][0]["model"] == "math-model"
    assert (
        raw.headers["x-avengers-model"] == "math-model"
        and raw.headers["x-avengers-samples"] == "10"
    )
    # a cooking question goes elsewhere; extra_body overrides the number of samples
    resp = client(served).chat.completions.create(
        model="avengers",
        messages=[{"role": "user", "content": COOK_Q}],
        extra_body={"n_samples": 3},
    )
    assert resp.model == "chef-model" and (resp.model_extra or {})["avengers"]["n_drawn"] == 3


def test_profiles_pinned_candidates_and_models_list(served: Running) -> None:
    c = client(served)
    ids = {m.id for m in c.models.list().data}
    assert ids == {"avengers", "avengers-fast", "math-model", "chef-model", "code-model"}
    resp = c.chat.completions.create(
        model="chef-model", messages=[{"role": "user", "content": MATH_Q}]
    )
    assert resp.model == "chef-model"
    fast = c.chat.completions.create(
        model="avengers-fast", messages=[{"role": "user", "content": MATH_Q}]
    )
    assert (fast.model_extra or {})["avengers"]["strategy"] == "direct"
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])


def test_streaming_chat_and_completions(served: Running) -> None:
    c = client(served)
    chunks = list(
        c.chat.completions.create(
            model="avengers-fast", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": COOK_Q}],
        )
    )  # fmt: skip
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Boil it for 6 minutes." and len([ch for ch in chunks if ch.choices]) > 3
    final = next(ch for ch in chunks if ch.choices and ch.choices[0].finish_reason == "stop")
    assert (final.model_extra or {})["avengers"]["model"] == "chef-model"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    # voting profile: the winner arrives in one piece once decided
    voted = list(c.chat.completions.create(model="avengers", stream=True,
                                           messages=[{"role": "user", "content": MATH_Q}]))  # fmt: skip
    assert "".join(ch.choices[0].delta.content or "" for ch in voted if ch.choices) in (
        "391",
        "The answer is 391.",
    )
    comp = c.completions.create(model="avengers-fast", prompt=COOK_Q)
    assert comp.choices[0].text == "Boil it for 6 minutes."
    streamed = "".join(
        ch.choices[0].text
        for ch in c.completions.create(model="avengers-fast", prompt=COOK_Q, stream=True)
    )
    assert streamed == "Boil it for 6 minutes."


def test_langchain_chat_openai_works_unchanged(served: Running) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=f"{served.url}/v1", api_key="unused", model="avengers-fast", max_retries=0
    )
    msg = llm.invoke(COOK_Q)
    assert msg.content == "Boil it for 6 minutes."
    assert "".join(str(ch.content) for ch in llm.stream(COOK_Q)) == "Boil it for 6 minutes."


def test_auth(toy_router: Router, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    r = Running(create_app(Answerer(toy_router, make_endpoints(*upstreams)), api_keys={"s3cret"}))
    try:
        with pytest.raises(openai.AuthenticationError):
            client(r).chat.completions.create(
                model="avengers-fast", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.AuthenticationError):
            client(r, "wrong").models.list()
        ok = client(r, "s3cret").chat.completions.create(
            model="avengers-fast", messages=[{"role": "user", "content": COOK_Q}]
        )
        assert ok.choices[0].message.content == "Boil it for 6 minutes."
        assert httpx.get(f"{r.url}/health").status_code == 200  # liveness stays open
    finally:
        r.stop()


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (json.dumps({"model": "avengers", "messages": "hi"}).encode(), 400, "non-empty list"),
        (json.dumps({"model": "avengers", "messages": [{"content": "x"}]}).encode(), 400, "role"),
        (
            json.dumps(
                {"model": "avengers", "messages": [{"role": "user", "content": 5}]}
            ).encode(),
            400,
            "content",
        ),
        (
            json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(),
            400,
            "'model' is required",
        ),
        (
            json.dumps(
                {
                    "model": "avengers",
                    "max_tokens": 10**6,
                    "messages": [{"role": "user", "content": "x"}],
                }
            ).encode(),
            400,
            "max_tokens",
        ),
        (
            json.dumps(
                {
                    "model": "avengers",
                    "temperature": "hot",
                    "messages": [{"role": "user", "content": "x"}],
                }
            ).encode(),
            400,
            "temperature",
        ),
        (
            json.dumps(
                {
                    "model": "avengers",
                    "strategy": "magic",
                    "messages": [{"role": "user", "content": "x"}],
                }
            ).encode(),
            400,
            "strategy",
        ),
        (
            json.dumps(
                {"model": "avengers", "n": 3, "messages": [{"role": "user", "content": "x"}]}
            ).encode(),
            400,
            "'n'",
        ),
        (b"x" * 2_000_000, 413, "larger than"),
    ],
)
def test_bad_requests_get_openai_style_errors(
    served: Running, body: bytes, status: int, fragment: str
) -> None:
    r = httpx.post(f"{served.url}/v1/chat/completions", content=body,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == status
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"] == "invalid_request_error"
    assert httpx.get(f"{served.url}/health").json() == {"status": "ok"}  # still alive


def test_upstream_killed_mid_run_falls_back(
    served: Running, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> None:
    c = client(served)
    first = c.chat.completions.create(
        model="avengers-fast", messages=[{"role": "user", "content": MATH_Q}]
    )
    assert first.model == "math-model"
    upstreams[0].stop()  # the math model's server dies
    raw = c.chat.completions.with_raw_response.create(
        model="avengers-fast", messages=[{"role": "user", "content": MATH_Q}]
    )
    resp = raw.parse()
    account = (resp.model_extra or {})["avengers"]
    second = account["decision"]["ranking"][1]["model"]  # alpha 0.5: the cheap chef ranks second
    assert second == "chef-model" and account["decision"]["ranking"][0]["model"] == "math-model"
    assert resp.model == second and raw.headers["x-avengers-fallback"] == "1"
    failures = account["failures"]
    assert failures[0]["model"] == "math-model" and failures[0]["kind"] == "connection"
    ready = httpx.get(f"{served.url}/ready").json()
    assert ready["endpoints"] == {"math-model": False, "chef-model": True, "code-model": True}
    upstreams[1].stop()  # now every candidate is gone
    r = httpx.post(f"{served.url}/v1/chat/completions",
                   json={"model": "avengers-fast", "messages": [{"role": "user", "content": MATH_Q}]})  # fmt: skip
    assert r.status_code == 502 and {f["model"] for f in r.json()["error"]["failures"]} == {
        "math-model", "chef-model", "code-model"}  # fmt: skip
    assert httpx.get(f"{served.url}/ready").status_code == 503
    metrics = httpx.get(f"{served.url}/metrics").text
    assert 'avengers_upstream_failures_total{model="math-model",kind="connection"}' in metrics
    assert 'avengers_routed_total{model="chef-model"} 1' in metrics
    assert "avengers_fallbacks_total 1" in metrics


def test_graceful_shutdown_finishes_in_flight_requests(toy_router: Router, tmp_path: Path) -> None:
    up = FakeOpenAIServer({"chef": FakeModel(answers=["Six minutes."], delay=2.0)}).start()
    p: subprocess.Popen[bytes] | None = None
    try:
        chef = {"chef-model": {"base_url": up.base_url, "model": "chef"}}
        p, port = serve_process(toy_router, tmp_path, chef, "--strategy", "direct",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_until(answers(f"{url}/health"), 300, "avengers serve answered /health", proc=p)
        result: dict[str, Any] = {}

        def call() -> None:
            result["r"] = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                                     json={"model": "avengers", "messages": [{"role": "user", "content": COOK_Q}]})  # fmt: skip

        t = threading.Thread(target=call)
        t.start()
        # SIGTERM once the request is waiting on the slow upstream
        wait_until(lambda: up.in_flight.get("chef", 0) == 1, 60, "the request reached the upstream")
        p.send_signal(signal.SIGTERM)
        t.join(30)
        p.wait(30)
        assert result["r"].status_code == 200
        assert result["r"].json()["choices"][0]["message"]["content"] == "Six minutes."
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(30)
        up.stop()


def test_serve_cli_bad_input(tmp_path: Path) -> None:
    from avengers.cli import app
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["serve", "-e", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and "endpoint file not found" in r.output


def test_serve_exploration_flags(
    toy_router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--explore`` / ``--explore-rule`` change the served router's settings: a bad value is one
    line and exit 2 before anything listens; the worker factory applies them from the env."""
    from avengers.cli import app
    from avengers.server import app_from_env
    from typer.testing import CliRunner

    toy_router.save_pretrained(tmp_path / "r")
    (tmp_path / "e.json").write_text(
        json.dumps({"endpoints": {"chef-model": {"base_url": "http://127.0.0.1:9/v1"}}})
    )
    base = ["serve", "-r", str(tmp_path / "r"), "-e", str(tmp_path / "e.json")]
    r = CliRunner().invoke(app, [*base, "--explore", "2"])
    assert r.exit_code == 2 and "explore must be" in r.output, r.output
    r = CliRunner().invoke(app, [*base, "--explore", "0.5", "--explore-rule", "ucb"])
    assert r.exit_code == 2 and "explore_rule must be" in r.output, r.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AVENGERS_ROUTER", str(tmp_path / "r"))
    monkeypatch.setenv("AVENGERS_ENDPOINTS", str(tmp_path / "e.json"))
    monkeypatch.setenv(
        "AVENGERS_ROUTER_SETTINGS", json.dumps({"explore": 0.3, "explore_rule": "top-two"})
    )
    served = app_from_env().state.answerer.router
    assert (served.explore, served.explore_rule) == (0.3, "top-two")
    monkeypatch.delenv("AVENGERS_ROUTER_SETTINGS")
    served = app_from_env().state.answerer.router
    assert (served.explore, served.explore_rule) == (toy_router.explore, "thompson")


def test_serve_notes_when_workers_keep_their_own_conversations(
    toy_router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several workers with ``--conversations memory`` (the default): one note on stderr at
    start-up; none with one worker or with the shared store."""
    from avengers.cli import app
    from typer.testing import CliRunner

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: started.append(kw))
    monkeypatch.setattr(os, "environ", dict(os.environ))  # serve sets the workers' env vars
    monkeypatch.delenv("AVENGERS_CONVERSATIONS", raising=False)
    toy_router.save_pretrained(tmp_path / "r")
    (tmp_path / "e.json").write_text(
        json.dumps({"endpoints": {"chef-model": {"base_url": "http://127.0.0.1:9/v1"}}})
    )
    base = ["serve", "-r", str(tmp_path / "r"), "-e", str(tmp_path / "e.json")]
    r = CliRunner().invoke(app, [*base, "--workers", "2"])
    assert r.exit_code == 0, r.output
    (line,) = [x for x in r.stderr.splitlines() if "conversations memory" in x]
    assert line.startswith("note: --workers 2 with --conversations memory")
    assert "--conversations store --feedback-store FILE" in line
    assert "conversations memory" not in r.stdout and started[-1]["workers"] == 2
    for args in (
        [],
        ["--workers", "2", "--conversations", "store", "--feedback-store", str(tmp_path / "f.db")],
    ):
        r = CliRunner().invoke(app, [*base, *args])
        assert r.exit_code == 0 and "conversations memory" not in r.output, r.output
    assert len(started) == 3


@pytest.mark.slow
def test_several_workers(toy_router: Router, tmp_path: Path) -> None:
    up = FakeOpenAIServer({"chef": FakeModel(answers=["Six minutes."])}).start()
    chef = {"chef-model": {"base_url": up.base_url, "model": "chef"}}
    p, port = serve_process(toy_router, tmp_path, chef, "--workers", "2")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(answers(f"{url}/ready"), 300, "two workers answered /ready", proc=p)
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for _ in range(4):
            r = c.chat.completions.create(
                model="avengers-fast", messages=[{"role": "user", "content": COOK_Q}]
            )
            assert r.choices[0].message.content == "Six minutes." and r.model == "chef-model"
    finally:
        p.terminate()
        p.wait(30)
        up.stop()


def test_cost_accounting_in_responses_and_metrics(
    toy_router: Router, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> None:
    """Priced endpoints: each answer's cost (every sample's tokens at the endpoint's prices) is
    in ``usage.cost``, the account and a header, and adds up per profile in /metrics. Endpoints
    without prices: the cost is unknown, so it is absent (never 0) and counted as unknown."""
    a, b = upstreams
    priced = {
        n: Endpoint(n, e.base_url, model=e.model, max_retries=0, input_price=2.0, output_price=10.0)
        for n, e in make_endpoints(a, b).items()
    }
    r = Running(create_app(Answerer(toy_router, priced, n_samples=3, adaptive=False)))
    try:
        costs = []
        for profile, q in (("avengers", MATH_Q), ("avengers", COOK_Q), ("avengers-fast", MATH_Q)):
            raw = client(r).chat.completions.with_raw_response.create(
                model=profile, messages=[{"role": "user", "content": q}]
            )
            resp = raw.parse()
            usage = resp.usage.model_dump()  # type: ignore[union-attr]
            want = (usage["prompt_tokens"] * 2.0 + usage["completion_tokens"] * 10.0) / 1e6
            assert usage["cost"] == pytest.approx(want) and want > 0
            account = (resp.model_extra or {})["avengers"]
            assert account["cost"] == pytest.approx(want)
            assert float(raw.headers["x-avengers-cost"]) == pytest.approx(want, rel=1e-6)
            # the router's own estimate: its expected cost per call times the samples drawn
            per_call = {m["model"]: m["cost"] for m in account["decision"]["ranking"]}
            expected = sum(per_call[s["model"]] for s in account["samples"])
            assert account["expected_cost"] == pytest.approx(expected)
            costs.append((profile, want))
        text = httpx.get(f"{r.url}/metrics").text
        for profile in ("avengers", "avengers-fast"):
            total = sum(c for p, c in costs if p == profile)
            line = next(x for x in text.splitlines() if x.startswith(
                f'avengers_cost_total{{profile="{profile}"}}'))  # fmt: skip
            assert float(line.split()[-1]) == pytest.approx(total, rel=1e-6)
        assert 'avengers_costed_answers_total{profile="avengers"} 2' in text
        assert "avengers_cost_unknown_total{" not in text
    finally:
        r.stop()

    unpriced = Running(create_app(Answerer(toy_router, make_endpoints(a, b), n_samples=3)))
    try:
        resp = client(unpriced).chat.completions.create(
            model="avengers", messages=[{"role": "user", "content": MATH_Q}]
        )
        assert "cost" not in resp.usage.model_dump()  # type: ignore[union-attr]
        assert (resp.model_extra or {})["avengers"]["cost"] is None
        text = httpx.get(f"{unpriced.url}/metrics").text
        assert 'avengers_cost_unknown_total{profile="avengers"} 1' in text
        assert "avengers_cost_total{" not in text
    finally:
        unpriced.stop()


async def test_answer_cost_is_none_when_unknown_and_summed_when_known(
    toy_router: Router, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> None:
    a, b = upstreams
    eps = make_endpoints(a, b)
    res = await Answerer(toy_router, eps, n_samples=2, adaptive=False).aanswer(MATH_Q)
    assert res.cost is None and all(s.cost is None for s in res.samples)
    assert "cost unknown" in res.summary()
    half = {**eps, "math-model": Endpoint("math-model", a.base_url, model="math", input_price=1.0)}
    res = await Answerer(toy_router, half, n_samples=2, adaptive=False).aanswer(MATH_Q)
    assert res.model == "math-model" and res.cost == pytest.approx(res.prompt_tokens / 1e6)
    assert res.expected_cost == pytest.approx(2 * res.decision.expected_cost)  # type: ignore[union-attr, operator]
