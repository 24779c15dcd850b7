"""The documentation's examples run as written (the local deterministic server stands in for
the model servers the docs point at)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from avengers import Router
from fake_openai_server import FakeOpenAIServer, local_fakes, point_at

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC_URL = "http://127.0.0.1:8081/v1"


def blocks(doc: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / doc).read_text(), flags=re.S)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(local_fakes()).start()
    yield s
    s.stop()


def test_answering_doc_examples_run(
    local_router: Router,
    server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (yaml_block,) = blocks("answering.md", "yaml")
    (tmp_path / "endpoints.yaml").write_text(point_at(yaml_block, server.base_url))
    local_router.save_pretrained(tmp_path / "my-router")
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    code = blocks("answering.md", "python")
    assert len(code) == 3
    for block in code:
        exec(compile(block, "docs/answering.md", "exec"), ns)
    assert ns["result"].answer == "391" and ns["result"].model == "smollm2-135m"
    out = capsys.readouterr().out
    assert "391" in out
    assert "What is 6 times 7? -> smollm2-135m" in out  # routing: arithmetic to SmolLM2
    assert "Which number is larger: 12 or 21? -> gemma3-270m" in out  # comparisons to Gemma
    assert out.rstrip().endswith("21")  # the streamed comparison, answered by Gemma
    # the endpoint file is the one `avengers local start` writes
    from dataclasses import replace

    from avengers import load_endpoints
    from avengers.demo.local import demo_endpoints

    assert load_endpoints(tmp_path / "endpoints.yaml") == {
        n: replace(ep, base_url=server.base_url) for n, ep in demo_endpoints().items()
    }


def test_serve_doc_clients_run_against_the_server(
    local_router: Router, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from avengers import Answerer, Endpoint
    from avengers.server import create_app
    from test_serve import Running

    eps = {name: Endpoint(name, server.base_url, model=name) for name in local_fakes()}
    running = Running(create_app(Answerer(local_router, eps, n_samples=3)))
    try:
        code = [b for b in blocks("serve.md", "python") if "[...]" not in b]
        assert len(code) == 3
        for block in code:
            block = block.replace("http://127.0.0.1:8000/v1", f"{running.url}/v1")
            exec(compile(block, "docs/serve.md", "exec"), {})
        out = capsys.readouterr().out
        # the winning group's text is one of its samples' (which one depends on arrival order)
        first, model = out.splitlines()[:2]
        assert first in ("391", "The answer is 391.") and model == "smollm2-135m"
        assert "'391': 2" in out
        assert out.splitlines()[3:] == ["21", "21"]  # comparisons: routed to Gemma
    finally:
        running.stop()


@pytest.mark.slow
def test_router_doc_examples_run_and_print_what_the_doc_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/router.md: every Python block runs, in order, in one namespace; each printed line
    shown in the block's output (``...`` marks an elision) is what the code printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, shown = blocks("router.md", "python"), blocks("router.md", "text")
    assert len(code) == len(shown) == 5
    ns: dict[str, Any] = {}
    for block, expected in zip(code, shown, strict=True):
        exec(compile(block, "docs/router.md", "exec"), ns)
        printed = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
        want = [line.rstrip() for line in expected.splitlines() if line.strip() != "..."]
        missing = [line for line in want if line not in printed]
        assert not missing, f"doc shows lines the code did not print: {missing}\n{printed}"


def test_serve_doc_tool_examples_run(
    local_router: Router,
    server: FakeOpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/serve.md's tools section: an openai-client tool loop and a ChatOpenAI
    structured-output chain through a server on answering.md's ``endpoints-tools.yaml``."""
    from avengers import Answerer, load_endpoints
    from avengers.server import create_app
    from test_serve import Running

    (yaml_block,) = blocks("answering.md", "yaml tools")
    (tmp_path / "endpoints-tools.yaml").write_text(point_at(yaml_block, server.base_url))
    eps = load_endpoints(tmp_path / "endpoints-tools.yaml")
    running = Running(create_app(Answerer(local_router, eps, n_samples=3)))
    try:
        code = re.findall(r"```python tools\n(.*?)```", (DOCS / "serve.md").read_text(), re.S)
        assert len(code) == 2
        for block in code:
            block = block.replace("http://127.0.0.1:8000/v1", f"{running.url}/v1")
            exec(compile(block, "docs/serve.md", "exec"), {})
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "multiply {'a': 17, 'b': 23}" and out[2:] == ["a=17 b=23"]
        assert out[1]  # the answer, asked for without tools once the tool's result is in
        named = [r for r in server.requests if r.get("tool_choice")]
        assert named and named[0]["tool_choice"]["function"]["name"] == "multiply"
    finally:
        running.stop()


def _my_router_and_endpoints(
    doc: str, router: Router, server: FakeOpenAIServer, tmp_path: Path, mp: pytest.MonkeyPatch
) -> None:
    """The folder the docs' examples run in: ``my-router`` and the doc's ``endpoints.yaml``
    pointing at the local server."""
    (yaml_block,) = blocks(doc, "yaml")
    (tmp_path / "endpoints.yaml").write_text(point_at(yaml_block, server.base_url))
    router.save_pretrained(tmp_path / "my-router")
    mp.chdir(tmp_path)


