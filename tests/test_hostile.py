"""Hostile input and start-up mistakes (issue 26, parts B and C): every one is a 4xx in the OpenAI
error shape (or a one-line refusal to start), the server stays up, and requests running beside
it are unaffected. The real app over real HTTP against the deterministic fake upstream."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from avengers import Answerer, Endpoint, Router
from avengers.server import create_app
from avengers.stores.feedback import open_store
from fake_openai_server import FakeModel, FakeOpenAIServer
from test_serve import COOK_Q, MATH_Q, Running, serve_process
from toy import toy_rows
from waiting import answers, wait_until

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def assert_openai_error(r: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    """``r`` is ``status`` with an OpenAI error body (and the given ``param``, if any)."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param, err
    return dict(err)


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math": FakeModel(answers=["391"]),
            "chef": FakeModel(answers=["Boil it for 6 minutes."]),
            "coder": FakeModel(answers=["391 (computed in Python)"]),
            "quiet": FakeModel(answers=["Boil it for 6 minutes."], usage=False),
        }
    ).start()
    yield s
    s.stop()


def endpoints(up: FakeOpenAIServer, chef: str = "chef") -> dict[str, Endpoint]:
    kw: dict[str, Any] = {"max_retries": 0, "timeout": 5.0}
    return {
        "math-model": Endpoint(
            "math-model", up.base_url, model="math",
            capabilities={"tools": True, "json_schema": True}, **kw,
        ),
        "chef-model": Endpoint("chef-model", up.base_url, model=chef, **kw),
        "code-model": Endpoint("code-model", up.base_url, model="coder", **kw),
    }  # fmt: skip


@pytest.fixture
def served(toy_router: Router, upstream: FakeOpenAIServer, tmp_path: Path) -> Iterator[Running]:
    app = create_app(
        # a copy: ratings this server learns must not change the session's toy router
        Answerer(
            Router.from_state(*toy_router.state(), embedder=toy_router.get_embedder()),
            endpoints(upstream),
            adaptive=False,
        ),
        feedback_store=open_store(str(tmp_path / "feedback.db")),
    )
    r = Running(app)
    yield r
    r.stop()


def post(r: Running, path: str, body: Any, **kw: Any) -> httpx.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return httpx.post(f"{r.url}{path}", content=data, headers=headers, timeout=30, **kw)


def chat(content: Any = MATH_Q, **extra: Any) -> dict[str, Any]:
    return {"model": "avengers-fast", "messages": [{"role": "user", "content": content}], **extra}


