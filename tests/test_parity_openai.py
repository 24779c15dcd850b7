"""Parity of ``avengers serve`` with the OpenAI wire: the official ``openai`` client (and
LangChain's ``ChatOpenAI``) talks to the local fake upstream directly and, beside it, through
the routing server in front of the same upstream; what each sees is compared: stop sequences
reaching the upstream, finish reasons, parameters passed on or refused, stream identity, model
retrieval, and what ``temperature: 0`` costs under voting.

The fake's model ids are the router's candidate names, so ``model="math-model"`` straight to the
fake and a request the server routes (or pins) to ``math-model`` reach the same upstream model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import test_serve as serve_tests
from avengers import Answerer, Endpoint, Router
from avengers.server import create_app
from fake_openai_server import FakeModel, FakeOpenAIServer
from langchain_openai import ChatOpenAI

MATH_Q = "What is 17 times 23?"
ANSWER = "The answer is 391 exactly."
NAMES = ("math-model", "chef-model", "code-model")


class Running(serve_tests.Running):
    """The app on a real port, in a thread (test_serve's runner), with ``url`` at ``/v1``."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.url += "/v1"


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math-model": FakeModel(answers=[ANSWER], truncate=True),
            "chef-model": FakeModel(answers=["Boil it for six minutes."], truncate=True),
            "code-model": FakeModel(answers=["def f(): pass"]),
            "split-model": FakeModel(answers=["one two three four", "one two"], truncate=True),
        }
    ).start()
    yield s
    s.stop()


def endpoints(up: FakeOpenAIServer, **over: Any) -> dict[str, Endpoint]:
    return {n: Endpoint(n, up.base_url, max_retries=0, timeout=5, **over) for n in NAMES}


@pytest.fixture
def served(toy_router: Router, upstream: FakeOpenAIServer) -> Iterator[Running]:
    r = Running(create_app(Answerer(toy_router, endpoints(upstream), adaptive=False)))
    yield r
    r.stop()


def direct(up: FakeOpenAIServer) -> openai.OpenAI:
    """The reference: the official client straight to the upstream."""
    return openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0)


def routed(r: Running) -> openai.OpenAI:
    """The same client through the routing server."""
    return openai.OpenAI(base_url=r.url, api_key="unused", max_retries=0)


def user(text: str = MATH_Q) -> list[Any]:
    return [{"role": "user", "content": text}]


# ------------------------------------------------------------------------------ 1. stop


def test_stop_reaches_the_upstream_as_it_does_directly(
    served: Running, upstream: FakeOpenAIServer
) -> None:
    direct(upstream).chat.completions.create(model="math-model", messages=user(), stop=["\n"])
    assert upstream.requests[-1]["stop"] == ["\n"]
    for model in ("avengers", "avengers-fast", "math-model"):  # voting, streamed-direct, pinned
        upstream.reset()
        routed(served).chat.completions.create(model=model, messages=user(), stop=["\n"])
        assert upstream.requests and all(r["stop"] == ["\n"] for r in upstream.requests)
    upstream.reset()
    routed(served).completions.create(model="avengers", prompt=MATH_Q, stop="END")
    assert all(r["stop"] == ["END"] for r in upstream.requests)
    upstream.reset()
    list(routed(served).chat.completions.create(
        model="avengers-fast", messages=user(), stop=["\n", "Q:"], stream=True
    ))  # fmt: skip
    assert upstream.requests[-1]["stop"] == ["\n", "Q:"]
    # LangChain's ReAct-style binding, through the server (the issue's report)
    upstream.reset()
    chat = ChatOpenAI(base_url=served.url, api_key="unused", model="avengers", max_retries=0)  # type: ignore[arg-type]
    chat.bind(stop=["Observation:"]).invoke(MATH_Q)
    assert upstream.requests and all(r["stop"] == ["Observation:"] for r in upstream.requests)


def test_a_bad_stop_is_a_400_naming_it(served: Running) -> None:
    for bad in (["a", "b", "c", "d", "e"], [""], 5, ["ok", 3]):
        with pytest.raises(openai.BadRequestError) as caught:
            routed(served).chat.completions.create(model="avengers", messages=user(), stop=bad)
        assert caught.value.body["param"] == "stop"  # type: ignore[index]


# ----------------------------------------------------------------------- 2. finish_reason


