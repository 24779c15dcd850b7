"""Answering through real HTTP: the official openai client against a local deterministic server."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from avengers import Router
from avengers.answering.answer import Answerer, AnswerError, SamplingConfig
from avengers.exceptions import ConfigError
from avengers.transport.endpoints import Endpoint
from fake_openai_server import FakeModel, FakeOpenAIServer

MATH_Q = "What is 17 times 23?"
COOK_Q = "How long should I boil an egg for a runny yolk?"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math": FakeModel(answers=["391", "The answer is 391.", "381"], delay=0.02),
            "chef": FakeModel(answers=["Boil it for 6 minutes."], delay=0.02),
            "coder": FakeModel(answers=["def f(): pass"], delay=0.02),
        }
    ).start()
    yield s
    s.stop()


def endpoints(server: FakeOpenAIServer, **over: dict[str, Any]) -> dict[str, Endpoint]:
    names = {"math-model": "math", "chef-model": "chef", "code-model": "coder"}
    out = {}
    for name, mid in names.items():
        kw: dict[str, Any] = {"max_retries": 0, "timeout": 5.0, "max_concurrency": 4}
        kw.update(over.get(name, {}))
        out[name] = Endpoint(name, kw.pop("base_url", server.base_url), model=mid, **kw)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_self_consistency_majority_and_account(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(server), adaptive=False)
    res = await a.aanswer(MATH_Q)
    assert res.model == "math-model" and res.decision is not None
    assert res.decision.model == "math-model"
    assert res.answer == "391" and res.votes == {"391": 7, "381": 3}
    assert res.answer_type == "number" and res.vote_method == "majority"
    assert res.n_drawn == 10 == server.calls("math") and res.samples_saved == 0
    assert len(res.samples) == 10 and {s.answer for s in res.samples} == {"391", "381"}
    assert res.completion_tokens == sum(s.completion_tokens for s in res.samples) > 0
    assert res.latency >= res.routing_latency > 0
    # concurrent requests really overlapped, and never beyond the endpoint's limit
    assert 1 < server.peak_in_flight["math"] <= 4
    json.dumps(res.to_dict())  # the account is plain data
    assert "391" in res.summary()


async def test_different_queries_reach_different_models(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(server), n_samples=3)
    math, cook = await a.aanswer_batch([MATH_Q, COOK_Q])
    assert math.model == "math-model" and cook.model == "chef-model"
    assert cook.text == "Boil it for 6 minutes."


async def test_adaptive_sampling_stops_when_the_leader_is_safe(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    eps = endpoints(server, **{"chef-model": {"max_concurrency": 2}})
    a = Answerer(toy_router, eps, answer_type="short")
    res = await a.aanswer(COOK_Q)
    # all answers agree: after 6 votes the remaining 4 cannot overturn the leader
    assert res.votes["boil it for 6 minutes"] == res.n_drawn
    assert 6 <= res.n_drawn < 10 and res.samples_saved == 10 - res.n_drawn
    one_by_one = endpoints(server, **{"chef-model": {"max_concurrency": 1}})
    res = await Answerer(toy_router, one_by_one, answer_type="short").aanswer(COOK_Q)
    assert res.n_drawn == 6 and res.samples_saved == 4
    res = await Answerer(toy_router, one_by_one, answer_type="short", stop_on_agreement=3).aanswer(
        COOK_Q
    )
    assert res.n_drawn == 3


async def test_ties_resolve_by_model_rank_then_earliest(toy_router: Router) -> None:
    s = FakeOpenAIServer(
        {
            "math": FakeModel(answers=["7", "7", "5", "6"]),
            "coder": FakeModel(answers=["9", "9", "3", "4"]),
            "chef": FakeModel(answers=["8", "2"]),
        }
    ).start()
    try:
        eps = endpoints(s, **{n: {"max_concurrency": 1} for n in ("math-model", "code-model")})
        a = Answerer(toy_router, eps, strategy="model_switch", n_samples=4, answer_type="number")
        res = await a.aanswer(MATH_Q)
        # math (rank 1) is split 2/4 < 0.8: code-model (rank 2) joins; 7 and 9 tie at two votes
        assert res.models_used == ["math-model", "code-model"]
        assert res.votes == {"7": 2, "9": 2, "5": 1, "6": 1, "3": 1, "4": 1}
        assert res.answer == "7" and any("model rank" in n for n in res.notes)
        # same model, one request at a time: the answer that arrived first wins the tie
        eps = endpoints(s, **{"chef-model": {"max_concurrency": 1}})
        res = await Answerer(toy_router, eps, n_samples=2, answer_type="number").aanswer(COOK_Q)
        assert res.votes == {"8": 1, "2": 1} and res.answer == "8"
        assert any("earliest answer" in n for n in res.notes)
    finally:
        s.stop()


async def test_model_switch_only_calls_the_second_model_when_needed(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(server), strategy="model_switch", adaptive=False)
    res = await a.aanswer(COOK_Q)  # chef agrees with itself 10/10
    assert res.models_used == ["chef-model"] and server.calls("chef") == 10
    assert server.calls("math") == server.calls("coder") == 0
    res = await a.aanswer(MATH_Q)  # math is 7/10 = 0.7 < 0.8
    assert res.models_used == ["math-model", "code-model"] and res.n_requested == 20
    assert res.votes["391"] == 7 and res.answer == "391"


async def test_direct_is_one_sample(toy_router: Router, server: FakeOpenAIServer) -> None:
    res = await Answerer(toy_router, endpoints(server), strategy="direct").aanswer(MATH_Q)
    assert res.n_drawn == 1 == server.calls("math") and res.vote_method == "single"
    assert res.text == "391"


FAULTS = ["500", "429", "garbage", "no_choices", "slow", "drop", "down"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_top_model_fault_falls_back_to_the_next(
    toy_router: Router, server: FakeOpenAIServer, fault: str
) -> None:
    over: dict[str, Any] = {"timeout": 0.5}
    if fault == "down":
        over["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    else:
        server.models["math"] = FakeModel(
            answers=["391"], fault=fault, delay=2.0 if fault == "slow" else 0
        )
    a = Answerer(toy_router, endpoints(server, **{"math-model": over}), n_samples=3)
    res = await a.aanswer(MATH_Q)
    ranking = [m.model for m in res.decision.ranking]  # type: ignore[union-attr]
    assert ranking[0] == "math-model"
    assert res.model == ranking[1] and res.fallback and "math-model failed" in res.fallback
    kinds = {f.kind for f in res.failures if f.model == "math-model"}
    expected = {
        "500": "server_error",
        "429": "rate_limit",
        "garbage": "bad_response",
        "no_choices": "bad_response",
        "slow": "timeout",
        "drop": "connection",
        "down": "connection",
    }[fault]
    assert kinds == {expected}


async def test_partial_failures_vote_over_what_arrived(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["math"] = FakeModel(answers=["391"], fault="500", fault_every=2)
    res = await Answerer(toy_router, endpoints(server), adaptive=False).aanswer(MATH_Q)
    assert res.model == "math-model" and res.fallback is None and res.answer == "391"
    assert res.votes == {"391": 5}
    assert [(f.model, f.kind, f.count) for f in res.failures] == [("math-model", "server_error", 5)]


async def test_retries_with_backoff_hide_transient_faults(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["math"] = FakeModel(answers=["391"], fault="429", fault_every=2)
    eps = endpoints(server, **{"math-model": {"max_retries": 3, "max_concurrency": 1}})
    res = await Answerer(toy_router, eps, n_samples=3, adaptive=False).aanswer(MATH_Q)
    assert res.failures == [] and res.votes == {"391": 3}
    # every other call is rate-limited (the 1st, 3rd, 5th): each of the three samples took one
    # failed call and one retry that answered, so exactly six calls
    assert server.calls("math") == 6


async def test_every_candidate_failing_is_one_clear_error(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    for m in ("math", "chef", "coder"):
        server.models[m] = FakeModel(fault="500")
    with pytest.raises(AnswerError) as e:
        await Answerer(toy_router, endpoints(server), n_samples=2).aanswer(MATH_Q)
    text = str(e.value)
    assert "every candidate model failed" in text
    for m in ("math-model", "chef-model", "code-model"):
        assert f"{m}: server_error" in text


async def test_keys_never_appear_in_logs_or_reprs(
    toy_router: Router,
    server: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-test-0123456789-secret"
    monkeypatch.setenv("AVENGERS_TEST_KEY", secret)
    eps = endpoints(
        server, **{n: {"api_key_env": "AVENGERS_TEST_KEY"} for n in ("math-model", "code-model")}
    )
    server.models["math"] = FakeModel(fault="500")  # also exercise the failure path
    caplog.set_level(logging.DEBUG)
    a = Answerer(toy_router, eps, n_samples=2)
    res = await a.aanswer(MATH_Q)
    # the key was really sent...
    assert any(h.get("Authorization") == f"Bearer {secret}" for h in server.headers)
    # ...and is nowhere a user or a log could see it
    assert secret not in caplog.text
    assert secret not in repr(a) and secret not in repr(eps)
    assert secret not in json.dumps(res.to_dict()) and secret not in res.summary()


async def test_streaming_one_sample_token_by_token(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["chef"] = FakeModel(answers=["Boil the egg for six minutes exactly."])
    a = Answerer(toy_router, endpoints(server), strategy="direct")
    chunks = [c async for c in a.astream(COOK_Q)]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 3 and "".join(texts) == "Boil the egg for six minutes exactly."
    final = chunks[-1].result
    assert final is not None and final.model == "chef-model" and final.completion_tokens == 7
    # the top model failing before its first token: the next one streams instead
    server.models["chef"] = FakeModel(fault="500")
    chunks = [c async for c in a.astream(COOK_Q)]
    assert chunks[-1].result is not None and chunks[-1].result.model != "chef-model"
    assert chunks[-1].result.failures[0].model == "chef-model"


async def test_streaming_with_voting_sends_the_winner_once(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(server), n_samples=5)
    chunks = [c async for c in a.astream(MATH_Q)]
    assert len(chunks) == 2 and chunks[0].text in ("391", "The answer is 391.")
    assert chunks[1].result is not None and chunks[1].result.answer == "391"


def test_sync_twins(toy_router: Router, server: FakeOpenAIServer) -> None:
    a = Answerer(toy_router, endpoints(server), n_samples=3)
    assert a.answer(MATH_Q).answer == "391"
    assert [r.model for r in a.answer_batch([MATH_Q, COOK_Q])] == ["math-model", "chef-model"]
    assert a.route(COOK_Q).model == "chef-model"
    chunks = list(Answerer(toy_router, endpoints(server), strategy="direct").stream(COOK_Q))
    assert "".join(c.text for c in chunks) == "Boil it for 6 minutes."


async def test_sync_call_inside_a_running_loop(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    # e.g. a notebook: the sync API must not fail with "event loop is already running"
    assert Answerer(toy_router, endpoints(server), n_samples=2).answer(MATH_Q).answer == "391"


async def test_open_text_uses_the_medoid_and_says_so(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    server.models["chef"] = FakeModel(
        answers=[
            "Boil the egg for about six minutes, then cool it in cold water before peeling.",
            "Cook the egg in boiling water for six minutes and then put it in cold water.",
            "Eggs are laid by hens and come in many colours such as brown and white.",
        ]
    )
    res = await Answerer(toy_router, endpoints(server), n_samples=3, answer_type="text").aanswer(
        COOK_Q
    )
    assert res.vote_method == "medoid" and "medoid" in " ".join(res.notes)
    assert "hens" not in res.text


async def test_code_is_not_voted_without_an_equivalence_check(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    q = "Write a Python function that reverses a string."
    server.models["coder"] = FakeModel(
        answers=[
            "def r(s):\n    return s[::-1]",
            "def r(t):\n    return t[::-1]",
            "def r(s):\n    return s",
        ]
    )
    a = Answerer(toy_router, endpoints(server), n_samples=3, answer_type="code", adaptive=False)
    res = await a.aanswer(q)
    assert res.model == "code-model" and "not voted" in res.vote_method and res.votes == {}

    def same(x: str, y: str) -> bool:
        fx: dict[str, Any] = {}
        fy: dict[str, Any] = {}
        exec(x, fx)
        exec(y, fy)
        return bool(fx["r"]("abc") == fy["r"]("abc"))

    res = await a.aanswer(q, equivalence=same)
    assert res.vote_method == "equivalence" and sorted(res.votes.values()) == [1, 2]
    assert res.text.endswith("[::-1]")


async def test_pin_and_alpha_and_bad_settings(toy_router: Router, server: FakeOpenAIServer) -> None:
    a = Answerer(toy_router, endpoints(server), n_samples=2)
    assert (await a.aanswer(MATH_Q, prefer="chef-model")).model == "chef-model"
    with pytest.raises(ConfigError, match="cannot pin"):
        await a.aanswer(MATH_Q, prefer="nobody")
    with pytest.raises(ConfigError, match="strategy"):
        SamplingConfig(strategy="best_of")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_samples"):
        SamplingConfig(n_samples=0)
    with pytest.raises(ConfigError, match="no endpoint matches"):
        Answerer(toy_router, {"other": Endpoint("other", server.base_url)})
    with pytest.raises(ConfigError, match="empty"):
        await a.aanswer("   ")


async def test_base_model_endpoints_use_a_prompt_template(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    eps = endpoints(server, **{"math-model": {"api": "completions", "system_prompt": "Be brief."}})
    a = Answerer(toy_router, eps, n_samples=3, adaptive=False)
    res = await a.aanswer(MATH_Q)
    assert res.answer == "391" and res.model == "math-model"
    sent = [r for r in server.requests if r.get("model") == "math"]
    assert sent[0]["prompt"] == f"Be brief.\n\nQuestion: {MATH_Q}\nAnswer:"
    assert sent[0]["stop"] == ["\n\n", "Question:"] and "messages" not in sent[0]
    chunks = [c async for c in a.astream(MATH_Q, strategy="direct")]
    assert chunks[-1].result is not None and chunks[-1].result.text == "".join(
        c.text for c in chunks
    )


def test_chat_template_without_system_role() -> None:
    from avengers.transport.backends import prepare_messages

    ep = Endpoint("g", "http://127.0.0.1:1/v1", system_prompt="Be brief.", system_role=False)
    msgs = prepare_messages(ep, [{"role": "user", "content": "Hi"}])
    assert msgs == [{"role": "user", "content": "Be brief.\n\nHi"}]
    with pytest.raises(ConfigError, match="api must be"):
        Endpoint("g", "http://127.0.0.1:1/v1", api="grpc")


def test_messages_policy() -> None:
    from avengers.answering.messages import as_messages, content_text, for_candidates, routing_text

    parts = [{"type": "text", "text": "What is"}, {"type": "text", "text": "17 times 23?"}]
    chat = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": "391"},
        {"role": "tool", "content": "42"},
    ]
    assert content_text(parts) == "What is\n17 times 23?" and content_text(None) == ""
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    assert routing_text(chat) == "What is\n17 times 23?"  # the tool result is not a user turn
    assert routing_text([{"role": "human", "content": "hi"}]) == "hi"  # LangChain's name
    assert routing_text(chat, "conversation").splitlines()[0] == "system: be brief"
    assert routing_text(chat, "[{last_user}]") == "[What is\n17 times 23?]"
    rag = [{"role": "user", "content": "Context: eggs\nQuery: How long?\nAnswer:"}]
    assert routing_text(rag, "query") == "How long?"
    assert routing_text(rag, lambda ms: str(len(ms))) == "1"
    assert for_candidates(chat)[-1] == {"role": "user", "content": "42"}
    with pytest.raises(ConfigError, match="no user message"):
        routing_text(chat[:1])
    with pytest.raises(ConfigError, match="routing must be"):
        routing_text(chat, "last")
    with pytest.raises(ConfigError, match="empty"):
        as_messages(" ")


def test_sampling_config_checks_and_copies() -> None:
    from avengers.answering.config import as_strategy, check_alpha

    cfg = SamplingConfig(stop=["END"])
    assert cfg.stop == ("END",) and cfg.call_options()["stop"] == ["END"]
    assert "stop" not in SamplingConfig().call_options()  # older backends take no stop
    assert SamplingConfig.of({"n_samples": 3}).n_samples == 3
    assert SamplingConfig.of(None, default=SamplingConfig(n_samples=2)).n_samples == 2
    assert cfg.updated(n_samples=4, alpha=None).n_samples == 4 and cfg.n_samples == 10
    assert as_strategy("direct") == "direct"
    with pytest.raises(ConfigError, match="unknown sampling settings"):
        cfg.updated(samples=3)
    with pytest.raises(ConfigError, match="alpha"):
        check_alpha(1.5)
    with pytest.raises(ConfigError, match="alpha"):
        SamplingConfig(alpha=-0.1)
    with pytest.raises(ConfigError, match="strategy"):
        as_strategy("best_of")


async def test_stop_and_model_temperature_reach_the_endpoint(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    eps = endpoints(server, **{"chef-model": {"stop": ("\n\n",)}})
    cfg = SamplingConfig(strategy="direct", stop=["END"], temperature=None)  # None: the model's
    a = Answerer(toy_router, eps, cfg)
    res = await a.aanswer(COOK_Q)
    (req,) = server.requests
    assert req["stop"] == ["\n\n", "END"] and "temperature" not in req
    chunks = [c async for c in a.astream(COOK_Q, temperature=0.2)]
    assert server.requests[-1]["temperature"] == 0.2 and server.requests[-1]["stop"][-1] == "END"
    final = chunks[-1].result
    assert final is not None and final.text == res.text and final.decision is not None
    with pytest.raises(AttributeError):
        final.text = "patched"  # type: ignore[misc]  # results are built complete, once


def test_sync_route_takes_a_task_hint_like_aroute(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    a = Answerer(toy_router, endpoints(server))
    q = "What is 12 times 12?"
    hinted = a.route(q, task="cooking")
    assert hinted.task == "cooking" and hinted.model == "chef-model"
    assert hinted.ranking == toy_router.route(q, task="cooking").ranking
    assert a.route(q).model == "math-model"


async def test_whole_answers_send_the_endpoint_settings_on_the_wire(
    toy_router: Router, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean JSON client sends what the official client would: the endpoint's model id, the
    bearer key from the named environment variable, ``extra_body`` merged into the body."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", "sk-test-123")
    over = {"api_key_env": "FAKE_UPSTREAM_KEY", "extra_body": {"top_k": 5, "seed": 11}}
    a = Answerer(toy_router, endpoints(server, **{"math-model": over}), adaptive=False)
    res = await a.aanswer(MATH_Q, n_samples=1, temperature=0.3, max_tokens=77)
    await a.aclose()
    assert res.model == "math-model" and res.prompt_tokens > 0 and res.completion_tokens > 0
    body, head = server.requests[-1], server.headers[-1]
    assert body["model"] == "math" and body["top_k"] == 5 and body["seed"] == 11
    assert "extra_body" not in body
    assert body["temperature"] == 0.3 and body["max_tokens"] == 77
    assert body["messages"][-1] == {"role": "user", "content": MATH_Q}
    assert {k.lower(): v for k, v in head.items()}["authorization"] == "Bearer sk-test-123"


async def test_each_sample_carries_its_upstream_finish_reason(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    """The upstream's ``finish_reason`` reaches every sample, the result (the chosen sample's)
    and the account, for whole and streamed answers; a sample cut at ``max_tokens`` says
    ``length``."""
    server.models["math"] = FakeModel(
        answers=["391", "Let me think about this one carefully: the product is 391."],
        truncate=True,
    )
    a = Answerer(
        toy_router,
        endpoints(server),
        n_samples=4,
        adaptive=False,
        max_tokens=6,
        answer_type="number",
    )
    res = await a.aanswer(MATH_Q)
    assert sorted(s.finish_reason or "" for s in res.samples) == [
        "length", "length", "stop", "stop",
    ]  # fmt: skip
    cut = next(s for s in res.samples if s.finish_reason == "length")
    assert cut.text == "Let me think about this one" and cut.answer is None
    assert res.answer == "391" and res.text == "391" and res.finish_reason == "stop"
    assert [s["finish_reason"] for s in res.account()["samples"]] == [
        s.finish_reason for s in res.samples
    ]
    direct = Answerer(toy_router, endpoints(server), strategy="direct", max_tokens=6)
    whole = await direct.aanswer(MATH_Q)
    streamed = [c async for c in direct.astream(MATH_Q)][-1].result
    assert streamed is not None
    for r in (whole, streamed):
        assert r.finish_reason == r.samples[0].finish_reason
        assert r.finish_reason == ("length" if len(r.text.split()) == 6 else "stop")
    assert {whole.finish_reason, streamed.finish_reason} == {"stop", "length"}
    server.models["math"] = FakeModel(answers=["391"])
    assert (await direct.aanswer(MATH_Q)).finish_reason == "stop"


async def test_costs_carry_no_float_noise(toy_router: Router, server: FakeOpenAIServer) -> None:
    """A priced answer's cost is the exact sum of its samples' costs (USD per million tokens
    times tokens), not a float sum's noise such as ``3.1799999999999994e-05`` (these prices
    give noise in plain float arithmetic: 5 tokens at 0.3 plus 1 at 0.1 is
    ``1.6000000000000001e-06``)."""
    from fractions import Fraction

    for pin, pout in ((0.3, 0.1), (0.05, 0.05)):
        prices = {"input_price": pin, "output_price": pout}
        a = Answerer(toy_router, endpoints(server, **{"math-model": prices}), adaptive=False)
        for n in (3, 7, 10):
            res = await a.aanswer(MATH_Q, n_samples=n)
            exact = [
                (s.prompt_tokens * Fraction(str(pin)) + s.completion_tokens * Fraction(str(pout)))
                / 10**6
                for s in res.samples
            ]
            assert [s.cost for s in res.samples] == [float(x) for x in exact]
            assert res.cost == float(sum(exact)) and repr(res.cost) == repr(float(sum(exact)))
            assert len(repr(res.cost)) <= 8, res.cost  # 1.6e-05, never 1.6000000000000003e-05


LONG = "Let us compute 17 times 23 step by step: 17 times 20 is 340, plus 51 makes 391."


async def test_samples_cut_at_the_token_limit_do_not_outvote_complete_ones(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    """A reply cut off at ``max_tokens`` (finish_reason ``length``) ends mid-thought; its last
    number is often one of the question's ("23"). Its extracted answer does not vote while a
    complete sample answers, and the notes say so (the README's "What is 17 times 23?" case)."""
    server.models["math"] = FakeModel(answers=["391", LONG, LONG, LONG, "391"], truncate=True)
    a = Answerer(
        toy_router, endpoints(server), n_samples=5, adaptive=False, max_tokens=6,
        answer_type="number",
    )  # fmt: skip
    res = await a.aanswer(MATH_Q)
    assert res.answer == "391" and res.votes == {"391": 2}
    cut = [s for s in res.samples if s.finish_reason == "length"]
    assert len(cut) == 3 and all(s.text.endswith("17 times 23") and s.answer is None for s in cut)
    assert any(
        "3 of 5 samples were cut off at the token limit" in n and "not counted" in n
        for n in res.notes
    ), res.notes
    # every sample cut: they are all the evidence there is, so they vote, and the notes say so
    server.models["math"] = FakeModel(answers=[LONG], truncate=True)
    res = await a.aanswer(MATH_Q)
    assert res.answer == "23" and res.votes == {"23": 5}
    assert any("counted, as no complete sample gave an answer" in n for n in res.notes)
    # a generous limit: nothing is cut, nothing is said
    res = await a.aanswer(MATH_Q, max_tokens=100)
    assert res.answer == "391" and not any("cut off" in n for n in res.notes)


async def test_adaptive_sampling_does_not_stop_on_cut_samples(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    """Three cut replies saying "23" would decide a 5-sample vote if they counted; they do not,
    so sampling goes on and the complete answers win."""
    server.models["math"] = FakeModel(answers=[LONG, LONG, LONG, "391", "391"], truncate=True)
    one_at_a_time = endpoints(server, **{"math-model": {"max_concurrency": 1}})
    a = Answerer(toy_router, one_at_a_time, n_samples=5, max_tokens=6, answer_type="number")
    res = await a.aanswer(MATH_Q)
    assert res.answer == "391" and res.n_drawn == 5 and res.samples_saved == 0
    assert [s.finish_reason for s in res.samples] == ["length"] * 3 + ["stop"] * 2
