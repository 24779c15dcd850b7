"""Parity with the partner package: ``llama_index_avengers.Avengers`` beside
``llama_index.llms.openai_like.OpenAILike``, both against the same local fake upstream, compared
on what a LlamaIndex user observes: what ``TokenCountingHandler`` counts, where usage sits in
``raw`` and ``additional_kwargs``, and what ``model=`` does (per instance and per call).

The fake's model ids are the router's candidate names, so ``OpenAILike(model="math-model")``
and an ``Avengers`` routed (or pinned) to ``math-model`` call the same upstream model."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from avengers import Endpoint, Router
from fake_openai_server import FakeModel, FakeOpenAIServer
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

from llama_index_avengers import Avengers

MATH_Q = "What is 17 times 23?"
ANSWER = "The answer is 391."
NAMES = ("math-model", "chef-model", "code-model")
USAGE = ("prompt_tokens", "completion_tokens", "total_tokens")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "math-model": FakeModel(answers=[ANSWER]),
            "chef-model": FakeModel(answers=["Boil it for six minutes."]),
            "code-model": FakeModel(answers=["def f(): pass"]),
        }
    ).start()
    yield s
    s.stop()


def endpoints(server: FakeOpenAIServer) -> dict[str, Endpoint]:
    return {n: Endpoint(n, server.base_url, max_retries=0, timeout=5) for n in NAMES}


def counter() -> tuple[TokenCountingHandler, CallbackManager]:
    """A handler whose own estimate counts characters, so a count equal to the fake's (words)
    shows the handler read the response's usage instead of estimating."""
    handler = TokenCountingHandler(tokenizer=list)
    return handler, CallbackManager([handler])


def reference(server: FakeOpenAIServer, model: str = "math-model", **kw: Any) -> OpenAILike:
    return OpenAILike(
        api_base=server.base_url, api_key="unused", model=model, is_chat_model=True,
        max_retries=0, **kw,
    )  # fmt: skip


def ours(router: Any, server: FakeOpenAIServer, **kw: Any) -> Avengers:
    kw.setdefault("sampling", {"n_samples": 1})
    return Avengers(router=router, endpoints=endpoints(server), **kw)


@pytest.mark.parametrize("call", ["complete", "chat"])
def test_token_counting_handler_reads_the_usage(
    toy_router: Router, server: FakeOpenAIServer, call: str
) -> None:
    ref_count, ref_cm = counter()
    our_count, our_cm = counter()
    ref_llm = reference(server, callback_manager=ref_cm)
    our_llm = ours(toy_router, server, callback_manager=our_cm)
    if call == "complete":
        ref, got = ref_llm.complete(MATH_Q), our_llm.complete(MATH_Q)
        assert ref.text == got.text == ANSWER
    else:
        msgs = [ChatMessage(role="user", content=MATH_Q)]
        ref, got = ref_llm.chat(msgs), our_llm.chat(msgs)
        assert ref.message.content == got.message.content == ANSWER
    words = (len(MATH_Q.split()), len(ANSWER.split()))  # what the fake upstream reports
    for handler in (ref_count, our_count):  # Avengers used to be estimated (here: characters)
        (event,) = handler.llm_token_counts
        assert (event.prompt_token_count, event.completion_token_count) == words
    raw = got.raw
    assert raw is not None
    assert raw["usage"] == dict(zip(USAGE, (*words, sum(words)), strict=True))
    assert ref.raw is not None and dict(ref.raw)["usage"].prompt_tokens == words[0]
    for k in USAGE:  # OpenAI's LLMs put the counts in additional_kwargs too
        assert got.additional_kwargs[k] == ref.additional_kwargs[k]


def test_every_sample_is_counted_and_the_answers_own_is_in_the_account(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    """Issue 30 item 10: the handler sees what three samples cost; the account keeps what one
    call (OpenAILike's) reports."""
    ref_count, ref_cm = counter()
    our_count, our_cm = counter()
    reference(server, callback_manager=ref_cm).complete(MATH_Q)
    llm = ours(toy_router, server, callback_manager=our_cm,
               sampling={"n_samples": 3, "adaptive": False})  # fmt: skip
    got = llm.complete(MATH_Q)
    assert our_count.prompt_llm_token_count == 3 * ref_count.prompt_llm_token_count
    assert our_count.completion_llm_token_count == 3 * ref_count.completion_llm_token_count
    assert got.raw is not None
    one = got.raw["avengers"]["answer_usage"]
    assert (one["prompt_tokens"], one["completion_tokens"]) == (
        ref_count.prompt_llm_token_count, ref_count.completion_llm_token_count,
    )  # fmt: skip


def test_a_stream_ends_with_the_usage(toy_router: Router, server: FakeOpenAIServer) -> None:
    handler, cm = counter()
    parts = list(ours(toy_router, server, callback_manager=cm).stream_complete(MATH_Q))
    assert "".join(p.delta or "" for p in parts) == ANSWER
    assert parts[-1].raw is not None and parts[-1].raw["usage"]["completion_tokens"] == 4
    (event,) = handler.llm_token_counts
    assert (event.prompt_token_count, event.completion_token_count) == (5, 4)


def test_model_pins_a_candidate_as_openailike_names_its_model(
    toy_router: Router, server: FakeOpenAIServer
) -> None:
    reference(server, model="chef-model").complete(MATH_Q)
    assert server.requests[-1]["model"] == "chef-model"
    pinned = ours(toy_router, server, model="chef-model").complete(MATH_Q)
    assert server.requests[-1]["model"] == "chef-model"  # Avengers(model=...) used to be ignored
    assert pinned.raw is not None and pinned.raw["model"] == "chef-model"
    llm = ours(toy_router, server)
    assert llm.complete(MATH_Q).raw["model"] == "math-model"  # type: ignore[index]  # routed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a per-call model= used to be ignored with a warning
        per_call = llm.complete(MATH_Q, model="code-model")
    assert per_call.raw is not None and per_call.raw["model"] == "code-model"
    back = ours(toy_router, server, model="chef-model").complete(MATH_Q, model="avengers")
    assert back.raw is not None and back.raw["model"] == "math-model"
    with pytest.raises(ValueError, match="cannot pin 'nope'"):
        llm.complete(MATH_Q, model="nope")


def test_constructor_keywords_and_environment(
    toy_router: Router, server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=r"'temperatur' \(did you mean 'temperature'\?\)"):
        ours(toy_router, server, temperatur=0.2)
    llm = ours(toy_router, server, timeout=3, max_retries=1)  # as OpenAILike takes them
    eps = llm.answerer().backend.endpoints  # type: ignore[attr-defined]
    assert {(e.timeout, e.max_retries) for e in eps.values()} == {(3.0, 1)}
    toy_router.save_pretrained(tmp_path / "router")
    data = {n: {"base_url": server.base_url, "max_retries": 0} for n in NAMES}
    (tmp_path / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": data}))
    monkeypatch.setenv("AVENGERS_ROUTER", str(tmp_path / "router"))
    monkeypatch.setenv("AVENGERS_ENDPOINTS", str(tmp_path / "endpoints.yaml"))
    assert Avengers(sampling={"n_samples": 1}).complete(MATH_Q).text == ANSWER
    monkeypatch.delenv("AVENGERS_ROUTER")
    with pytest.raises(ValueError, match="needs router \\(or the environment variable "):
        Avengers().complete(MATH_Q)
