"""The LlamaIndex adapter: an index over real local documents embedded with MiniLM, answering
through `Avengers` against the local deterministic OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from avengers import Endpoint, Router, SamplingConfig
from fake_openai_server import FakeModel, FakeOpenAIServer, doc_workspace, local_fakes, point_at
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.callbacks import CallbackManager, CBEventType
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.llms.openai_like import OpenAILike

from llama_index_avengers import Avengers, AvengersEmbedding, routing_text

CORPUS = Path(__file__).parent / "docs_corpus"
DOC = Path(__file__).resolve().parents[1] / "docs" / "llamaindex.md"
MATH_Q = "What is 17 times 23?"
COOK_Q = "How long should I boil an egg for a runny yolk?"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math": FakeModel(answers=["391", "The answer is 391.", "381"]),
            "chef": FakeModel(answers=["Boil it for six minutes."]),
            "coder": FakeModel(answers=["def reverse(s): return s[::-1]"]),
        }
    ).start()
    yield s
    s.stop()


def eps(server: FakeOpenAIServer, **over: Any) -> dict[str, Endpoint]:
    return {
        n: Endpoint(n, server.base_url, model=mid, max_retries=0, timeout=5, **over)
        for n, mid in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))
    }


class Counting(BaseCallbackHandler):
    def __init__(self) -> None:
        super().__init__([], [])
        self.llm_starts = 0

    def on_event_start(self, event_type: CBEventType, payload: Any = None, event_id: str = "",
                       parent_id: str = "", **kwargs: Any) -> str:  # fmt: skip
        if event_type == CBEventType.LLM:
            self.llm_starts += 1
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: Any = None, event_id: str = "",
                     **kwargs: Any) -> None:  # fmt: skip
        return None

    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(self, trace_id: str | None = None, trace_map: Any = None) -> None:
        return None


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    docs = SimpleDirectoryReader(str(CORPUS)).load_data()
    return VectorStoreIndex.from_documents(docs, embed_model=AvengersEmbedding())


def test_query_engine_routes_questions_to_different_models(
    toy_router: Router, server: FakeOpenAIServer, index: VectorStoreIndex
) -> None:
    llm = Avengers(
        router=toy_router, endpoints=eps(server), sampling={"n_samples": 3}, routing="query"
    )
    engine = index.as_query_engine(llm=llm, similarity_top_k=1)
    cook = engine.query(COOK_Q)
    assert str(cook) == "Boil it for six minutes."
    assert "six minutes" in cook.source_nodes[0].node.get_content()  # real retrieval
    math = engine.query(MATH_Q)
    assert str(math) in ("391", "The answer is 391.")
    # the prompts the models saw held the retrieved context
    chef_prompt = next(r for r in server.requests if r["model"] == "chef")["messages"][-1][
        "content"
    ]
    assert "boiling" in chef_prompt and COOK_Q in chef_prompt
    streaming = index.as_query_engine(llm=llm, similarity_top_k=1, streaming=True)
    assert "".join(streaming.query(COOK_Q).response_gen) == "Boil it for six minutes."


def test_sync_async_streaming_and_account(toy_router: Router, server: FakeOpenAIServer) -> None:
    llm = Avengers(
        router=toy_router, endpoints=eps(server), sampling={"n_samples": 10, "adaptive": False}
    )
    r = llm.complete(MATH_Q)
    assert r.text in ("391", "The answer is 391.") and r.additional_kwargs["model"] == "math-model"
    assert r.raw["avengers"]["votes"] == {"391": 7, "381": 3}
    c = llm.chat([ChatMessage(role=MessageRole.USER, content=COOK_Q)])
    assert c.message.content == "Boil it for six minutes." and c.raw["model"] == "chef-model"
    direct = Avengers(router=toy_router, endpoints=eps(server), sampling={"strategy": "direct"})
    parts = list(direct.stream_complete(COOK_Q))
    assert "".join(p.delta or "" for p in parts) == "Boil it for six minutes." and len(parts) > 3
    assert parts[-1].additional_kwargs["model"] == "chef-model"
    chat_parts = list(direct.stream_chat([ChatMessage(role=MessageRole.USER, content=COOK_Q)]))
    assert chat_parts[-1].message.content == "Boil it for six minutes."

    async def run() -> None:
        a = await llm.acomplete(COOK_Q)
        assert a.text == "Boil it for six minutes."
        b = await llm.achat([ChatMessage(role=MessageRole.USER, content=MATH_Q)])
        assert b.raw["model"] == "math-model"
        gen = await direct.astream_complete(COOK_Q)
        assert "".join([p.delta or "" async for p in gen]) == "Boil it for six minutes."
        cgen = await direct.astream_chat([ChatMessage(role=MessageRole.USER, content=COOK_Q)])
        assert [p async for p in cgen][-1].message.content == "Boil it for six minutes."

    asyncio.run(run())


def test_failing_candidate_falls_back(toy_router: Router, server: FakeOpenAIServer) -> None:
    server.models["math"] = FakeModel(fault="500")
    r = Avengers(router=toy_router, endpoints=eps(server), sampling={"n_samples": 2}).complete(
        MATH_Q
    )
    account = r.raw["avengers"]
    assert (
        r.additional_kwargs["model"] == account["decision"]["ranking"][1]["model"] != "math-model"
    )
    assert account["failures"][0]["model"] == "math-model" and account["fallback"]


def test_existing_llm_objects(toy_router: Router, server: FakeOpenAIServer) -> None:
    llms = {
        n: OpenAILike(
            api_base=server.base_url,
            api_key="unused",
            model=mid,
            is_chat_model=True,
            context_window=2048 if n == "chef-model" else 8192,
            max_retries=0,
        )
        for n, mid in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))
    }
    llm = Avengers(router=toy_router, llms=llms, sampling={"n_samples": 3})
    assert llm.metadata.context_window == 2048  # the smallest candidate's
    assert llm.complete(COOK_Q).additional_kwargs["model"] == "chef-model"
    # a broken client is a failing candidate like any other
    llms["chef-model"] = OpenAILike(api_base="http://127.0.0.1:9/v1", api_key="x", model="chef",
                                    is_chat_model=True, max_retries=0)  # fmt: skip
    r = Avengers(router=toy_router, llms=llms, sampling={"n_samples": 2}).complete(COOK_Q)
    assert r.additional_kwargs["model"] != "chef-model" and r.raw["avengers"]["failures"]


def test_callbacks_fire_once_per_call_and_metadata(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    handler = Counting()
    llm = Avengers(router=toy_router, endpoints=eps(server, context_window=1024),
                   sampling={"n_samples": 5}, callback_manager=CallbackManager([handler]))  # fmt: skip
    llm.complete(MATH_Q)
    llm.chat([ChatMessage(role=MessageRole.USER, content=COOK_Q)])
    assert handler.llm_starts == 2  # five samples each, one event each
    assert llm.metadata.context_window == 1024 and llm.metadata.is_chat_model
    assert (
        Avengers(
            router=toy_router, endpoints=eps(server), context_window=777
        ).metadata.context_window
        == 777
    )


def test_routing_policies() -> None:
    msgs = [ChatMessage(role=MessageRole.SYSTEM, content="sys"),
            ChatMessage(role=MessageRole.USER, content="Context: eggs...\nQuery: How long?\nAnswer: ")]  # fmt: skip
    assert routing_text(msgs, "query") == "How long?" == routing_text(msgs, "{query}")
    assert routing_text(msgs).startswith("Context:")
    assert routing_text(msgs, "conversation").startswith("system: sys\nuser: Context")
    assert routing_text(msgs, "full") == routing_text(msgs, "conversation")  # the former name
    assert routing_text(msgs, lambda ms: ms[0].content) == "sys"  # a function sees ChatMessages
    with pytest.raises(Exception, match="routing must be"):
        routing_text(msgs, "nope")
    with pytest.raises(Exception, match="no user message"):  # the core's policy, as everywhere
        routing_text(msgs[:1])


def test_sampling_settings_fold_and_reach_the_llms(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    with pytest.warns(DeprecationWarning, match="n_samples"):
        old = Avengers(router=toy_router, endpoints=eps(server), n_samples=2, max_tokens=6)
    assert old.sampling_config == SamplingConfig(n_samples=2, max_tokens=6)
    assert old.metadata.num_output == 6
    llms = {
        n: OpenAILike(api_base=server.base_url, api_key="unused", model=mid, is_chat_model=True,
                      max_retries=0)
        for n, mid in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))
    }  # fmt: skip
    settings = {"strategy": "direct", "temperature": 0.3, "max_tokens": 5, "stop": ["END"]}
    llm = Avengers(router=toy_router, llms=llms, sampling=settings)
    assert llm.complete(COOK_Q).text == "Boil it for six minutes."
    assert "".join(p.delta or "" for p in llm.stream_complete(COOK_Q)) == "Boil it for six minutes."
    for req in server.requests:  # the settings reached the configured clients' requests
        assert (req["temperature"], req["max_tokens"], req["stop"]) == (0.3, 5, ["END"])
    with pytest.warns(UserWarning, match="ignores the call keyword"):
        llm.complete(COOK_Q, logprobs=True)


@pytest.fixture
def local_server() -> Iterator[FakeOpenAIServer]:
    """Stands in for the two local models the docs use."""
    s = FakeOpenAIServer(local_fakes()).start()
    yield s
    s.stop()


def test_conventions_doc_example_runs(
    local_router: Router,
    local_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/llamaindex.md's table of the partner package's conventions, its example."""
    text = DOC.read_text()
    doc_workspace(text, tmp_path, local_router, local_server.base_url, monkeypatch)
    (block,) = re.findall(r"```python dialect\n(.*?)```", text, flags=re.S)
    exec(compile(block, "<docs/llamaindex.md dialect>", "exec"), {})
    assert capsys.readouterr().out.splitlines() == ["smollm2-135m", "True", "True", "gemma3-270m"]


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
        exec(compile(point_at(block, local_server.base_url), "<docs/llamaindex.md>", "exec"), ns)
    out = capsys.readouterr().out.splitlines()
    math = ("391", "The answer is 391.", "381")
    assert out[0] == "Madrid." and out[1] in math  # query engine, routed on the query
    assert out[2] == "21"  # chat engine: a comparison, routed to Gemma
    assert out[3] in math and out[4] == "smollm2-135m" and "'391': " in out[5]  # plain calls
    assert out[6] == "21"  # streamed
    assert out[7] == "gemma3-270m"  # existing OpenAILike clients
    gemma = [r for r in local_server.requests if r.get("model") == "gemma3-270m"]
    assert gemma and all("prompt" in r for r in gemma)  # the base model got plain completions