class Beside:
    """Plain requests sent in a loop on other threads while a test throws hostile ones: each must
    be answered 200 with the expected text."""

    def __init__(self, r: Running, n_threads: int = 2) -> None:
        self.r, self.stop, self.results = r, threading.Event(), list[tuple[int, str]]()
        self.threads = [threading.Thread(target=self._run) for _ in range(n_threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                resp = c.post(f"{self.r.url}/v1/chat/completions", json=chat(COOK_Q))
                text = resp.json()["choices"][0]["message"]["content"] if resp.is_success else ""
                self.results.append((resp.status_code, text))

    def __enter__(self) -> Beside:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert self.results, "no request ran beside the hostile ones"
        assert all(res == (200, "Boil it for 6 minutes.") for res in self.results), self.results


# ------------------------------------------------------------------------ 5: malformed JSON


def test_deep_json_huge_integers_and_string_stream_options_are_400s(served: Running) -> None:
    deep = b'{"model": "avengers", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with Beside(served):
        for path in ("/v1/chat/completions", "/v1/route", "/v1/completions"):
            assert "nested" in assert_openai_error(post(served, path, deep), 400)["message"]
        # just past the limit, with no recursion error to hide behind: still a 400
        inner = b"[" * 70 + b"]" * 70
        r = post(served, "/v1/chat/completions", b'{"model": "avengers", "x": ' + inner + b"}")
        assert "nested more than 64" in assert_openai_error(r, 400)["message"]
        huge = b'{"model": "avengers", "max_tokens": ' + b"9" * 5000 + b', "messages": []}'
        err = assert_openai_error(post(served, "/v1/chat/completions", huge), 400)
        assert "integer out of range" in err["message"] and "9" * 100 not in err["message"]
        for opts in ("yes", ["include_usage"], {"include_usage": "yes"}):
            r = post(served, "/v1/chat/completions", chat(stream=True, stream_options=opts))
            assert_openai_error(r, 400, "stream_options")
        for constant in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
            body = b'{"model": "avengers", "temperature": ' + constant + b', "messages": []}'
            assert "finite" in assert_openai_error(post(served, "/v1/route", body), 400)["message"]
    assert httpx.get(f"{served.url}/health").status_code == 200


# ------------------------------------------------------------------------ 6: content parts


@pytest.mark.parametrize("text", [12, None, {"a": 1}, ["x"]])
def test_content_part_text_that_is_not_a_string_is_400(served: Running, text: Any) -> None:
    parts = [{"type": "text", "text": text}]
    param = "messages[0].content[0].text"
    assert_openai_error(post(served, "/v1/chat/completions", chat(parts)), 400, param)
    assert_openai_error(post(served, "/v1/chat/completions", chat(parts, stream=True)), 400, param)
    route = {"messages": [{"role": "user", "content": parts}]}
    assert_openai_error(post(served, "/v1/route", route), 400, param)
    bad_part = [{"type": "text", "text": "hi"}, "just a string"]
    r = post(served, "/v1/route", {"messages": [{"role": "user", "content": bad_part}]})
    assert_openai_error(r, 400, "messages[0].content[1]")
    ok = post(served, "/v1/chat/completions", chat([{"type": "text", "text": COOK_Q}]))
    assert ok.status_code == 200 and ok.json()["model"] == "chef-model"


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"tool_calls": 1307674368001}, "messages[0].tool_calls"),
        ({"tool_calls": {"function": {"name": "f"}}}, "messages[0].tool_calls"),
        ({"tool_calls": [{"function": "f"}]}, "messages[0].tool_calls[0]"),
        ({"tool_calls": [{"function": {"name": 3}}]}, "messages[0].tool_calls[0]"),
        (
            {"tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"tool_calls": [{"id": 7, "function": {"name": "f"}}]}, "messages[0].tool_calls[0].id"),
        ({"name": [2987]}, "messages[0].name"),
        ({"tool_call_id": [[True]]}, "messages[0].tool_call_id"),
    ],
)
def test_tool_fields_of_the_wrong_kind_are_400(
    served: Running, message: dict[str, Any], param: str
) -> None:
    # found by the fuzz test in CI: an assistant turn whose tool_calls was a number was a 500
    turns = [{"role": "assistant", "content": None, **message}, {"role": "user", "content": COOK_Q}]
    for model in ("avengers", "chef-model", "math-model"):
        for stream in (False, True):
            body = {"model": model, "messages": turns, "stream": stream}
            assert_openai_error(post(served, "/v1/chat/completions", body), 400, param)
    assert_openai_error(post(served, "/v1/route", {"messages": turns}), 400, param)
    good = {"tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": "f", "arguments": "{}"}}]}  # fmt: skip
    ok_turns = [{"role": "assistant", "content": None, **good},
                {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "sunny"},
                {"role": "user", "content": COOK_Q}]  # fmt: skip
    ok = post(served, "/v1/chat/completions", {"model": "avengers", "messages": ok_turns})
    assert ok.status_code == 200 and ok.json()["model"] == "chef-model", ok.text
    # the OpenAPI schema says the same: the good turns fit it, the refused one does not
    jsonschema = pytest.importorskip("jsonschema")
    doc = httpx.get(f"{served.url}/openapi.json").json()
    body = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]["properties"]["messages"]
    jsonschema.validate(ok_turns, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(turns, schema)


# ------------------------------------------------------------------------ 7: feedback text


def test_lone_surrogate_in_feedback_is_400(served: Running) -> None:
    for body in (
        '{"id": "chatcmpl-\\ud800", "score": 1}',
        '{"query": "What is \\udfff?", "model": "math-model", "score": 1}',
        '{"id": "chatcmpl-x", "score": 1, "\\ud800": 1}',
    ):
        err = assert_openai_error(post(served, "/v1/feedback", body.encode()), 400)
        assert "not valid text" in err["message"]
    answered = post(served, "/v1/chat/completions", chat(COOK_Q)).json()
    r = post(served, "/v1/feedback", {"id": answered["id"], "score": 1.0})
    assert r.status_code == 200, r.text


def test_a_cost_that_would_overflow_the_statistics_is_400(served: Running) -> None:
    """Found by the fuzz run (an overflow warning in the cost sums): a finite but huge cost
    (1e308) was applied, and the model's cost sums became infinite."""
    router = served.server.config.app.state.server.answerer.router
    before = router.cost_sums_.copy()
    for i, cost in enumerate((1e308, 1e13)):
        answered = post(served, "/v1/chat/completions", chat(COOK_Q)).json()
        r = post(served, "/v1/feedback", {"id": answered["id"], "score": 1.0, "cost": cost})
        err = assert_openai_error(r, 400)
        assert "cost must be at most 1e+12 per call" in err["message"], i
        r = post(served, "/v1/feedback",
                 {"query": COOK_Q, "model": "chef-model", "score": 1, "cost": cost})  # fmt: skip
        assert "cost must be at most 1e+12" in assert_openai_error(r, 400)["message"]
    after = served.server.config.app.state.server.answerer.router.cost_sums_
    np.testing.assert_array_equal(after, before)
    ok = post(served, "/v1/chat/completions", chat(COOK_Q)).json()
    r = post(served, "/v1/feedback", {"id": ok["id"], "score": 1.0, "cost": 1e12})
    assert r.status_code == 200, r.text
    assert np.isfinite(served.server.config.app.state.server.answerer.router.cost_sums_).all()


# ------------------------------------------------------------------------ 8: tool schemas


def nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def tool(parameters: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": parameters}}


def test_hostile_tool_schemas_are_400s_and_never_forwarded(
    served: Running, upstream: FakeOpenAIServer
) -> None:
    looping = [
        {"$ref": "#"},
        {"type": "object", "anyOf": [{"$ref": "#"}]},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
         "$ref": "#/$defs/a"},
    ]  # fmt: skip
    with Beside(served):
        deep = '{"type": "object", "properties": {"a": ' * 5000 + '{"type": "string"}' + "}}" * 5000
        body = json.dumps(chat(tools=[tool("DEEP")])).replace('"DEEP"', deep)
        r = post(served, "/v1/chat/completions", body.encode())
        assert "nested" in assert_openai_error(r, 400)["message"]
        for schema in looping:
            for stream in (False, True):
                r = post(served, "/v1/chat/completions", chat(tools=[tool(schema)], stream=stream))
                assert "self-referential" in assert_openai_error(r, 400, "tools")["message"]
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": looping[1]}}
        r = post(served, "/v1/chat/completions", chat(response_format=fmt))
        assert "self-referential" in assert_openai_error(r, 400, "response_format")["message"]
        r = post(served, "/v1/chat/completions", chat(tools=[tool({"$ref": "#/nowhere"})]))
        assert "does not point to a schema" in assert_openai_error(r, 400, "tools")["message"]
        for params in ("a string", [1, 2], 3):
            r = post(served, "/v1/chat/completions", chat(tools=[tool(params)]))
            assert "must be a JSON schema object" in assert_openai_error(r, 400, "tools")["message"]
        # what the server could not send upstream is the client's problem, named as such
        big = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10**24}}}
        err = assert_openai_error(
            post(served, "/v1/chat/completions", chat(tools=[tool(big)])), 400
        )
        assert "integer out of range" in err["message"] and err["type"] == "invalid_request_error"
    assert not [q for q in upstream.requests if q.get("tools")], "a hostile tool was forwarded"
    # a recursive schema that goes down a level is fine
    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}
    r = post(served, "/v1/chat/completions", chat(tools=[tool(tree)]))
    assert r.status_code == 200, r.text


