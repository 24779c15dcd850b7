"""Tool calls and structured output: capabilities per endpoint, routing among capable candidates,
voting over canonicalised tool calls and JSON, mixed answers, streaming, and the wire format."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from avengers import Router
from avengers.answering.answer import Answerer
from avengers.answering.toolcalls import (
    MAX_JSON_DEPTH,
    TEXT_REPLY,
    VoteKey,
    ballot_text,
    canonical_json,
    matches_schema,
    request_options,
    tool_call,
)
from avengers.answering.voting import counts_margin
from avengers.exceptions import ConfigError
from avengers.transport.capabilities import (
    Capabilities,
    CapabilityError,
    request_needs,
    split_capable,
)
from avengers.transport.endpoints import Endpoint, load_endpoints
from fake_openai_server import FakeModel, FakeOpenAIServer

MATH_Q = "What is 17 times 23?"
COOK_Q = "How long should I boil an egg for a runny yolk?"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
CALC = {
    "type": "function",
    "function": {
        "name": "multiply",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}

TOOLS_ON = {"capabilities": {"tools": True, "json_schema": True}}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math": FakeModel(answers=["391"]),
            "chef": FakeModel(answers=["Boil it for 6 minutes."]),
            "coder": FakeModel(answers=["def f(): pass"]),
        }
    ).start()
    yield s
    s.stop()


def last_chat(server: FakeOpenAIServer) -> dict[str, Any]:
    """The last chat request recorded for one of ``server``'s models. A request whose body never
    arrived (a surplus sample cancelled mid-send once the vote is decided: the fake server reads
    ``{}``, answers 404 to a closed socket) is not a chat request, so it is skipped."""
    return next(
        r for r in reversed(server.requests) if r.get("model") in server.models and "messages" in r
    )


def endpoints(server: FakeOpenAIServer, **over: dict[str, Any]) -> dict[str, Endpoint]:
    names = {"math-model": "math", "chef-model": "chef", "code-model": "coder"}
    out = {}
    for name, mid in names.items():
        kw: dict[str, Any] = {"max_retries": 0, "timeout": 5.0}
        kw.update(over.get(name, {}))
        out[name] = Endpoint(name, server.base_url, model=mid, **kw)
    return out


def calls(*pairs: tuple[str, Any]) -> str:
    return ballot_text("", [tool_call(n, a) for n, a in pairs])


# ------------------------------------------------------------------------ capabilities


def test_capabilities_defaults_are_safe_and_flags_inherit() -> None:
    c = Capabilities()
    assert c.to_dict() == {
        "tools": False,
        "tool_choice": False,
        "parallel_tool_calls": False,
        "json_mode": False,
        "json_schema": False,
        "vision": True,
    }
    t = Capabilities.of(["tools", "json_schema"])
    assert t.has("tool_choice") and t.has("parallel_tool_calls") and t.has("json_mode")
    assert not Capabilities.of({"tools": True, "tool_choice": False}).has("tool_choice")
    assert not Capabilities.of({"tool_choice": True}).has("tool_choice")  # needs tools too


def test_capabilities_in_the_endpoints_file(tmp_path: Any) -> None:
    f = tmp_path / "endpoints.yaml"
    f.write_text(
        "defaults:\n  capabilities: [json_schema]\nendpoints:\n"
        "  a:\n    base_url: http://x/v1\n"
        "  b:\n    base_url: http://x/v1\n    capabilities: {tools: true, json_schema: true}\n"
    )
    eps = load_endpoints(f)
    assert eps["a"].capabilities == Capabilities(json_schema=True)
    assert eps["b"].capabilities.has("tools")
    assert eps["b"].to_dict()["capabilities"]["tool_choice"] is True
    with pytest.raises(ConfigError, match=r"endpoint 'c'.*unknown capabilities \['telepathy'\]"):
        load_endpoints({"c": {"base_url": "http://x/v1", "capabilities": ["telepathy"]}})
    with pytest.raises(ConfigError, match="tools must be true or false"):
        load_endpoints({"c": {"base_url": "http://x/v1", "capabilities": {"tools": "yes"}}})
    with pytest.raises(ConfigError, match="tool calling needs api 'chat'"):
        Endpoint("c", "http://x/v1", api="completions", capabilities=["tools"])


def test_request_needs_and_split() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    assert request_needs(msgs) == []
    opts = request_options(tools=[WEATHER], tool_choice="required", response_format=SCHEMA_FORMAT)
    assert request_needs(msgs, opts) == ["tools", "tool_choice", "json_schema"]
    assert request_needs(msgs, request_options(tools=[WEATHER], tool_choice="auto")) == ["tools"]
    img = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    assert request_needs(img) == ["vision"]
    caps = {"a": Capabilities(), "b": Capabilities(tools=True)}
    kept, excluded = split_capable(["a", "b"], ["tools"], caps.get)
    assert kept == ["b"] and excluded == {"a": "no tool calling"}


def test_request_options_are_checked() -> None:
    assert request_options(response_format={"type": "text"}) == {}
    with pytest.raises(ConfigError, match="tools\\[0\\]"):
        request_options(tools=[{"type": "function"}])
    with pytest.raises(ConfigError, match="tool_choice names a tool that is not given"):
        request_options(
            tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "x"}}
        )
    with pytest.raises(ConfigError, match="need tools"):
        request_options(tool_choice="required")
    with pytest.raises(ConfigError, match="response_format type"):
        request_options(response_format={"type": "yaml"})


# ------------------------------------------------------------------------ canonical keys


def test_canonical_json_ignores_key_order_whitespace_and_number_form() -> None:
    a = json.loads('{"b": 1.0, "a": [1, 2.50, {"y": true, "x": null}]}')
    b = json.loads('{ "a":[1.0,2.5,{"x":null,"y":true}],"b":1 }')
    assert canonical_json(a) == canonical_json(b) == '{"a":[1,2.5,{"x":null,"y":true}],"b":1}'
    assert canonical_json({"s": "你好"}) == '{"s":"你好"}'


def test_vote_keys_for_tool_calls() -> None:
    key = VoteKey(request_options(tools=[WEATHER, CALC]))
    k1 = key(calls(("get_weather", '{"city": "Paris", "days": 2}')))
    k2 = key(calls(("get_weather", '{"days":2.0,"city":"Paris"}')))
    assert k1 == k2 == 'get_weather({"city":"Paris","days":2})'
    # parallel calls vote as a set
    both = key(calls(("multiply", {"a": 2, "b": 3}), ("get_weather", {"city": "Oslo"})))
    assert both == key(calls(("get_weather", {"city": "Oslo"}), ("multiply", {"b": 3, "a": 2})))
    # malformed arguments, schema mismatches and unknown tools do not vote
    assert key(calls(("get_weather", '{"city": "Paris"'))) is None
    assert key(calls(("get_weather", '{"days": 2}'))) is None  # required city missing
    assert key(calls(("get_weather", '"Paris"'))) is None  # not an object
    assert key(calls(("multiply", {"a": 1, "b": 2, "c": 3}))) is None  # additionalProperties
    assert key(calls(("multiply", {"a": "1", "b": 2}))) is None  # wrong type
    assert key(calls(("launch_rockets", {}))) is None
    assert key("Let me think. It is sunny.") == TEXT_REPLY


def test_vote_keys_for_structured_output() -> None:
    key = VoteKey(request_options(response_format=SCHEMA_FORMAT))
    assert key('{"age": 30.0, "name": "Ada"}') == key('{"name":"Ada","age":30}')
    assert key('```json\n{"name": "Ada", "age": 30}\n```') == '{"age":30,"name":"Ada"}'
    assert key('{"name": "Ada"}') is None  # misses a required field
    assert key('{"name": "Ada", "age": "thirty"}') is None
    assert key("Ada, 30") is None
    mode = VoteKey(request_options(response_format={"type": "json_object"}))
    assert mode('{"b": 1, "a": 2}') == '{"a":2,"b":1}' and mode("42") is None


def test_schema_subset() -> None:
    schema = {
        "$defs": {"P": {"type": "object", "properties": {"n": {"enum": ["a", "b"]}}}},
        "type": "object",
        "properties": {
            "p": {"$ref": "#/$defs/P"},
            "xs": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 2},
            "o": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
    assert matches_schema({"p": {"n": "a"}, "xs": [0, 3], "o": None}, schema)
    assert not matches_schema({"p": {"n": "c"}}, schema)
    assert not matches_schema({"xs": [-1]}, schema)
    assert not matches_schema({"xs": [1, 2, 3]}, schema)
    assert not matches_schema({"o": 1}, schema)
    assert matches_schema({"x": 2.0}, {"properties": {"x": {"type": "integer"}}})
    assert not matches_schema({"x": True}, {"properties": {"x": {"type": "integer"}}})


def test_boolean_schemas_match_everything_or_nothing() -> None:
    assert matches_schema({"a": 1}, True) and not matches_schema({"a": 1}, False)
    assert matches_schema({"a": 1}, {"properties": {"a": True}})
    assert not matches_schema({"a": 1}, {"properties": {"a": False}})
    assert matches_schema({"b": 1}, {"properties": {"a": False}})  # only where it applies
    assert not matches_schema([1], {"type": "array", "items": False})
    assert matches_schema([], {"type": "array", "items": False})
    assert matches_schema([1, "x"], {"type": "array", "items": True})
    assert not matches_schema(3, {"anyOf": [False, {"type": "string"}]})
    assert matches_schema("s", {"anyOf": [False, {"type": "string"}]})


def test_adaptive_stopping_counts_keys_like_answers() -> None:
    key = VoteKey(request_options(tools=[WEATHER]))
    texts = [calls(("get_weather", {"city": "Paris"})), calls(("get_weather", '{"city":"Paris"}'))]
    counts: dict[str, int] = {}
    for t in texts:
        k = key(t)
        assert k is not None
        counts[k] = counts.get(k, 0) + 1
    assert counts == {'get_weather({"city":"Paris"})': 2}
    assert counts_margin(counts, 1) and not counts_margin(counts, 2)


# ------------------------------------------------------------------------ answering


def paris(days: Any = 2) -> list[tuple[str, Any]]:
    return [("get_weather", {"city": "Paris", "days": days})]


async def test_majority_over_tool_calls_with_malformed_arguments(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["math"] = FakeModel(
        tool_answers=[
            paris(2),
            [("get_weather", '{"city": "Paris", "days": 2')],  # malformed: no vote
            [("get_weather", '{"days": 2.0, "city": "Paris"}')],
            [("get_weather", {"city": "Rome"})],
            [("get_weather", {"days": 2})],  # schema mismatch: no vote
        ]
    )
    a = Answerer(toy_router, endpoints(server, **{"math-model": TOOLS_ON}), adaptive=False)
    res = await a.aanswer(MATH_Q, tools=[WEATHER], n_samples=5)
    assert res.answer_type == "tool_call" and res.vote_method == "majority"
    assert res.votes == {
        'get_weather({"city":"Paris","days":2})': 2,
        'get_weather({"city":"Rome"})': 1,
    }
    assert res.answer == 'get_weather({"city":"Paris","days":2})'
    (call,) = res.tool_calls
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 2}
    assert res.text == "" and [s.answer for s in res.samples].count(None) == 2
    body = last_chat(server)
    assert body["tools"][0]["function"]["name"] == "get_weather"
    # the account is what dataclasses.asdict gives, and a copy: editing it leaves res alone
    d = res.to_dict()
    want = dataclasses.asdict(res)
    want["decision"], want["share"] = res.decision.to_dict() if res.decision else None, res.share
    want["answer_usage"] = res.answer_usage
    assert d == want and list(d) == list(want)
    d["tool_calls"][0]["function"]["name"] = "changed"
    d["samples"][0]["tool_calls"].clear()
    assert res.tool_calls[0]["function"]["name"] == "get_weather" and res.samples[0].tool_calls


async def test_tie_between_tool_calls_goes_to_the_first_arrived(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["math"] = FakeModel(tool_answers=[paris(1), paris(3)])
    a = Answerer(
        toy_router, endpoints(server, **{"math-model": {**TOOLS_ON, "max_concurrency": 1}})
    )
    res = await a.aanswer(MATH_Q, tools=[WEATHER], n_samples=2)
    assert res.answer == 'get_weather({"city":"Paris","days":1})'
    assert any("tie broken by" in n for n in res.notes)


async def test_adaptive_stopping_with_tool_calls(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["math"] = FakeModel(tool_answers=[paris(2)])
    eps = endpoints(server, **{"math-model": {**TOOLS_ON, "max_concurrency": 1}})
    res = await Answerer(toy_router, eps).aanswer(MATH_Q, tools=[WEATHER], n_samples=5)
    assert res.n_drawn == 3 and res.samples_saved == 2
    assert res.votes == {'get_weather({"city":"Paris","days":2})': 3}


async def test_mixed_answers_text_wins_then_text_is_voted(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["math"] = FakeModel(
        tool_answers=["The answer is 391.", paris(2), "391", paris(3), "It is 381."]
    )
    a = Answerer(toy_router, endpoints(server, **{"math-model": TOOLS_ON}), adaptive=False)
    res = await a.aanswer(MATH_Q, tools=[WEATHER], n_samples=5)
    assert res.tool_calls == [] and res.answer == "391" and res.answer_type == "number"
    assert res.votes == {"391": 2, "381": 1}
    assert any("3 of 5 samples replied in text" in n for n in res.notes)


async def test_mixed_answers_tool_call_wins(toy_router: Router, server: FakeOpenAIServer) -> None:
    server.models["math"] = FakeModel(tool_answers=[paris(2), "391", paris(2.0), "381"])
    eps = endpoints(server, **{"math-model": {**TOOLS_ON, "max_concurrency": 1}})
    a = Answerer(toy_router, eps, adaptive=False)
    res = await a.aanswer(MATH_Q, tools=[WEATHER], n_samples=4)
    # two identical calls against two text replies: a tie, to the first arrived (the call)
    assert res.votes == {'get_weather({"city":"Paris","days":2})': 2, TEXT_REPLY: 2}
    assert res.tool_calls and res.answer == 'get_weather({"city":"Paris","days":2})'


async def test_no_valid_tool_call_returns_the_first_sample(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["math"] = FakeModel(tool_answers=[[("get_weather", "{oops")]])
    a = Answerer(toy_router, endpoints(server, **{"math-model": TOOLS_ON}), adaptive=False)
    res = await a.aanswer(MATH_Q, tools=[WEATHER], n_samples=3)
    assert res.vote_method.startswith("first sample (no valid") and res.answer is None
    assert res.tool_calls[0]["function"]["arguments"] == "{oops"


async def test_structured_output_vote(toy_router: Router, server: FakeOpenAIServer) -> None:
    server.models["math"] = FakeModel(
        json_answers=[
            '{"name": "Ada", "age": 36}',
            '{"age": 36.0,\n "name": "Ada"}',
            '{"name": "Ada"}',  # misses age: no vote
            "not json",
            '{"name": "Bob", "age": 1}',
        ]
    )
    a = Answerer(toy_router, endpoints(server, **{"math-model": TOOLS_ON}), adaptive=False)
    res = await a.aanswer(MATH_Q, response_format=SCHEMA_FORMAT, n_samples=5)
    assert res.answer_type == "json" and res.answer == '{"age":36,"name":"Ada"}'
    assert res.votes == {'{"age":36,"name":"Ada"}': 2, '{"age":1,"name":"Bob"}': 1}
    assert json.loads(res.text) == {"name": "Ada", "age": 36}
    assert last_chat(server)["response_format"] == SCHEMA_FORMAT


def test_json_nested_past_the_limit_is_no_vote_and_never_a_crash() -> None:
    deep = "[" * 5000 + "]" * 5000  # past the parser's own recursion limit
    mid = "[" * 900 + "]" * 900  # parses, but would exhaust the canonical form's recursion
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    mode = VoteKey(request_options(response_format={"type": "json_object"}))
    assert mode(deep) is None and mode(mid) is None
    assert mode(ok) == ok and mode("[" + ok + "]") is None
    key = VoteKey(request_options(tools=[CALC]))
    args = '{"a": 1, "b": ' + mid + "}"
    assert key(calls(("multiply", args))) is None


async def test_a_deeply_nested_sample_loses_the_vote_quietly(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["math"] = FakeModel(
        json_answers=[
            '{"age": 36, "name": "Ada"}',
            "[" * 5000 + "]" * 5000,
            '{"name":"Ada","age":36}',
        ]
    )
    a = Answerer(toy_router, endpoints(server, **{"math-model": TOOLS_ON}), adaptive=False)
    res = await a.aanswer(MATH_Q, response_format={"type": "json_object"}, n_samples=3)
    assert res.answer == '{"age":36,"name":"Ada"}' and sum(res.votes.values()) == 2


async def test_capable_candidates_only_in_router_order(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["chef"] = FakeModel(tool_answers=[paris(2)])
    eps = endpoints(server, **{"chef-model": TOOLS_ON})
    a = Answerer(toy_router, eps, n_samples=2)
    res = await a.aanswer(MATH_Q, tools=[WEATHER])
    assert res.model == "chef-model" and res.decision is not None
    assert res.decision.model == "math-model"  # the router's pick lacked tool calling
    assert res.excluded == {"math-model": "no tool calling", "code-model": "no tool calling"}
    assert server.calls("math") == 0
    assert res.account()["excluded"] == res.excluded
    # a plain request is routed as before
    assert (await a.aanswer(MATH_Q)).model == "math-model"


async def test_no_capable_candidate_is_a_clear_error(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(server))
    with pytest.raises(CapabilityError, match="needs tool calling") as e:
        await a.aanswer(MATH_Q, tools=[WEATHER])
    assert e.value.excluded["math-model"] == "no tool calling"
    with pytest.raises(CapabilityError, match="JSON-schema output"):
        await a.aanswer(MATH_Q, response_format=SCHEMA_FORMAT)
    assert server.requests == []


async def test_streaming_a_tool_call(toy_router: Router, server: FakeOpenAIServer) -> None:
    server.models["math"] = FakeModel(tool_answers=[paris(2)])
    a = Answerer(toy_router, endpoints(server, **{"math-model": TOOLS_ON}), strategy="direct")
    chunks = [c async for c in a.astream(MATH_Q, tools=[WEATHER])]
    res = chunks[-1].result
    assert res is not None and "".join(c.text for c in chunks) == ""
    assert json.loads(res.tool_calls[0]["function"]["arguments"]) == {"city": "Paris", "days": 2}
    assert last_chat(server)["stream"] is True


async def test_tool_turns_reach_tool_models_natively_and_others_as_text(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    history = [
        {"role": "user", "content": MATH_Q},
        {"role": "assistant", "content": None, "tool_calls": [tool_call("multiply", {"a": 17, "b": 23}, "c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "391"},
    ]  # fmt: skip
    a = Answerer(toy_router, endpoints(server, **{"math-model": TOOLS_ON}), strategy="direct")
    res = await a.aanswer(history, text=MATH_Q, tools=[CALC])
    assert res.text == "The tool said: 391"
    sent = last_chat(server)["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "c1" and sent[2]["role"] == "tool"
    plain = Answerer(toy_router, endpoints(server), strategy="direct")
    await plain.aanswer(history, text=MATH_Q)
    sent = last_chat(server)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert "multiply" in sent[1]["content"] and "391" in sent[2]["content"]


# ------------------------------------------------------------------------ the server


@pytest.fixture
def running(toy_router: Router, server: FakeOpenAIServer) -> Iterator[Any]:
    from avengers.server import create_app
    from test_serve import Running

    eps = endpoints(server, **{"math-model": TOOLS_ON, "chef-model": TOOLS_ON})
    r = Running(create_app(Answerer(toy_router, eps, n_samples=3)))
    yield r
    r.stop()


def _multiply(a: float, b: float) -> float:
    return a * b


def test_openai_client_runs_a_tool_loop_through_the_server(
    running: Any, server: FakeOpenAIServer
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{running.url}/v1", api_key="x")
    messages: list[Any] = [{"role": "user", "content": "Use multiply: what is 17 times 23?"}]
    first = client.chat.completions.create(model="avengers", messages=messages, tools=[CALC])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    args = json.loads(call.function.arguments)
    assert call.function.name == "multiply" and args == {"a": 17, "b": 23}
    assert last_chat(server)["tools"] == [CALC]
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": str(_multiply(**args))},
    ]
    final = client.chat.completions.create(model="avengers", messages=messages, tools=[CALC])
    assert final.choices[0].message.content == "The tool said: 391"
    sent = last_chat(server)["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[2]["tool_call_id"] == call.id

    # streamed: the tool calls arrive as OpenAI delta chunks
    stream = client.chat.completions.create(
        model="avengers", messages=messages[:1], tools=[CALC], stream=True
    )
    parts: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for ch in chunk.choices:
            for d in ch.delta.tool_calls or []:
                p = parts.setdefault(d.index, {"name": "", "arguments": ""})
                p["name"] += (d.function and d.function.name) or ""
                p["arguments"] += (d.function and d.function.arguments) or ""
            finish = ch.finish_reason or finish
    assert finish == "tool_calls"
    assert parts[0]["name"] == "multiply" and json.loads(parts[0]["arguments"]) == args

    # structured output
    resp = client.chat.completions.create(
        model="avengers",
        messages=[{"role": "user", "content": "Name 'Ada' aged 36"}],
        response_format=SCHEMA_FORMAT,  # type: ignore[arg-type]
    )
    assert json.loads(resp.choices[0].message.content or "") == {"name": "Ada", "age": 36}


def test_server_rejects_what_no_candidate_can_serve(running: Any, server: FakeOpenAIServer) -> None:
    import httpx

    body = {
        "model": "avengers",
        "messages": [{"role": "user", "content": MATH_Q}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
    }
    r = httpx.post(f"{running.url}/v1/chat/completions", json=body)
    assert r.status_code == 200  # math-model and chef-model declare json_schema
    no_tools = dict(body, response_format=None, tools=[CALC], tool_choice="required")
    for stream in (False, True):
        body_ = dict(no_tools, stream=stream)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Capabilities, "has", lambda self, name: name != "tool_choice")
            r = httpx.post(f"{running.url}/v1/chat/completions", json=body_)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "unsupported_capability" and "a forced tool choice" in err["message"]
    r = httpx.post(
        f"{running.url}/v1/chat/completions", json=dict(no_tools, tool_choice="sometimes")
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"


def test_chat_openai_runs_a_tool_loop_through_the_server(running: Any) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two whole numbers."""
        return a * b

    llm = ChatOpenAI(model="avengers", base_url=f"{running.url}/v1", api_key="x")  # type: ignore[arg-type]
    bound = llm.bind_tools([multiply])
    messages: list[Any] = [HumanMessage("Use multiply: what is 17 times 23?")]
    ai = bound.invoke(messages)
    (call,) = ai.tool_calls
    assert call["name"] == "multiply" and call["args"] == {"a": 17, "b": 23}
    result = multiply.invoke(call)
    assert isinstance(result, ToolMessage)
    final = bound.invoke([*messages, ai, result])
    assert final.content == "The tool said: 391"
    streamed = None
    for chunk in bound.stream(messages):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.tool_calls[0]["args"] == {"a": 17, "b": 23}
