"""Parity with the partner package: ``ChatAvengers`` (and the router chain) beside
``langchain_openai.ChatOpenAI``, both against the same local fake upstream, compared on what a
LangChain user observes: ``response_metadata``, ``llm_output``, what ``on_llm_end`` receives,
usage, serialisation, constructor conventions, retryable errors and streaming.

The fake's model ids are the router's candidate names, so ``ChatOpenAI(model="math-model")``
and a ``ChatAvengers`` routed (or pinned) to ``math-model`` call the same upstream model and
their metadata can be compared value by value."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from avengers import Endpoint, Router
from avengers.answering.results import AnswerError
from fake_openai_server import FakeModel, FakeOpenAIServer
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd, dumps, load, loads
from langchain_core.messages import HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from langchain_avengers import LOAD_MAPPINGS, AvengersRouterChain, ChatAvengers

MATH_Q = "What is 17 times 23?"
ANSWER = "The answer is 391."
NAMES = ("math-model", "chef-model", "code-model")
META = {"id", "model_name", "model_provider", "finish_reason", "token_usage"}
"""The ``response_metadata`` keys ``ChatOpenAI`` gives that ChatAvengers must give too."""
USAGE = ("prompt_tokens", "completion_tokens", "total_tokens")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math-model": FakeModel(answers=[ANSWER]),
            "chef-model": FakeModel(answers=["Boil it for six minutes."]),
            "code-model": FakeModel(answers=["def f(): pass"]),
            "limited": FakeModel(fault="429"),
            "broken": FakeModel(fault="500"),
            "long": FakeModel(answers=["one two three four five six"], truncate=True),
            "silent": FakeModel(answers=[ANSWER], usage=False),
        }
    ).start()
    yield s
    s.stop()


def endpoints(server: FakeOpenAIServer, model: str | None = None) -> dict[str, Endpoint]:
    return {
        n: Endpoint(n, server.base_url, model=model or n, max_retries=0, timeout=5) for n in NAMES
    }


def reference(server: FakeOpenAIServer, model: str = "math-model", **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.base_url,
        api_key="unused",  # type: ignore[arg-type]
        model=model,
        max_retries=0,
        **kw,
    )


def ours(router: Any, server: FakeOpenAIServer, **kw: Any) -> ChatAvengers:
    kw.setdefault("sampling", {"n_samples": 1})
    return ChatAvengers(router=router, endpoints=endpoints(server), **kw)


class Ends(BaseCallbackHandler):
    """What ``on_llm_end`` receives."""

    def __init__(self) -> None:
        self.results: list[LLMResult] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.results.append(response)

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.results[-1].generations[0][0].generation_info or {})


def test_response_metadata_and_llm_output_match_chatopenai(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    ref_end, our_end = Ends(), Ends()
    ref = reference(server).invoke(MATH_Q, config={"callbacks": [ref_end]})
    got = ours(toy_router, server).invoke(MATH_Q, config={"callbacks": [our_end]})
    assert ref.content == got.content == ANSWER
    rm, gm = ref.response_metadata, got.response_metadata
    assert rm.keys() >= META and gm.keys() >= META
    assert gm["model_name"] == rm["model_name"] == "math-model"  # the routed candidate
    assert gm["finish_reason"] == rm["finish_reason"] == "stop"
    assert {k: gm["token_usage"][k] for k in USAGE} == {k: rm["token_usage"][k] for k in USAGE}
    assert got.usage_metadata is not None and ref.usage_metadata is not None
    for k in ("input_tokens", "output_tokens", "total_tokens"):
        assert got.usage_metadata[k] == ref.usage_metadata[k]  # type: ignore[literal-required]
    # what callbacks see: the finish reason in generation_info, OpenAI's names in llm_output
    assert our_end.info["finish_reason"] == ref_end.info["finish_reason"] == "stop"
    ref_out, our_out = ref_end.results[-1].llm_output, our_end.results[-1].llm_output
    assert ref_out is not None and our_out is not None
    shared = {"token_usage", "model_name", "model_provider", "id"}
    assert shared <= ref_out.keys() and shared <= our_out.keys()
    assert set(USAGE) <= our_out["token_usage"].keys()
    assert our_out["model_name"] == ref_out["model_name"]


@pytest.mark.parametrize("n_samples", [1, 3])
def test_streamed_end_carries_finish_reason_and_model(
    toy_router: Router, server: FakeOpenAIServer, n_samples: int
) -> None:
    ref_end, our_end = Ends(), Ends()
    ref_chunks = list(reference(server).stream(MATH_Q, config={"callbacks": [ref_end]}))
    chat = ours(toy_router, server, sampling={"n_samples": n_samples, "adaptive": False})
    our_chunks = list(chat.stream(MATH_Q, config={"callbacks": [our_end]}))
    assert "".join(str(c.content) for c in ref_chunks) == ANSWER
    assert "".join(str(c.content) for c in our_chunks) == ANSWER
    for end in (ref_end, our_end):  # ChatAvengers used to hand on_llm_end generation_info=None
        assert end.info["finish_reason"] == "stop"
        assert end.info["model_name"] == "math-model"
    ref_full, our_full = ref_chunks[0], our_chunks[0]
    for c in ref_chunks[1:]:
        ref_full += c
    for c in our_chunks[1:]:
        our_full += c
    for k in ("finish_reason", "model_name", "model_provider"):
        assert k in ref_full.response_metadata and k in our_full.response_metadata
    assert our_full.response_metadata["finish_reason"] == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_a_cut_answer_says_length_as_chatopenai_does(
    toy_router: Router, server: FakeOpenAIServer, stream: bool
) -> None:
    """An upstream ``finish_reason: "length"`` reaches the caller (whole and streamed)."""
    ref_end, our_end = Ends(), Ends()
    ref_llm = reference(server, model="long", max_tokens=3)
    our_llm = ChatAvengers(router=toy_router, endpoints=endpoints(server, model="long"),
                           sampling={"n_samples": 1, "max_tokens": 3})  # fmt: skip
    outs = []
    for llm, end in ((ref_llm, ref_end), (our_llm, our_end)):
        config: Any = {"callbacks": [end]}
        if stream:
            full = None
            for c in llm.stream(MATH_Q, config=config):
                full = c if full is None else full + c
            outs.append(full)
        else:
            outs.append(llm.invoke(MATH_Q, config=config))
    for out, end in zip(outs, (ref_end, our_end), strict=True):
        assert out is not None and out.content == "one two three"
        assert out.response_metadata["finish_reason"] == "length"
        assert end.info["finish_reason"] == "length"


def test_unknown_usage_is_left_out_as_chatopenai_leaves_it(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    ref = reference(server, model="silent").invoke(MATH_Q)
    chat = ChatAvengers(router=toy_router, endpoints=endpoints(server, model="silent"),
                        sampling={"n_samples": 2})  # fmt: skip
    got = chat.invoke(MATH_Q)
    assert ref.usage_metadata is None and got.usage_metadata is None  # unknown, never zero
    assert not ref.response_metadata.get("token_usage")
    assert not got.response_metadata.get("token_usage")
    assert got.response_metadata["avengers"]["answer_usage"] is None


def test_usage_is_summed_and_the_answers_own_is_in_the_account(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    """Issue 30 item 10: three samples are paid for three times; the account also says what one
    call (the one ChatOpenAI makes) reports."""
    ref = reference(server).invoke(MATH_Q)
    got = ours(toy_router, server, sampling={"n_samples": 3, "adaptive": False}).invoke(MATH_Q)
    one = {k: ref.response_metadata["token_usage"][k] for k in USAGE}
    assert got.response_metadata["token_usage"] == {k: 3 * v for k, v in one.items()}
    assert got.response_metadata["avengers"]["answer_usage"] == one
    assert got.response_metadata["avengers"]["n_drawn"] == 3


def test_serialises_like_chatopenai(
    toy_router: Router, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    toy_router.save_pretrained(tmp_path / "router")
    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{q}")])
    ref_chain = prompt | reference(server)
    chain = prompt | ChatAvengers(
        router=tmp_path / "router", endpoints=endpoints(server), sampling={"n_samples": 2}
    )
    first = chain.invoke({"q": MATH_Q})  # after a call too
    for c in (ref_chain, chain):
        text = json.dumps(dumpd(c))
        assert "not_implemented" not in text  # ChatAvengers used to be a not_implemented node
    data = dumpd(chain)
    node = data["kwargs"]["last"]
    assert node["id"] == ["langchain_avengers", "chat_models", "ChatAvengers"]
    assert node["kwargs"]["sampling"] == {"n_samples": 2}
    assert node["kwargs"]["endpoints"]["math-model"]["base_url"] == server.base_url
    mappings = {"additional_import_mappings": LOAD_MAPPINGS}
    for back in (
        load(data, valid_namespaces=["langchain_avengers"], **mappings),
        loads(dumps(chain), valid_namespaces=["langchain_avengers"], **mappings),
    ):
        again = back.invoke({"q": MATH_Q})
        assert again.content == first.content
        assert again.response_metadata["model_name"] == "math-model"
    # a router object cannot be written down: that one field says so, and loading refuses it
    live = dumpd(ChatAvengers(router=toy_router, endpoints=endpoints(server)))
    assert live["kwargs"]["router"]["type"] == "not_implemented"
    with pytest.raises(NotImplementedError):
        load(
            live, valid_namespaces=["langchain_avengers"], additional_import_mappings=LOAD_MAPPINGS
        )


def test_pickles_and_deep_copies_after_a_call(
    toy_router: Router, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """(``ChatOpenAI`` itself cannot be pickled once it has made a call: its HTTP client holds a
    lock. ChatAvengers can, so a process pool can take the instance it has.)"""
    toy_router.save_pretrained(tmp_path / "router")
    chat = ours(tmp_path / "router", server, sampling={"n_samples": 2})
    first = chat.invoke(MATH_Q)
    live = ours(toy_router, server, sampling={"n_samples": 2})
    live.invoke(MATH_Q)
    twins = [pickle.loads(pickle.dumps(chat)), copy.deepcopy(chat), copy.deepcopy(live)]
    for original, twin in zip((chat, chat, live), twins, strict=True):
        assert isinstance(twin, ChatAvengers) and twin._answerer is None
        again = twin.invoke(MATH_Q)
        assert again.content == first.content
        assert again.response_metadata["model_name"] == "math-model"
        assert twin._answerer is not None and twin._answerer is not original._answerer
    assert twins[2].router is toy_router  # a Router object is shared, not copied
    assert chat.invoke(MATH_Q).content == first.content  # the original still works


def test_unknown_keyword_is_never_swallowed(toy_router: Router, server: FakeOpenAIServer) -> None:
    with pytest.warns(UserWarning, match="temperatur"):
        reference(server, temperatur=0.2)  # ChatOpenAI warns and moves it to model_kwargs
    with pytest.raises(ValueError, match=r"'temperatur' \(did you mean 'temperature'\?\)"):
        ours(toy_router, server, temperatur=0.2)
    with pytest.raises(ValueError, match="'api_key'"):  # keys are read per endpoint
        ours(toy_router, server, api_key="sk-test")
    # the standard parameters ChatOpenAI takes are taken, and mean the same
    chat = ours(toy_router, server, timeout=3, max_retries=1, temperature=0, max_tokens=8)
    eps = chat.answerer().backend.endpoints  # type: ignore[attr-defined]
    assert {(e.timeout, e.max_retries) for e in eps.values()} == {(3.0, 1)}
    assert chat.sampling_config.temperature == 0 and chat.sampling_config.max_tokens == 8


def test_model_pins_a_candidate_as_chatopenai_names_its_model(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    ref = reference(server, model="chef-model").invoke(MATH_Q)
    got = ours(toy_router, server, model="chef-model").invoke(MATH_Q)
    assert ref.response_metadata["model_name"] == got.response_metadata["model_name"]
    assert got.response_metadata["model_name"] == "chef-model"  # not the routed math-model
    assert server.requests[-1]["model"] == "chef-model"
    routed = ours(toy_router, server).invoke(MATH_Q)  # model="avengers" (default) routes
    assert routed.response_metadata["model_name"] == "math-model"
    per_call = ours(toy_router, server, model="chef-model").invoke(MATH_Q, model="avengers")
    assert per_call.response_metadata["model_name"] == "math-model"
    with pytest.raises(ValueError, match="cannot pin 'nope'"):
        ours(toy_router, server, model="nope").invoke(MATH_Q)


def test_defaults_come_from_the_environment(
    toy_router: Router, server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy_router.save_pretrained(tmp_path / "router")
    eps = {n: {"base_url": server.base_url, "max_retries": 0} for n in NAMES}
    (tmp_path / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": eps}))
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("AVENGERS_ROUTER", str(tmp_path / "router"))
    monkeypatch.setenv("AVENGERS_ENDPOINTS", str(tmp_path / "endpoints.yaml"))
    ref = ChatOpenAI(model="math-model", max_retries=0).invoke(MATH_Q)
    got = ChatAvengers(sampling={"n_samples": 1}).invoke(MATH_Q)
    assert got.content == ref.content == ANSWER
    monkeypatch.delenv("AVENGERS_ENDPOINTS")
    with pytest.raises(ValueError, match="needs endpoints \\(or the environment variable "):
        ChatAvengers().invoke(MATH_Q)


def test_token_count_works_offline(toy_router: Router, server: FakeOpenAIServer) -> None:
    """(``ChatOpenAI.get_num_tokens`` downloads its encoding; ChatAvengers used to say 0.)"""
    chat = ours(toy_router, server)
    n = chat.get_num_tokens(MATH_Q)
    assert len(MATH_Q.split()) <= n <= 2 * len(MATH_Q.split())
    assert chat.get_num_tokens(MATH_Q + " " + MATH_Q) == 2 * n
    assert chat.get_num_tokens_from_messages([HumanMessage(MATH_Q)]) > n


@pytest.mark.parametrize(
    ("fault", "error"),
    [("limited", openai.RateLimitError), ("broken", openai.InternalServerError)],
)
def test_retry_rules_for_openai_errors_match(
    toy_router: Router, server: FakeOpenAIServer, fault: str, error: type[Exception]
) -> None:
    retry = {"retry_if_exception_type": (error,), "stop_after_attempt": 2,
             "wait_exponential_jitter": False}  # fmt: skip
    with pytest.raises(error):
        reference(server, model=fault).with_retry(**retry).invoke(MATH_Q)
    assert server.calls(fault) == 2  # tried, matched, tried again
    server.reset()
    chat = ChatAvengers(
        router=toy_router, endpoints=endpoints(server, model=fault), sampling={"n_samples": 1}
    )
    with pytest.raises(error) as caught:
        chat.with_retry(**retry).invoke(MATH_Q)
    assert isinstance(caught.value, AnswerError) and caught.value.retryable
    assert [f.kind for f in caught.value.failures] == [
        "rate_limit" if fault == "limited" else "server_error"
    ] * len(NAMES)
    assert server.calls(fault) == 2 * len(NAMES)  # every candidate, twice: the rule matched


def test_a_failure_of_mixed_kinds_stays_a_plain_answer_error(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    eps = endpoints(server)
    eps["math-model"] = Endpoint("math-model", server.base_url, model="limited", max_retries=0)
    eps["chef-model"] = Endpoint("chef-model", server.base_url, model="broken", max_retries=0)
    eps["code-model"] = Endpoint("code-model", server.base_url, model="unknown", max_retries=0)
    chat = ChatAvengers(router=toy_router, endpoints=eps, sampling={"n_samples": 1})
    with pytest.raises(AnswerError) as caught:
        chat.invoke(MATH_Q)
    assert not isinstance(caught.value, openai.OpenAIError)
    assert not caught.value.retryable  # a 404 for an unknown model is not going to pass


def test_router_chain_streams_the_candidates_own_chunks(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    """With one sample the chain streams like the candidate it picks (it used to yield the whole
    output as one chunk)."""
    cands = {n: reference(server, model=n) for n in NAMES}
    direct = list(cands["math-model"].stream(MATH_Q))
    chain = AvengersRouterChain(router=toy_router, runnables=cands)
    got = list(chain.stream(MATH_Q))
    assert [c.content for c in got] == [c.content for c in direct]
    assert len([c for c in got if c.content]) == len(ANSWER.split()) > 1
    with_account = list(
        AvengersRouterChain(router=toy_router, runnables=cands, return_account=True).stream(MATH_Q)
    )
    assert [c["output"].content for c in with_account[:-1]] == [c.content for c in direct]
    assert with_account[-1]["account"]["model"] == "math-model"
    voted = list(
        AvengersRouterChain(router=toy_router, runnables=cands, sampling={"n_samples": 3}).stream(
            MATH_Q
        )
    )
    assert len(voted) == 1 and voted[0].content == ANSWER  # a vote needs every sample first


async def test_router_chain_astreams_the_candidates_own_chunks(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    cands = {n: reference(server, model=n) for n in NAMES}
    direct = [c async for c in cands["math-model"].astream(MATH_Q)]
    chain = AvengersRouterChain(router=toy_router, runnables=cands)
    got = [c async for c in chain.astream(MATH_Q)]
    assert [c.content for c in got] == [c.content for c in direct]


def test_router_chain_stream_falls_back_before_the_first_chunk(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    cands = {n: reference(server, model=n) for n in NAMES}
    cands["math-model"] = reference(server, model="broken")
    got = list(AvengersRouterChain(router=toy_router, runnables=cands).stream(MATH_Q))
    text = "".join(str(c.content) for c in got)
    assert text in ("Boil it for six minutes.", "def f(): pass")  # the next candidate's