def test_a_cut_answer_says_length_whole_and_streamed(
    served: Running, upstream: FakeOpenAIServer
) -> None:
    ref = direct(upstream).chat.completions.create(model="math-model", messages=user(),
                                                   max_tokens=3)  # fmt: skip
    assert ref.choices[0].finish_reason == "length"
    for model in ("avengers", "avengers-fast", "math-model"):
        got = routed(served).chat.completions.create(model=model, messages=user(), max_tokens=3)
        assert got.choices[0].finish_reason == "length", model  # was rewritten to "stop"
        assert got.choices[0].message.content == ref.choices[0].message.content
        chunks = list(routed(served).chat.completions.create(
            model=model, messages=user(), max_tokens=3, stream=True
        ))  # fmt: skip
        ends = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
        assert ends == ["length"], model
    legacy_ref = direct(upstream).completions.create(model="math-model", prompt=MATH_Q,
                                                     max_tokens=3)  # fmt: skip
    legacy = routed(served).completions.create(model="avengers", prompt=MATH_Q, max_tokens=3)
    assert legacy.choices[0].finish_reason == legacy_ref.choices[0].finish_reason == "length"
    streamed = list(routed(served).completions.create(
        model="avengers-fast", prompt=MATH_Q, max_tokens=3, stream=True
    ))  # fmt: skip
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "length"
    whole = routed(served).chat.completions.create(model="avengers", messages=user())
    assert whole.choices[0].finish_reason == "stop"  # an answer that was not cut


def test_the_account_says_when_samples_ended_differently(
    toy_router: Router, upstream: FakeOpenAIServer
) -> None:
    eps = endpoints(upstream, model="split-model")
    r = Running(create_app(Answerer(toy_router, eps, adaptive=False)))
    try:
        got = routed(r).chat.completions.create(
            model="avengers", messages=user(), max_tokens=3, extra_body={"n_samples": 2}
        )
    finally:
        r.stop()
    account = (got.model_extra or {})["avengers"]
    assert sorted(s["finish_reason"] for s in account["samples"]) == ["length", "stop"]
    assert got.choices[0].finish_reason == account["finish_reason"]
    # usage sums both samples (what was paid); answer_usage is the returned one's own
    chosen = account["samples"][account["chosen"]]
    assert account["answer_usage"] == {
        "prompt_tokens": chosen["prompt_tokens"],
        "completion_tokens": chosen["completion_tokens"],
        "total_tokens": chosen["prompt_tokens"] + chosen["completion_tokens"],
    }
    assert got.usage is not None
    assert got.usage.completion_tokens == sum(s["completion_tokens"] for s in account["samples"])
    assert got.usage.completion_tokens > account["answer_usage"]["completion_tokens"]
    assert any("samples ended differently (1 length, 1 stop)" in n for n in account["notes"]), (
        account["notes"]
    )


# ------------------------------------------------------------------ 5. temperature 0


def test_temperature_zero_draws_one_sample_and_says_so(
    served: Running, upstream: FakeOpenAIServer
) -> None:
    """Greedy decoding answers the same every time: one call upstream, as the client straight to
    the upstream makes, not ten identical paid-for ones."""
    ref = direct(upstream).chat.completions.create(model="math-model", messages=user(),
                                                   temperature=0)  # fmt: skip
    assert upstream.calls("math-model") == 1
    upstream.reset()
    got = routed(served).chat.completions.create(model="avengers", messages=user(), temperature=0)
    assert got.choices[0].message.content == ref.choices[0].message.content
    assert upstream.calls("math-model") == 1
    account = (got.model_extra or {})["avengers"]
    assert account["n_drawn"] == 1 and account["n_requested"] == 1
    assert any(n.startswith("temperature 0: one sample per model instead of 10") for n in
               account["notes"])  # fmt: skip
    assert got.usage is not None and ref.usage is not None
    assert got.usage.total_tokens == ref.usage.total_tokens  # one call's usage, paid once
    upstream.reset()
    warm = routed(served).chat.completions.create(model="avengers", messages=user(),
                                                  temperature=0.7)  # fmt: skip
    assert upstream.calls("math-model") == 10 == (warm.model_extra or {})["avengers"]["n_drawn"]
    # and a voting profile at temperature 0 streams token by token, as one sample does
    upstream.reset()
    chunks = list(routed(served).chat.completions.create(
        model="avengers", messages=user(), temperature=0, stream=True
    ))  # fmt: skip
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == ANSWER and len(pieces) == len(ANSWER.split())
    assert upstream.calls("math-model") == 1


# ------------------------------------------------------------------- 4. stream identity


