"""The LangChain adapters against the local deterministic OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from avengers import Endpoint, Router, SamplingConfig
from avengers.exceptions import ConfigError
from fake_openai_server import FakeModel, FakeOpenAIServer, doc_workspace, local_fakes, point_at
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from langchain_avengers import (
    AvengersRouteOnly,
    AvengersRouterChain,
    ChatAvengers,
    query_text,
    routing_text,
)
from langchain_avengers import _core as lc_core

MATH_Q = "What is 17 times 23?"
COOK_Q = "How long should I boil an egg for a runny yolk?"
DOC = Path(__file__).resolve().parents[1] / "docs" / "langchain.md"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math": FakeModel(answers=["391", "The answer is 391.", "381"]),
            "chef": FakeModel(answers=["Boil it for six minutes."]),
            "coder": FakeModel(answers=["def f(): pass"]),
        }
    ).start()
    yield s
    s.stop()


def eps(server: FakeOpenAIServer) -> dict[str, Endpoint]:
    return {
        n: Endpoint(n, server.base_url, model=mid, max_retries=0, timeout=5)
        for n, mid in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))
    }


def candidates(server: FakeOpenAIServer) -> dict[str, ChatOpenAI]:
    return {
        n: ChatOpenAI(base_url=server.base_url, api_key="unused", model=mid, max_retries=0)  # type: ignore[arg-type]
        for n, mid in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))
    }


class Counter(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts = 0
        self.ends = 0

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts += 1

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self.ends += 1


def test_chat_model_invoke_batch_stream_and_metadata(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    chat = ChatAvengers(
        router=toy_router, endpoints=eps(server), sampling={"n_samples": 10, "adaptive": False}
    )
    counter = Counter()
    msg = chat.invoke(MATH_Q, config={"callbacks": [counter]})
    assert isinstance(msg, AIMessage) and msg.content in ("391", "The answer is 391.")
    meta = msg.response_metadata
    assert meta["model_name"] == "math-model" and meta["avengers"]["votes"] == {"391": 7, "381": 3}
    assert meta["avengers"]["decision"]["ranking"][0]["model"] == "math-model"
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] > 0
    assert (counter.starts, counter.ends) == (1, 1)  # one clean run for ten samples
    out = chat.batch([MATH_Q, COOK_Q])
    assert [m.response_metadata["model_name"] for m in out] == ["math-model", "chef-model"]
    direct = ChatAvengers(router=toy_router, endpoints=eps(server), sampling={"strategy": "direct"})
    chunks = list(direct.stream(COOK_Q))
    assert "".join(str(c.content) for c in chunks) == "Boil it for six minutes." and len(chunks) > 3
    assert chunks[-1].response_metadata["model_name"] == "chef-model"


async def test_chat_model_async(toy_router: Router, server: FakeOpenAIServer) -> None:
    chat = ChatAvengers(router=toy_router, endpoints=eps(server), sampling={"n_samples": 3})
    msg = await chat.ainvoke(COOK_Q)
    assert msg.response_metadata["model_name"] == "chef-model"
    parts = [c async for c in chat.astream(MATH_Q)]
    assert "391" in "".join(str(p.content) for p in parts)
    many = await chat.abatch([MATH_Q, COOK_Q])
    assert len(many) == 2


def test_routing_policies(toy_router: Router, server: FakeOpenAIServer) -> None:
    history = [
        SystemMessage("be brief"),
        HumanMessage(MATH_Q),
        AIMessage("391"),
        HumanMessage(COOK_Q),
    ]
    assert routing_text(history) == COOK_Q == routing_text(history, "last_human")
    assert routing_text(history, "conversation").startswith("system: be brief\nuser: What is 17")
    assert routing_text(history, "Q: {last_user}") == f"Q: {COOK_Q}"
    assert routing_text(history, "Q: {last_human}") == f"Q: {COOK_Q}"  # the former name
    assert routing_text(history, lambda ms: ms[1].text) == MATH_Q
    # the same policy as the core's: tool results are not user messages, and no user message
    # at all is an error rather than an empty route
    assert routing_text([*history, ToolMessage("42", tool_call_id="t")]) == COOK_Q
    with pytest.raises(ConfigError, match="no user message"):
        routing_text([SystemMessage("be brief")])
    rag = [HumanMessage("Context: eggs...\nQuery: How long?\nAnswer: ")]
    assert routing_text(rag, "query") == "How long?"
    # routing on the conversation's first question sends the whole chat to the math model
    chat = ChatAvengers(router=toy_router, endpoints=eps(server), sampling={"n_samples": 2},
                        routing=lambda ms: next(m.text for m in ms if m.type == "human"))  # fmt: skip
    assert chat.invoke(history).response_metadata["model_name"] == "math-model"
    assert (
        ChatAvengers(router=toy_router, endpoints=eps(server), sampling={"n_samples": 2})
        .invoke(history)
        .response_metadata["model_name"]
        == "chef-model"
    )
    assert query_text({"q": COOK_Q, "n": 1}) == COOK_Q
    assert query_text({"a": "x", "q": COOK_Q}, input_key="q") == COOK_Q


def test_router_chain_routes_votes_and_falls_back(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    cands = candidates(server)
    chain = AvengersRouterChain(router=toy_router, runnables=cands)
    assert chain.invoke(COOK_Q).content == "Boil it for six minutes."
    assert chain.invoke(MATH_Q).content == "391" and server.calls("math") == 1
    voted = AvengersRouterChain(
        router=toy_router, runnables=cands, sampling={"n_samples": 10}, return_account=True
    )
    out = voted.invoke(MATH_Q)
    votes = out["account"]["votes"]  # adaptive: sampling stops once 391 cannot be overtaken
    assert set(votes) == {"391", "381"} and votes["391"] > votes["381"] >= 1
    assert out["account"]["answer"] == "391" and out["account"]["model"] == "math-model"
    assert isinstance(out["output"], AIMessage)

    def broken(_: Any) -> str:
        raise RuntimeError("candidate crashed")

    failing = {**cands, "math-model": RunnableLambda(broken)}
    res = AvengersRouterChain(router=toy_router, runnables=failing, return_account=True).invoke(
        MATH_Q
    )
    account = res["account"]
    assert account["model"] == account["decision"]["ranking"][1]["model"]
    assert account["failures"][0]["model"] == "math-model" and account["fallback"]
    # composes with |, batch, with_config and async
    piped = chain | RunnableLambda(lambda m: m.content.upper())
    cook, math = piped.batch([COOK_Q, MATH_Q])
    assert cook == "BOIL IT FOR SIX MINUTES." and math in ("391", "THE ANSWER IS 391.", "381")
    assert (
        asyncio.run(chain.with_config(tags=["t"]).ainvoke(COOK_Q)).content
        == "Boil it for six minutes."
    )


def test_router_chain_over_dict_inputs(toy_router: Router) -> None:
    runnables = {
        m: RunnableLambda(lambda d, m=m: f"{m} answered {d['question']}")
        for m in toy_router.models_
    }
    chain = AvengersRouterChain(router=toy_router, runnables=runnables, input_key="question")
    assert chain.invoke({"question": COOK_Q, "user": "ann"}).startswith("chef-model answered")
    with pytest.raises(Exception, match="no key 'question'"):
        chain.invoke({"q": COOK_Q})


def test_route_only(toy_router: Router) -> None:
    route = AvengersRouteOnly(router=toy_router)
    assert route.invoke(COOK_Q).model == "chef-model"
    assert route.invoke([HumanMessage(MATH_Q)]).model == "math-model"
    as_dict = AvengersRouteOnly(router=toy_router, as_dict=True).batch([MATH_Q, COOK_Q])
    assert [d["models"] for d in as_dict] == [["math-model"], ["chef-model"]]


def test_sampling_takes_a_config_a_dict_or_the_former_keywords(toy_router: Router) -> None:
    ep = {"math-model": {"base_url": "http://127.0.0.1:9/v1"}}
    by_dict = ChatAvengers(router=toy_router, endpoints=ep, sampling={"n_samples": 3})
    by_config = ChatAvengers(router=toy_router, endpoints=ep, sampling=SamplingConfig(n_samples=3))
    assert by_dict.sampling_config == by_config.sampling_config
    assert by_dict.sampling_config.n_samples == 3 and by_dict.sampling_config.temperature == 0.7
    with pytest.warns(DeprecationWarning, match="n_samples"):
        old = ChatAvengers(router=toy_router, endpoints=ep, n_samples=3, strategy="model_switch")
    assert old.sampling_config == SamplingConfig(n_samples=3, strategy="model_switch")
    quiet = ChatAvengers(router=toy_router, endpoints=ep, temperature=0.2, max_tokens=9)
    assert (quiet.sampling_config.temperature, quiet.sampling_config.max_tokens) == (0.2, 9)
    with pytest.raises(Exception, match="unknown sampling settings"):
        ChatAvengers(router=toy_router, endpoints=ep, sampling={"samples": 3})
    chain = AvengersRouterChain(router=toy_router)
    assert chain.sampling_config.strategy == "direct" and chain.sampling_config.temperature is None
    with pytest.warns(DeprecationWarning):
        voted = AvengersRouterChain(router=toy_router, n_samples=4, answer_type="number")
    assert voted.sampling_config.n_samples == 4 and voted.sampling_config.answer_type == "number"


def test_settings_reach_the_models_or_are_reported(
    toy_router: Router, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = {"strategy": "direct", "max_tokens": 7}
    chat = ChatAvengers(router=toy_router, endpoints=eps(server), sampling=direct, stop=["\n\n"])
    chat.invoke(COOK_Q)
    chat.invoke(COOK_Q, stop=["END"], temperature=0.1)
    first, second = server.requests
    assert (first["stop"], first["max_tokens"], first["temperature"]) == (["\n\n"], 7, 0.7)
    assert (second["stop"], second["temperature"]) == (["END"], 0.1)  # a call's stop replaces
    with pytest.warns(UserWarning, match=r"ignores the call keyword\(s\) \['logprobs'\]"):
        chat.invoke(COOK_Q, logprobs=True)
    # candidates that are chat models get the settings through bind...
    server.requests.clear()
    settings = {"temperature": 0.3, "max_tokens": 5, "stop": ["END"]}
    chain = AvengersRouterChain(router=toy_router, runnables=candidates(server), sampling=settings)
    chain.invoke(COOK_Q)
    (req,) = server.requests
    assert (req["temperature"], req["max_completion_tokens"], req["stop"]) == (0.3, 5, ["END"])
    # ...and a candidate that cannot take them runs with its own, with a warning, once
    monkeypatch.setattr(lc_core, "_warned", set())
    lambdas = {m: RunnableLambda(lambda _, m=m: m) for m in toy_router.models_}
    plain = AvengersRouterChain(router=toy_router, runnables=lambdas, sampling=settings)
    with pytest.warns(UserWarning, match="max_tokens, stop, temperature cannot be passed"):
        assert plain.invoke(COOK_Q) == "chef-model"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain.invoke(COOK_Q)  # said once
        AvengersRouterChain(router=toy_router, runnables=lambdas).invoke(COOK_Q)  # nothing set


@pytest.fixture
def local_server() -> Iterator[FakeOpenAIServer]:
    """Stands in for the two local models the docs use."""
    s = FakeOpenAIServer(local_fakes()).start()
    yield s
    s.stop()


def test_doc_examples_run(
    local_router: Router,
    local_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = DOC.read_text()
    doc_workspace(text, tmp_path, local_router, local_server.base_url, monkeypatch)
    ns: dict[str, Any] = {}
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(code) == 4
    for block in code:
        exec(compile(point_at(block, local_server.base_url), "<docs/langchain.md>", "exec"), ns)
    out = capsys.readouterr().out.splitlines()
    math = ("391", "The answer is 391.", "381")
    assert out[0] in math  # LCEL chain: arithmetic, routed to SmolLM2
    assert out[1] == "gemma3-270m" and out[2].startswith("{'21': ")  # a comparison, to Gemma
    assert out[3] == "Madrid."  # RAG chain, routed on the question
    assert out[4] == "21"  # router chain over your runnables, one call: Gemma's completion
    assert out[5].split(" {")[0] in math and "'391': " in out[5]  # router chain, voted
    assert out[6].startswith("gemma3-270m ")  # route only
    assert out[7] in math  # branching on the decision
    assert out[8] == "True True"  # route only, a conversation's second turn kept its model
    gemma = [r for r in local_server.requests if r.get("model") == "gemma3-270m"]
    assert gemma and all("prompt" in r for r in gemma)  # the base model got plain completions


def test_conventions_doc_example_runs(
    local_router: Router,
    local_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/langchain.md's table of the partner package's conventions, its example."""
    text = DOC.read_text()
    doc_workspace(text, tmp_path, local_router, local_server.base_url, monkeypatch)
    (block,) = re.findall(r"```python dialect\n(.*?)```", text, flags=re.S)
    exec(compile(block, "<docs/langchain.md dialect>", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == ["smollm2-135m stop", "True", "gemma3-270m", "smollm2-135m", "gemma3-270m"]


def test_tools_doc_examples_run(
    local_router: Router,
    local_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/langchain.md's tools section: a named tool call, its answer, and a structured-output
    chain."""
    text = DOC.read_text()
    doc_workspace(text, tmp_path, local_router, local_server.base_url, monkeypatch,
                  tag="tools", endpoints="endpoints-tools.yaml")  # fmt: skip
    (block,) = re.findall(r"```python tools\n(.*?)```", text, flags=re.S)
    exec(compile(block, "<docs/langchain.md tools>", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[('multiply', {'a': 17, 'b': 23})]"
    assert out[1] in (
        """{'multiply({"a":17,"b":23})': 3}""",
        """{'multiply({"a":17,"b":23})': 2}""",
    )  # adaptive may stop at 2
    assert out[2] == "{'gemma3-270m': 'no tool calling, no forced tool choice'}"
    assert out[3] in ("391", "The answer is 391.", "381")  # the answer, asked without tools
    assert out[4] == "a=17 b=23"
    first = next(r for r in local_server.requests if r.get("tools"))
    assert first["tool_choice"] == {"type": "function", "function": {"name": "multiply"}}


def _own(router: Router) -> Router:
    """A copy of the router, so that feedback does not change the shared fixture."""
    return Router.from_state(*router.state(), embedder=router.get_embedder())


def test_max_cost_per_instance_and_per_call(toy_router: Router, server: FakeOpenAIServer) -> None:
    """The toy router expects math-model to cost 1.0 per call, chef-model 0.5, code-model 2.0."""
    from avengers import BudgetError

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max_cost is a plain keyword, not a deprecated one
        chat = ChatAvengers(
            router=toy_router, endpoints=eps(server), max_cost=5.0,
            sampling={"n_samples": 10, "adaptive": False},
        )  # fmt: skip
    assert chat.sampling_config.max_cost == 5.0
    capped = chat.invoke(MATH_Q)  # only chef-model fits 10 samples in 5.0
    assert capped.response_metadata["model_name"] == "chef-model"
    assert any("left out" in n for n in capped.response_metadata["avengers"]["notes"])
    roomy = chat.invoke(MATH_Q, max_cost=20.0)  # per call
    assert roomy.response_metadata["model_name"] == "math-model"
    assert chat.bind(max_cost=20.0).invoke(MATH_Q).response_metadata["model_name"] == "math-model"
    with pytest.raises(BudgetError, match=r"no candidate model fits max_cost 0\.1"):
        chat.invoke(MATH_Q, max_cost=0.1)
    with pytest.raises(BudgetError, match="no candidate model fits"):
        asyncio.run(chat.ainvoke(MATH_Q, max_cost=0.1))
    with pytest.raises(ValueError, match="max_cost must be a number >= 0"):
        ChatAvengers(router=toy_router, endpoints=eps(server), max_cost=-1)


def test_conversation_per_instance_and_per_call(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    chat = ChatAvengers(
        router=toy_router, endpoints=eps(server), sampling={"strategy": "direct"},
        conversation="c1",
    )  # fmt: skip
    assert chat.invoke(MATH_Q).response_metadata["model_name"] == "math-model"
    again = chat.invoke(COOK_Q)
    assert again.response_metadata["model_name"] == "math-model"
    assert again.response_metadata["avengers"]["decision"]["sticky"] is True
    other = chat.invoke(COOK_Q, conversation="c2")
    assert other.response_metadata["model_name"] == "chef-model"
    with pytest.raises(ConfigError, match="non-empty string"):  # as the runnables and the core
        chat.invoke(COOK_Q, conversation="")


def test_response_id_and_feedback_in_process(toy_router: Router, server: FakeOpenAIServer) -> None:
    from avengers.stores.feedback import FeedbackError

    from langchain_avengers import asend_feedback, send_feedback

    router = _own(toy_router)
    chat = ChatAvengers(router=router, endpoints=eps(server), sampling={"strategy": "direct"})
    msg = chat.invoke(MATH_Q)
    rid = msg.response_metadata["id"]
    assert rid.startswith("avengers-")
    cluster = msg.response_metadata["avengers"]["decision"]["cluster"]
    j = router.models_.index(msg.response_metadata["model_name"])
    before = router.score_counts_[cluster, j]
    reply = send_feedback(chat, msg, 1.0)
    assert (reply["id"], reply["model"], reply["cluster"]) == (rid, "math-model", cluster)
    assert router.score_counts_[cluster, j] == before + 1
    with pytest.raises(FeedbackError, match="rated already"):
        send_feedback(chat, msg, 0.0)
    with pytest.raises(FeedbackError, match="no response with id"):
        send_feedback(chat, "avengers-nope", 1.0)
    with pytest.raises(ConfigError, match="cannot find an answer id"):
        send_feedback(chat, AIMessage(content="hi"), 1.0)
    streamed = None
    for part in chat.stream(COOK_Q):
        streamed = part if streamed is None else streamed + part
    assert streamed is not None
    out = asyncio.run(asend_feedback(chat, streamed, 0.5))
    assert out["id"] == streamed.response_metadata["id"] and out["model"] == "chef-model"


def test_feedback_through_the_server(
    toy_router: Router, server: FakeOpenAIServer, tmp_path
) -> None:
    from avengers import Answerer
    from avengers.server import create_app
    from avengers.stores.feedback import FeedbackError, SQLiteFeedbackStore
    from test_serve import Running

    from langchain_avengers import asend_feedback, send_feedback

    store = SQLiteFeedbackStore(tmp_path / "fb.db")
    app = create_app(
        Answerer(_own(toy_router), eps(server), strategy="direct"),
        api_keys={"sk-test"}, feedback_store=store,
    )  # fmt: skip
    running = Running(app)
    try:
        llm = ChatOpenAI(base_url=f"{running.url}/v1", api_key="sk-test", model="avengers")  # type: ignore[arg-type]
        msg = llm.invoke(MATH_Q)
        reply = send_feedback(llm, msg, 1.0)
        assert reply["id"] == msg.response_metadata["id"] and reply["model"] == "math-model"
        assert [r.response_id for r in store.ratings()] == [msg.response_metadata["id"]]
        with pytest.raises(FeedbackError, match=r"\(409\).*rated already"):
            send_feedback(llm, msg, 0.0)
        with pytest.raises(FeedbackError, match=r"\(401\)"):
            send_feedback(f"{running.url}/v1", msg, 0.0, api_key="wrong")
        other = llm.invoke(COOK_Q)
        out = asyncio.run(asend_feedback(llm, other, 0.0))
        assert out["model"] == "chef-model" and len(store.ratings()) == 2
    finally:
        running.stop()


def _echo_candidates(router: Router) -> dict[str, Any]:
    return {m: RunnableLambda(lambda _, m=m: f"{m} answered") for m in router.models_}


def test_router_chain_keeps_a_conversation_on_its_model(toy_router: Router) -> None:
    chain = AvengersRouterChain(
        router=toy_router, runnables=_echo_candidates(toy_router), conversation="c1"
    )
    assert chain.invoke(MATH_Q) == "math-model answered"
    assert chain.invoke(COOK_Q) == "math-model answered"  # turn 2 stays on turn 1's model
    # a call's config replaces the field; conversations are independent
    c2 = {"configurable": {"conversation": "c2"}}
    assert chain.invoke(COOK_Q, config=c2) == "chef-model answered"
    assert chain.invoke(MATH_Q, config=c2) == "chef-model answered"
    assert chain.invoke(COOK_Q) == "math-model answered"
    bound = chain.with_config(configurable={"conversation": "c2"})
    assert bound.invoke(MATH_Q) == "chef-model answered"
    # without a key, each turn is routed on its own
    free = AvengersRouterChain(router=toy_router, runnables=_echo_candidates(toy_router))
    assert [free.invoke(q) for q in (MATH_Q, COOK_Q)] == [
        "math-model answered",
        "chef-model answered",
    ]
    with pytest.raises(ConfigError, match="conversation key must be a non-empty string"):
        chain.invoke(MATH_Q, config={"configurable": {"conversation": ""}})


async def test_router_chain_conversation_async_and_from_dict_inputs(toy_router: Router) -> None:
    chain = AvengersRouterChain(
        router=toy_router, runnables=_echo_candidates(toy_router), input_key="question",
        conversation_key="session_id", return_account=True,
    )  # fmt: skip
    first = await chain.ainvoke({"question": COOK_Q, "session_id": "ann"})
    assert first["output"] == "chef-model answered"
    second = await chain.ainvoke({"question": MATH_Q, "session_id": "ann"})
    assert second["output"] == "chef-model answered"
    assert second["account"]["decision"]["sticky"] is True
    other = await chain.ainvoke({"question": MATH_Q, "session_id": "bob"})
    assert other["output"] == "math-model answered"
    assert other["account"]["decision"]["sticky"] is False
    # the input's key wins over the config's
    cfg: Any = {"configurable": {"conversation": "bob"}}
    again = await chain.ainvoke({"question": MATH_Q, "session_id": "ann"}, config=cfg)
    assert again["output"] == "chef-model answered"
    # sync turns share the async turns' conversations
    assert chain.invoke({"question": MATH_Q, "session_id": "ann"})["output"] == (
        "chef-model answered"
    )
    with pytest.raises(ConfigError, match="no conversation key 'session_id'"):
        await chain.ainvoke({"question": MATH_Q})
    with pytest.raises(ConfigError, match="non-empty string, got 7"):
        await chain.ainvoke({"question": MATH_Q, "session_id": 7})


async def test_route_only_conversations_are_sticky(toy_router: Router) -> None:
    route = AvengersRouteOnly(router=toy_router, conversation="c1")
    first = route.invoke(MATH_Q)
    assert first.model == "math-model" and first.sticky is False
    second = route.invoke(COOK_Q)
    assert second.model == "math-model" and second.sticky is True
    assert "sticky: kept math-model" in second.explain()
    fresh = await route.ainvoke(COOK_Q, config={"configurable": {"conversation": "c2"}})
    assert fresh.model == "chef-model" and fresh.sticky is False
    later = await route.ainvoke(MATH_Q, config={"configurable": {"conversation": "c2"}})
    assert later.model == "chef-model" and later.sticky is True
    by_key = AvengersRouteOnly(
        router=toy_router, input_key="q", conversation_key="session_id", as_dict=True
    )
    assert by_key.invoke({"q": COOK_Q, "session_id": "s"})["sticky"] is False
    d = by_key.invoke({"q": MATH_Q, "session_id": "s"})
    assert d["models"] == ["chef-model"] and d["sticky"] is True
    assert route.invoke(MATH_Q, config={"configurable": {"conversation": "c3"}}).sticky is False
    plain = AvengersRouteOnly(router=toy_router)
    assert [plain.invoke(q).sticky for q in (MATH_Q, COOK_Q)] == [False, False]
    with pytest.raises(ConfigError, match="at most 256 characters"):
        route.invoke(MATH_Q, config={"configurable": {"conversation": "x" * 300}})