def _served(router: Router, server: FakeOpenAIServer, *, priced: bool = False, **kw: Any) -> Any:
    """A server (direct answers) on a copy of ``router``, over the two local models' stand-ins,
    their endpoints priced (the demo's prices) or not."""
    from avengers import Answerer
    from avengers.demo.local import demo_endpoints
    from avengers.server import create_app
    from test_serve import Running

    eps = {
        name: replace(
            ep,
            base_url=server.base_url,
            **({} if priced else {"input_price": None, "output_price": None}),
        )
        for name, ep in demo_endpoints().items()
    }
    copy = Router.from_state(*router.state(), embedder=router.get_embedder())
    return Running(create_app(Answerer(copy, eps, strategy="direct"), **kw))


def _run(doc: str, tag: str, url: str | None = None) -> None:
    (block,) = blocks(doc, f"python {tag}")
    if url is not None:
        block = block.replace("http://127.0.0.1:8000", url)
    exec(compile(block, f"docs/{doc} ({tag})", "exec"), {})


def test_router_doc_conversations_example_runs(
    local_router: Router,
    server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/router.md's conversations section, on answering.md's router and endpoint file: the
    printed lines are the ones its comments show."""
    _my_router_and_endpoints("answering.md", local_router, server, tmp_path, monkeypatch)
    _run("router.md", "conversations")
    assert capsys.readouterr().out.splitlines() == [
        "smollm2-135m smollm2-135m True",
        "sticky: kept smollm2-135m from the conversation's earlier turns "
        "(this query alone would pick gemma3-270m)",
        "gemma3-270m",
        "smollm2-135m",
    ]


def test_answering_doc_costs_example_runs(
    local_router: Router,
    server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _my_router_and_endpoints("answering.md", local_router, server, tmp_path, monkeypatch)
    (block,) = blocks("answering.md", "python costs")
    exec(compile(point_at(block, server.base_url), "docs/answering.md (costs)", "exec"), {})
    priced, unpriced, rated = capsys.readouterr().out.splitlines()
    model, cost, expected = priced.split()
    assert model == "smollm2-135m" and float(cost) > 0
    # the router's 4e-6 per call for each sample drawn: two if the first two agree (adaptive
    # stopping), three if the odd answer arrives among the first two (concurrent samples)
    assert float(expected) / 4e-6 == pytest.approx(2) or float(expected) / 4e-6 == pytest.approx(3)
    assert unpriced == "gemma3-270m None"
    assert rated.startswith("smollm2-135m ")


def test_serve_doc_conversations_and_costs_run(
    local_router: Router, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    running = _served(local_router, server, priced=True)
    try:
        _run("serve.md", "conversations", running.url)
        assert capsys.readouterr().out.splitlines() == [
            "smollm2-135m smollm2-135m 1",
            "smollm2-135m True",
            "sticky: kept smollm2-135m from the conversation's earlier turns "
            "(this query alone would pick gemma3-270m)",
        ]
        _run("serve.md", "costs", running.url)
        cost, expected, metric = capsys.readouterr().out.splitlines()
        assert float(cost) > 0 and float(expected) == pytest.approx(4e-6)
        assert metric.startswith('[\'avengers_cost_total{profile="avengers"} ')
    finally:
        running.stop()


@pytest.mark.parametrize("doc", ["langchain.md", "llamaindex.md"])
def test_adapter_docs_cost_cap_and_feedback_examples_run(
    doc: str,
    local_router: Router,
    server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/langchain.md and docs/llamaindex.md: max_cost per instance and per call, the
    BudgetError, and feedback in process and through a server that keeps feedback."""
    from avengers.stores.feedback import SQLiteFeedbackStore

    _my_router_and_endpoints(doc, local_router, server, tmp_path, monkeypatch)
    store = SQLiteFeedbackStore(tmp_path / "fb.db")
    running = _served(local_router, server, feedback_store=store)
    try:
        _run(doc, "feedback", running.url)
    finally:
        running.stop()
    out = capsys.readouterr().out.splitlines()
    # the fixture's router expects SmolLM2 to be the cheaper: 10 of its samples fit, not Gemma's
    assert out[0] == "True"
    if doc == "langchain.md":
        assert "left out gemma3-270m" in out.pop(1)
    assert out[1].startswith("no candidate model fits max_cost ")
    assert "even with one sample: the cheapest, 'smollm2-135m'" in out[1]
    assert out[2:] == ["True", "True"]
    assert len(store.ratings()) == 1


def test_serve_doc_throughput_advice_rests_on_measured_figures() -> None:
    """docs/serve.md says plainly that the server is embedding-bound with MiniLM and when to switch
    to the static embedder (issue 29, item 8); every figure it gives for that is one that
    docs/benchmarks.md measured, and the option it names exists."""
    from avengers.cli import app
    from typer.testing import CliRunner

    serve = (DOCS / "serve.md").read_text()
    bench = (DOCS / "benchmarks.md").read_text()
    para = serve[serve.index("**Throughput: MiniLM or the static embedder.**") :].split("\n\n")[0]
    para = " ".join(para.split())
    assert "embedding-bound" in para and "--embedder static" in para
    figures = re.findall(
        r"(\d[\d,]*(?:\.\d+)?) (?:route-only |routed or route-only )?requests/s", para
    )
    figures += re.findall(r"(\d[\d,]*) (?:in a fresh-clone run|at load \d+)", para)
    assert {"22", "25", "1,974", "227"} <= set(figures), figures
    for n in figures:
        assert re.search(rf"(?<![\d.,]){re.escape(n)}(?![\d,]|\.\d)", bench), n
    static_row = re.search(r"\| static \| route only \| \*\*([\d,]+)\*\*", bench)
    assert static_row and static_row.group(1) in figures
    worse = re.search(r"routes (\d\.\d) points worse", para)
    assert worse and f"−{worse.group(1)}0" in bench
    help_text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    assert "--embedder" in help_text