@pytest.mark.parametrize("model", ["avengers", "avengers-fast", "chef-model"])
def test_every_chunk_names_the_answering_candidate_as_the_upstream_does(
    served: Running, upstream: FakeOpenAIServer, model: str
) -> None:
    """The rule: every chunk's ``model`` (as the whole response's) is the candidate that answers
    (it used to be the profile's name on text chunks and the candidate's on the last)."""
    ref = list(direct(upstream).chat.completions.create(
        model="math-model", messages=user(), stream=True, stream_options={"include_usage": True}
    ))  # fmt: skip
    assert {c.model for c in ref} == {"math-model"}
    chunks = list(routed(served).chat.completions.create(
        model=model, messages=user(), stream=True, stream_options={"include_usage": True}
    ))  # fmt: skip
    whole = routed(served).chat.completions.create(model=model, messages=user())
    assert len({c.model for c in chunks}) == 1
    assert (
        chunks[0].model == whole.model == ("chef-model" if model == "chef-model" else "math-model")
    )
    assert {c.id for c in chunks} == {chunks[0].id}
    fingerprints = {c.system_fingerprint for c in chunks} | {whole.system_fingerprint}
    assert len(fingerprints) == 1 and str(fingerprints.pop()).startswith("fp_")
    legacy = list(routed(served).completions.create(model=model, prompt=MATH_Q, stream=True))
    assert len({c.model for c in legacy}) == 1 and legacy[0].system_fingerprint


def test_models_retrieve_and_request_ids_as_openai_gives_them(served: Running) -> None:
    c = routed(served)
    for m in c.models.list().data:
        got = c.models.retrieve(m.id)  # was a 404
        assert (got.id, got.object, got.owned_by) == (m.id, "model", "avengers")
    with pytest.raises(openai.NotFoundError) as caught:
        c.models.retrieve("gpt-5")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]
    raw = c.chat.completions.with_raw_response.create(model="avengers", messages=user())
    assert raw.request_id and raw.headers["x-request-id"] == raw.request_id
    resp = c.chat.completions.create(model="avengers", messages=user())
    assert resp._request_id  # the openai client reads x-request-id
    assert resp.system_fingerprint == raw.parse().system_fingerprint  # one server, one fingerprint


# -------------------------------------------------------------------- 3. parameters

PASSED = {"seed": 7, "top_p": 0.5, "frequency_penalty": 0.25, "presence_penalty": -0.5,
          "user": "user-42"}  # fmt: skip


def test_passed_parameters_reach_every_sample_as_they_reach_the_upstream_directly(
    served: Running, upstream: FakeOpenAIServer
) -> None:
    direct(upstream).chat.completions.create(model="math-model", messages=user(), **PASSED)
    ref = {k: upstream.requests[-1][k] for k in PASSED}
    assert ref == PASSED
    for model in ("avengers", "avengers-fast", "math-model"):
        upstream.reset()
        routed(served).chat.completions.create(
            model=model, messages=user(), extra_body={"n_samples": 3}, **PASSED
        )
        assert len(upstream.requests) == (1 if model == "avengers-fast" else 3)
        assert all({k: r[k] for k in PASSED} == ref for r in upstream.requests), model
    upstream.reset()
    list(routed(served).chat.completions.create(model="avengers-fast", messages=user(),
                                                stream=True, **PASSED))  # fmt: skip
    assert {k: upstream.requests[-1][k] for k in PASSED} == ref
    upstream.reset()
    routed(served).completions.create(model="avengers", prompt=MATH_Q, seed=7, top_p=0.5)
    assert all((r["seed"], r["top_p"]) == (7, 0.5) for r in upstream.requests)
    # ChatOpenAI's bound parameters, through the server
    upstream.reset()
    chat = ChatOpenAI(base_url=served.url, api_key="unused", model="avengers-fast",  # type: ignore[arg-type]
                      max_retries=0, seed=7, top_p=0.5)  # fmt: skip
    chat.invoke(MATH_Q)
    assert (upstream.requests[-1]["seed"], upstream.requests[-1]["top_p"]) == (7, 0.5)