# ------------------------------------------------------------------------ tools and structure

TOOL_CAPS = {"capabilities": {"tools": True, "json_schema": True}}


def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers."""
    return a * b


def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def test_function_calling_llm_chat_with_tools(toy_router: Router, server: FakeOpenAIServer) -> None:
    from llama_index.core.tools import FunctionTool

    llm = Avengers(router=toy_router, endpoints=eps(server, **TOOL_CAPS), sampling={"n_samples": 3})
    assert llm.metadata.is_function_calling_model
    assert not Avengers(router=toy_router, endpoints=eps(server)).metadata.is_function_calling_model
    tools = [FunctionTool.from_defaults(multiply), FunctionTool.from_defaults(add)]
    resp = llm.chat_with_tools(tools, user_msg="Use multiply: what is 17 times 23?")
    (sel,) = llm.get_tool_calls_from_response(resp)
    assert (sel.tool_name, sel.tool_kwargs) == ("multiply", {"a": 17, "b": 23})
    assert resp.raw is not None
    assert list(resp.raw["avengers"]["votes"]) == ['multiply({"a":17,"b":23})']
    out = llm.predict_and_call(tools, user_msg="Use add: what is 2 plus 3?")
    assert out.response == "5"
    with pytest.raises(ValueError, match="Expected at least one tool call"):
        llm.get_tool_calls_from_response(llm.chat([ChatMessage(role="user", content=MATH_Q)]))


async def test_function_agent_with_two_tools_end_to_end(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    from llama_index.core.agent.workflow import FunctionAgent

    llm = Avengers(router=toy_router, endpoints=eps(server, **TOOL_CAPS), sampling={"n_samples": 3})
    agent = FunctionAgent(tools=[multiply, add], llm=llm, system_prompt="Use the tools.")
    result = await agent.run("Use multiply to compute 17 times 23.")
    assert "391" in str(result)
    calls = [r for r in server.requests if r.get("tools")]
    assert {t["function"]["name"] for t in calls[0]["tools"]} == {"multiply", "add"}
    last = calls[-1]["messages"]
    assert last[-1]["role"] == "tool" and last[-1]["content"] == "391"
    assert last[-2]["tool_calls"][0]["function"]["name"] == "multiply"


def test_structured_predict_and_structured_llm(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    from llama_index.core.prompts import PromptTemplate
    from pydantic import BaseModel

    class Product(BaseModel):
        a: int
        b: int

    llm = Avengers(router=toy_router, endpoints=eps(server, **TOOL_CAPS), sampling={"n_samples": 3})
    got = llm.structured_predict(
        Product, PromptTemplate("Numbers in: {q}"), q="What is 17 times 23?"
    )
    assert got == Product(a=17, b=23)
    sllm = llm.as_structured_llm(Product)
    resp = sllm.chat([ChatMessage(role="user", content="What is 4 times 5?")])
    assert resp.raw == Product(a=4, b=5)


def test_tools_doc_examples_run(
    local_router: Router,
    local_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/llamaindex.md's tools section: a named tool call, predict_and_call, a structured
    LLM."""
    text = DOC.read_text()
    doc_workspace(text, tmp_path, local_router, local_server.base_url, monkeypatch,
                  tag="tools", endpoints="endpoints-tools.yaml")  # fmt: skip
    (block,) = re.findall(r"```python tools\n(.*?)```", text, flags=re.S)
    exec(compile(block, "<docs/llamaindex.md tools>", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[('multiply', {'a': 17, 'b': 23})]"
    assert out[1] in (
        """{'multiply({"a":17,"b":23})': 3}""",
        """{'multiply({"a":17,"b":23})': 2}""",
    )  # adaptive may stop at 2
    assert out[2] == "391"  # the tool's output, called with the voted arguments
    assert out[3] == "a=17 b=23"


def _own(router: Router) -> Router:
    """A copy of the router, so that feedback does not change the shared fixture."""
    return Router.from_state(*router.state(), embedder=router.get_embedder())


def test_max_cost_per_instance_and_per_call(toy_router: Router, server: FakeOpenAIServer) -> None:
    """The toy router expects math-model to cost 1.0 per call, chef-model 0.5, code-model 2.0."""
    import warnings

    from avengers import BudgetError

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max_cost is a plain keyword, not a deprecated one
        llm = Avengers(
            router=toy_router, endpoints=eps(server), max_cost=5.0,
            sampling={"n_samples": 10, "adaptive": False},
        )  # fmt: skip
    assert llm.complete(MATH_Q).raw["model"] == "chef-model"  # only chef-model fits 10 x 5.0
    assert llm.complete(MATH_Q, max_cost=20.0).raw["model"] == "math-model"  # per call
    msgs = [ChatMessage(role=MessageRole.USER, content=MATH_Q)]
    assert llm.chat(msgs, max_cost=20.0).raw["model"] == "math-model"
    with pytest.raises(BudgetError, match=r"no candidate model fits max_cost 0\.1"):
        llm.complete(MATH_Q, max_cost=0.1)
    with pytest.raises(BudgetError, match="no candidate model fits"):
        asyncio.run(llm.achat(msgs, max_cost=0.1))
    with pytest.raises(ValueError, match="max_cost must be a number >= 0"):
        Avengers(router=toy_router, endpoints=eps(server), max_cost=-1)


def test_conversation_per_instance_and_per_call(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    llm = Avengers(
        router=toy_router, endpoints=eps(server), sampling={"strategy": "direct"},
        conversation="c1",
    )  # fmt: skip
    assert llm.complete(MATH_Q).raw["model"] == "math-model"
    again = asyncio.run(llm.acomplete(COOK_Q))  # the async answerer shares the store
    assert again.raw["model"] == "math-model" and again.raw["avengers"]["decision"]["sticky"]
    assert llm.complete(COOK_Q, conversation="c2").raw["model"] == "chef-model"
    from avengers import ConfigError

    with pytest.raises(ConfigError, match="non-empty string"):  # not the instance's key
        llm.complete(COOK_Q, conversation="")


def test_response_id_and_feedback_in_process(toy_router: Router, server: FakeOpenAIServer) -> None:
    from avengers.stores.feedback import FeedbackError

    from llama_index_avengers import asend_feedback, send_feedback

    router = _own(toy_router)
    llm = Avengers(router=router, endpoints=eps(server), sampling={"strategy": "direct"})
    resp = llm.complete(MATH_Q)
    rid, cluster = resp.raw["id"], resp.raw["avengers"]["decision"]["cluster"]
    j = router.models_.index("math-model")
    before = router.score_counts_[cluster, j]
    reply = send_feedback(llm, resp, 1.0)
    assert (reply["id"], reply["model"], reply["cluster"]) == (rid, "math-model", cluster)
    assert router.score_counts_[cluster, j] == before + 1
    with pytest.raises(FeedbackError, match="rated already"):
        send_feedback(llm, resp, 0.0)
    from avengers import ConfigError

    with pytest.raises(ConfigError, match="cannot find an answer id"):
        send_feedback(llm, object(), 1.0)
    chat = asyncio.run(llm.achat([ChatMessage(role=MessageRole.USER, content=COOK_Q)]))
    out = asyncio.run(asend_feedback(llm, chat, 0.5))  # answered and rated asynchronously
    assert out["id"] == chat.raw["id"] and out["model"] == "chef-model"


def test_feedback_through_the_server(
    toy_router: Router, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    from avengers import Answerer
    from avengers.server import create_app
    from avengers.stores.feedback import FeedbackError, SQLiteFeedbackStore
    from test_serve import Running

    from llama_index_avengers import send_feedback

    store = SQLiteFeedbackStore(tmp_path / "fb.db")
    app = create_app(
        Answerer(_own(toy_router), eps(server), strategy="direct"),
        api_keys={"sk-test"}, feedback_store=store,
    )  # fmt: skip
    running = Running(app)
    try:
        llm = OpenAILike(
            api_base=f"{running.url}/v1", api_key="sk-test", model="avengers", is_chat_model=True
        )
        resp = llm.complete(MATH_Q)
        reply = send_feedback(llm, resp, 1.0)
        assert reply["id"] == resp.raw.id and reply["model"] == "math-model"
        assert [r.response_id for r in store.ratings()] == [resp.raw.id]
        with pytest.raises(FeedbackError, match=r"\(409\).*rated already"):
            send_feedback(llm, resp, 0.0)
    finally:
        running.stop()


def test_a_required_call_with_one_tool_names_it(toy_router: Router) -> None:
    """llama.cpp forces a tool call only when tool_choice names the function; a required call
    with a single tool (LlamaIndex's structured LLM) names it, which means the same thing."""
    from llama_index.core.tools import FunctionTool

    llm = Avengers(router=toy_router, endpoints=[])
    one = [FunctionTool.from_defaults(multiply)]
    two = [*one, FunctionTool.from_defaults(add)]
    named = {"type": "function", "function": {"name": "multiply"}}
    assert llm._prepare_chat_with_tools(one, "q", tool_required=True)["tool_choice"] == named
    assert llm._prepare_chat_with_tools(two, "q", tool_required=True)["tool_choice"] == "required"
    assert "tool_choice" not in llm._prepare_chat_with_tools(one, "q")
    assert llm._prepare_chat_with_tools(two, "q", tool_choice="add")["tool_choice"]["function"] == {
        "name": "add"
    }