def test_schema_keywords_of_the_wrong_kind_are_400s(served: Running) -> None:
    """Found by the fuzz run: ``"required": [[10]]`` in a response schema was a 500 (a list is no
    property name) once a sample was checked against it. Each keyword the vote's schema check
    reads is checked for its kind up front, in tools and response formats alike."""
    wrong = {
        "required": ({"type": "object", "required": [[10]]}, "'required' must be a list"),
        "type": ({"type": ["object", 5]}, "'type' must be a string or a list of strings"),
        "enum": ({"enum": "abc"}, "'enum' must be a list"),
        "properties": ({"properties": {"a": 3}}, "'properties' must map property names"),
        "minLength": (
            {"properties": {"a": {"type": "string", "minLength": "3"}}},
            "'minLength' must be an integer >= 0",
        ),
        "maximum": ({"items": {"maximum": "ten"}}, "'maximum' must be a number"),
        "anyOf": ({"anyOf": {"type": "string"}}, "'anyOf' must be a list of schemas"),
        "in $defs": ({"$defs": {"d": {"maxItems": -1}}}, "'maxItems' must be an integer >= 0"),
    }
    with Beside(served):
        for name, (schema, message) in wrong.items():
            fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
            for stream in (False, True):
                r = post(served, "/v1/chat/completions", chat(response_format=fmt, stream=stream))
                err = assert_openai_error(r, 400, "response_format")
                assert message in err["message"], (name, err)
            params = {"type": "object", **schema} if "type" not in schema else schema
            r = post(served, "/v1/chat/completions", chat(tools=[tool(params)]))
            assert message in assert_openai_error(r, 400, "tools")["message"], name
    # a property named like a keyword is a name, not a keyword; boolean schemas are schemas
    ok = {
        "type": "object",
        "properties": {"type": {"type": "string"}, "required": {"type": "boolean"}, "x": True},
        "required": ["type"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": ok}}
    r = post(served, "/v1/chat/completions", chat(response_format=fmt))
    assert r.status_code == 200, r.text


def test_schema_checks_never_recurse_without_bound() -> None:
    """The library's own checks, called directly (no request body depth limit in front)."""
    from avengers.answering.toolcalls import check_schema, matches_schema, request_options
    from avengers.exceptions import ConfigError

    deep = nested_schema(20_000)
    check_schema(deep)  # iterative: no RecursionError
    value: Any = "x"
    for _ in range(20_000):
        value = {"a": value}
    assert matches_schema(value, deep) is False  # beyond the depth bound: does not match
    assert matches_schema({"a": {"a": "x"}}, nested_schema(2)) is True
    with pytest.raises(ConfigError, match="self-referential"):
        request_options(tools=[tool({"oneOf": [{"$ref": "#"}]})])


# ------------------------------------------------------------------------ 9: header size


def test_huge_header_is_refused_before_it_is_read(toy_router: Router, tmp_path: Path) -> None:
    up = FakeOpenAIServer({"chef": FakeModel(answers=["Six minutes."])}).start()
    chef = {"chef-model": {"base_url": up.base_url, "model": "chef"}}
    p, port = serve_process(
        toy_router, tmp_path, chef, "--strategy", "direct", stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(answers(f"{url}/health"), 300, "avengers serve", interval=0.2, proc=p)
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            "content-type: application/json\r\nx-conversation-id: "
        ).encode()
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(head)
            chunk = b"a" * 65536
            try:
                while sent < 64 * 2**20:  # 64 MB of header value, never ending
                    s.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass
            reply = b""
            try:
                while part := s.recv(65536):
                    reply += part
            except (ConnectionResetError, TimeoutError):
                pass
        assert sent < 8 * 2**20, f"the server read {sent} bytes of one header"
        if reply:  # the refusal arrived before the connection was torn down
            assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
            assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == (
                "request_header_fields_too_large"
            )
        # an ordinary request on a new connection is served as before
        r = httpx.post(f"{url}/v1/chat/completions", json=chat(COOK_Q), timeout=30,
                       headers={"x-conversation-id": "conv-1"})  # fmt: skip
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == (
            "Six minutes."
        )
        # a long but reasonable header (16 KB of cookies, say) is still fine
        r = httpx.get(f"{url}/health", headers={"cookie": "c=" + "x" * 16_000})
        assert r.status_code == 200
    finally:
        p.terminate()
        p.wait(30)
        up.stop()


# ------------------------------------------------------------------------ 10, 13: start-up


def serve_cli(tmp_path: Path, router: Router, names: Sequence[str], *args: str) -> Any:
    from avengers.cli import app
    from typer.testing import CliRunner

    router.save_pretrained(tmp_path / "r")
    eps = {n: {"base_url": "http://127.0.0.1:9/v1"} for n in names}
    (tmp_path / "e.json").write_text(json.dumps({"endpoints": eps}))
    return CliRunner().invoke(
        app, ["serve", "-r", str(tmp_path / "r"), "-e", str(tmp_path / "e.json"), *args]
    )


def test_api_key_file_without_keys_refuses_to_start(
    toy_router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: started.append(kw))
    monkeypatch.delenv("AVENGERS_SERVER_KEYS", raising=False)
    keys = tmp_path / "keys.txt"
    keys.write_text("# client keys, one per line\n\n   # indented comment\n")
    r = serve_cli(tmp_path, toy_router, ["chef-model"], "--api-key-file", str(keys))
    assert r.exit_code == 2 and not started, r.output
    assert r.output.count("\n") == 1 and "holds no keys" in r.output
    keys.write_text("# a comment\nsk-client-1\n")
    r = serve_cli(tmp_path, toy_router, ["chef-model"], "--api-key-file", str(keys))
    assert r.exit_code == 0 and len(started) == 1, r.output


def test_typo_in_an_endpoint_name_is_named_at_start_up(
    toy_router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: started.append(kw))
    r = serve_cli(tmp_path, toy_router, ["math-model", "chef-modle"])
    assert r.exit_code == 2 and not started, r.output
    assert r.output.count("\n") == 1
    assert "'chef-modle'" in r.output and "did you mean 'chef-model'?" in r.output
    r = serve_cli(tmp_path, toy_router, ["math-model", "zzzz"])
    assert r.exit_code == 2 and "router models: " in r.output and "math-model" in r.output
    r = serve_cli(tmp_path, toy_router, ["math-model", "chef-model"])
    assert r.exit_code == 0 and len(started) == 1, r.output


# ------------------------------------------------------------------------ 11: metrics labels


def test_metrics_label_unknown_paths_as_one_series(served: Running) -> None:
    for i in range(50):
        r = httpx.get(f"{served.url}/v1/probe-{i}-{'x' * i}")
        assert_openai_error(r, 404)
    httpx.post(f"{served.url}/v1/nope%22%7D%7D%201%0Afake_metric%202", json={})
    text = httpx.get(f"{served.url}/metrics").text
    series = [ln for ln in text.splitlines() if ln.startswith("avengers_requests_total{")]
    assert 'avengers_requests_total{path="other",status="404"} 51' in series, series
    assert not [ln for ln in text.splitlines() if "probe" in ln or "fake_metric" in ln]
    assert post(served, "/v1/route", {"query": MATH_Q}).status_code == 200
    text = httpx.get(f"{served.url}/metrics").text
    assert 'avengers_requests_total{path="/v1/route",status="200"} 1' in text


# ------------------------------------------------------------------------ 12: usage unknown


def test_usage_is_unknown_not_zero_when_the_upstream_reports_none(
    toy_router: Router, upstream: FakeOpenAIServer
) -> None:
    app = create_app(Answerer(toy_router, endpoints(upstream, chef="quiet"), adaptive=False))
    r = Running(app)
    try:
        lines = []
        with httpx.stream("POST", f"{r.url}/v1/chat/completions", timeout=30,
                          json=chat(COOK_Q, stream=True, stream_options={"include_usage": True})) as s:  # fmt: skip
            lines = [ln for ln in s.iter_lines() if ln.startswith("data: {")]
        chunks = [json.loads(ln[6:]) for ln in lines]
        assert "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        ) == ("Boil it for 6 minutes.")
        last = chunks[-1]
        assert last["choices"] == [] and "usage" in last and last["usage"] is None, last
        whole = post(r, "/v1/chat/completions", chat(COOK_Q)).json()
        assert whole["model"] == "chef-model" and whole["usage"] is None
        # an upstream that does report tokens still gets counted
        known = post(r, "/v1/chat/completions", chat(MATH_Q)).json()
        assert known["model"] == "math-model" and known["usage"]["total_tokens"] > 0
    finally:
        r.stop()


# ------------------------------------------------------------------------ 14: 500s logged


class FaultyEmbedder:
    """A real embedder that breaks (as a bug would) on any text containing ``BOOM``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if any("BOOM" in t for t in texts):
            raise RuntimeError(f"cannot embed {list(texts)}")
        return np.asarray(self.inner.embed(texts))


def test_server_errors_are_logged_with_a_request_id(
    embedder: Any, upstream: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router.paper(3, embedder=FaultyEmbedder(embedder)).fit(toy_rows())
    r = Running(create_app(Answerer(router, endpoints(upstream), adaptive=False)))
    try:
        with caplog.at_level(logging.INFO):
            bad = post(r, "/v1/route", {"query": "secret BOOM question"})
            bad_chat = post(r, "/v1/chat/completions", chat("secret BOOM question"))
        for resp in (bad, bad_chat):
            err = assert_openai_error(resp, 500)
            rid = resp.headers["x-request-id"]
            assert err["request_id"] == rid and rid in err["message"] and "BOOM" not in resp.text
            (line,) = [rec.getMessage() for rec in caplog.records if rid in rec.getMessage()]
            assert "RuntimeError" in line and "BOOM" not in line and "secret" not in line
        assert bad.headers["x-request-id"] != bad_chat.headers["x-request-id"]
        assert not [rec for rec in caplog.records if "BOOM" in rec.getMessage()]
        # every response carries an id: answers, client errors, unknown paths
        for resp in (
            post(r, "/v1/route", {"query": MATH_Q}),
            post(r, "/v1/route", {"query": ""}),
            httpx.get(f"{r.url}/nowhere"),
            httpx.get(f"{r.url}/health"),
        ):
            assert len(resp.headers["x-request-id"]) == 32, resp.headers
    finally:
        r.stop()


# ------------------------------------------------------------------------ 15: pinned model


def test_pinned_model_without_a_needed_capability_is_400(
    served: Running, upstream: FakeOpenAIServer
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    for extra, capability in (
        ({"tools": [WEATHER]}, "tools"),
        ({"response_format": fmt}, "json_schema"),
    ):
        for stream in (False, True):
            body = {**chat(COOK_Q, **extra), "model": "chef-model", "stream": stream}
            err = assert_openai_error(post(served, "/v1/chat/completions", body), 400, "model")
            assert err["code"] == "unsupported_capability"
            assert "'chef-model'" in err["message"] and capability in err["message"]
    assert upstream.calls("chef") == 0
    # pinned to a model that has it: answered by that model
    ok = post(
        served, "/v1/chat/completions", {**chat(COOK_Q, tools=[WEATHER]), "model": "math-model"}
    )
    assert ok.status_code == 200 and ok.json()["model"] == "math-model"