def test_logit_bias_is_passed_only_where_its_token_ids_mean_something(
    served: Running, upstream: FakeOpenAIServer
) -> None:
    bias = {"391": 5, "17": -100}
    direct(upstream).chat.completions.create(model="math-model", messages=user(), logit_bias=bias)
    assert upstream.requests[-1]["logit_bias"] == bias
    upstream.reset()
    routed(served).chat.completions.create(model="math-model", messages=user(), logit_bias=bias)
    assert upstream.requests and all(r["logit_bias"] == bias for r in upstream.requests)
    with pytest.raises(openai.BadRequestError, match="pins a candidate") as caught:
        routed(served).chat.completions.create(model="avengers", messages=user(), logit_bias=bias)
    assert caught.value.body["param"] == "logit_bias"  # type: ignore[index]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("top_p", 5), ("top_p", -0.1), ("frequency_penalty", 2.5), ("presence_penalty", -3),
        ("seed", 1.5), ("user", 7), ("logit_bias", {"1": 101}), ("logit_bias", {"word": 1}),
        ("logit_bias", [1]), ("top_logprobs", 21), ("logprobs", "yes"),
    ],
)  # fmt: skip
def test_parameters_are_validated_as_the_openai_api_does(
    served: Running, param: str, value: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        routed(served).chat.completions.create(
            model="math-model", messages=user(), extra_body={param: value}
        )
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "param", "says"),
    [
        ({"logprobs": True}, "logprobs", "log-probabilities are not collected"),
        ({"logprobs": True, "top_logprobs": 3}, "logprobs", "not collected"),
        ({"top_logprobs": 3}, "top_logprobs", "needs 'logprobs': true"),
        ({"functions": [{"name": "f", "parameters": {"type": "object"}}]}, "functions",
         "use 'tools'"),
        ({"function_call": "auto"}, "function_call", "use 'tool_choice'"),
        ({"store": True}, "store", "not stored"),
        ({"metadata": {"a": "b"}}, "metadata", "none are stored"),
        ({"service_tier": "flex"}, "service_tier", "one tier"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate", "Unrecognized request argument"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_a_400_naming_it(
    served: Running, upstream: FakeOpenAIServer, kwargs: dict[str, Any], param: str, says: str
) -> None:
    upstream.reset()
    with pytest.raises(openai.BadRequestError, match=says) as caught:
        routed(served).chat.completions.create(model="avengers", messages=user(), **kwargs)
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert upstream.requests == []  # refused before any sample is drawn
    ok = routed(served).chat.completions.create(  # the harmless forms are accepted
        model="avengers", messages=user(), logprobs=False, store=False, service_tier="auto"
    )
    assert ok.choices[0].message.content


def test_legacy_parameters(served: Running, upstream: FakeOpenAIServer) -> None:
    echoed = routed(served).completions.create(model="avengers", prompt=MATH_Q, echo=True)
    assert echoed.choices[0].text == MATH_Q + ANSWER  # as OpenAI's echo: prompt, then answer
    pieces = list(routed(served).completions.create(model="avengers-fast", prompt=MATH_Q,
                                                    echo=True, stream=True))  # fmt: skip
    assert "".join(c.choices[0].text for c in pieces if c.choices) == MATH_Q + ANSWER
    assert routed(served).completions.create(model="avengers", prompt=MATH_Q, best_of=1).choices
    for kwargs, param in (({"best_of": 3}, "best_of"), ({"logprobs": 2}, "logprobs"),
                          ({"suffix": "!"}, "suffix"), ({"best_of": 0}, "best_of")):  # fmt: skip
        with pytest.raises(openai.BadRequestError) as caught:
            routed(served).completions.create(model="avengers", prompt=MATH_Q, **kwargs)
        assert caught.value.body["param"] == param  # type: ignore[index]


def test_allowed_tools_narrow_the_tools_offered(
    toy_router: Router, upstream: FakeOpenAIServer
) -> None:
    tools = [
        {"type": "function", "function": {"name": name, "parameters": {
            "type": "object", "properties": {"a": {"type": "integer"}}}}}
        for name in ("multiply", "add")
    ]  # fmt: skip
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "add"}}]}}  # fmt: skip
    r = Running(create_app(Answerer(toy_router, endpoints(upstream, capabilities={"tools": True}),
                                    adaptive=False)))  # fmt: skip
    try:
        got = routed(r).chat.completions.create(
            model="avengers",
            messages=user(),
            tools=tools,
            tool_choice=choice,  # type: ignore[arg-type]
            extra_body={"n_samples": 2},
        )
        sent = upstream.requests[-1]
        assert [t["function"]["name"] for t in sent["tools"]] == ["add"]
        assert sent["tool_choice"] == "required"
        calls = got.choices[0].message.tool_calls
        assert calls and calls[0].function.name == "add"  # type: ignore[union-attr]
        assert got.choices[0].finish_reason == "tool_calls"
        bad = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
            {"type": "function", "function": {"name": "divide"}}]}}  # fmt: skip
        with pytest.raises(openai.BadRequestError, match="not given: \\['divide'\\]") as caught:
            routed(r).chat.completions.create(
                model="avengers",
                messages=user(),
                tools=tools,
                tool_choice=bad,  # type: ignore[arg-type]
            )
        assert caught.value.body["param"] == "tool_choice"  # type: ignore[index]
    finally:
        r.stop()


def test_the_docs_parameter_table_is_the_servers() -> None:
    """docs/serve.md's table lists every parameter the server knows, handled as it says."""
    import re
    from pathlib import Path

    from avengers.transport.openai_params import PARAMETERS

    text = (Path(__file__).resolve().parents[1] / "docs" / "serve.md").read_text()
    section = text.split("## OpenAI parameters", 1)[1].split("**Finish reasons.**", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (\w+) \|", section, flags=re.M)
    assert rows == [(p.name, p.where, p.handling) for p in PARAMETERS]
